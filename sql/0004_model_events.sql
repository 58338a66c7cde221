-- 0002: model events from row triggers on application tables, and per-endpoint payload shaping.
--
-- `hookrelay.track_table(tbl, …)` installs AFTER triggers on an application table that write
-- `created` / `updated` / `deleted` events into hookrelay.events in the same transaction as
-- the row change. Everything a trigger needs per row (model name, excluded columns, account
-- column, primary key columns) is computed once by track_table and passed as trigger
-- arguments, so a row costs one to_jsonb() and one INSERT, with no catalog lookups.

-- What is tracked and how. track_table and untrack_table keep it in step with the triggers.
CREATE TABLE hookrelay.tracked_tables (
    tbl             regclass PRIMARY KEY,
    -- The model name events carry: given to track_table, or "schema.table" when it was called.
    model           text NOT NULL,
    -- Tracked events, of created, updated, deleted, truncated.
    events          text[] NOT NULL,
    exclude_columns text[] NOT NULL DEFAULT '{}',
    account_column  text,
    -- The primary key when track_table was called; object_id is built from it.
    key_columns     text[] NOT NULL DEFAULT '{}',
    tracked_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The row trigger. Arguments: model, excluded columns (a text[] literal), account column ('' for
-- none), primary key columns (a text[] literal).
CREATE FUNCTION hookrelay.tracked_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    excluded   text[] := TG_ARGV[1];
    key_cols   text[] := TG_ARGV[3];
    row_json   jsonb;
    new_object jsonb;
    old_object jsonb;
    row_id     text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_json := to_jsonb(OLD);
    ELSE
        row_json := to_jsonb(NEW);
    END IF;
    new_object := row_json - excluded;
    IF cardinality(key_cols) = 1 THEN
        row_id := row_json ->> key_cols[1];
    ELSIF cardinality(key_cols) > 1 THEN
        -- A composite key is sent as the JSON array of its values, in key order: [7, "b"].
        row_id := (SELECT jsonb_agg(row_json -> k ORDER BY i)
                   FROM unnest(key_cols) WITH ORDINALITY AS u(k, i))::text;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_object := to_jsonb(OLD) - excluded;
        -- Only excluded columns changed, or values that differ only in form (1.0 and 1.00).
        IF old_object = new_object THEN
            RETURN NULL;
        END IF;
        INSERT INTO hookrelay.events (event, model, object_id, object, changes, account_id)
        SELECT 'updated', TG_ARGV[0], row_id, new_object,
               jsonb_object_agg(n.key, jsonb_build_object('old', old_object -> n.key, 'new', n.value)),
               row_json ->> nullif(TG_ARGV[2], '')
        FROM jsonb_each(new_object) AS n
        WHERE n.value IS DISTINCT FROM old_object -> n.key
        HAVING count(*) > 0;
    ELSE
        INSERT INTO hookrelay.events (event, model, object_id, object, account_id)
        VALUES (CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'deleted' END,
                TG_ARGV[0], row_id, new_object, row_json ->> nullif(TG_ARGV[2], ''));
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE fires no row triggers. Arguments: model, then 'emit' (one `truncated` event) or
-- 'refuse' (when deletes are tracked but truncations are not, since receivers would otherwise
-- never hear that the rows are gone).
CREATE FUNCTION hookrelay.tracked_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[1] = 'emit' THEN
        INSERT INTO hookrelay.events (event, model) VALUES ('truncated', TG_ARGV[0]);
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'TRUNCATE of %.% is refused: hookrelay tracks its deleted rows, and TRUNCATE would delete them without any "deleted" event',
        quote_ident(TG_TABLE_SCHEMA), quote_ident(TG_TABLE_NAME)
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'use DELETE; or track ''truncated'' as well (one "truncated" event per TRUNCATE); or call hookrelay.untrack_table first';
END
$$;

-- Drops the hookrelay triggers of a table (not the clones PostgreSQL keeps on partitions,
-- which go with their parent's trigger).
CREATE FUNCTION hookrelay.drop_tracking_triggers(tbl regclass) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    trigger_name name;
    dropped integer := 0;
BEGIN
    FOR trigger_name IN
        SELECT t.tgname FROM pg_trigger t
        WHERE t.tgrelid = tbl AND t.tgparentid = 0
          AND t.tgfoid IN ('hookrelay.tracked_row()'::regprocedure,
                           'hookrelay.tracked_truncate()'::regprocedure)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- Checks track_table's arguments, raising an error that names the problem and the fix.
CREATE FUNCTION hookrelay.check_tracking(
    tbl regclass, events text[], exclude_columns text[], account_column text, model text,
    key_columns text[]
) RETURNS void
LANGUAGE plpgsql STABLE AS $$
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
$$;

-- Tracks a table: installs (or reconfigures in place) its triggers and records how.
CREATE FUNCTION hookrelay.track_table(
    tbl             regclass,
    events          text[] DEFAULT '{created,updated,deleted}',
    exclude_columns text[] DEFAULT '{}',
    account_column  text   DEFAULT NULL,
    model           text   DEFAULT NULL
) RETURNS hookrelay.tracked_tables
LANGUAGE plpgsql AS $$
DECLARE
    rel         record;
    target      text;
    key_columns text[];
    wanted      text[];
    call        text;
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
    target := format('%I.%I', rel.nspname, rel.relname);
    events := coalesce(events, '{created,updated,deleted}');
    exclude_columns := coalesce(exclude_columns, '{}');
    key_columns := ARRAY(
        SELECT a.attname::text
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisprimary
        ORDER BY k.n);
    PERFORM hookrelay.check_tracking(tbl, events, exclude_columns, account_column, model, key_columns);
    model := coalesce(model, rel.nspname || '.' || rel.relname);
    wanted := ARRAY(SELECT e FROM unnest('{created,updated,deleted,truncated}'::text[]) AS e
                    WHERE e = ANY (events));
    exclude_columns := ARRAY(SELECT DISTINCT c FROM unnest(exclude_columns) AS c ORDER BY c);

    PERFORM hookrelay.drop_tracking_triggers(tbl);
    call := format('hookrelay.tracked_row(%L, %L, %L, %L)',
                   model, exclude_columns, coalesce(account_column, ''), key_columns);
    IF 'created' = ANY (wanted) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_created AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'updated' = ANY (wanted) THEN
        -- *<> compares the stored bytes, so it works for every column type (json and point have
        -- no equality operator) and skips the function entirely for no-op updates.
        EXECUTE format('CREATE TRIGGER hookrelay_updated AFTER UPDATE ON %s FOR EACH ROW WHEN (OLD *<> NEW) EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'deleted' = ANY (wanted) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_deleted AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'truncated' = ANY (wanted) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_truncated AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.tracked_truncate(%L, %L)',
                       target, model, 'emit');
    ELSIF 'deleted' = ANY (wanted) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_truncated BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.tracked_truncate(%L, %L)',
                       target, model, 'refuse');
    END IF;

    -- Rows of tables dropped since they were tracked (their triggers went with them).
    DELETE FROM hookrelay.tracked_tables t
    WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    INSERT INTO hookrelay.tracked_tables AS t
        (tbl, model, events, exclude_columns, account_column, key_columns)
    VALUES (tbl, model, wanted, exclude_columns, account_column, key_columns)
    ON CONFLICT ON CONSTRAINT tracked_tables_pkey DO UPDATE
        SET model = excluded.model, events = excluded.events,
            exclude_columns = excluded.exclude_columns, account_column = excluded.account_column,
            key_columns = excluded.key_columns, updated_at = now()
    RETURNING t.* INTO result;
    RETURN result;
END
$$;

-- Stops tracking a table. Returns false when it was not tracked.
CREATE FUNCTION hookrelay.untrack_table(tbl regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    dropped integer;
    removed integer;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'untrack_table needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    dropped := hookrelay.drop_tracking_triggers(tbl);
    DELETE FROM hookrelay.tracked_tables t
    WHERE t.tbl = untrack_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN dropped > 0 OR removed > 0;
END
$$;

-- Payload shaping per endpoint, applied by the worker when it builds that endpoint's body.
ALTER TABLE hookrelay.endpoints
    ADD COLUMN include_fields jsonb,
    ADD COLUMN redact_fields  jsonb;

-- True when `fields` is a JSON array of non-empty strings.
CREATE FUNCTION hookrelay.is_field_list(fields jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(fields) = 'array'
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(fields) AS f
                       WHERE jsonb_typeof(f) <> 'string' OR f = '""')
$$;

-- Shaping is checked when it is written, so a malformed value is refused here instead of
-- surprising a receiver later.
CREATE FUNCTION hookrelay.validate_endpoint_shaping() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;

CREATE TRIGGER endpoints_validate_shaping
    BEFORE INSERT OR UPDATE OF include_fields, redact_fields ON hookrelay.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_shaping();

-- The event-name rule of 0001, in a form that is cheap to check. PostgreSQL's regex engine
-- evaluates the bounded repetition `{1,200}` slowly: measured 7 to 24 µs per inserted event
-- (longer names cost more), against under 1 µs for this equivalent check. Every tracked row
-- and every bulk emit pays it, so it matters here.
ALTER TABLE hookrelay.events
    DROP CONSTRAINT event_name_must_be_1_to_200_characters_without_spaces,
    ADD CONSTRAINT event_name_must_be_1_to_200_characters_without_spaces
        CHECK (length(event) BETWEEN 1 AND 200 AND event !~ '[[:space:]]');
