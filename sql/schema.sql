-- The hookrelay schema as the migrations in this folder leave it: every table, view, index
-- and function in its current form (a function redefined by a later migration appears once,
-- as it now is). Generated, do not edit; after adding a migration, regenerate it with
--     HOOKRELAY_BLESS=1 cargo test --test it schema_snapshot
-- and review the diff. Made by pg_dump --schema-only --schema=hookrelay --no-owner
-- --no-privileges, without its version lines and session settings, and without the daily
-- partitions of events, deliveries and attempts (dated, they change every day).
--
-- PostgreSQL database dump
--

--
-- Name: hookrelay; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA hookrelay;

--
-- Name: event_fields; Type: TYPE; Schema: hookrelay; Owner: -
--

CREATE TYPE hookrelay.event_fields AS (
	event text,
	object jsonb,
	changes jsonb
);

--
-- Name: check_event(text, jsonb, jsonb, timestamp with time zone); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_event(event text, object jsonb, changes jsonb, fanned_out_at timestamp with time zone) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    -- The fast test first: every insert pays for it.
    IF fanned_out_at IS NULL AND (length(event) NOT BETWEEN 1 AND 200 OR event ~ '[^A-Za-z0-9._:/-]') THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_name_must_be_1_to_200_characters_without_spaces'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_name_must_be_1_to_200_characters_without_spaces',
                  DETAIL = hookrelay.event_name_problem(event) || '.',
                  HINT = 'Name events like order.paid: 1 to 200 of A-Z a-z 0-9 . _ - : /';
    END IF;
    RETURN hookrelay.check_event(event, object, changes);
END
$$;

--
-- Name: valid_event; Type: DOMAIN; Schema: hookrelay; Owner: -
--

CREATE DOMAIN hookrelay.valid_event AS hookrelay.event_fields
	CONSTRAINT valid_event_check CHECK (((((length((VALUE).event) >= 1) AND (length((VALUE).event) <= 200)) AND ((VALUE).event !~ '[^A-Za-z0-9._:/-]'::text) AND (jsonb_typeof((VALUE).object) = 'object'::text) AND (((VALUE).changes IS NULL) OR (jsonb_typeof((VALUE).changes) = 'object'::text))) OR hookrelay.check_event((VALUE).event, (VALUE).object, (VALUE).changes, NULL::timestamp with time zone)));

--
-- Name: add_history_partitions(integer); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.add_history_partitions(days_ahead integer) RETURNS TABLE(day date, outcome text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR day IN SELECT today + i FROM generate_series(0, greatest(days_ahead, 0)) i LOOP
        CONTINUE WHEN to_regclass(format('hookrelay.%I', 'events_p' || to_char(day, 'YYYYMMDD')))
                      IS NOT NULL;
        outcome := hookrelay.attach_history_range(day::timestamp AT TIME ZONE 'UTC',
                                                  (day + 1)::timestamp AT TIME ZONE 'UTC',
                                                  'p' || to_char(day, 'YYYYMMDD'));
        RETURN NEXT;
    END LOOP;
END
$$;

--
-- Name: admit(bigint[], integer[], integer, boolean, bigint[], integer[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.admit(endpoint_ids bigint[], wanted integer[], waiting_limit integer, fan_out boolean, sent_ids bigint[], sent integer[]) RETURNS TABLE(endpoint_id bigint, granted integer, from_waiting integer)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    ep_id   bigint;
    asked   integer;
    cap     integer;
    rate    double precision;
    room    integer;
    parked  integer;
    share   integer;
    budget  integer;
    tok     double precision;
    filled  timestamptz;
    queued  boolean;
    remains boolean;
    now_at  timestamptz;
    done    integer;
BEGIN
    budget := greatest(waiting_limit - coalesce((SELECT sum(n) FROM unnest(wanted) n), 0), 0);
    share := ceil(budget::numeric / greatest(cardinality(endpoint_ids), 1))::integer;
    FOR ep_id, asked IN
        SELECT u.id, u.n FROM unnest(endpoint_ids, wanted) AS u(id, n) ORDER BY u.id
    LOOP
        endpoint_id := ep_id;
        granted := 0;
        from_waiting := 0;
        SELECT ep.max_in_flight, ep.rate_limit INTO cap, rate
        FROM hookrelay.endpoints ep WHERE ep.id = ep_id AND ep.active;
        IF NOT FOUND THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT t.tokens, t.refilled_at, t.waiting INTO tok, filled, queued
        FROM hookrelay.endpoint_throttle t WHERE t.endpoint_id = ep_id FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO hookrelay.endpoint_throttle AS t (endpoint_id) VALUES (ep_id)
            ON CONFLICT DO NOTHING;
            SELECT t.tokens, t.refilled_at, t.waiting INTO tok, filled, queued
            FROM hookrelay.endpoint_throttle t WHERE t.endpoint_id = ep_id FOR UPDATE;
        END IF;
        -- Room: free slots, and whole tokens. A lease whose request has ended (the caller's
        -- `sent`, waiting for its result to be written) holds no slot.
        done := coalesce((SELECT s.n FROM unnest(sent_ids, sent) AS s(id, n)
                          WHERE s.id = ep_id), 0);
        -- The endpoint is compared as `endpoint_id + 0`, which no index can take as a
        -- condition (0032): written as a plain equality, a plan made while a partition was
        -- empty and analyzed (the days made ahead, after any ANALYZE) read that partition
        -- through (event_id, endpoint_id) by its second column, a walk of the whole day's
        -- deliveries once it filled, on every claim. Now the only index that fits is
        -- deliveries_leased, whose entries are the leases in force: the walk is bounded by
        -- the requests in flight, whatever the history.
        SELECT cap - greatest(count(*) - done, 0) INTO room
        FROM hookrelay.deliveries d
        WHERE d.endpoint_id + 0 = ep_id AND d.locked_until > now();
        room := greatest(room, 0);
        IF rate IS NOT NULL THEN
            now_at := clock_timestamp();
            tok := least(greatest(rate, 1),
                         tok + rate * greatest(extract(epoch FROM now_at - filled), 0));
            room := least(room, floor(tok)::integer);
        END IF;
        IF fan_out THEN
            -- Parked deliveries go first: new ones queue behind them.
            IF queued AND EXISTS (SELECT 1 FROM hookrelay.deliveries d
                                  WHERE d.endpoint_id = ep_id AND d.state = 'pending'
                                    AND d.next_attempt_at = 'infinity') THEN
                remains := true;
            ELSE
                granted := least(asked, room);
                remains := granted < asked;
            END IF;
        ELSE
            granted := least(asked, room);
            remains := granted < asked;
            IF queued AND NOT remains THEN
                parked := least(room - granted, share, budget);
                IF parked > 0 THEN
                    SELECT count(*) INTO from_waiting FROM (
                        SELECT 1 FROM hookrelay.deliveries d
                        WHERE d.endpoint_id = ep_id AND d.state = 'pending'
                          AND d.next_attempt_at = 'infinity'
                        LIMIT parked) p;
                    budget := budget - from_waiting;
                    -- Taking all it looked for: there may be more.
                    remains := from_waiting = parked;
                ELSE
                    -- No room or budget to look: they may still be there.
                    remains := true;
                END IF;
            ELSIF queued THEN
                remains := true;
            END IF;
        END IF;
        IF rate IS NOT NULL THEN
            UPDATE hookrelay.endpoint_throttle t
            SET tokens = tok - granted - from_waiting, refilled_at = now_at, waiting = remains
            WHERE t.endpoint_id = ep_id;
        ELSIF remains IS DISTINCT FROM queued THEN
            UPDATE hookrelay.endpoint_throttle t SET waiting = remains
            WHERE t.endpoint_id = ep_id;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

--
-- Name: attach_history_range(timestamp with time zone, timestamp with time zone, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.attach_history_range(lo timestamp with time zone, hi timestamp with time zone, suffix text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '200ms'
    AS $$
DECLARE
    tbl text;
    lower_bound text := CASE WHEN lo IS NULL THEN 'MINVALUE'
                             ELSE quote_literal(hookrelay.id_floor(lo)) END;
    options text[];
BEGIN
    FOREACH tbl IN ARRAY ARRAY['events', 'deliveries', 'attempts'] LOOP
        SELECT c.reloptions INTO options FROM pg_class c
        WHERE c.oid = to_regclass(format('hookrelay.%I', tbl || '_default'));
        EXECUTE format('CREATE TABLE hookrelay.%I (LIKE hookrelay.%I INCLUDING DEFAULTS '
                       'INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)%s',
                       tbl || '_' || suffix, tbl,
                       CASE WHEN options IS NOT NULL
                            THEN format(' WITH (%s)', array_to_string(options, ', ')) END);
        EXECUTE format('ALTER TABLE hookrelay.%I ATTACH PARTITION hookrelay.%I '
                       'FOR VALUES FROM (%s) TO (%L)',
                       tbl, tbl || '_' || suffix, lower_bound, hookrelay.id_floor(hi));
        PERFORM hookrelay.name_partition_indexes(format('hookrelay.%I', tbl || '_' || suffix),
                                                 suffix);
    END LOOP;
    RETURN 'attached';
EXCEPTION
    -- Each a rollback of the whole range (the block is a subtransaction).
    WHEN check_violation THEN RETURN 'rows in default';
    WHEN invalid_object_definition OR duplicate_table THEN RETURN 'overlap';
    WHEN lock_not_available THEN RETURN 'busy';
END
$$;

--
-- Name: backfill_batch(regclass, text, text, integer); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.backfill_batch(tbl regclass, event text, where_sql text DEFAULT ''::text, batch integer DEFAULT 1000, OUT written bigint, OUT rows_done bigint, OUT finished boolean) RETURNS record
    LANGUAGE plpgsql
    AS $_$
DECLARE
    b        hookrelay.backfills;
    p        record;
    excluded text[];
    account  text;
    n_keys   integer;
    last     jsonb;
BEGIN
    where_sql := coalesce(where_sql, '');
    IF event IS NULL OR length(event) NOT BETWEEN 1 AND 200 OR event ~ '[[:space:]]' THEN
        RAISE EXCEPTION 'event name %: 1 to 200 characters without spaces', to_jsonb(event)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch IS NULL OR batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'batch must be 1 to 100000 rows, not %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO hookrelay.backfills AS x (tbl, event, where_sql)
    VALUES (backfill_batch.tbl, backfill_batch.event, backfill_batch.where_sql)
    ON CONFLICT ON CONSTRAINT backfills_pkey DO UPDATE SET updated_at = now()
    RETURNING * INTO b;
    -- Locked: two runs of the same backfill take turns instead of writing rows twice.
    SELECT * INTO b FROM hookrelay.backfills x
    WHERE x.tbl = b.tbl AND x.event = b.event AND x.where_sql = b.where_sql FOR UPDATE;
    IF b.finished_at IS NOT NULL THEN
        written := 0; rows_done := b.rows_done; finished := true;
        RETURN;
    END IF;
    p := hookrelay.backfill_parts(tbl, where_sql, b.last_key);
    excluded := hookrelay.column_names(tbl, (p.t).exclude_attnums);
    account := CASE WHEN (p.t).account_column IS NOT NULL
                    THEN hookrelay.column_now(tbl, (p.t).account_attnum) END;
    n_keys := cardinality((p.t).key_attnums);
    EXECUTE format(
        'WITH rows AS (
             -- Numbered in key order (the index''s order, not jsonb''s) after the LIMIT.
             SELECT x.*, row_number() OVER () AS n
             FROM (SELECT to_jsonb(r) AS row_json, %1$s AS key FROM %2$s r WHERE %3$s
                   ORDER BY %4$s LIMIT %5$s) x
         ), written AS (
             INSERT INTO hookrelay.events (event, model, object_id, object, account_id)
             SELECT $1, $2,
                    CASE WHEN $4 = 1 THEN rows.key ->> 0 ELSE rows.key::text END,
                    rows.row_json - $3::text[], rows.row_json ->> $5
             FROM rows ORDER BY rows.n
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM written),
                (SELECT rows.key FROM rows ORDER BY rows.n DESC LIMIT 1)',
        p.key_json, tbl, p.filter, p.key_order, batch)
    INTO written, last
    USING event, (p.t).model, excluded, n_keys, account;
    UPDATE hookrelay.backfills x
    SET last_key = coalesce(last, x.last_key), rows_done = x.rows_done + written,
        updated_at = now(), finished_at = CASE WHEN written < batch THEN now() END
    WHERE x.tbl = b.tbl AND x.event = b.event AND x.where_sql = b.where_sql
    RETURNING x.rows_done, x.finished_at IS NOT NULL INTO rows_done, finished;
END
$_$;

--
-- Name: tracking; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.tracking (
    tbl regclass NOT NULL,
    model text NOT NULL,
    events text[] NOT NULL,
    exclude_columns text[] DEFAULT '{}'::text[] NOT NULL,
    account_column text,
    key_columns text[] DEFAULT '{}'::text[] NOT NULL,
    tracked_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    tracked_oid oid NOT NULL,
    exclude_attnums smallint[] DEFAULT '{}'::smallint[] NOT NULL,
    account_attnum smallint,
    key_attnums smallint[] DEFAULT '{}'::smallint[] NOT NULL,
    ignore_columns text[] DEFAULT '{}'::text[] NOT NULL,
    ignore_attnums smallint[] DEFAULT '{}'::smallint[] NOT NULL,
    columns text[] DEFAULT '{}'::text[] NOT NULL,
    column_attnums smallint[] DEFAULT '{}'::smallint[] NOT NULL,
    condition text,
    ordering_column text,
    ordering_attnum smallint
);

--
-- Name: TABLE tracking; Type: COMMENT; Schema: hookrelay; Owner: -
--

COMMENT ON TABLE hookrelay.tracking IS 'How each table is tracked; read it through the view hookrelay.tracked_tables';

--
-- Name: backfill_parts(regclass, text, jsonb); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.backfill_parts(tbl regclass, where_sql text, after jsonb, OUT t hookrelay.tracking, OUT filter text, OUT key_order text, OUT key_json text) RETURNS record
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    keys  text[];
    types text[];
BEGIN
    SELECT * INTO t FROM hookrelay.tracking tr WHERE tr.tbl = backfill_parts.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not tracked, so there is no shape for its events', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('track it first: SELECT hookrelay.track_table(%L) or hookrelay track %s', tbl::text, tbl::text);
    END IF;
    keys := hookrelay.column_names(tbl, t.key_attnums);
    IF cardinality(keys) = 0 THEN
        RAISE EXCEPTION '% has no primary key, which a backfill walks in batches', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'add a primary key, or write the events with hookrelay.emit';
    END IF;
    types := ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
                   FROM unnest(t.key_attnums) WITH ORDINALITY AS u(n, i)
                   JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = u.n ORDER BY u.i);
    key_order := (SELECT string_agg(format('r.%I', k), ', ') FROM unnest(keys) AS k);
    key_json := (SELECT format('jsonb_build_array(%s)', string_agg(format('r.%I', k), ', '))
                 FROM unnest(keys) AS k);
    -- The condition alone first, so PostgreSQL's message is about it (argument of WHERE…).
    IF nullif(btrim(where_sql), '') IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT 1 FROM %s r WHERE (%s) LIMIT 0', tbl, where_sql);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'the backfill''s --where % is refused: %', to_jsonb(left(where_sql, 200)), SQLERRM
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('--where is a boolean SQL condition over the columns of %s, e.g. "created_at > now() - interval ''30 days''"', tbl);
        END;
    END IF;
    filter := format('(%s) AND (%s)',
        CASE WHEN after IS NULL THEN 'true'
             ELSE format('(%s) > (%s)', key_order,
                         (SELECT string_agg(format('(%L::jsonb ->> %s)::%s', after, i - 1, types[i]), ', ')
                          FROM generate_series(1, cardinality(keys)) AS i)) END,
        coalesce(nullif(btrim(where_sql), ''), 'true'));
END
$$;

--
-- Name: backfill_remaining(regclass, text, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.backfill_remaining(tbl regclass, event text, where_sql text DEFAULT ''::text) RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    p record;
    n bigint;
BEGIN
    p := hookrelay.backfill_parts(tbl, where_sql,
        (SELECT b.last_key FROM hookrelay.backfills b
         WHERE b.tbl = backfill_remaining.tbl AND b.event = backfill_remaining.event
           AND b.where_sql = coalesce(backfill_remaining.where_sql, '')));
    EXECUTE format('SELECT count(*) FROM %s r WHERE %s', tbl, p.filter) INTO n;
    RETURN n;
END
$$;

--
-- Name: blocked_endpoints(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.blocked_endpoints() RETURNS TABLE(endpoint_id bigint, ready_at timestamp with time zone)
    LANGUAGE sql STABLE
    AS $$
    SELECT l.endpoint_id, NULL::timestamptz
    FROM (SELECT d.endpoint_id, count(*) AS n
          FROM hookrelay.deliveries d
          WHERE d.locked_until > now()
          GROUP BY d.endpoint_id) l
    JOIN hookrelay.endpoints ep ON ep.id = l.endpoint_id
    WHERE l.n >= ep.max_in_flight
    UNION ALL
    SELECT t.endpoint_id, t.refilled_at + (1 - t.tokens) / ep.rate_limit * interval '1 second'
    FROM hookrelay.endpoint_throttle t
    JOIN hookrelay.endpoints ep ON ep.id = t.endpoint_id
    WHERE t.tokens < 1 AND ep.rate_limit IS NOT NULL
      AND t.refilled_at + (1 - t.tokens) / ep.rate_limit * interval '1 second' > now()
$$;

--
-- Name: changes_left_empty(jsonb, text, jsonb); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.changes_left_empty(changes jsonb, model text, include_fields jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE
        WHEN jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN false
        WHEN jsonb_typeof(hookrelay.kept_fields(include_fields, model)) = 'array'
        THEN NOT (changes ?| ARRAY(SELECT jsonb_array_elements_text(
                                              hookrelay.kept_fields(include_fields, model))))
        ELSE changes = '{}'
    END
$$;

--
-- Name: check_columns(regclass, text[], text[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_columns(tbl regclass, columns text[], exclude_columns text[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    bad text;
BEGIN
    IF array_position(columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'columns must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(columns) AS c
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table % has no column % to watch', tbl, bad
            USING ERRCODE = 'undefined_column',
                  HINT = 'column names are case-sensitive and given without quotes, as \d lists them';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(columns) AS c WHERE c = ANY (exclude_columns);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % is both excluded and watched (columns)', bad, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'an excluded column is never sent, so a change to it alone sends nothing: leave it out of one list';
    END IF;
END
$$;

--
-- Name: check_event(text, jsonb, jsonb); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_event(event text, object jsonb, changes jsonb) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    IF length(event) NOT BETWEEN 1 AND 200 OR event ~ '[[:space:]]' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_name_must_be_1_to_200_characters_without_spaces'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_name_must_be_1_to_200_characters_without_spaces',
                  DETAIL = format('The event name %s has %s characters%s.', quote_literal(left(event, 60)),
                                  length(event),
                                  CASE WHEN event ~ '[[:space:]]' THEN ', some of them spaces' ELSE '' END),
                  HINT = 'Name events like order.paid: 1 to 200 characters, no spaces.';
    END IF;
    IF jsonb_typeof(object) <> 'object' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_object_must_be_a_json_object'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_object_must_be_a_json_object',
                  DETAIL = format('The object is a JSON %s.', jsonb_typeof(object)),
                  HINT = 'Pass the record as a JSON object, e.g. {"id": 42}.';
    END IF;
    IF changes IS NOT NULL AND jsonb_typeof(changes) <> 'object' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_changes_must_be_a_json_object'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_changes_must_be_a_json_object',
                  DETAIL = format('The changes are a JSON %s.', jsonb_typeof(changes)),
                  HINT = 'Pass changes as an object of field names to [old, new] pairs, or NULL.';
    END IF;
    RETURN true;
END
$$;

--
-- Name: check_filter(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_filter(filter text) RETURNS jsonpath
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    path jsonpath;
BEGIN
    IF filter IS NULL OR btrim(filter) = '' THEN
        RETURN NULL;
    END IF;
    BEGIN
        path := filter::jsonpath;
    EXCEPTION WHEN syntax_error OR invalid_text_representation THEN
        RAISE EXCEPTION 'filter % is not a valid jsonpath: %', to_jsonb(left(filter, 200)), SQLERRM
            USING ERRCODE = 'check_violation', HINT = hookrelay.filter_hint();
    END;
    PERFORM hookrelay.check_predicate(path);
    RETURN path;
END
$$;

--
-- Name: check_ignored(regclass, text[], text[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_ignored(tbl regclass, ignore_columns text[], exclude_columns text[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    bad text;
BEGIN
    IF array_position(ignore_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'ignore_columns must not contain NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(ignore_columns) AS c
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table % has no column % to ignore', tbl, bad
            USING ERRCODE = 'undefined_column',
                  HINT = 'column names are case-sensitive and given without quotes, as \d lists them';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(ignore_columns) AS c WHERE c = ANY (exclude_columns);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % is both excluded and ignored', bad, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'exclude a column to never send it; ignore it to send it in object but not send an update that changes only it';
    END IF;
END
$$;

--
-- Name: check_predicate(jsonpath); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_predicate(path jsonpath) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    PERFORM jsonb_path_match(hookrelay.example_envelope(), path);
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'filter % is not a predicate (%)', to_jsonb(left(path::text, 200)), SQLERRM
        USING ERRCODE = 'check_violation', HINT = hookrelay.filter_hint();
END
$$;

--
-- Name: check_tracking(regclass, text[], text[], text, text, text[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.check_tracking(tbl regclass, events text[], exclude_columns text[], account_column text, model text, key_columns text[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $_$
DECLARE
    bad text;
BEGIN
    IF cardinality(events) = 0 THEN
        RAISE EXCEPTION 'track_table needs at least one event to track'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'events are created, updated, deleted and truncated; to stop tracking call hookrelay.untrack_table';
    END IF;
    SELECT string_agg(coalesce(quote_literal(e), 'NULL'), ', ') INTO bad
    FROM unnest(events) AS e
    WHERE e IS NULL OR e NOT IN ('created', 'updated', 'deleted', 'truncated');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown event %', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'events are created, updated, deleted and truncated';
    END IF;
    IF array_position(exclude_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'exclude_columns must not contain NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(exclude_columns || account_column) AS c
    WHERE c IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table % has no column %', tbl, bad
            USING ERRCODE = 'undefined_column',
                  HINT = 'column names are case-sensitive and given without quotes, as \d lists them';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(exclude_columns) AS c WHERE c = ANY (key_columns);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % cannot be excluded: it is part of the primary key, which every event carries as object_id', bad, tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF account_column = ANY (exclude_columns) THEN
        RAISE EXCEPTION 'column % of % cannot be both the account column and excluded: events carry its value as account_id', quote_ident(account_column), tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF model IS NOT NULL AND model !~ '^[^[:space:]]{1,200}$' THEN
        RAISE EXCEPTION 'model name % is not valid', quote_literal(model)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use 1 to 200 characters without spaces, such as store.Order';
    END IF;
END
$_$;

--
-- Name: checked_trace(text, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.checked_trace(setting text, raw text) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    valid text;
BEGIN
    IF raw = current_setting('hookrelay.dropped_' || setting, true) THEN
        RETURN NULL;
    END IF;
    valid := CASE setting WHEN 'traceparent' THEN hookrelay.trace_parent(raw)
                          ELSE hookrelay.trace_state(raw) END;
    PERFORM set_config(CASE WHEN valid IS NULL THEN 'hookrelay.dropped_' ELSE 'hookrelay.checked_' END
                       || setting, raw, true);
    RETURN valid;
END
$$;

--
-- Name: column_names(regclass, smallint[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.column_names(tbl regclass, attnums smallint[]) RETURNS text[]
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(array_agg(a.attname::text ORDER BY u.i), '{}')
    FROM unnest(attnums) WITH ORDINALITY AS u(n, i)
    JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = u.n AND NOT a.attisdropped
$$;

--
-- Name: column_now(oid, smallint); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.column_now(tbl oid, attnum smallint) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN attnum > 0 THEN
        (pg_catalog.pg_identify_object_as_address(
            'pg_catalog.pg_class'::pg_catalog.regclass, tbl, attnum)).object_names[3] END
$$;

--
-- Name: column_numbers(regclass, text[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.column_numbers(tbl regclass, names text[]) RETURNS smallint[]
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(array_agg(coalesce(a.attnum, 0) ORDER BY u.i), '{}')
    FROM unnest(names) WITH ORDINALITY AS u(n, i)
    LEFT JOIN pg_attribute a
        ON a.attrelid = tbl AND a.attname = u.n AND a.attnum > 0 AND NOT a.attisdropped
$$;

--
-- Name: current_actor(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.current_actor() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE
        WHEN nullif(btrim(current_setting('hookrelay.actor', true)), '') IS NULL THEN NULL
        WHEN left(btrim(current_setting('hookrelay.actor', true)), 1) IN ('{', '"')
            THEN hookrelay.parse_actor(btrim(current_setting('hookrelay.actor', true)))
        ELSE jsonb_build_object('id', btrim(current_setting('hookrelay.actor', true)))
    END
$$;

--
-- Name: current_traceparent(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.current_traceparent() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE
        WHEN coalesce(current_setting('hookrelay.traceparent', true), '') = '' THEN NULL
        WHEN current_setting('hookrelay.traceparent', true)
             = current_setting('hookrelay.checked_traceparent', true)
        THEN current_setting('hookrelay.traceparent', true)
        ELSE hookrelay.checked_trace('traceparent', current_setting('hookrelay.traceparent', true))
    END
$$;

--
-- Name: current_tracestate(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.current_tracestate() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE
        WHEN coalesce(current_setting('hookrelay.tracestate', true), '') = '' THEN NULL
        WHEN current_setting('hookrelay.tracestate', true)
             = current_setting('hookrelay.checked_tracestate', true)
        THEN current_setting('hookrelay.tracestate', true)
        ELSE hookrelay.checked_trace('tracestate', current_setting('hookrelay.tracestate', true))
    END
$$;

--
-- Name: delivery_dead_event(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.delivery_dead_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog'
    AS $$
DECLARE
    ep hookrelay.endpoints;
    ev text;
BEGIN
    SELECT * INTO ep FROM hookrelay.endpoints WHERE id = NEW.endpoint_id;
    IF NOT FOUND OR NOT ep.emit_dead THEN
        RETURN NULL;
    END IF;
    SELECT e.event INTO ev FROM hookrelay.events e WHERE e.id = NEW.event_id;
    IF ev LIKE 'hookrelay.%' THEN
        RETURN NULL;
    END IF;
    PERFORM hookrelay.ops_event('hookrelay.delivery.dead', 'hookrelay.delivery', NEW.id::text,
        jsonb_build_object('endpoint', ep.name, 'delivery_id', NEW.id,
                           'event_id', 'evt_' || NEW.event_id::text, 'event', ev,
                           'attempts', NEW.attempts, 'last_status', NEW.last_status,
                           'last_error_code', NEW.last_error_code),
        ep.account_id);
    RETURN NULL;
END
$$;

--
-- Name: detach_and_keep(text, uuid[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.detach_and_keep(suffix text, ids uuid[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['events', 'deliveries', 'attempts'] LOOP
        EXECUTE format('ALTER TABLE hookrelay.%I DETACH PARTITION hookrelay.%I',
                       tbl, tbl || '_' || suffix);
    END LOOP;
    PERFORM hookrelay.move_to_parent('events', 'events_' || suffix, 't.id = ANY ($1)', ids);
    PERFORM hookrelay.move_to_parent('deliveries', 'deliveries_' || suffix,
                                     't.event_id = ANY ($1)', ids);
    -- By delivery (attempts_by_delivery), the deliveries read by their event.
    PERFORM hookrelay.move_to_parent(
        'attempts', 'attempts_' || suffix,
        format('t.delivery_id = ANY (ARRAY(SELECT d.id FROM hookrelay.%I d '
               'WHERE d.event_id = ANY ($1)))', 'deliveries_' || suffix),
        ids);
    EXECUTE format('DROP TABLE hookrelay.%I, hookrelay.%I, hookrelay.%I',
                   'events_' || suffix, 'deliveries_' || suffix, 'attempts_' || suffix);
END
$_$;

--
-- Name: disable_failing_endpoints(interval, integer); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.disable_failing_endpoints(failing_for interval, min_failures integer) RETURNS TABLE(name text, disabled_reason text)
    LANGUAGE sql
    AS $$
    UPDATE hookrelay.endpoints ep
    SET active = false,
        disabled_reason = format(
            'disabled automatically: every attempt failed for %s (%s failures in a row since %s; '
            'last error: %s)',
            justify_interval(date_trunc('second', now() - st.failing_since)),
            st.consecutive_failures,
            to_char(st.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            coalesce(left(st.last_error, 200), 'none recorded')),
        disabled_at = now()
    FROM hookrelay.endpoint_state st
    WHERE st.endpoint_id = ep.id
      AND ep.active
      AND st.failing_since <= now() - disable_failing_endpoints.failing_for
      AND st.consecutive_failures >= disable_failing_endpoints.min_failures
    RETURNING ep.name, ep.disabled_reason
$$;

--
-- Name: drop_tracking_triggers(regclass); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.drop_tracking_triggers(tbl regclass) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    trigger_name name;
    dropped integer := 0;
BEGIN
    FOR trigger_name IN
        SELECT t.tgname FROM pg_trigger t
        WHERE t.tgrelid = tbl AND t.tgparentid = 0
          AND t.tgfoid IN ('hookrelay.tracked_row()'::regprocedure,
                           'hookrelay.tracked_truncate()'::regprocedure,
                           'hookrelay.tracked_condition()'::regprocedure)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

--
-- Name: emit(text, jsonb, text, text, jsonb, text, text, text, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.emit(event text, object jsonb DEFAULT '{}'::jsonb, model text DEFAULT NULL::text, object_id text DEFAULT NULL::text, changes jsonb DEFAULT NULL::jsonb, account_id text DEFAULT NULL::text, ordering_key text DEFAULT NULL::text, traceparent text DEFAULT NULL::text, tracestate text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
DECLARE
    new_id uuid;
BEGIN
    IF emit.ordering_key IS NULL AND emit.traceparent IS NULL AND emit.tracestate IS NULL THEN
        -- The usual call. With no actor or trace context set either, the insert names the three
        -- context columns, so their defaults (which read and check the settings) are not
        -- evaluated: each would give NULL.
        IF coalesce(current_setting('hookrelay.actor', true), '') = ''
           AND coalesce(current_setting('hookrelay.traceparent', true), '') = ''
           AND coalesce(current_setting('hookrelay.tracestate', true), '') = '' THEN
            INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id,
                                          actor, traceparent, tracestate)
            VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                    coalesce(emit.object_id,
                             CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                    emit.changes, emit.account_id, NULL, NULL, NULL)
            RETURNING id INTO new_id;
        ELSE
            INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id)
            VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                    coalesce(emit.object_id,
                             CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                    emit.changes, emit.account_id)
            RETURNING id INTO new_id;
        END IF;
        RETURN new_id;
    END IF;
    IF emit.ordering_key IS NOT NULL THEN
        IF emit.ordering_key = '' THEN
            RAISE EXCEPTION 'ordering_key is empty'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'give a key such as ''customer:42'', or leave ordering_key out (NULL) to order by model and object_id';
        END IF;
        -- Before the insert: the event's id and created_at are made once the key is ours.
        PERFORM hookrelay.lock_ordering_key(emit.ordering_key);
    END IF;
    IF emit.traceparent IS NULL AND emit.tracestate IS NULL THEN
        INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id,
                                      ordering_key)
        VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                coalesce(emit.object_id,
                         CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                emit.changes, emit.account_id, emit.ordering_key)
        RETURNING id INTO new_id;
    ELSE
        INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id,
                                      ordering_key, traceparent, tracestate)
        VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                coalesce(emit.object_id,
                         CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                emit.changes, emit.account_id, emit.ordering_key,
                coalesce(hookrelay.trace_parent(emit.traceparent), hookrelay.current_traceparent()),
                coalesce(hookrelay.trace_state(emit.tracestate), hookrelay.current_tracestate()))
        RETURNING id INTO new_id;
    END IF;
    RETURN new_id;
END
$$;

--
-- Name: endpoint_active_changed(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.endpoint_active_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.active THEN
        UPDATE hookrelay.deliveries SET next_attempt_at = now(), updated_at = now()
        WHERE endpoint_id = NEW.id AND state = 'pending' AND next_attempt_at = 'infinity';
    ELSE
        UPDATE hookrelay.deliveries SET next_attempt_at = 'infinity', updated_at = now()
        WHERE endpoint_id = NEW.id AND state = 'pending';
    END IF;
    RETURN NULL;
END
$$;

--
-- Name: endpoint_disabled_event(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.endpoint_disabled_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog'
    AS $$
BEGIN
    PERFORM hookrelay.ops_event('hookrelay.endpoint.disabled', 'hookrelay.endpoint', NEW.name,
        jsonb_build_object('endpoint', NEW.name, 'reason', NEW.disabled_reason,
                           'disabled_at', NEW.disabled_at),
        NEW.account_id);
    RETURN NULL;
END
$$;

--
-- Name: endpoint_gone(bigint[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.endpoint_gone(endpoint_ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    cancelled bigint;
BEGIN
    -- The endpoint row first, then its deliveries: the order an operator's disable takes.
    UPDATE hookrelay.endpoints
    SET active = false,
        disabled_reason = 'the receiver answered 410 Gone at '
            || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || '; its pending deliveries were cancelled',
        disabled_at = now()
    WHERE id = ANY (endpoint_ids);
    UPDATE hookrelay.deliveries d
    SET state = 'cancelled',
        next_attempt_at = NULL,
        locked_until = NULL,
        locked_by = NULL,
        last_error_code = 'gone',
        last_error = 'cancelled: the endpoint answered 410 Gone and was disabled',
        updated_at = now()
    WHERE d.endpoint_id = ANY (endpoint_ids) AND d.state = 'pending';
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    RETURN cancelled;
END
$$;

--
-- Name: endpoint_ordering_changed(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.endpoint_ordering_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT NEW.ordered THEN
        UPDATE hookrelay.deliveries d
        SET next_attempt_at = CASE WHEN NEW.active THEN now() ELSE 'infinity' END,
            updated_at = now()
        WHERE d.endpoint_id = NEW.id AND d.state = 'pending' AND d.next_attempt_at IS NULL;
    ELSIF NEW.on_dead = 'skip' THEN
        PERFORM hookrelay.release_key(NEW.id, k.ordering_key)
        FROM (SELECT DISTINCT d.ordering_key FROM hookrelay.deliveries d
              WHERE d.endpoint_id = NEW.id AND d.state = 'dead' AND d.ordering_key IS NOT NULL) k;
    END IF;
    PERFORM hookrelay.wake_idle_workers();
    RETURN NULL;
END
$$;

--
-- Name: endpoint_recovered_event(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.endpoint_recovered_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog'
    AS $$
DECLARE
    ep hookrelay.endpoints;
BEGIN
    SELECT * INTO ep FROM hookrelay.endpoints WHERE id = NEW.endpoint_id;
    IF NOT FOUND OR hookrelay.is_ops_endpoint(ep.events) THEN
        RETURN NULL;
    END IF;
    PERFORM hookrelay.ops_event('hookrelay.endpoint.recovered', 'hookrelay.endpoint', ep.name,
        jsonb_build_object('endpoint', ep.name, 'failures', OLD.consecutive_failures,
                           'failing_since', OLD.failing_since,
                           'recovered_at', NEW.last_success_at),
        ep.account_id);
    RETURN NULL;
END
$$;

--
-- Name: endpoint_reenabled(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.endpoint_reenabled() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE hookrelay.endpoint_state
    SET consecutive_failures = 0, failing_since = NULL
    WHERE endpoint_id = NEW.id;
    RETURN NULL;
END
$$;

--
-- Name: envelope(uuid, text, timestamp with time zone, text, text, text, jsonb, jsonb, jsonb); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.envelope(id uuid, event text, created_at timestamp with time zone, account_id text, model text, object_id text, object jsonb, changes jsonb, actor jsonb) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT jsonb_build_object(
        'id', 'evt_' || id::text,
        'event', event,
        'timestamp', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'account_id', account_id,
        -- "store.Order" is app store, name Order: split at the last dot, both sides non-empty
        -- (payload::ModelName::parse).
        'model', CASE
            WHEN model IS NULL THEN NULL
            WHEN strpos(model, '.') > 0 AND split_part(model, '.', -1) <> ''
                 AND length(model) - length(split_part(model, '.', -1)) > 1
            THEN jsonb_build_object(
                'app', left(model, length(model) - length(split_part(model, '.', -1)) - 1),
                'name', split_part(model, '.', -1))
            ELSE jsonb_build_object('app', NULL, 'name', model)
        END,
        'object_id', object_id,
        'object', object,
        'changes', changes,
        'user', actor)
$$;

--
-- Name: event_name_problem(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.event_name_problem(event text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE
        WHEN event IS NULL OR event = '' THEN 'the event name is empty'
        WHEN length(event) > 200 THEN format('the event name has %s characters; at most 200 are allowed', length(event))
        WHEN event ~ '[^A-Za-z0-9._:/-]' THEN
            format('the event name %s has %s, which event names may not have',
                   hookrelay.shown(event, 60),
                   hookrelay.shown_char(substring(event FROM '[^A-Za-z0-9._:/-]')))
    END
$$;

--
-- Name: event_ordering_key(text, text, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.event_ordering_key(ordering_key text, model text, object_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT coalesce(ordering_key, coalesce(model, '') || ':' || object_id)
$$;

--
-- Name: example_envelope(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.example_envelope() RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT '{"id": "evt_00000000-0000-0000-0000-000000000000", "event": "order.paid",
             "timestamp": "2026-01-24T10:00:00.000000Z", "account_id": "acme",
             "model": {"app": "store", "name": "Order"}, "object_id": "42",
             "object": {"id": 42, "status": "PAID", "total": 150.00},
             "changes": {"status": {"old": "PENDING", "new": "PAID"}},
             "user": {"id": "1", "username": "admin"}}'::jsonb
$$;

--
-- Name: filter_hint(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.filter_hint() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $_$
    SELECT 'a filter is a jsonpath predicate over the envelope, for example '
        || '$.object.total > 100 && $.account_id == "acme", or $.event like_regex "^order\\."'
$_$;

--
-- Name: fingerprint(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.fingerprint(secret text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT 'sha256:' || left(encode(sha256(convert_to(secret, 'UTF8')), 'hex'), 8)
$$;

--
-- Name: flag_waiting_endpoints(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.flag_waiting_endpoints() RETURNS bigint
    LANGUAGE sql
    AS $$
    WITH flagged AS (
        INSERT INTO hookrelay.endpoint_throttle AS t (endpoint_id, waiting)
        SELECT ep.id, true
        FROM hookrelay.endpoints ep
        WHERE ep.active
          AND EXISTS (SELECT 1 FROM hookrelay.deliveries d
                      WHERE d.endpoint_id = ep.id AND d.state = 'pending'
                        AND d.next_attempt_at = 'infinity')
        ORDER BY ep.id
        ON CONFLICT (endpoint_id) DO UPDATE SET waiting = true WHERE NOT t.waiting
        RETURNING 1
    )
    SELECT count(*) FROM flagged
$$;

--
-- Name: forget_attempts_of_deliveries(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.forget_attempts_of_deliveries() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM hookrelay.attempts a
    WHERE a.delivery_id = ANY (ARRAY(SELECT g.id FROM gone g))
      AND a.event_id = ANY (ARRAY(SELECT g.event_id FROM gone g));
    RETURN NULL;
END
$$;

--
-- Name: forget_deliveries_of_endpoints(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.forget_deliveries_of_endpoints() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM hookrelay.deliveries d USING gone WHERE d.endpoint_id = gone.id;
    RETURN NULL;
END
$$;

--
-- Name: forget_deliveries_of_events(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.forget_deliveries_of_events() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM hookrelay.deliveries d WHERE d.event_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END
$$;

--
-- Name: grant_roles(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.grant_roles() RETURNS text[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0024();
BEGIN
    IF 'hookrelay_worker' = ANY (granted) THEN
        GRANT USAGE ON SEQUENCE hookrelay.deliveries_id_seq, hookrelay.attempts_id_seq
            TO hookrelay_worker;
        -- The retention sweep reads the DEFAULT partition by its name.
        GRANT SELECT ON hookrelay.events_default TO hookrelay_worker;
        GRANT EXECUTE ON FUNCTION hookrelay.add_history_partitions(integer),
                                  hookrelay.retire_history_day(interval, interval, bigint)
            TO hookrelay_worker;
    END IF;
    RETURN granted;
END
$$;

--
-- Name: grant_roles_0008(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.grant_roles_0008() RETURNS text[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    role_name text;
    granted   text[] := '{}';
BEGIN
    FOREACH role_name IN ARRAY ARRAY['hookrelay_app', 'hookrelay_worker', 'hookrelay_operator'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION
                -- Another database's migration created it meanwhile.
                WHEN duplicate_object OR unique_violation THEN NULL;
                WHEN insufficient_privilege THEN
                    RAISE WARNING 'could not create role %: this user lacks CREATEROLE', role_name
                        USING HINT = 'an administrator can run CREATE ROLE ' || role_name
                            || ' NOLOGIN; then run SELECT hookrelay.grant_roles(); as the owner of schema hookrelay';
                    CONTINUE;
            END;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA hookrelay TO %I', role_name);
        -- Every command checks the schema version before it starts.
        EXECUTE format('GRANT SELECT ON hookrelay.schema_migrations TO %I', role_name);
        EXECUTE format('GRANT EXECUTE ON FUNCTION hookrelay.uuid_v7(), hookrelay.current_actor(), '
                       'hookrelay.parse_actor(text) TO %I', role_name);
        granted := granted || role_name;
    END LOOP;

    IF 'hookrelay_app' = ANY (granted) THEN
        -- Not id, created_at or fanned_out_at: those are hookrelay's (ids must be time-ordered
        -- for the fan-out cursor, and a set fanned_out_at would skip delivery).
        GRANT INSERT (event, model, object_id, object, changes, actor, account_id)
            ON hookrelay.events TO hookrelay_app;
        -- RETURNING id, which emit() does.
        GRANT SELECT (id) ON hookrelay.events TO hookrelay_app;
        -- The wake-up trigger looks for idle workers; nothing else of theirs.
        GRANT SELECT (waiting, heartbeat_at) ON hookrelay.workers TO hookrelay_app;
        GRANT EXECUTE ON FUNCTION hookrelay.emit(text, jsonb, text, text, jsonb, text, text, text, text)
            TO hookrelay_app;
    END IF;

    IF 'hookrelay_worker' = ANY (granted) THEN
        GRANT SELECT, DELETE ON hookrelay.events TO hookrelay_worker;
        GRANT UPDATE (fanned_out_at) ON hookrelay.events TO hookrelay_worker;
        -- It signs, so it reads secrets; it changes only whether an endpoint is active (410
        -- Gone, auto-disable).
        GRANT SELECT ON hookrelay.endpoints TO hookrelay_worker;
        GRANT UPDATE (active, disabled_reason, disabled_at) ON hookrelay.endpoints
            TO hookrelay_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON hookrelay.deliveries, hookrelay.endpoint_state, hookrelay.endpoint_stats,
               hookrelay.endpoint_throttle, hookrelay.workers
            TO hookrelay_worker;
        GRANT SELECT, INSERT, DELETE ON hookrelay.attempts TO hookrelay_worker;
        -- /metrics reads the backlog.
        GRANT SELECT ON hookrelay.backlog, hookrelay.endpoint_health, hookrelay.delivery_log
            TO hookrelay_worker;
        GRANT EXECUTE ON FUNCTION hookrelay.admit(bigint[], integer[], integer, boolean, bigint[], integer[]),
                                  hookrelay.blocked_endpoints(),
                                  hookrelay.flag_waiting_endpoints(),
                                  hookrelay.endpoint_gone(bigint[]),
                                  hookrelay.disable_failing_endpoints(interval, integer)
            TO hookrelay_worker;
    END IF;

    IF 'hookrelay_operator' = ANY (granted) THEN
        GRANT SELECT ON hookrelay.events, hookrelay.deliveries,
                        hookrelay.attempts, hookrelay.endpoint_state, hookrelay.endpoint_stats,
                        hookrelay.endpoint_throttle, hookrelay.workers, hookrelay.tracked_tables,
                        hookrelay.backlog, hookrelay.endpoint_health, hookrelay.delivery_log,
                        hookrelay.endpoint_fingerprints
            TO hookrelay_operator;
        -- Every column but secret, previous_secret and headers (header values are often tokens).
        GRANT SELECT (id, name, url, account_id, events, models, active, signature_scheme,
                      max_attempts, timeout_ms, created_at, updated_at,
                      previous_secret_expires_at, include_fields, redact_fields,
                      max_in_flight, rate_limit, disabled_reason, disabled_at)
            ON hookrelay.endpoints TO hookrelay_operator;
        GRANT EXECUTE ON FUNCTION hookrelay.blocked_endpoints(),
                                  hookrelay.redeliver(bigint),
                                  hookrelay.redeliver_dead(text, interval)
            TO hookrelay_operator;
    END IF;
    RETURN granted;
END
$$;

--
-- Name: grant_roles_0022(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.grant_roles_0022() RETURNS text[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0008();
BEGIN
    IF 'hookrelay_app' = ANY (granted) THEN
        GRANT INSERT (ordering_key) ON hookrelay.events TO hookrelay_app;
        GRANT EXECUTE ON FUNCTION
            hookrelay.emit(text, jsonb, text, text, jsonb, text, text, text, text),
            hookrelay.lock_ordering_key(text)
            TO hookrelay_app;
    END IF;
    IF 'hookrelay_operator' = ANY (granted) THEN
        GRANT SELECT (filter, number_format, skip_empty_changes, ordered, on_dead)
            ON hookrelay.endpoints TO hookrelay_operator;
        GRANT EXECUTE ON FUNCTION
            hookrelay.replay(text, timestamptz, timestamptz, text[], boolean, interval)
            TO hookrelay_operator;
        GRANT SELECT ON hookrelay.backfills, hookrelay.held_keys TO hookrelay_operator;
    END IF;
    RETURN granted;
END
$$;

--
-- Name: grant_roles_0024(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.grant_roles_0024() RETURNS text[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0022();
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY granted LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION hookrelay.current_traceparent(), '
                       'hookrelay.current_tracestate(), hookrelay.trace_parent(text), '
                       'hookrelay.trace_state(text), hookrelay.trace_dropped(text, text), '
                       'hookrelay.checked_trace(text, text) TO %I',
                       role_name);
    END LOOP;
    IF 'hookrelay_app' = ANY (granted) THEN
        GRANT INSERT (traceparent, tracestate) ON hookrelay.events TO hookrelay_app;
    END IF;
    IF 'hookrelay_operator' = ANY (granted) THEN
        GRANT SELECT (trace_context, emit_dead) ON hookrelay.endpoints TO hookrelay_operator;
    END IF;
    RETURN granted;
END
$$;

--
-- Name: history_partitions(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.history_partitions() RETURNS TABLE(suffix text, ends_at timestamp with time zone)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT substr(c.relname, length('events_') + 1),
           hookrelay.id_time(substring(pg_get_expr(c.relpartbound, c.oid)
                                       FROM 'TO \(''([0-9a-f-]+)''\)')::uuid)
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'hookrelay.events'::regclass
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    ORDER BY 2
$$;

--
-- Name: id_floor(timestamp with time zone); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.id_floor(at timestamp with time zone) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

--
-- Name: id_time(uuid); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.id_time(id uuid) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT to_timestamp(('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint / 1000.0)
$$;

--
-- Name: install_tracking(hookrelay.tracking); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.install_tracking(t hookrelay.tracking) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    target text := t.tbl::text;
    call   text;
    args   text[];
BEGIN
    IF t.tbl::oid = t.tracked_oid THEN
        t.condition := coalesce(hookrelay.tracked_condition_now(t.tbl), t.condition);
    END IF;
    PERFORM hookrelay.drop_tracking_triggers(t.tbl);
    args := ARRAY[t.model, t.tracked_oid::text, t.exclude_columns::text, t.key_columns::text,
                  coalesce(t.account_column, ''), t.ignore_columns::text]
            || t.exclude_attnums::text[] || t.key_attnums::text[]
            || CASE WHEN t.account_column IS NOT NULL THEN ARRAY[t.account_attnum::text] ELSE '{}' END
            || t.ignore_attnums::text[]
            || CASE WHEN t.ordering_column IS NOT NULL
                    THEN ARRAY['ordering', t.ordering_column, t.ordering_attnum::text]
                    ELSE '{}' END;
    call := format('hookrelay.tracked_row(%s)',
                   (SELECT string_agg(quote_literal(a), ', ' ORDER BY i) FROM unnest(args) WITH ORDINALITY AS u(a, i)));
    IF 'created' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_created AFTER INSERT ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                       target, hookrelay.tracking_when(t, 'INSERT'), call);
    END IF;
    IF 'updated' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_updated AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                       target, hookrelay.tracking_when(t, 'UPDATE'), call);
    END IF;
    IF 'deleted' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_deleted AFTER DELETE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                       target, hookrelay.tracking_when(t, 'DELETE'), call);
    END IF;
    IF 'truncated' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_truncated AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.tracked_truncate(%L, %L)',
                       target, t.model, 'emit');
    ELSIF 'deleted' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_truncated BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.tracked_truncate(%L, %L)',
                       target, t.model, 'refuse');
    END IF;
    IF t.condition IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER hookrelay_condition AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION hookrelay.tracked_condition()',
                       target, t.condition);
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER hookrelay_condition', target);
    END IF;
END
$$;

--
-- Name: invisible_chars(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.invisible_chars() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT '[\x01-\x20\x7f-\xa0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2'
           '\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff'
           '\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3'
           '\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'
$$;

--
-- Name: is_field_list(jsonb); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.is_field_list(fields jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT jsonb_typeof(fields) = 'array'
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(fields) AS f
                       WHERE jsonb_typeof(f) <> 'string' OR f = '""')
$$;

--
-- Name: is_ops_endpoint(text[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.is_ops_endpoint(events text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT EXISTS (SELECT 1 FROM unnest(events) e WHERE e LIKE 'hookrelay.%')
$$;

--
-- Name: is_reserved_header(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.is_reserved_header(name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT lower(name) IN ('content-type', 'content-length', 'content-encoding',
                           'transfer-encoding', 'host', 'connection', 'keep-alive', 'upgrade',
                           'te', 'trailer', 'expect', 'proxy-connection', 'user-agent',
                           'traceparent', 'tracestate')
        OR lower(name) LIKE 'x-webhook-%'
        OR lower(name) LIKE 'webhook-%'
$$;

--
-- Name: kept_events(text, interval, bigint); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.kept_events(suffix text, keep_dead interval, most bigint) RETURNS uuid[]
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    kept uuid[];
BEGIN
    EXECUTE format(
        'SELECT ARRAY(SELECT k.id FROM (
             SELECT e.id FROM hookrelay.%1$I e WHERE e.fanned_out_at IS NULL
             UNION
             SELECT d.event_id FROM hookrelay.%2$I d WHERE d.state = ''pending''
             UNION
             SELECT d.event_id FROM hookrelay.%2$I d JOIN hookrelay.%1$I e ON e.id = d.event_id
             WHERE d.state = ''dead'' AND e.created_at >= now() - $1) k LIMIT $2 + 1)',
        'events_' || suffix, 'deliveries_' || suffix)
        INTO kept USING keep_dead, most;
    RETURN kept;
END
$_$;

--
-- Name: kept_fields(jsonb, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.kept_fields(include_fields jsonb, model text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE jsonb_typeof(include_fields)
        WHEN 'array' THEN include_fields
        WHEN 'object' THEN coalesce(include_fields -> model, include_fields -> '*')
    END
$$;

--
-- Name: key_turn(bigint, bigint, text, timestamp with time zone, uuid, boolean, uuid); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.key_turn(delivery_id bigint, endpoint_id bigint, key text, at timestamp with time zone, event_id uuid, blocks_on_dead boolean, first_unfanned uuid) RETURNS text
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    me      bigint := key_turn.delivery_id;
    ep_id   bigint := key_turn.endpoint_id;
    evt     uuid := key_turn.event_id;
    blocker bigint;
BEGIN
    -- An earlier event of the key not fanned out yet gets its delivery ahead of this one. Events
    -- are looked at first: a fan-out marks an event and creates its deliveries at once, so the
    -- deliveries read below include those of every event seen fanned out here. An id is made
    -- no later than its created_at (rounded to the millisecond), hence the bounds.
    IF first_unfanned IS NOT NULL AND hookrelay.id_time(first_unfanned) <= at + interval '1 millisecond'
       AND EXISTS (SELECT 1 FROM hookrelay.events e
                   WHERE e.fanned_out_at IS NULL
                     AND e.id < hookrelay.id_floor(at + interval '2 milliseconds')
                     AND (e.created_at, e.id) < (at, evt)
                     AND hookrelay.event_ordering_key(e.ordering_key, e.model, e.object_id) = key)
    THEN
        RETURN 'later';
    END IF;
    -- The nearest earlier delivery still pending (or dead, holding the key), locked so that it
    -- cannot settle before this claim commits: its release then sees this delivery parked.
    -- Pending and dead are looked up apart, each a walk back along deliveries_by_key.
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'pending'
      AND (p.ordering_at, p.event_id) < (at, evt)
    ORDER BY p.ordering_at DESC, p.event_id DESC
    LIMIT 1
    FOR SHARE SKIP LOCKED;
    IF FOUND THEN
        RETURN 'park';
    END IF;
    IF blocks_on_dead THEN
        SELECT p.id INTO blocker
        FROM hookrelay.deliveries p
        WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'dead'
          AND (p.ordering_at, p.event_id) < (at, evt)
        ORDER BY p.ordering_at DESC, p.event_id DESC
        LIMIT 1
        FOR SHARE SKIP LOCKED;
        IF FOUND THEN
            RETURN 'park';
        END IF;
    END IF;
    -- Another delivery of the key in flight (an earlier one reopened by redeliver or replay
    -- while a later one was sent): never two at once. Looked up among the key's leases
    -- (deliveries_key_leased); an expired lease is not in flight (its worker is gone, and it
    -- is due again itself).
    -- Pending is written as none of the other states (delivery_state_is_known), which
    -- implies no other partial index's predicate: with `state = 'pending'`, a plan made on empty
    -- tables took deliveries_due as often as not, a walk of every pending delivery (0032).
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.locked_until IS NOT NULL
      AND p.locked_until > now() AND p.state NOT IN ('delivered', 'dead', 'cancelled')
      AND p.id <> me
    LIMIT 1
    FOR SHARE SKIP LOCKED;
    IF FOUND THEN
        RETURN 'park';
    END IF;
    -- Blockers seen but locked by another transaction (claiming or settling them): look again.
    -- The same three lookups without SKIP LOCKED (0032): each reads the key's own entries in
    -- an order only its index has, so that no plan can take another index.
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'pending'
      AND (p.ordering_at, p.event_id) < (at, evt)
    ORDER BY p.ordering_at DESC, p.event_id DESC
    LIMIT 1;
    IF FOUND THEN
        RETURN 'later';
    END IF;
    IF blocks_on_dead THEN
        SELECT p.id INTO blocker
        FROM hookrelay.deliveries p
        WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'dead'
          AND (p.ordering_at, p.event_id) < (at, evt)
        ORDER BY p.ordering_at DESC, p.event_id DESC
        LIMIT 1;
        IF FOUND THEN
            RETURN 'later';
        END IF;
    END IF;
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.locked_until IS NOT NULL
      AND p.locked_until > now() AND p.state NOT IN ('delivered', 'dead', 'cancelled')
      AND p.id <> me
    LIMIT 1;
    IF FOUND THEN
        RETURN 'later';
    END IF;
    RETURN 'send';
END
$$;

--
-- Name: lock_ordering_key(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.lock_ordering_key(key text) RETURNS void
    LANGUAGE sql STRICT
    AS $$
    -- 1752198514: hookrelay's class of advisory locks, apart from the application's own.
    SELECT pg_advisory_xact_lock(1752198514, hashtext(key))
$$;

--
-- Name: move_to_parent(text, text, text, uuid[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.move_to_parent(parent text, detached text, filter text, kept uuid[]) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    columns text := (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                     FROM pg_attribute a
                     WHERE a.attrelid = format('hookrelay.%I', parent)::regclass
                       AND a.attnum > 0 AND NOT a.attisdropped);
    moved bigint;
BEGIN
    EXECUTE format('INSERT INTO hookrelay.%1$I (%3$s) SELECT %3$s FROM hookrelay.%2$I t WHERE %4$s',
                   parent, detached, columns, filter)
        USING kept;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$_$;

--
-- Name: name_partition_indexes(regclass, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.name_partition_indexes(tbl regclass, suffix text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    i record;
BEGIN
    FOR i IN SELECT c.relname AS name, p.relname AS parent
             FROM pg_index x
             JOIN pg_class c ON c.oid = x.indexrelid
             JOIN pg_inherits h ON h.inhrelid = x.indexrelid
             JOIN pg_class p ON p.oid = h.inhparent
             WHERE x.indrelid = tbl
    LOOP
        CONTINUE WHEN i.name = i.parent || '_' || suffix;
        EXECUTE format('ALTER INDEX hookrelay.%I RENAME TO %I', i.name, i.parent || '_' || suffix);
    END LOOP;
END
$$;

--
-- Name: ops_event(text, text, text, jsonb, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.ops_event(event text, model text, object_id text, object jsonb, account_id text) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog'
    AS $$
    INSERT INTO hookrelay.events (event, model, object_id, object, account_id, actor,
                                  traceparent, tracestate)
    VALUES (ops_event.event, ops_event.model, ops_event.object_id, ops_event.object,
            ops_event.account_id, NULL, NULL, NULL)
$$;

--
-- Name: ordered_delivery_added(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.ordered_delivery_added() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM hookrelay.wake_idle_workers();
    RETURN NULL;
END
$$;

--
-- Name: parse_actor(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.parse_actor(raw text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    parsed jsonb;
BEGIN
    parsed := raw::jsonb;
    IF jsonb_typeof(parsed) = 'object' THEN
        RETURN parsed;
    END IF;
    RETURN jsonb_build_object('id', parsed #>> '{}');
EXCEPTION WHEN others THEN
    RAISE WARNING 'hookrelay.actor is not valid JSON (%); the event records it as {"raw": …}', SQLERRM
        USING HINT = 'set a JSON object such as {"id": "1", "username": "admin"}, or a bare id such as 42';
    RETURN jsonb_build_object('raw', raw);
END
$$;

--
-- Name: redeliver(bigint); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.redeliver(delivery_id bigint) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH scheduled AS (
        UPDATE hookrelay.deliveries d
        SET state = 'pending',
            attempts_base = d.attempts,
            next_attempt_at = CASE WHEN ep.active THEN now() ELSE 'infinity' END,
            delivered_at = NULL,
            updated_at = now()
        FROM hookrelay.endpoints ep
        WHERE d.id = redeliver.delivery_id AND ep.id = d.endpoint_id
          AND NOT (d.state = 'pending' AND d.locked_until > now())
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM scheduled)
$$;

--
-- Name: redeliver_dead(text, interval); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.redeliver_dead(endpoint_name text, since interval DEFAULT '24:00:00'::interval) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH scheduled AS (
        UPDATE hookrelay.deliveries d
        SET state = 'pending',
            attempts_base = d.attempts,
            next_attempt_at = CASE WHEN ep.active THEN now() ELSE 'infinity' END,
            updated_at = now()
        FROM hookrelay.endpoints ep
        WHERE ep.id = d.endpoint_id
          AND (redeliver_dead.endpoint_name IS NULL OR ep.name = redeliver_dead.endpoint_name)
          AND d.state = 'dead'
          AND d.created_at >= now() - redeliver_dead.since
        RETURNING 1
    )
    SELECT count(*) FROM scheduled
$$;

--
-- Name: release_key(bigint, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.release_key(endpoint_id bigint, key text) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    ep_id   bigint := release_key.endpoint_id;
    head    bigint;
    head_event uuid;
    touched integer;
BEGIN
    SELECT p.id, p.event_id INTO head, head_event
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'pending'
      AND p.locked_until IS NULL
    ORDER BY p.ordering_at, p.event_id
    LIMIT 1;
    IF head IS NULL THEN
        RETURN false;
    END IF;
    -- A head waiting for a slot ('infinity' while active) is made due too: the waiting queue
    -- may have passed it over while it was not its turn, and the due claim parks it again
    -- for a slot if there is none.
    UPDATE hookrelay.deliveries d
    SET next_attempt_at = CASE WHEN d.next_attempt_at IS NULL
                                    OR (d.next_attempt_at = 'infinity' AND ep.active)
                               THEN CASE WHEN ep.active THEN now() ELSE 'infinity' END
                               ELSE d.next_attempt_at END,
        updated_at = now()
    FROM hookrelay.endpoints ep
    WHERE d.id = head AND d.event_id = head_event AND ep.id = d.endpoint_id
      AND d.state = 'pending';
    GET DIAGNOSTICS touched = ROW_COUNT;
    IF touched > 0 THEN
        PERFORM hookrelay.wake_idle_workers();
    END IF;
    RETURN touched > 0;
END
$$;

--
-- Name: release_next_of_key(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.release_next_of_key() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.state = 'dead' AND EXISTS (SELECT 1 FROM hookrelay.endpoints ep
                                      WHERE ep.id = NEW.endpoint_id AND ep.on_dead = 'block') THEN
        RETURN NULL;
    END IF;
    PERFORM hookrelay.release_key(NEW.endpoint_id, NEW.ordering_key);
    RETURN NULL;
END
$$;

--
-- Name: replay(text, timestamp with time zone, timestamp with time zone, text[], boolean, interval); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.replay(endpoint_name text, since timestamp with time zone, until timestamp with time zone DEFAULT now(), only_events text[] DEFAULT '{}'::text[], dry_run boolean DEFAULT false, retention interval DEFAULT NULL::interval) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    ep hookrelay.endpoints;
    n  bigint;
BEGIN
    SELECT * INTO ep FROM hookrelay.endpoints e WHERE e.name = endpoint_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no endpoint named %', to_jsonb(endpoint_name)
            USING ERRCODE = 'no_data_found',
                  HINT = '`hookrelay endpoint list` (or SELECT name FROM hookrelay.endpoints) shows them';
    END IF;
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'nothing to replay between % and %: since must be before until', since, until
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'for example --since 24h, or --since 2026-01-24T00:00:00Z --until 2026-01-25T00:00:00Z';
    END IF;
    IF retention IS NOT NULL AND since < now() - retention THEN
        RAISE EXCEPTION 'events older than the retention (%) are not kept: replay from % or later',
                        justify_interval(retention), to_char((now() - retention) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the worker deletes finished events after --retention (HOOKRELAY_RETENTION)';
    END IF;
    IF dry_run THEN
        SELECT count(*) INTO n FROM hookrelay.replay_events(ep, since, until, only_events);
        RETURN n;
    END IF;
    WITH chosen AS (
        SELECT * FROM hookrelay.replay_events(ep, since, until, only_events)
    ), due AS (
        -- In event order: claims take due deliveries by next_attempt_at.
        SELECT c.event_id, c.rank,
               CASE WHEN ep.active THEN now() + c.rank * interval '1 microsecond'
                    ELSE 'infinity' END AS at,
               CASE WHEN ep.ordered
                    THEN hookrelay.event_ordering_key(e.ordering_key, e.model, e.object_id) END AS key,
               e.created_at
        FROM chosen c
        JOIN hookrelay.events e ON e.id = c.event_id
    ), again AS (
        UPDATE hookrelay.deliveries d
        SET state = 'pending', attempts_base = d.attempts, next_attempt_at = due.at,
            delivered_at = NULL, updated_at = now(),
            ordering_key = coalesce(d.ordering_key, due.key),
            ordering_at = CASE WHEN d.ordering_key IS NULL AND due.key IS NOT NULL
                               THEN due.created_at ELSE d.ordering_at END
        FROM due
        WHERE d.event_id = due.event_id AND d.endpoint_id = ep.id
          AND NOT (d.state = 'pending' AND d.locked_until > now())
        RETURNING 1
    ), added AS (
        INSERT INTO hookrelay.deliveries (event_id, endpoint_id, next_attempt_at, ordering_key,
                                          ordering_at)
        SELECT due.event_id, ep.id, due.at, due.key,
               CASE WHEN due.key IS NOT NULL THEN due.created_at END
        FROM due
        WHERE NOT EXISTS (SELECT 1 FROM hookrelay.deliveries d
                          WHERE d.event_id = due.event_id AND d.endpoint_id = ep.id)
        ORDER BY due.rank
        ON CONFLICT (event_id, endpoint_id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM again) + (SELECT count(*) FROM added) INTO n;
    RETURN n;
END
$$;

--
-- Name: endpoints; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.endpoints (
    id bigint NOT NULL,
    name text NOT NULL,
    url text NOT NULL,
    secret text NOT NULL,
    account_id text,
    events text[] DEFAULT '{}'::text[] NOT NULL,
    models text[] DEFAULT '{}'::text[] NOT NULL,
    active boolean DEFAULT true NOT NULL,
    signature_scheme text DEFAULT 'hookrelay'::text NOT NULL,
    max_attempts integer,
    timeout_ms integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamp with time zone,
    headers jsonb DEFAULT '{}'::jsonb NOT NULL,
    include_fields jsonb,
    redact_fields jsonb,
    max_in_flight integer DEFAULT 16 NOT NULL,
    rate_limit double precision,
    disabled_reason text,
    disabled_at timestamp with time zone,
    filter jsonpath,
    number_format text DEFAULT 'json'::text NOT NULL,
    skip_empty_changes boolean DEFAULT false NOT NULL,
    ordered boolean DEFAULT false NOT NULL,
    on_dead text DEFAULT 'skip'::text NOT NULL,
    trace_context boolean DEFAULT true NOT NULL,
    emit_dead boolean DEFAULT false NOT NULL,
    CONSTRAINT endpoint_on_dead_is_skip_or_block CHECK ((on_dead = ANY (ARRAY['skip'::text, 'block'::text]))),
    CONSTRAINT endpoint_url_must_be_http_or_https CHECK ((url ~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$'::text))
);

--
-- Name: replay_events(hookrelay.endpoints, timestamp with time zone, timestamp with time zone, text[]); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.replay_events(ep hookrelay.endpoints, since timestamp with time zone, until timestamp with time zone, only_events text[]) RETURNS TABLE(event_id uuid, rank bigint)
    LANGUAGE sql STABLE
    AS $$
    -- Write order: ids order events only to the millisecond.
    SELECT e.id, row_number() OVER (ORDER BY e.created_at, e.id)
    FROM hookrelay.events e
    WHERE e.created_at >= since AND e.created_at < until
      AND e.fanned_out_at IS NOT NULL
      AND (cardinality(only_events) = 0 OR e.event = ANY (only_events))
      AND ((cardinality(ep.events) = 0 AND left(e.event, 10) <> 'hookrelay.')
           OR e.event = ANY (ep.events))
      AND (left(e.event, 10) <> 'hookrelay.' OR e.object ->> 'endpoint' IS DISTINCT FROM ep.name)
      AND (cardinality(ep.models) = 0 OR e.model = ANY (ep.models))
      AND (ep.account_id IS NULL OR ep.account_id = e.account_id)
      AND (ep.filter IS NULL
           OR jsonb_path_match(hookrelay.envelope(e.id, e.event, e.created_at, e.account_id,
                                                  e.model, e.object_id, e.object, e.changes,
                                                  e.actor),
                               ep.filter, '{}', true))
      AND (NOT ep.skip_empty_changes
           OR NOT hookrelay.changes_left_empty(e.changes, e.model, ep.include_fields))
$$;

--
-- Name: retire_history_day(interval, interval, bigint); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.retire_history_day(keep interval, keep_dead interval, max_kept bigint) RETURNS TABLE(suffix text, outcome text, kept bigint, rows_estimate bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '200ms'
    AS $$
DECLARE
    day record;
    ids uuid[];
BEGIN
    -- Looked at before taking any lock, and again under it.
    FOR day IN SELECT p.suffix FROM hookrelay.history_partitions() p
               WHERE p.ends_at <= now() - keep ORDER BY p.ends_at
    LOOP
        suffix := day.suffix;
        ids := hookrelay.kept_events(suffix, keep_dead, max_kept);
        kept := cardinality(ids);
        EXIT WHEN kept <= max_kept;
        outcome := 'too many kept';
        RETURN NEXT;
        suffix := NULL;
    END LOOP;
    IF suffix IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        -- Parents first, all three in one statement: no deadlock with the pipeline's statements.
        LOCK TABLE ONLY hookrelay.events, hookrelay.deliveries, hookrelay.attempts
            IN ACCESS EXCLUSIVE MODE;
        ids := hookrelay.kept_events(suffix, keep_dead, max_kept);
        kept := cardinality(ids);
        IF kept > max_kept THEN
            outcome := 'too many kept';
            RETURN NEXT;
            RETURN;
        END IF;
        rows_estimate := (SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c
                          WHERE c.oid = format('hookrelay.%I', 'events_' || suffix)::regclass);
        PERFORM hookrelay.detach_and_keep(suffix, ids);
        outcome := 'dropped';
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        -- The block is a subtransaction: whatever it did is undone.
        outcome := 'busy';
    END;
    RETURN NEXT;
END
$$;

--
-- Name: set_actor(jsonb); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.set_actor(actor jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- A query sent on its own outside BEGIN … COMMIT (autocommit) is its own transaction,
    -- started at the same instant; inside a block the statement starts later. That catches the
    -- trap as psql, Django (client-side binding, its default) and Rails' execute send it. With
    -- the extended protocol the transaction starts at Parse or Bind and the statement at
    -- Execute, and no function can tell the two apart: the recipes call it inside the
    -- transaction. A string of several statements runs as one transaction, so there the actor
    -- lasts for all of them and is allowed.
    IF transaction_timestamp() = statement_timestamp()
       AND position(';' IN rtrim(coalesce(current_query(), ''), E'; \t\r\n')) = 0 THEN
        RAISE EXCEPTION 'hookrelay.set_actor was called outside a transaction block, so the actor would be forgotten when this statement ends'
            USING ERRCODE = 'no_active_sql_transaction',
                  HINT = 'call it first thing inside the transaction that writes the rows: BEGIN … COMMIT, Django transaction.atomic() (or ATOMIC_REQUESTS), Rails ActiveRecord::Base.transaction';
    END IF;
    IF actor IS NOT NULL AND jsonb_typeof(actor) NOT IN ('object', 'string', 'number') THEN
        RAISE EXCEPTION 'hookrelay.set_actor takes a JSON object or an id, not a JSON %', jsonb_typeof(actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass an object such as {"id": "1", "username": "admin"}';
    END IF;
    PERFORM set_config('hookrelay.actor', coalesce(actor::text, ''), true);
    RETURN hookrelay.current_actor();
END
$$;

--
-- Name: shown(text, integer); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.shown(value text, max_chars integer DEFAULT 100) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT coalesce(to_jsonb(left(value, max_chars))::text, 'NULL')
$$;

--
-- Name: shown_char(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.shown_char(c text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN c ~ hookrelay.invisible_chars() THEN ''
                ELSE to_jsonb(c)::text || ' ' END
           || '(U+' || upper(lpad(to_hex(ascii(c)), 4, '0')) || ')'
$$;

--
-- Name: suppress_value(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.suppress_value(raw text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN raw::boolean;
EXCEPTION WHEN invalid_text_representation THEN
    RAISE EXCEPTION 'hookrelay.suppress is set to %, which is not on or off', quote_literal(left(raw, 40))
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'SET LOCAL hookrelay.suppress = on inside the transaction whose rows should send no events; off (or unset) sends them';
END
$$;

--
-- Name: suppressed(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.suppressed() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE coalesce(current_setting('hookrelay.suppress', true), '')
        WHEN '' THEN false WHEN 'off' THEN false WHEN 'on' THEN true
        ELSE hookrelay.suppress_value(current_setting('hookrelay.suppress', true)) END
$$;

--
-- Name: trace_dropped(text, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.trace_dropped(setting text, raw text) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RAISE WARNING 'hookrelay.% is not a valid W3C trace context value (%); the event is written without it',
        setting, hookrelay.shown(raw, 80)
        USING HINT = CASE setting
            WHEN 'traceparent' THEN 'use 00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>, ids not all zero, e.g. 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
            ELSE 'use comma-separated key=value members (at most 32, 512 characters), e.g. vendor=opaque-value' END;
    RETURN NULL;
END
$$;

--
-- Name: trace_parent(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.trace_parent(raw text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $_$
    SELECT CASE
        WHEN raw IS NULL OR raw = '' THEN NULL
        WHEN raw ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
             AND raw !~ '^00-0{32}-' AND raw !~ '-0{16}-..$' THEN raw
        ELSE hookrelay.trace_dropped('traceparent', raw)
    END
$_$;

--
-- Name: trace_state(text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.trace_state(raw text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $_$
    SELECT CASE
        WHEN raw IS NULL OR raw = '' THEN NULL
        WHEN length(raw) <= 512 AND raw !~ '[^\x20-\x7e]'
             AND length(raw) - length(replace(raw, ',', '')) < 32
             AND raw ~ '^[a-z0-9][a-z0-9_*/@-]*=[^,=]*[^ ,=]([ \t]*,[ \t]*[a-z0-9][a-z0-9_*/@-]*=[^,=]*[^ ,=])*$'
        THEN raw
        ELSE hookrelay.trace_dropped('tracestate', raw)
    END
$_$;

--
-- Name: tracked_condition_now(regclass); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracked_condition_now(tbl regclass) RETURNS text
    LANGUAGE sql STABLE
    AS $_$
    SELECT substring(pg_get_triggerdef(t.oid)
                     FROM ' FOR EACH ROW WHEN \((.*)\) EXECUTE FUNCTION hookrelay\.tracked_condition\(\)$')
    FROM pg_trigger t
    WHERE t.tgrelid = tbl AND t.tgparentid = 0 AND t.tgname = 'hookrelay_condition'
      AND t.tgfoid = 'hookrelay.tracked_condition()'::regprocedure
$_$;

--
-- Name: tracking_problem(hookrelay.tracking); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracking_problem(t hookrelay.tracking) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE
        WHEN t.tbl::oid <> t.tracked_oid
            THEN 'restored from another database: its columns are read by name until it is tracked again'
        WHEN EXISTS (SELECT 1 FROM pg_trigger g
                     WHERE g.tgrelid = t.tbl AND g.tgnargs = 4
                       AND g.tgfoid = 'hookrelay.tracked_row()'::regprocedure)
            THEN 'tracked before hookrelay''s migration 14, which could not reinstall its triggers: exclusions do not follow renames until it is tracked again'
        WHEN 0 = ANY (t.exclude_attnums || t.account_attnum)
            THEN 'a column it names was not found when migration 14 ran: its writes fail until it is tracked again'
        WHEN t.account_attnum IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = t.tbl AND a.attnum = t.account_attnum AND NOT a.attisdropped)
            THEN 'its account column was dropped: its writes fail until it is tracked again or untracked'
    END
$$;

--
-- Name: tracked_tables; Type: VIEW; Schema: hookrelay; Owner: -
--

CREATE VIEW hookrelay.tracked_tables AS
 SELECT t.tbl,
    t.model,
    t.events,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.exclude_attnums)
            ELSE t.exclude_columns
        END AS exclude_columns,
        CASE
            WHEN ((t.account_column IS NULL) OR ((t.tbl)::oid <> t.tracked_oid)) THEN t.account_column
            ELSE COALESCE((hookrelay.column_names(t.tbl, ARRAY[t.account_attnum]))[1], (t.account_column || ' (dropped)'::text))
        END AS account_column,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.key_attnums)
            ELSE t.key_columns
        END AS key_columns,
    t.tracked_at,
    t.updated_at,
    hookrelay.tracking_problem(t.*) AS problem,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.ignore_attnums)
            ELSE t.ignore_columns
        END AS ignore_columns,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.column_attnums)
            ELSE t.columns
        END AS columns,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN COALESCE(hookrelay.tracked_condition_now(t.tbl), t.condition)
            ELSE t.condition
        END AS condition,
        CASE
            WHEN ((t.ordering_column IS NULL) OR ((t.tbl)::oid <> t.tracked_oid)) THEN t.ordering_column
            ELSE COALESCE((hookrelay.column_names(t.tbl, ARRAY[t.ordering_attnum]))[1], (t.ordering_column || ' (dropped)'::text))
        END AS ordering_key
   FROM hookrelay.tracking t
  WHERE (EXISTS ( SELECT 1
           FROM pg_class c
          WHERE (c.oid = (t.tbl)::oid)));

--
-- Name: track_table(regclass, text[], text[], text, text, text[], text[], text, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.track_table(tbl regclass, events text[] DEFAULT '{created,updated,deleted}'::text[], exclude_columns text[] DEFAULT '{}'::text[], account_column text DEFAULT NULL::text, model text DEFAULT NULL::text, ignore_columns text[] DEFAULT '{}'::text[], columns text[] DEFAULT '{}'::text[], condition text DEFAULT NULL::text, ordering_key text DEFAULT NULL::text) RETURNS hookrelay.tracked_tables
    LANGUAGE plpgsql
    AS $$
DECLARE
    rel         record;
    key_columns text[];
    settings    hookrelay.tracking;
    result      hookrelay.tracked_tables;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'track_table needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no table with oid %', tbl::oid USING ERRCODE = 'undefined_table';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'track the table a view or materialized view reads from';
    END IF;
    IF rel.nspname = 'hookrelay' THEN
        RAISE EXCEPTION 'hookrelay''s own table % cannot be tracked', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    events := coalesce(events, '{created,updated,deleted}');
    exclude_columns := coalesce(exclude_columns, '{}');
    ignore_columns := coalesce(ignore_columns, '{}');
    columns := coalesce(columns, '{}');
    condition := nullif(btrim(condition), '');
    IF ordering_key IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = tbl AND a.attname = ordering_key AND a.attnum > 0
              AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'ordering_key names no column of %: %', tbl, to_jsonb(ordering_key)
            USING ERRCODE = 'undefined_column',
                  HINT = 'ordering_key is the column whose value orders the events, e.g. customer_id; '
                         'leave it out to order each row''s events by the row';
    END IF;
    key_columns := ARRAY(
        SELECT a.attname::text
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisprimary
        ORDER BY k.n);
    PERFORM hookrelay.check_tracking(tbl, events, exclude_columns, account_column, model, key_columns);
    PERFORM hookrelay.check_ignored(tbl, ignore_columns, exclude_columns);
    PERFORM hookrelay.check_columns(tbl, columns, exclude_columns);
    columns := ARRAY(SELECT DISTINCT c FROM unnest(columns) AS c ORDER BY c);
    exclude_columns := ARRAY(SELECT DISTINCT c FROM unnest(exclude_columns) AS c ORDER BY c);
    ignore_columns := ARRAY(SELECT DISTINCT c FROM unnest(ignore_columns) AS c ORDER BY c);
    settings := ROW(tbl, coalesce(model, rel.nspname || '.' || rel.relname),
                    ARRAY(SELECT e FROM unnest('{created,updated,deleted,truncated}'::text[]) AS e
                          WHERE e = ANY (events)),
                    exclude_columns, account_column, key_columns, now(), now(), tbl::oid,
                    hookrelay.column_numbers(tbl, exclude_columns),
                    CASE WHEN account_column IS NOT NULL
                         THEN (hookrelay.column_numbers(tbl, ARRAY[account_column]))[1] END,
                    hookrelay.column_numbers(tbl, key_columns),
                    ignore_columns, hookrelay.column_numbers(tbl, ignore_columns),
                    columns, hookrelay.column_numbers(tbl, columns), condition,
                    ordering_key,
                    CASE WHEN ordering_key IS NOT NULL
                         THEN (hookrelay.column_numbers(tbl, ARRAY[ordering_key]))[1] END);
    PERFORM hookrelay.drop_tracking_triggers(tbl);
    BEGIN
        PERFORM hookrelay.install_tracking(settings);
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch
                   OR invalid_object_definition OR undefined_table OR feature_not_supported
                   OR invalid_text_representation OR ambiguous_column THEN
        IF condition IS NULL THEN
            RAISE;
        END IF;
        -- PostgreSQL's own message, about the condition as given.
        RAISE EXCEPTION 'condition % is refused: %', to_jsonb(left(condition, 200)), SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'a condition is a boolean SQL expression over NEW (created, updated) and OLD '
                         '(updated, deleted), as in a trigger''s WHEN clause, e.g. NEW.status = ''PAID''; '
                         'one naming OLD cannot apply to created events, nor one naming NEW to deleted: '
                         'leave those out of events';
    END;

    settings.condition := hookrelay.tracked_condition_now(tbl);

    -- Rows of tables dropped since they were tracked (their triggers went with them).
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = track_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    INSERT INTO hookrelay.tracking SELECT (settings).*;
    SELECT * INTO result FROM hookrelay.tracked_tables v WHERE v.tbl = track_table.tbl;
    RETURN result;
END
$$;

--
-- Name: track_waiting_workers(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.track_waiting_workers() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    -- Serialized, and read in a statement of its own after the lock: two workers changing their
    -- rows at once each see the other's committed row, so the last to finish cannot drop the
    -- other's wait.
    -- The key spells "hookwake" in ASCII (the migrations' lock spells "hookrela").
    PERFORM pg_advisory_xact_lock(7525356009714445157);
    PERFORM setval('hookrelay.wake_until',
                   coalesce((SELECT ceil(extract(epoch FROM max(w.heartbeat_at)
                                                  + interval '2 minutes'))::bigint
                             FROM hookrelay.workers w
                             WHERE w.waiting), 0));
    RETURN NULL;
END
$$;

--
-- Name: tracked_condition(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracked_condition() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN NULL;
END
$$;

--
-- Name: tracked_row(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracked_row() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    old_style  boolean := TG_NARGS = 4;
    tbl        oid := CASE WHEN NOT old_style THEN TG_ARGV[1]::oid END;
    excluded   text[] := TG_ARGV[CASE WHEN old_style THEN 1 ELSE 2 END];
    key_cols   text[] := TG_ARGV[3];
    account    text := nullif(TG_ARGV[CASE WHEN old_style THEN 2 ELSE 4 END], '');
    n_excluded integer := cardinality(excluded);
    n_keys     integer := coalesce(cardinality(key_cols), 0);
    -- Where the numbers start: 0014's triggers have no ignored names before them.
    base       integer := CASE WHEN old_style THEN 0
                               WHEN TG_NARGS = 5 + n_excluded + n_keys + (account IS NOT NULL)::int THEN 5
                               ELSE 6 END;
    ignored    text[] := CASE WHEN base = 6 THEN TG_ARGV[5]::text[] ELSE '{}' END;
    -- 0022: 'ordering', the ordering column's name and number follow the numbers, if set.
    ord_at     integer := base + n_excluded + n_keys + (account IS NOT NULL)::int + cardinality(ignored);
    ord_col    text;
    ord_key    text;
    tracked_as text := account;
    by_number  boolean;
    col        text;
    row_json   jsonb;
    new_object jsonb;
    old_object jsonb;
    row_id     text;
BEGIN
    -- 'on' never gets here (the WHEN clause); other spellings of it, and bad values, do.
    IF current_setting('hookrelay.suppress', true) NOT IN ('', 'off') AND hookrelay.suppressed() THEN
        RETURN NULL;
    END IF;
    row_json := CASE TG_OP WHEN 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    by_number := tbl = TG_RELID OR tbl = pg_partition_root(TG_RELID);
    IF by_number THEN
        -- Numbers are the truth; an excluded column goes under both names when they differ.
        FOR i IN 1 .. n_excluded LOOP
            col := hookrelay.column_now(tbl, TG_ARGV[base - 1 + i]::int2);
            IF col IS DISTINCT FROM excluded[i] THEN
                IF col IS NULL THEN
                    PERFORM hookrelay.tracking_out_of_step(tbl, format('excluded column %I is not found', excluded[i]));
                END IF;
                excluded := excluded || col;
            END IF;
        END LOOP;
        FOR i IN 1 .. n_keys LOOP
            key_cols[i] := hookrelay.column_now(tbl, TG_ARGV[base - 1 + n_excluded + i]::int2);
        END LOOP;
        IF account IS NOT NULL THEN
            account := hookrelay.column_now(tbl, TG_ARGV[base + n_excluded + n_keys]::int2);
            -- Renamed, while another column took its old name: the numbers may be from before
            -- a restore that happened to reuse the oid, so neither column is trusted.
            IF account IS DISTINCT FROM tracked_as AND row_json ? tracked_as THEN
                PERFORM hookrelay.tracking_out_of_step(tbl, format(
                    'its account column %I was renamed to %I, and %I now names another column', tracked_as, account, tracked_as));
            END IF;
        END IF;
        IF TG_OP = 'UPDATE' THEN
            -- A dropped ignored column is simply not there to ignore.
            FOR i IN 1 .. cardinality(ignored) LOOP
                ignored[i] := hookrelay.column_now(
                    tbl, TG_ARGV[base + n_excluded + n_keys + (tracked_as IS NOT NULL)::int + i - 1]::int2);
            END LOOP;
        END IF;
    ELSIF NOT row_json ?& excluded THEN
        PERFORM hookrelay.tracking_out_of_step(TG_RELID, 'an excluded column is not found by name, so it may be sent under another name');
    END IF;
    IF tracked_as IS NOT NULL AND NOT coalesce(row_json ? account, false) THEN
        PERFORM hookrelay.tracking_out_of_step(CASE WHEN by_number THEN tbl ELSE TG_RELID END, format(
            'its account column (%I when tracked) was dropped, so the event''s account is unknown', tracked_as));
    END IF;
    IF base = 6 AND TG_NARGS > ord_at + 2 AND TG_ARGV[ord_at] = 'ordering' THEN
        ord_col := CASE WHEN by_number
                        THEN coalesce(hookrelay.column_now(tbl, TG_ARGV[ord_at + 2]::int2), TG_ARGV[ord_at + 1])
                        ELSE TG_ARGV[ord_at + 1] END;
        ord_key := row_json ->> ord_col;
        -- Rows sharing a key are not serialised by their row locks: the key's lock does it.
        PERFORM hookrelay.lock_ordering_key(ord_key);
    END IF;
    new_object := row_json - excluded;
    IF n_keys = 1 THEN
        row_id := row_json ->> key_cols[1];
    ELSIF n_keys > 1 THEN
        -- A composite key is sent as the JSON array of its values, in key order: [7, "b"].
        row_id := (SELECT jsonb_agg(row_json -> k ORDER BY i)
                   FROM unnest(key_cols) WITH ORDINALITY AS u(k, i))::text;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_object := to_jsonb(OLD) - excluded;
        -- Only excluded or ignored columns changed, or values that differ only in form (1.0
        -- and 1.00). Ignored columns still go out in object and, with a real change, changes.
        IF old_object - ignored = new_object - ignored THEN
            RETURN NULL;
        END IF;
        INSERT INTO hookrelay.events (event, model, object_id, object, changes, account_id, ordering_key)
        SELECT 'updated', TG_ARGV[0], row_id, new_object,
               jsonb_object_agg(n.key, jsonb_build_object('old', old_object -> n.key, 'new', n.value)),
               row_json ->> account, ord_key
        FROM jsonb_each(new_object) AS n
        WHERE n.value IS DISTINCT FROM old_object -> n.key
        HAVING count(*) > 0;
    ELSE
        INSERT INTO hookrelay.events (event, model, object_id, object, account_id, ordering_key)
        VALUES (CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'deleted' END,
                TG_ARGV[0], row_id, new_object, row_json ->> account, ord_key);
    END IF;
    RETURN NULL;
END
$$;

--
-- Name: tracked_truncate(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracked_truncate() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF hookrelay.suppressed() THEN
        RETURN NULL;
    END IF;
    IF TG_ARGV[1] = 'emit' THEN
        INSERT INTO hookrelay.events (event, model) VALUES ('truncated', TG_ARGV[0]);
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'TRUNCATE of %.% is refused because hookrelay tracks its deletes; in a test suite (Django flush or TransactionTestCase, Rails fixtures or DatabaseCleaner) run SET hookrelay.suppress = on first, and no events are sent',
        quote_ident(TG_TABLE_SCHEMA), quote_ident(TG_TABLE_NAME)
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'TRUNCATE would delete the rows without any "deleted" event, so receivers would never hear they are gone',
              HINT = 'in the application use DELETE; or track ''truncated'' as well (one "truncated" event per TRUNCATE); '
                     'or SET LOCAL hookrelay.suppress = on in the transaction (the test database''s connections can set it '
                     'for the session, e.g. options=-c hookrelay.suppress=on); or call hookrelay.untrack_table first';
END
$$;

--
-- Name: tracking_out_of_step(oid, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracking_out_of_step(tbl oid, problem text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'hookrelay cannot write the event for this change to %: %', tbl::regclass, problem
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = format('track the table again with its current columns (hookrelay.track_table(%L, …) or hookrelay track; '
                            'it replaces every setting, see hookrelay track --list), or stop tracking it: SELECT hookrelay.untrack_table(%L)',
                            tbl::regclass::text, tbl::regclass::text);
END
$$;

--
-- Name: tracking_when(hookrelay.tracking, text); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.tracking_when(t hookrelay.tracking, op text) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $_$
DECLARE
    cols    text[] := CASE WHEN t.tbl::oid = t.tracked_oid
                           THEN hookrelay.column_names(t.tbl, t.column_attnums) ELSE t.columns END;
    clauses text[] := '{}';
BEGIN
    IF op = 'UPDATE' THEN
        clauses := clauses || 'OLD *<> NEW'::text;
        IF cardinality(cols) > 0 THEN
            -- As text, like *<> a byte comparison that every type has (ROW(…) *<> ROW(…)
            -- would compare field by field, with operators json and point lack).
            clauses := clauses || ('(' || (
                SELECT string_agg(format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', c), ' OR ')
                FROM unnest(cols) AS c) || ')');
        END IF;
    END IF;
    IF t.condition IS NOT NULL THEN
        clauses := clauses || ('(' || t.condition || ')');
    END IF;
    clauses := clauses || 'current_setting(''hookrelay.suppress'', true) IS DISTINCT FROM ''on'''::text;
    RETURN array_to_string(clauses, ' AND ');
END
$_$;

--
-- Name: untrack_table(regclass); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.untrack_table(tbl regclass) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    dropped integer;
    removed integer;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'untrack_table needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    dropped := hookrelay.drop_tracking_triggers(tbl);
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = untrack_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN dropped > 0 OR removed > 0;
END
$$;

--
-- Name: uuid_v7(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.uuid_v7() RETURNS uuid
    LANGUAGE sql PARALLEL SAFE
    AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

--
-- Name: validate_endpoint(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.validate_endpoint() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
    key_b64 text;
    key_bytes integer;
    bad text;
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' THEN
        RAISE EXCEPTION 'endpoint name % is not valid', hookrelay.shown(NEW.name, 120)
            USING ERRCODE = 'check_violation',
                  HINT = 'use 1 to 100 letters, digits, ".", "_" or "-", starting with a letter or digit';
    END IF;
    IF NEW.url ~ '^[^:/?#]+://[^/?#]*@' THEN
        RAISE EXCEPTION 'endpoint url must not contain credentials (user:password@)'
            USING ERRCODE = 'check_violation',
                  HINT = 'remove the credentials from the URL; receivers authenticate hookrelay by its signature, or by a static header';
    END IF;
    IF length(NEW.url) > 2048 THEN
        RAISE EXCEPTION 'endpoint url is % characters long; at most 2048 are allowed', length(NEW.url)
            USING ERRCODE = 'check_violation',
                  HINT = 'receivers and proxies commonly refuse longer URLs; move long tokens into a static header';
    END IF;
    IF NEW.url IS NULL OR NEW.url !~* '^https?://' THEN
        RAISE EXCEPTION 'endpoint url % is not an http:// or https:// URL', hookrelay.shown(NEW.url, 200)
            USING ERRCODE = 'check_violation',
                  HINT = 'give a full URL such as https://example.com/webhooks';
    END IF;
    IF NEW.url !~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$' THEN
        RAISE EXCEPTION 'endpoint url % is malformed', hookrelay.shown(NEW.url, 200)
            USING ERRCODE = 'check_violation',
                  HINT = 'a URL needs a host and no spaces, such as https://example.com/webhooks';
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.url IS DISTINCT FROM OLD.url) AND NEW.url ~ '^[^:/?#]+://[^/?#]*:0+([/?#]|$)' THEN
        RAISE EXCEPTION 'endpoint url % has port 0, which nothing listens on', hookrelay.shown(NEW.url, 200)
            USING ERRCODE = 'check_violation',
                  HINT = 'give the receiver''s port, or none for the default (80 for http, 443 for https)';
    END IF;
    IF NEW.secret IS NULL OR length(NEW.secret) NOT BETWEEN 8 AND 1000 THEN
        RAISE EXCEPTION 'endpoint secret must be 8 to 1000 characters'
            USING ERRCODE = 'check_violation',
                  HINT = 'hookrelay generates a strong secret when none is given';
    END IF;
    IF NEW.signature_scheme IS NULL OR NEW.signature_scheme NOT IN ('hookrelay', 'body-hex', 'standard') THEN
        RAISE EXCEPTION 'unknown signature scheme %', hookrelay.shown(NEW.signature_scheme, 40)
            USING ERRCODE = 'check_violation',
                  HINT = 'use one of: hookrelay, body-hex, standard';
    END IF;
    IF NEW.signature_scheme = 'standard' THEN
        key_b64 := substr(NEW.secret, 7);
        IF NEW.secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' OR length(key_b64) % 4 <> 0 THEN
            RAISE EXCEPTION 'a standard-webhooks secret must be "whsec_" followed by base64'
                USING ERRCODE = 'check_violation',
                      HINT = 'give whsec_<base64 of 24 to 64 random bytes>, or no secret to have one generated';
        END IF;
        key_bytes := length(key_b64) / 4 * 3 - (length(key_b64) - length(rtrim(key_b64, '=')));
        IF (TG_OP = 'INSERT' OR NEW.secret IS DISTINCT FROM OLD.secret
            OR NEW.signature_scheme IS DISTINCT FROM OLD.signature_scheme)
           AND key_bytes NOT BETWEEN 24 AND 64 THEN
            RAISE EXCEPTION 'a standard-webhooks secret must hold 24 to 64 bytes; this one holds %', key_bytes
                USING ERRCODE = 'check_violation',
                      HINT = 'give whsec_<base64 of 24 to 64 random bytes>, or no secret to have one generated';
        END IF;
    END IF;
    IF NEW.max_attempts IS NOT NULL AND NEW.max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'max_attempts % is out of range', NEW.max_attempts
            USING ERRCODE = 'check_violation', HINT = 'use 1 to 100, or NULL for the worker default';
    END IF;
    IF NEW.timeout_ms IS NOT NULL AND NEW.timeout_ms NOT BETWEEN 100 AND 300000 THEN
        RAISE EXCEPTION 'timeout_ms % is out of range', NEW.timeout_ms
            USING ERRCODE = 'check_violation', HINT = 'use 100 to 300000 (5 minutes), or NULL for the worker default';
    END IF;
    IF NEW.events IS NULL OR NEW.models IS NULL THEN
        RAISE EXCEPTION 'event and model filters must be arrays, not NULL'
            USING ERRCODE = 'check_violation', HINT = 'use an empty array to match every event or model';
    END IF;
    IF TG_OP = 'INSERT' OR NEW.events IS DISTINCT FROM OLD.events THEN
        SELECT hookrelay.event_name_problem(v) INTO bad FROM unnest(NEW.events) AS f(v)
        WHERE hookrelay.event_name_problem(v) IS NOT NULL LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'event filter: %', bad
                USING ERRCODE = 'check_violation',
                      HINT = 'name events with 1 to 200 of A-Z a-z 0-9 . _ - : /, or use an empty array to match every event';
        END IF;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.models IS DISTINCT FROM OLD.models THEN
        SELECT CASE WHEN v IS NULL OR v = '' OR length(v) > 200
                    THEN 'a model name is empty or longer than 200 characters'
                    ELSE format('the model name %s has %s', hookrelay.shown(v, 60),
                                hookrelay.shown_char(substring(v FROM hookrelay.invisible_chars()))) END
        INTO bad FROM unnest(NEW.models) AS f(v)
        WHERE v IS NULL OR v = '' OR length(v) > 200 OR v ~ hookrelay.invisible_chars() LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'model filter: %', bad
                USING ERRCODE = 'check_violation',
                      HINT = 'model names such as store.Order have no spaces or invisible characters; use an empty array to match every model';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$_$;

--
-- Name: validate_endpoint_delivery_options(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.validate_endpoint_delivery_options() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.filter IS NOT NULL THEN
        PERFORM hookrelay.check_predicate(NEW.filter);
    END IF;
    IF NEW.number_format IS DISTINCT FROM 'json' AND NEW.number_format IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'number_format must be json or string, not %', to_jsonb(left(NEW.number_format, 100))
            USING ERRCODE = 'check_violation',
                  HINT = 'json sends numbers as JSON numbers with their exact digits; string sends each number in object and changes as a string of those digits';
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: validate_endpoint_ordering(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.validate_endpoint_ordering() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.on_dead IS NULL OR NEW.on_dead NOT IN ('skip', 'block') THEN
        RAISE EXCEPTION 'on_dead must be skip or block, not %', coalesce(to_jsonb(NEW.on_dead)::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  HINT = 'skip: when a delivery of a key ends dead, the key''s next delivery proceeds; '
                         'block: the key stays held until the dead delivery is redelivered or cancelled';
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: validate_endpoint_protection(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.validate_endpoint_protection() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.max_in_flight IS NULL OR NEW.max_in_flight NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'max_in_flight % is out of range', coalesce(NEW.max_in_flight::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  HINT = 'use 1 to 10000 requests in flight at once (the default is 8)';
    END IF;
    -- NaN sorts above every number, so it fails this check too.
    IF NEW.rate_limit IS NOT NULL AND NOT (NEW.rate_limit BETWEEN 0.001 AND 100000) THEN
        RAISE EXCEPTION 'rate_limit % is out of range', NEW.rate_limit
            USING ERRCODE = 'check_violation',
                  HINT = 'use 0.001 to 100000 requests per second, or NULL for no limit';
    END IF;
    IF NEW.active THEN
        NEW.disabled_reason := NULL;
        NEW.disabled_at := NULL;
    ELSE
        NEW.disabled_reason := coalesce(nullif(btrim(NEW.disabled_reason), ''), 'disabled by an operator');
        NEW.disabled_at := coalesce(NEW.disabled_at, now());
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: validate_endpoint_shaping(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.validate_endpoint_shaping() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
    model  text;
    fields jsonb;
BEGIN
    IF jsonb_typeof(NEW.include_fields) = 'array' THEN
        IF NOT hookrelay.is_field_list(NEW.include_fields) THEN
            RAISE EXCEPTION 'include_fields must be an array of field names (non-empty strings), not %', left(NEW.include_fields::text, 100)
                USING ERRCODE = 'check_violation',
                      HINT = 'for example ["id", "total"], or {"store.Order": ["id", "total"]} per model';
        END IF;
    ELSIF jsonb_typeof(NEW.include_fields) = 'object' THEN
        FOR model, fields IN SELECT key, value FROM jsonb_each(NEW.include_fields) LOOP
            IF model !~ '^[^[:space:]]{1,200}$' THEN
                RAISE EXCEPTION 'include_fields has an invalid model name %', to_jsonb(model)
                    USING ERRCODE = 'check_violation',
                          HINT = 'for example {"store.Order": ["id", "total"]}: model names are 1 to 200 characters without spaces, or "*" for every model';
            END IF;
            IF NOT hookrelay.is_field_list(fields) THEN
                RAISE EXCEPTION 'include_fields for model % must be an array of field names, not %', to_jsonb(model), left(fields::text, 100)
                    USING ERRCODE = 'check_violation',
                          HINT = 'for example {"store.Order": ["id", "total"]}';
            END IF;
        END LOOP;
    ELSIF NEW.include_fields IS NOT NULL THEN
        RAISE EXCEPTION 'include_fields must be a JSON array of field names, or an object of model name to such an array, not a JSON %', jsonb_typeof(NEW.include_fields)
            USING ERRCODE = 'check_violation',
                  HINT = 'for example ["id", "total"] or {"store.Order": ["id", "total"]}';
    END IF;
    IF NEW.redact_fields IS NOT NULL THEN
        IF jsonb_typeof(NEW.redact_fields) <> 'object' THEN
            RAISE EXCEPTION 'redact_fields must be a JSON object of model name to {"field": replacement}, not a JSON %', jsonb_typeof(NEW.redact_fields)
                USING ERRCODE = 'check_violation',
                      HINT = 'for example {"store.Customer": {"email": "***@***.com"}}, or "*" for every model';
        END IF;
        FOR model, fields IN SELECT key, value FROM jsonb_each(NEW.redact_fields) LOOP
            IF model !~ '^[^[:space:]]{1,200}$' THEN
                RAISE EXCEPTION 'redact_fields has an invalid model name %', to_jsonb(model)
                    USING ERRCODE = 'check_violation',
                          HINT = 'for example {"store.Customer": {"email": "***@***.com"}}: model names are 1 to 200 characters without spaces, or "*" for every model';
            END IF;
            IF jsonb_typeof(fields) <> 'object' OR fields ? '' THEN
                RAISE EXCEPTION 'redact_fields for model % must be an object of field name to replacement, not %', to_jsonb(model), left(fields::text, 100)
                    USING ERRCODE = 'check_violation',
                          HINT = 'for example {"store.Customer": {"email": "***@***.com"}}';
            END IF;
        END LOOP;
    END IF;
    RETURN NEW;
END
$_$;

--
-- Name: validate_endpoint_signing(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.validate_endpoint_signing() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
    bad text;
BEGIN
    IF (NEW.previous_secret IS NULL) <> (NEW.previous_secret_expires_at IS NULL) THEN
        RAISE EXCEPTION 'previous_secret and previous_secret_expires_at must be set together'
            USING ERRCODE = 'check_violation',
                  HINT = 'use `hookrelay endpoint rotate-secret NAME`, or set both columns (or neither)';
    END IF;
    IF NEW.previous_secret IS NOT NULL THEN
        IF length(NEW.previous_secret) NOT BETWEEN 8 AND 1000 THEN
            RAISE EXCEPTION 'endpoint previous_secret must be 8 to 1000 characters'
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.signature_scheme = 'standard'
           AND NEW.previous_secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
            RAISE EXCEPTION 'the previous secret is not a standard-webhooks secret ("whsec_" followed by base64)'
                USING ERRCODE = 'check_violation',
                      HINT = 'clear previous_secret and previous_secret_expires_at before changing the scheme to standard';
        END IF;
    END IF;
    IF NEW.headers IS NULL OR jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'endpoint headers must be a JSON object of names and string values'
            USING ERRCODE = 'check_violation',
                  HINT = 'for example {"Authorization": "Bearer …"}; use {} for none';
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(NEW.headers)) > 20 THEN
        RAISE EXCEPTION 'an endpoint may have at most 20 static headers'
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(NEW.headers) AS k(key)
               WHERE key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$') THEN
        RAISE EXCEPTION 'an endpoint header name is empty, longer than 100 characters, or has characters a header name cannot have (such as a space or a colon)'
            USING ERRCODE = 'check_violation',
                  HINT = 'header names are letters, digits and - such as Authorization; put the value after the name, not in it';
    END IF;
    SELECT key INTO bad FROM jsonb_each(NEW.headers) WHERE jsonb_typeof(value) <> 'string' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % must have a string value', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'write numbers and booleans as strings, e.g. {"X-Tenant": "42"}';
    END IF;
    SELECT key INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    WHERE hookrelay.is_reserved_header(key) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % is set by hookrelay itself and cannot be replaced', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'Content-Type, User-Agent, Host, Content-Length, X-Webhook-* and webhook-* are reserved; pick another name';
    END IF;
    SELECT min(key) INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    GROUP BY lower(key) HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % is given more than once (names ignore case)', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'keep one of them';
    END IF;
    -- Control characters would let a value start a new header line.
    SELECT key INTO bad FROM jsonb_each_text(NEW.headers)
    WHERE value ~ '[\x01-\x08\x0a-\x1f\x7f]' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % has a value with control characters (such as a line break)', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'a header value is one line of text; remove line breaks and other control characters';
    END IF;
    SELECT key INTO bad FROM jsonb_each_text(NEW.headers) WHERE length(value) > 4096 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % has a value longer than 4096 characters', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'receivers and proxies commonly refuse longer headers';
    END IF;
    RETURN NEW;
END
$_$;

--
-- Name: wake_idle_workers(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.wake_idle_workers() RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF pg_sequence_last_value('hookrelay.wake_until') > extract(epoch FROM now()) THEN
        PERFORM pg_notify('hookrelay_events', '');
    END IF;
END
$$;

--
-- Name: wake_idle_workers_now(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.wake_idle_workers_now() RETURNS timestamp with time zone
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('hookrelay_events', '');
    RETURN clock_timestamp();
END
$$;

--
-- Name: work_floor(); Type: FUNCTION; Schema: hookrelay; Owner: -
--

CREATE FUNCTION hookrelay.work_floor() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET enable_seqscan TO 'off'
    AS $$
DECLARE
    bound uuid := hookrelay.id_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
    day   text;
    lo    uuid;
    found boolean;
BEGIN
    bound := least(bound,
                   (SELECT min(d.event_id::text COLLATE "C")::uuid
                    FROM hookrelay.deliveries_default d WHERE d.state = 'pending'),
                   (SELECT min(e.id::text COLLATE "C")::uuid
                    FROM hookrelay.events_default e WHERE e.fanned_out_at IS NULL));
    FOR day, lo IN
        SELECT substr(c.relname, length('deliveries_') + 1), b[1]::uuid
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        'FROM \(''([0-9a-f-]+)''\)') b
        WHERE i.inhparent = 'hookrelay.deliveries'::regclass
        ORDER BY 2
    LOOP
        EXIT WHEN lo >= bound;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM hookrelay.%I WHERE state = ''pending'')
                            OR EXISTS (SELECT 1 FROM hookrelay.%I WHERE fanned_out_at IS NULL)',
                       'deliveries_' || day, 'events_' || day)
            INTO found;
        IF found THEN
            RETURN lo;
        END IF;
    END LOOP;
    RETURN bound;
END
$$;

--
-- Name: attempts; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.attempts (
    id bigint NOT NULL,
    delivery_id bigint NOT NULL,
    event_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration_ms integer,
    status integer,
    error_code text,
    error text,
    response_excerpt text,
    worker text
)
PARTITION BY RANGE (event_id);

--
-- Name: attempts_id_seq; Type: SEQUENCE; Schema: hookrelay; Owner: -
--

CREATE SEQUENCE hookrelay.attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: attempts_id_seq; Type: SEQUENCE OWNED BY; Schema: hookrelay; Owner: -
--

ALTER SEQUENCE hookrelay.attempts_id_seq OWNED BY hookrelay.attempts.id;

--
-- Name: attempts_default; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.attempts_default (
    id bigint DEFAULT nextval('hookrelay.attempts_id_seq'::regclass) NOT NULL,
    delivery_id bigint NOT NULL,
    event_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration_ms integer,
    status integer,
    error_code text,
    error text,
    response_excerpt text,
    worker text
);

--
-- Name: backfills; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.backfills (
    tbl regclass NOT NULL,
    event text NOT NULL,
    where_sql text DEFAULT ''::text NOT NULL,
    last_key jsonb,
    rows_done bigint DEFAULT 0 NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone
);

--
-- Name: deliveries; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.deliveries (
    id bigint NOT NULL,
    event_id uuid NOT NULL,
    endpoint_id bigint NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now(),
    locked_until timestamp with time zone,
    locked_by text,
    last_status integer,
    last_error_code text,
    last_error text,
    delivered_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts_base integer DEFAULT 0 NOT NULL,
    ordering_key text,
    ordering_at timestamp with time zone,
    CONSTRAINT delivery_state_is_known CHECK ((state = ANY (ARRAY['pending'::text, 'delivered'::text, 'dead'::text, 'cancelled'::text])))
)
PARTITION BY RANGE (event_id);

--
-- Name: wake_until; Type: SEQUENCE; Schema: hookrelay; Owner: -
--

CREATE UNLOGGED SEQUENCE hookrelay.wake_until
    START WITH 0
    INCREMENT BY 1
    MINVALUE 0
    NO MAXVALUE
    CACHE 1;

--
-- Name: events; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.events (
    id uuid DEFAULT hookrelay.uuid_v7() NOT NULL,
    event text NOT NULL,
    model text,
    object_id text,
    object jsonb DEFAULT '{}'::jsonb NOT NULL,
    changes jsonb,
    actor jsonb DEFAULT hookrelay.current_actor(),
    account_id text,
    created_at timestamp with time zone DEFAULT 
CASE
    WHEN ((pg_sequence_last_value('hookrelay.wake_until'::regclass))::numeric > EXTRACT(epoch FROM now())) THEN hookrelay.wake_idle_workers_now()
    ELSE clock_timestamp()
END NOT NULL,
    fanned_out_at timestamp with time zone,
    ordering_key text,
    traceparent text DEFAULT hookrelay.current_traceparent(),
    tracestate text DEFAULT hookrelay.current_tracestate()
)
PARTITION BY RANGE (id);

--
-- Name: backlog; Type: VIEW; Schema: hookrelay; Owner: -
--

CREATE VIEW hookrelay.backlog AS
 SELECT ( SELECT count(*) AS count
           FROM hookrelay.events
          WHERE (events.fanned_out_at IS NULL)) AS events_to_fan_out,
    ( SELECT (now() - min(events.created_at))
           FROM hookrelay.events
          WHERE (events.fanned_out_at IS NULL)) AS oldest_event_age,
    count(*) FILTER (WHERE ((d.next_attempt_at <= now()) AND (d.locked_until IS NULL))) AS due,
    count(*) FILTER (WHERE (d.locked_until IS NOT NULL)) AS in_flight,
    count(*) FILTER (WHERE ((d.next_attempt_at > now()) AND (d.locked_until IS NULL) AND (d.next_attempt_at < 'infinity'::timestamp with time zone))) AS retrying,
    count(*) FILTER (WHERE ((d.next_attempt_at = 'infinity'::timestamp with time zone) AND (NOT ep.active))) AS paused,
    (now() - min(d.created_at)) AS oldest_pending_age,
    count(*) FILTER (WHERE ((d.next_attempt_at = 'infinity'::timestamp with time zone) AND ep.active)) AS waiting_for_slot
   FROM (hookrelay.deliveries d
     JOIN hookrelay.endpoints ep ON ((ep.id = d.endpoint_id)))
  WHERE (d.state = 'pending'::text);

--
-- Name: deliveries_id_seq; Type: SEQUENCE; Schema: hookrelay; Owner: -
--

CREATE SEQUENCE hookrelay.deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: deliveries_id_seq; Type: SEQUENCE OWNED BY; Schema: hookrelay; Owner: -
--

ALTER SEQUENCE hookrelay.deliveries_id_seq OWNED BY hookrelay.deliveries.id;

--
-- Name: deliveries_default; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.deliveries_default (
    id bigint DEFAULT nextval('hookrelay.deliveries_id_seq'::regclass) NOT NULL,
    event_id uuid NOT NULL,
    endpoint_id bigint NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now(),
    locked_until timestamp with time zone,
    locked_by text,
    last_status integer,
    last_error_code text,
    last_error text,
    delivered_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts_base integer DEFAULT 0 NOT NULL,
    ordering_key text,
    ordering_at timestamp with time zone,
    CONSTRAINT delivery_state_is_known CHECK ((state = ANY (ARRAY['pending'::text, 'delivered'::text, 'dead'::text, 'cancelled'::text])))
)
WITH (fillfactor='80', autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_insert_scale_factor='0.05');

--
-- Name: delivery_log; Type: VIEW; Schema: hookrelay; Owner: -
--

CREATE VIEW hookrelay.delivery_log AS
 SELECT a.id AS attempt_id,
    a.delivery_id,
    a.attempt,
    a.started_at,
    a.duration_ms,
    a.status,
    a.error_code,
    a.error,
    a.response_excerpt,
    a.worker,
    d.state AS delivery_state,
    d.event_id,
    ('evt_'::text || (d.event_id)::text) AS webhook_id,
    e.event,
    e.model,
    e.object_id,
    e.account_id,
    ep.name AS endpoint,
    ep.url
   FROM (((hookrelay.attempts a
     JOIN hookrelay.deliveries d ON ((d.id = a.delivery_id)))
     JOIN hookrelay.events e ON ((e.id = d.event_id)))
     JOIN hookrelay.endpoints ep ON ((ep.id = d.endpoint_id)));

--
-- Name: endpoint_fingerprints; Type: VIEW; Schema: hookrelay; Owner: -
--

CREATE VIEW hookrelay.endpoint_fingerprints AS
 SELECT ep.id AS endpoint_id,
    hookrelay.fingerprint(ep.secret) AS secret_fingerprint,
        CASE
            WHEN (ep.previous_secret_expires_at > now()) THEN hookrelay.fingerprint(ep.previous_secret)
            ELSE NULL::text
        END AS previous_secret_fingerprint,
    ( SELECT COALESCE(jsonb_object_agg(h.key, hookrelay.fingerprint(h.value)), '{}'::jsonb) AS "coalesce"
           FROM jsonb_each_text(ep.headers) h(key, value)) AS header_fingerprints
   FROM hookrelay.endpoints ep;

--
-- Name: endpoint_state; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.endpoint_state (
    endpoint_id bigint NOT NULL,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    failing_since timestamp with time zone,
    last_success_at timestamp with time zone,
    last_failure_at timestamp with time zone,
    last_status integer,
    last_error text
)
WITH (fillfactor='50');

--
-- Name: endpoint_stats; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.endpoint_stats (
    endpoint_id bigint NOT NULL,
    minute timestamp with time zone NOT NULL,
    delivered integer DEFAULT 0 NOT NULL,
    failed integer DEFAULT 0 NOT NULL
)
WITH (fillfactor='70');

--
-- Name: endpoint_health; Type: VIEW; Schema: hookrelay; Owner: -
--

CREATE VIEW hookrelay.endpoint_health AS
 WITH pending AS (
         SELECT deliveries.endpoint_id,
            count(*) AS n
           FROM hookrelay.deliveries
          WHERE (deliveries.state = 'pending'::text)
          GROUP BY deliveries.endpoint_id
        ), dead AS (
         SELECT deliveries.endpoint_id,
            count(*) AS n
           FROM hookrelay.deliveries
          WHERE (deliveries.state = 'dead'::text)
          GROUP BY deliveries.endpoint_id
        ), hour AS (
         SELECT endpoint_stats.endpoint_id,
            sum(endpoint_stats.delivered) AS delivered,
            sum(endpoint_stats.failed) AS failed
           FROM hookrelay.endpoint_stats
          WHERE (endpoint_stats.minute > (now() - '01:00:00'::interval))
          GROUP BY endpoint_stats.endpoint_id
        ), leased AS (
         SELECT deliveries.endpoint_id,
            count(*) AS n
           FROM hookrelay.deliveries
          WHERE (deliveries.locked_until > now())
          GROUP BY deliveries.endpoint_id
        )
 SELECT ep.id AS endpoint_id,
    ep.name,
    ep.active,
    ep.url,
    COALESCE(pending.n, (0)::bigint) AS pending,
    COALESCE(dead.n, (0)::bigint) AS dead,
    COALESCE(hour.delivered, (0)::bigint) AS delivered_last_hour,
    COALESCE(hour.failed, (0)::bigint) AS failed_last_hour,
    COALESCE(st.consecutive_failures, 0) AS consecutive_failures,
    st.failing_since,
    st.last_success_at,
    st.last_failure_at,
    st.last_status,
    st.last_error,
    ep.disabled_reason,
    ep.disabled_at,
    COALESCE(leased.n, (0)::bigint) AS in_flight,
    ep.max_in_flight,
    ep.rate_limit,
        CASE
            WHEN (st.last_error IS NOT NULL) THEN st.last_failure_at
            ELSE NULL::timestamp with time zone
        END AS last_error_at
   FROM (((((hookrelay.endpoints ep
     LEFT JOIN hookrelay.endpoint_state st ON ((st.endpoint_id = ep.id)))
     LEFT JOIN pending ON ((pending.endpoint_id = ep.id)))
     LEFT JOIN dead ON ((dead.endpoint_id = ep.id)))
     LEFT JOIN hour ON ((hour.endpoint_id = ep.id)))
     LEFT JOIN leased ON ((leased.endpoint_id = ep.id)));

--
-- Name: endpoint_throttle; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.endpoint_throttle (
    endpoint_id bigint NOT NULL,
    tokens double precision DEFAULT 1 NOT NULL,
    refilled_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    waiting boolean DEFAULT false NOT NULL
)
WITH (fillfactor='50');

--
-- Name: endpoints_id_seq; Type: SEQUENCE; Schema: hookrelay; Owner: -
--

ALTER TABLE hookrelay.endpoints ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME hookrelay.endpoints_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: events_default; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.events_default (
    id uuid DEFAULT hookrelay.uuid_v7() NOT NULL,
    event text NOT NULL,
    model text,
    object_id text,
    object jsonb DEFAULT '{}'::jsonb NOT NULL,
    changes jsonb,
    actor jsonb DEFAULT hookrelay.current_actor(),
    account_id text,
    created_at timestamp with time zone DEFAULT 
CASE
    WHEN ((pg_sequence_last_value('hookrelay.wake_until'::regclass))::numeric > EXTRACT(epoch FROM now())) THEN hookrelay.wake_idle_workers_now()
    ELSE clock_timestamp()
END NOT NULL,
    fanned_out_at timestamp with time zone,
    ordering_key text,
    traceparent text DEFAULT hookrelay.current_traceparent(),
    tracestate text DEFAULT hookrelay.current_tracestate()
)
WITH (fillfactor='85', autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_insert_scale_factor='0.05');

--
-- Name: held_keys; Type: VIEW; Schema: hookrelay; Owner: -
--

CREATE VIEW hookrelay.held_keys AS
 SELECT ep.name AS endpoint,
    h.ordering_key,
    h.id AS delivery_id,
    h.event_id,
        CASE
            WHEN (h.state = 'dead'::text) THEN 'dead'::text
            ELSE 'retrying'::text
        END AS reason,
    h.attempts,
    h.last_status,
    h.last_error_code,
    h.next_attempt_at,
    h.updated_at AS since,
    w.waiting
   FROM ((hookrelay.endpoints ep
     CROSS JOIN LATERAL ( SELECT DISTINCT ON (d.ordering_key) d.id,
            d.event_id,
            d.endpoint_id,
            d.state,
            d.attempts,
            d.next_attempt_at,
            d.locked_until,
            d.locked_by,
            d.last_status,
            d.last_error_code,
            d.last_error,
            d.delivered_at,
            d.created_at,
            d.updated_at,
            d.attempts_base,
            d.ordering_key,
            d.ordering_at
           FROM hookrelay.deliveries d
          WHERE ((d.endpoint_id = ep.id) AND (d.ordering_key IS NOT NULL) AND ((d.state = 'pending'::text) OR ((d.state = 'dead'::text) AND (ep.on_dead = 'block'::text))))
          ORDER BY d.ordering_key, d.ordering_at, d.event_id) h)
     CROSS JOIN LATERAL ( SELECT count(*) AS waiting
           FROM hookrelay.deliveries n
          WHERE ((n.endpoint_id = ep.id) AND (n.ordering_key = h.ordering_key) AND (n.state = 'pending'::text) AND (ROW(n.ordering_at, n.event_id) > ROW(h.ordering_at, h.event_id)))) w)
  WHERE (ep.ordered AND ((h.state = 'dead'::text) OR (h.last_error_code IS NOT NULL)) AND (w.waiting > 0));

--
-- Name: schema_migrations; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE TABLE hookrelay.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: workers; Type: TABLE; Schema: hookrelay; Owner: -
--

CREATE UNLOGGED TABLE hookrelay.workers (
    id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    waiting boolean DEFAULT false NOT NULL
)
WITH (fillfactor='50');

--
-- Name: attempts_default; Type: TABLE ATTACH; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.attempts ATTACH PARTITION hookrelay.attempts_default DEFAULT;

--
-- Name: deliveries_default; Type: TABLE ATTACH; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.deliveries ATTACH PARTITION hookrelay.deliveries_default DEFAULT;

--
-- Name: events_default; Type: TABLE ATTACH; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.events ATTACH PARTITION hookrelay.events_default DEFAULT;

--
-- Name: attempts id; Type: DEFAULT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.attempts ALTER COLUMN id SET DEFAULT nextval('hookrelay.attempts_id_seq'::regclass);

--
-- Name: deliveries id; Type: DEFAULT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.deliveries ALTER COLUMN id SET DEFAULT nextval('hookrelay.deliveries_id_seq'::regclass);

--
-- Name: attempts attempts_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (id, event_id);

--
-- Name: attempts_default attempts_pkey_default; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.attempts_default
    ADD CONSTRAINT attempts_pkey_default PRIMARY KEY (id, event_id);

--
-- Name: backfills backfills_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.backfills
    ADD CONSTRAINT backfills_pkey PRIMARY KEY (tbl, event, where_sql);

--
-- Name: deliveries deliveries_event_id_endpoint_id_key; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.deliveries
    ADD CONSTRAINT deliveries_event_id_endpoint_id_key UNIQUE (event_id, endpoint_id);

--
-- Name: deliveries_default deliveries_event_id_endpoint_id_key_default; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.deliveries_default
    ADD CONSTRAINT deliveries_event_id_endpoint_id_key_default UNIQUE (event_id, endpoint_id);

--
-- Name: deliveries deliveries_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id, event_id);

--
-- Name: deliveries_default deliveries_pkey_default; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.deliveries_default
    ADD CONSTRAINT deliveries_pkey_default PRIMARY KEY (id, event_id);

--
-- Name: endpoint_state endpoint_state_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoint_state
    ADD CONSTRAINT endpoint_state_pkey PRIMARY KEY (endpoint_id);

--
-- Name: endpoint_stats endpoint_stats_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoint_stats
    ADD CONSTRAINT endpoint_stats_pkey PRIMARY KEY (endpoint_id, minute);

--
-- Name: endpoint_throttle endpoint_throttle_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoint_throttle
    ADD CONSTRAINT endpoint_throttle_pkey PRIMARY KEY (endpoint_id);

--
-- Name: endpoints endpoints_name_key; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoints
    ADD CONSTRAINT endpoints_name_key UNIQUE (name);

--
-- Name: endpoints endpoints_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoints
    ADD CONSTRAINT endpoints_pkey PRIMARY KEY (id);

--
-- Name: events event_must_be_valid; Type: CHECK CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE hookrelay.events
    ADD CONSTRAINT event_must_be_valid CHECK (((fanned_out_at IS NOT NULL) OR (((ROW(event, object, changes))::hookrelay.valid_event).event IS NOT NULL))) NOT VALID;

--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);

--
-- Name: events_default events_pkey_default; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.events_default
    ADD CONSTRAINT events_pkey_default PRIMARY KEY (id);

--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

--
-- Name: tracking tracked_tables_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.tracking
    ADD CONSTRAINT tracked_tables_pkey PRIMARY KEY (tbl);

--
-- Name: workers workers_pkey; Type: CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);

--
-- Name: attempts_by_delivery; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX attempts_by_delivery ON ONLY hookrelay.attempts USING btree (delivery_id, attempt);

--
-- Name: attempts_by_delivery_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX attempts_by_delivery_default ON hookrelay.attempts_default USING btree (delivery_id, attempt);

--
-- Name: deliveries_by_key; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_by_key ON ONLY hookrelay.deliveries USING btree (endpoint_id, ordering_key, state, ordering_at, event_id) WHERE ((ordering_key IS NOT NULL) AND (state = ANY (ARRAY['pending'::text, 'dead'::text])));

--
-- Name: deliveries_by_key_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_by_key_default ON hookrelay.deliveries_default USING btree (endpoint_id, ordering_key, state, ordering_at, event_id) WHERE ((ordering_key IS NOT NULL) AND (state = ANY (ARRAY['pending'::text, 'dead'::text])));

--
-- Name: deliveries_dead; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_dead ON ONLY hookrelay.deliveries USING btree (endpoint_id, created_at) WHERE (state = 'dead'::text);

--
-- Name: deliveries_dead_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_dead_default ON hookrelay.deliveries_default USING btree (endpoint_id, created_at) WHERE (state = 'dead'::text);

--
-- Name: deliveries_due; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_due ON ONLY hookrelay.deliveries USING btree (next_attempt_at) WHERE (state = 'pending'::text);

--
-- Name: deliveries_due_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_due_default ON hookrelay.deliveries_default USING btree (next_attempt_at) WHERE (state = 'pending'::text);

--
-- Name: deliveries_key_leased; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_key_leased ON ONLY hookrelay.deliveries USING btree (endpoint_id, ordering_key) WHERE ((ordering_key IS NOT NULL) AND (locked_until IS NOT NULL));

--
-- Name: deliveries_key_leased_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_key_leased_default ON hookrelay.deliveries_default USING btree (endpoint_id, ordering_key) WHERE ((ordering_key IS NOT NULL) AND (locked_until IS NOT NULL));

--
-- Name: deliveries_leased; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_leased ON ONLY hookrelay.deliveries USING btree (endpoint_id, locked_until) WHERE (locked_until IS NOT NULL);

--
-- Name: deliveries_leased_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_leased_default ON hookrelay.deliveries_default USING btree (endpoint_id, locked_until) WHERE (locked_until IS NOT NULL);

--
-- Name: deliveries_newest; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_newest ON ONLY hookrelay.deliveries USING btree (created_at, id);

--
-- Name: deliveries_newest_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_newest_default ON hookrelay.deliveries_default USING btree (created_at, id);

--
-- Name: deliveries_waiting; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_waiting ON ONLY hookrelay.deliveries USING btree (endpoint_id, created_at, id) WHERE ((state = 'pending'::text) AND (next_attempt_at = 'infinity'::timestamp with time zone));

--
-- Name: deliveries_waiting_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX deliveries_waiting_default ON hookrelay.deliveries_default USING btree (endpoint_id, created_at, id) WHERE ((state = 'pending'::text) AND (next_attempt_at = 'infinity'::timestamp with time zone));

--
-- Name: endpoint_stats_by_minute; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX endpoint_stats_by_minute ON hookrelay.endpoint_stats USING btree (minute);

--
-- Name: endpoint_throttle_drained; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX endpoint_throttle_drained ON hookrelay.endpoint_throttle USING btree (endpoint_id) WHERE (tokens < (1)::double precision);

--
-- Name: endpoint_throttle_waiting; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX endpoint_throttle_waiting ON hookrelay.endpoint_throttle USING btree (endpoint_id) WHERE waiting;

--
-- Name: endpoints_name_ignoring_case; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE UNIQUE INDEX endpoints_name_ignoring_case ON hookrelay.endpoints USING btree (lower(name));

--
-- Name: events_fanned_out_by_name; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX events_fanned_out_by_name ON ONLY hookrelay.events USING btree (event) WHERE (fanned_out_at IS NOT NULL);

--
-- Name: events_fanned_out_by_name_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX events_fanned_out_by_name_default ON hookrelay.events_default USING btree (event) WHERE (fanned_out_at IS NOT NULL);

--
-- Name: events_to_fan_out; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX events_to_fan_out ON ONLY hookrelay.events USING btree (id, created_at) WHERE (fanned_out_at IS NULL);

--
-- Name: events_to_fan_out_default; Type: INDEX; Schema: hookrelay; Owner: -
--

CREATE INDEX events_to_fan_out_default ON hookrelay.events_default USING btree (id, created_at) WHERE (fanned_out_at IS NULL);

--
-- Name: attempts_by_delivery_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.attempts_by_delivery ATTACH PARTITION hookrelay.attempts_by_delivery_default;

--
-- Name: attempts_pkey_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.attempts_pkey ATTACH PARTITION hookrelay.attempts_pkey_default;

--
-- Name: deliveries_by_key_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_by_key ATTACH PARTITION hookrelay.deliveries_by_key_default;

--
-- Name: deliveries_dead_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_dead ATTACH PARTITION hookrelay.deliveries_dead_default;

--
-- Name: deliveries_due_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_due ATTACH PARTITION hookrelay.deliveries_due_default;

--
-- Name: deliveries_event_id_endpoint_id_key_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_event_id_endpoint_id_key ATTACH PARTITION hookrelay.deliveries_event_id_endpoint_id_key_default;

--
-- Name: deliveries_key_leased_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_key_leased ATTACH PARTITION hookrelay.deliveries_key_leased_default;

--
-- Name: deliveries_leased_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_leased ATTACH PARTITION hookrelay.deliveries_leased_default;

--
-- Name: deliveries_newest_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_newest ATTACH PARTITION hookrelay.deliveries_newest_default;

--
-- Name: deliveries_pkey_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_pkey ATTACH PARTITION hookrelay.deliveries_pkey_default;

--
-- Name: deliveries_waiting_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.deliveries_waiting ATTACH PARTITION hookrelay.deliveries_waiting_default;

--
-- Name: events_fanned_out_by_name_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.events_fanned_out_by_name ATTACH PARTITION hookrelay.events_fanned_out_by_name_default;

--
-- Name: events_pkey_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.events_pkey ATTACH PARTITION hookrelay.events_pkey_default;

--
-- Name: events_to_fan_out_default; Type: INDEX ATTACH; Schema: hookrelay; Owner: -
--

ALTER INDEX hookrelay.events_to_fan_out ATTACH PARTITION hookrelay.events_to_fan_out_default;

--
-- Name: deliveries deliveries_dead_event; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER deliveries_dead_event AFTER UPDATE OF state ON hookrelay.deliveries FOR EACH ROW WHEN (((new.state = 'dead'::text) AND (old.state <> 'dead'::text))) EXECUTE FUNCTION hookrelay.delivery_dead_event();

--
-- Name: deliveries deliveries_forget_attempts; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER deliveries_forget_attempts AFTER DELETE ON hookrelay.deliveries REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.forget_attempts_of_deliveries();

--
-- Name: deliveries deliveries_ordered_added; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER deliveries_ordered_added AFTER INSERT ON hookrelay.deliveries FOR EACH ROW WHEN (((new.ordering_key IS NOT NULL) AND (new.locked_until IS NULL))) EXECUTE FUNCTION hookrelay.ordered_delivery_added();

--
-- Name: deliveries deliveries_release_key; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER deliveries_release_key AFTER UPDATE OF state ON hookrelay.deliveries FOR EACH ROW WHEN (((new.ordering_key IS NOT NULL) AND (new.state <> 'pending'::text) AND (old.state IS DISTINCT FROM new.state))) EXECUTE FUNCTION hookrelay.release_next_of_key();

--
-- Name: endpoint_state endpoint_state_recovered_event; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoint_state_recovered_event AFTER UPDATE ON hookrelay.endpoint_state FOR EACH ROW WHEN (((old.failing_since IS NOT NULL) AND (old.consecutive_failures >= 3) AND (new.last_success_at IS DISTINCT FROM old.last_success_at))) EXECUTE FUNCTION hookrelay.endpoint_recovered_event();

--
-- Name: endpoints endpoints_active_changed; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_active_changed AFTER UPDATE OF active ON hookrelay.endpoints FOR EACH ROW WHEN ((old.active IS DISTINCT FROM new.active)) EXECUTE FUNCTION hookrelay.endpoint_active_changed();

--
-- Name: endpoints endpoints_disabled_event; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_disabled_event AFTER UPDATE OF active ON hookrelay.endpoints FOR EACH ROW WHEN ((old.active AND (NOT new.active) AND (new.disabled_at IS DISTINCT FROM old.disabled_at))) EXECUTE FUNCTION hookrelay.endpoint_disabled_event();

--
-- Name: endpoints endpoints_forget_deliveries; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_forget_deliveries AFTER DELETE ON hookrelay.endpoints REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.forget_deliveries_of_endpoints();

--
-- Name: endpoints endpoints_ordering_changed; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_ordering_changed AFTER UPDATE OF ordered, on_dead ON hookrelay.endpoints FOR EACH ROW WHEN ((old.ordered AND ((NOT new.ordered) OR ((old.on_dead = 'block'::text) AND (new.on_dead = 'skip'::text))))) EXECUTE FUNCTION hookrelay.endpoint_ordering_changed();

--
-- Name: endpoints endpoints_reenabled; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_reenabled AFTER UPDATE OF active ON hookrelay.endpoints FOR EACH ROW WHEN ((new.active AND (NOT old.active))) EXECUTE FUNCTION hookrelay.endpoint_reenabled();

--
-- Name: endpoints endpoints_validate; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_validate BEFORE INSERT OR UPDATE ON hookrelay.endpoints FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint();

--
-- Name: endpoints endpoints_validate_delivery_options; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_validate_delivery_options BEFORE INSERT OR UPDATE OF filter, number_format ON hookrelay.endpoints FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_delivery_options();

--
-- Name: endpoints endpoints_validate_ordering; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_validate_ordering BEFORE INSERT OR UPDATE OF on_dead ON hookrelay.endpoints FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_ordering();

--
-- Name: endpoints endpoints_validate_protection; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_validate_protection BEFORE INSERT OR UPDATE ON hookrelay.endpoints FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_protection();

--
-- Name: endpoints endpoints_validate_shaping; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_validate_shaping BEFORE INSERT OR UPDATE OF include_fields, redact_fields ON hookrelay.endpoints FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_shaping();

--
-- Name: endpoints endpoints_validate_signing; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER endpoints_validate_signing BEFORE INSERT OR UPDATE ON hookrelay.endpoints FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_signing();

--
-- Name: events events_forget_deliveries; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER events_forget_deliveries AFTER DELETE ON hookrelay.events REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.forget_deliveries_of_events();

--
-- Name: workers workers_track_waiting; Type: TRIGGER; Schema: hookrelay; Owner: -
--

CREATE TRIGGER workers_track_waiting AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON hookrelay.workers FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.track_waiting_workers();

--
-- Name: endpoint_state endpoint_state_endpoint_id_fkey; Type: FK CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoint_state
    ADD CONSTRAINT endpoint_state_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES hookrelay.endpoints(id) ON DELETE CASCADE;

--
-- Name: endpoint_stats endpoint_stats_endpoint_id_fkey; Type: FK CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoint_stats
    ADD CONSTRAINT endpoint_stats_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES hookrelay.endpoints(id) ON DELETE CASCADE;

--
-- Name: endpoint_throttle endpoint_throttle_endpoint_id_fkey; Type: FK CONSTRAINT; Schema: hookrelay; Owner: -
--

ALTER TABLE ONLY hookrelay.endpoint_throttle
    ADD CONSTRAINT endpoint_throttle_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES hookrelay.endpoints(id) ON DELETE CASCADE;

--
-- PostgreSQL database dump complete
--
