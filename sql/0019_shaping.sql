-- 0019: what each receiver wants. Per endpoint: a content filter (a jsonpath predicate over
-- the envelope, evaluated in the fan-out claim), a number format for its payloads, and
-- whether an update that its include_fields leaves without changes is sent at all.

ALTER TABLE hookrelay.endpoints
    ADD COLUMN filter             jsonpath,
    ADD COLUMN number_format      text    NOT NULL DEFAULT 'json',
    ADD COLUMN skip_empty_changes boolean NOT NULL DEFAULT false;

-- The envelope a receiver gets (src/payload.rs), built from an event's columns: what a filter
-- is evaluated over, so a filter names the same fields a receiver reads. Unshaped: a filter
-- may test fields that include_fields or redact_fields keep from the receiver.
CREATE FUNCTION hookrelay.envelope(id uuid, event text, created_at timestamptz,
                                   account_id text, model text, object_id text, object jsonb,
                                   changes jsonb, actor jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
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

-- An example envelope, for checking filters when they are written.
CREATE FUNCTION hookrelay.example_envelope() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{"id": "evt_00000000-0000-0000-0000-000000000000", "event": "order.paid",
             "timestamp": "2026-01-24T10:00:00.000000Z", "account_id": "acme",
             "model": {"app": "store", "name": "Order"}, "object_id": "42",
             "object": {"id": 42, "status": "PAID", "total": 150.00},
             "changes": {"status": {"old": "PENDING", "new": "PAID"}},
             "user": {"id": "1", "username": "admin"}}'::jsonb
$$;

-- What to write instead of a filter that is not one.
CREATE FUNCTION hookrelay.filter_hint() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'a filter is a jsonpath predicate over the envelope, for example '
        || '$.object.total > 100 && $.account_id == "acme", or $.event like_regex "^order\\."'
$$;

-- A filter as text, checked: malformed jsonpath and paths that are not predicates (such as
-- $.object.total, which selects a value instead of testing one) are refused, naming the
-- problem and an example. The CLI and apply files go through it; SQL writes get the same
-- predicate check from the trigger below and PostgreSQL's own jsonpath syntax check.
CREATE FUNCTION hookrelay.check_filter(filter text) RETURNS jsonpath
LANGUAGE plpgsql STABLE AS $$
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

-- Refuses a path that is not a predicate. A predicate gives one boolean (or unknown) over
-- any envelope; any other path gives values, or nothing, which jsonb_path_match refuses.
CREATE FUNCTION hookrelay.check_predicate(path jsonpath) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM jsonb_path_match(hookrelay.example_envelope(), path);
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'filter % is not a predicate (%)', to_jsonb(left(path::text, 200)), SQLERRM
        USING ERRCODE = 'check_violation', HINT = hookrelay.filter_hint();
END
$$;

CREATE FUNCTION hookrelay.validate_endpoint_delivery_options() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER endpoints_validate_delivery_options
    BEFORE INSERT OR UPDATE OF filter, number_format ON hookrelay.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_delivery_options();

-- The fields include_fields keeps for `model` (payload::Shaping::kept_fields): an array for
-- every model, or per model with "*" for the rest; NULL keeps every field.
CREATE FUNCTION hookrelay.kept_fields(include_fields jsonb, model text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(include_fields)
        WHEN 'array' THEN include_fields
        WHEN 'object' THEN coalesce(include_fields -> model, include_fields -> '*')
    END
$$;

-- True when `changes` is an object of which include_fields keeps no key for `model`: the
-- delivery would carry `"changes": {}`.
CREATE FUNCTION hookrelay.changes_left_empty(changes jsonb, model text, include_fields jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN false
        WHEN jsonb_typeof(hookrelay.kept_fields(include_fields, model)) = 'array'
        THEN NOT (changes ?| ARRAY(SELECT jsonb_array_elements_text(
                                              hookrelay.kept_fields(include_fields, model))))
        ELSE changes = '{}'
    END
$$;


-- Replay: fresh deliveries of past events to one endpoint, for a new endpoint that wants
-- history or a receiver that lost data. The events it matches (by its events, models,
-- account, filter and skip_empty_changes, as at fan-out), written in [since, until), in the
-- order they were written; `only_events` narrows them by name. Already fanned-out events only: the others get
-- their deliveries from the fan-out.
CREATE FUNCTION hookrelay.replay_events(ep hookrelay.endpoints, since timestamptz,
                                        until timestamptz, only_events text[])
RETURNS TABLE (event_id uuid, rank bigint)
LANGUAGE sql STABLE AS $$
    -- Write order: ids order events only to the millisecond.
    SELECT e.id, row_number() OVER (ORDER BY e.created_at, e.id)
    FROM hookrelay.events e
    WHERE e.created_at >= since AND e.created_at < until
      AND e.fanned_out_at IS NOT NULL
      AND (cardinality(only_events) = 0 OR e.event = ANY (only_events))
      AND (cardinality(ep.events) = 0 OR e.event = ANY (ep.events))
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

-- Replays to `endpoint_name` and returns how many deliveries were scheduled (with dry_run:
-- how many would be). An event the endpoint already has a delivery for gets it again, with a
-- fresh attempt budget, as hookrelay.redeliver does (one delivery per event and endpoint);
-- one in flight right now is left to finish. Other endpoints' deliveries are not touched.
-- `retention` (the worker's --retention): a `since` older than it is refused, since events
-- before it may already be deleted.
CREATE FUNCTION hookrelay.replay(endpoint_name text, since timestamptz,
                                 until timestamptz DEFAULT now(),
                                 only_events text[] DEFAULT '{}',
                                 dry_run boolean DEFAULT false,
                                 retention interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
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
                    ELSE 'infinity' END AS at
        FROM chosen c
    ), again AS (
        UPDATE hookrelay.deliveries d
        SET state = 'pending', attempts_base = d.attempts, next_attempt_at = due.at,
            delivered_at = NULL, updated_at = now()
        FROM due
        WHERE d.event_id = due.event_id AND d.endpoint_id = ep.id
          AND NOT (d.state = 'pending' AND d.locked_until > now())
        RETURNING 1
    ), added AS (
        INSERT INTO hookrelay.deliveries (event_id, endpoint_id, next_attempt_at)
        SELECT due.event_id, ep.id, due.at
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

-- Like redelivery, a write operators may make without UPDATE on deliveries.
ALTER FUNCTION hookrelay.replay(text, timestamptz, timestamptz, text[], boolean, interval)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION hookrelay.replay(text, timestamptz, timestamptz, text[], boolean, interval)
    FROM PUBLIC;

-- Operators read the new columns (endpoint list and show). grant_roles() grants what 0008
-- listed; it now grants these too, so roles created later (by an administrator, then
-- SELECT hookrelay.grant_roles()) get them as well.
ALTER FUNCTION hookrelay.grant_roles() RENAME TO grant_roles_0008;
CREATE FUNCTION hookrelay.grant_roles() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0008();
BEGIN
    IF 'hookrelay_operator' = ANY (granted) THEN
        GRANT SELECT (filter, number_format, skip_empty_changes) ON hookrelay.endpoints
            TO hookrelay_operator;
        GRANT EXECUTE ON FUNCTION
            hookrelay.replay(text, timestamptz, timestamptz, text[], boolean, interval)
            TO hookrelay_operator;
    END IF;
    RETURN granted;
END
$$;
REVOKE EXECUTE ON FUNCTION hookrelay.grant_roles() FROM PUBLIC;
SELECT hookrelay.grant_roles();
