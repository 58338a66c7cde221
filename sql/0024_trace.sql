-- 0024: an event's journey. The W3C trace context of the transaction that wrote an event is
-- kept with it (SET LOCAL hookrelay.traceparent / hookrelay.tracestate, or emit's arguments)
-- and sent with every attempt; hookrelay writes operational events (hookrelay.*) into its
-- own outbox where an endpoint's state changes, for an ops endpoint to subscribe to.

-- A value that is set but malformed is dropped with a WARNING: tracing must never fail the
-- application's transaction. STABLE so the column defaults below may call it.
CREATE FUNCTION hookrelay.trace_dropped(setting text, raw text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE WARNING 'hookrelay.% is not a valid W3C trace context value (%); the event is written without it',
        setting, hookrelay.shown(raw, 80)
        USING HINT = CASE setting
            WHEN 'traceparent' THEN 'use 00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>, ids not all zero, e.g. 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
            ELSE 'use comma-separated key=value members (at most 32, 512 characters), e.g. vendor=opaque-value' END;
    RETURN NULL;
END
$$;

-- A traceparent as kept: version 00, lowercase hex, trace and parent ids not all zero; NULL
-- for unset. Only regular expressions, no parsing: it runs for every event written while
-- hookrelay.traceparent is set.
CREATE FUNCTION hookrelay.trace_parent(raw text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN raw IS NULL OR raw = '' THEN NULL
        WHEN raw ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
             AND raw !~ '^00-0{32}-' AND raw !~ '-0{16}-..$' THEN raw
        ELSE hookrelay.trace_dropped('traceparent', raw)
    END
$$;

-- A tracestate as kept: W3C list-members (key=value, at most 32, 512 characters in all),
-- printable ASCII. Unbounded repeats with the lengths capped as a whole: the W3C grammar's
-- bounded repeats ({0,255}) made PostgreSQL's regex engine take ~5 ms per value (measured).
CREATE FUNCTION hookrelay.trace_state(raw text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN raw IS NULL OR raw = '' THEN NULL
        WHEN length(raw) <= 512 AND raw !~ '[^\x20-\x7e]'
             AND length(raw) - length(replace(raw, ',', '')) < 32
             AND raw ~ '^[a-z0-9][a-z0-9_*/@-]*=[^,=]*[^ ,=]([ \t]*,[ \t]*[a-z0-9][a-z0-9_*/@-]*=[^,=]*[^ ,=])*$'
        THEN raw
        ELSE hookrelay.trace_dropped('tracestate', raw)
    END
$$;

-- A setting's value checked once per transaction, not once per event: the value that passed
-- is remembered in hookrelay.checked_<setting> (one that failed, and was warned about, in
-- hookrelay.dropped_<setting>), local to the transaction like the SET LOCAL it checks. Marked
-- STABLE, though it remembers, so the defaults below stay inlined into each INSERT.
CREATE FUNCTION hookrelay.checked_trace(setting text, raw text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
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

-- What the transaction set (NULL when nothing, or something malformed). Column defaults of
-- events, like current_actor(): emit, the row triggers and direct INSERTs all get them. Per
-- event this costs two setting reads when nothing is set, and a comparison with the value
-- already checked when something is (measured in README, Tracing an event's journey).
CREATE FUNCTION hookrelay.current_traceparent() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN coalesce(current_setting('hookrelay.traceparent', true), '') = '' THEN NULL
        WHEN current_setting('hookrelay.traceparent', true)
             = current_setting('hookrelay.checked_traceparent', true)
        THEN current_setting('hookrelay.traceparent', true)
        ELSE hookrelay.checked_trace('traceparent', current_setting('hookrelay.traceparent', true))
    END
$$;

CREATE FUNCTION hookrelay.current_tracestate() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN coalesce(current_setting('hookrelay.tracestate', true), '') = '' THEN NULL
        WHEN current_setting('hookrelay.tracestate', true)
             = current_setting('hookrelay.checked_tracestate', true)
        THEN current_setting('hookrelay.tracestate', true)
        ELSE hookrelay.checked_trace('tracestate', current_setting('hookrelay.tracestate', true))
    END
$$;

-- Added, then given defaults: existing events keep NULL without rewriting the table.
ALTER TABLE hookrelay.events
    ADD COLUMN traceparent text,
    ADD COLUMN tracestate  text;
ALTER TABLE hookrelay.events
    ALTER COLUMN traceparent SET DEFAULT hookrelay.current_traceparent(),
    ALTER COLUMN tracestate  SET DEFAULT hookrelay.current_tracestate();

-- emit with the trace context as arguments, for apps that carry it in hand rather than in a
-- setting. Without them the columns' defaults read the settings, as for any INSERT. The
-- ordering key (0022) is kept as it was: checked, and locked before the insert.
DROP FUNCTION hookrelay.emit(text, jsonb, text, text, jsonb, text, text);
CREATE FUNCTION hookrelay.emit(event text, object jsonb DEFAULT '{}'::jsonb,
                               model text DEFAULT NULL, object_id text DEFAULT NULL,
                               changes jsonb DEFAULT NULL, account_id text DEFAULT NULL,
                               ordering_key text DEFAULT NULL,
                               traceparent text DEFAULT NULL, tracestate text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    IF emit.ordering_key = '' THEN
        RAISE EXCEPTION 'ordering_key is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give a key such as ''customer:42'', or leave ordering_key out (NULL) to order by model and object_id';
    END IF;
    -- Before the insert: the event's id and created_at are made once the key is ours.
    PERFORM hookrelay.lock_ordering_key(emit.ordering_key);
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

-- Per endpoint: whether attempts carry traceparent/tracestate, and whether a dead delivery
-- writes a hookrelay.delivery.dead event.
ALTER TABLE hookrelay.endpoints
    ADD COLUMN trace_context boolean NOT NULL DEFAULT true,
    ADD COLUMN emit_dead     boolean NOT NULL DEFAULT false;

-- traceparent and tracestate are hookrelay's to send: static headers may not replace them.
-- Kept in step with deliver::is_reserved_header in the Rust code.
CREATE OR REPLACE FUNCTION hookrelay.is_reserved_header(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(name) IN ('content-type', 'content-length', 'content-encoding',
                           'transfer-encoding', 'host', 'connection', 'keep-alive', 'upgrade',
                           'te', 'trailer', 'expect', 'proxy-connection', 'user-agent',
                           'traceparent', 'tracestate')
        OR lower(name) LIKE 'x-webhook-%'
        OR lower(name) LIKE 'webhook-%'
$$;

-- Operational events. Each is written in the transaction that changes the state it reports,
-- with model hookrelay.endpoint or hookrelay.delivery and object.endpoint naming the endpoint
-- it is about: the fan-out claim never sends it there, and endpoints whose events list is
-- empty (all events) do not get them either; an ops endpoint names them in its events list.
CREATE FUNCTION hookrelay.ops_event(event text, model text, object_id text, object jsonb,
                                    account_id text)
RETURNS void
-- The worker's role may not write events; hookrelay's own are written as the schema's owner.
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
    INSERT INTO hookrelay.events (event, model, object_id, object, account_id, actor,
                                  traceparent, tracestate)
    VALUES (ops_event.event, ops_event.model, ops_event.object_id, ops_event.object,
            ops_event.account_id, NULL, NULL, NULL)
$$;

-- True for an endpoint that receives operational events. Recoveries of such endpoints write
-- none, and their dead deliveries of operational events write none: two ops endpoints that
-- keep failing cannot feed each other.
CREATE FUNCTION hookrelay.is_ops_endpoint(events text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM unnest(events) e WHERE e LIKE 'hookrelay.%')
$$;

-- hookrelay.endpoint.disabled: hookrelay disabled it (410 Gone, or failing too long), which
-- is when disabled_at is set; an operator's `endpoint disable` writes none. An endpoint is
-- disabled once until someone enables it, so these are bounded.
CREATE FUNCTION hookrelay.endpoint_disabled_event() RETURNS trigger
-- As the schema's owner: the worker's and operator's roles may not write events.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM hookrelay.ops_event('hookrelay.endpoint.disabled', 'hookrelay.endpoint', NEW.name,
        jsonb_build_object('endpoint', NEW.name, 'reason', NEW.disabled_reason,
                           'disabled_at', NEW.disabled_at),
        NEW.account_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER endpoints_disabled_event AFTER UPDATE OF active ON hookrelay.endpoints
    FOR EACH ROW WHEN (OLD.active AND NOT NEW.active
                       AND NEW.disabled_at IS DISTINCT FROM OLD.disabled_at)
    EXECUTE FUNCTION hookrelay.endpoint_disabled_event();

-- hookrelay.endpoint.recovered: a success after at least 3 failures in a row (with the
-- default schedule, at least 5 minutes of failing; one failed try followed by a success is
-- ordinary and stays quiet).
CREATE FUNCTION hookrelay.endpoint_recovered_event() RETURNS trigger
-- As the schema's owner: the worker's and operator's roles may not write events.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
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
CREATE TRIGGER endpoint_state_recovered_event AFTER UPDATE ON hookrelay.endpoint_state
    FOR EACH ROW WHEN (OLD.failing_since IS NOT NULL AND OLD.consecutive_failures >= 3
                       AND NEW.last_success_at IS DISTINCT FROM OLD.last_success_at)
    EXECUTE FUNCTION hookrelay.endpoint_recovered_event();

-- hookrelay.delivery.dead, for endpoints with emit_dead. Never for a delivery of an
-- operational event: an ops endpoint's own dead deliveries cannot write more.
CREATE FUNCTION hookrelay.delivery_dead_event() RETURNS trigger
-- As the schema's owner: the worker's and operator's roles may not write events.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
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
CREATE TRIGGER deliveries_dead_event AFTER UPDATE OF state ON hookrelay.deliveries
    FOR EACH ROW WHEN (NEW.state = 'dead' AND OLD.state <> 'dead')
    EXECUTE FUNCTION hookrelay.delivery_dead_event();

REVOKE EXECUTE ON FUNCTION hookrelay.endpoint_disabled_event(), hookrelay.endpoint_recovered_event(),
    hookrelay.delivery_dead_event(), hookrelay.ops_event(text, text, text, jsonb, text) FROM PUBLIC;

-- The new emit, the trace defaults and the new endpoint columns for the roles of 0008.
-- 0008's and 0022's grants name emit by its old signature, which no longer exists: that line
-- of each is rewritten to name the new one (the rest of their functions is left as it is).
ALTER FUNCTION hookrelay.grant_roles() RENAME TO grant_roles_0022;
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['hookrelay.grant_roles_0008()', 'hookrelay.grant_roles_0022()'] LOOP
        EXECUTE replace(pg_get_functiondef(f::regprocedure),
                        'hookrelay.emit(text, jsonb, text, text, jsonb, text, text)',
                        'hookrelay.emit(text, jsonb, text, text, jsonb, text, text, text, text)');
    END LOOP;
END
$$;
CREATE FUNCTION hookrelay.grant_roles() RETURNS text[]
LANGUAGE plpgsql AS $$
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
REVOKE EXECUTE ON FUNCTION hookrelay.grant_roles() FROM PUBLIC;
SELECT hookrelay.grant_roles();
