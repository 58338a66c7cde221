-- 0001: the outbox, endpoints, deliveries, attempts and the worker wake-up flag.
--
-- Applied by `hookrelay migrate` inside one transaction. Everything lives in schema `hookrelay`.

CREATE SCHEMA IF NOT EXISTS hookrelay;

-- Time-ordered UUIDs (version 7 layout): new ids land at the right edge of the primary-key
-- index instead of at random pages, and ordering by id follows insertion time.
CREATE FUNCTION hookrelay.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- Parses a `hookrelay.actor` value that looks like JSON. Kept apart from current_actor() so
-- the exception block (a subtransaction) is only paid when the setting holds a JSON object.
CREATE FUNCTION hookrelay.parse_actor(raw text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    parsed jsonb;
BEGIN
    parsed := raw::jsonb;
    IF jsonb_typeof(parsed) = 'object' THEN
        RETURN parsed;
    END IF;
    RETURN jsonb_build_object('id', parsed #>> '{}');
EXCEPTION WHEN others THEN
    -- A malformed actor must never fail the application's transaction: keep what was given.
    RETURN jsonb_build_object('raw', raw);
END
$$;

-- The acting user of the current transaction, from `SET LOCAL hookrelay.actor = '…'`:
-- a JSON object is kept as is, any other value becomes {"id": value}.
CREATE FUNCTION hookrelay.current_actor() RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw text := nullif(btrim(current_setting('hookrelay.actor', true)), '');
BEGIN
    IF raw IS NULL THEN
        RETURN NULL;
    ELSIF left(raw, 1) IN ('{', '"') THEN
        RETURN hookrelay.parse_actor(raw);
    END IF;
    RETURN jsonb_build_object('id', raw);
END
$$;

CREATE TABLE hookrelay.events (
    id            uuid PRIMARY KEY DEFAULT hookrelay.uuid_v7(),
    event         text NOT NULL,
    model         text,
    object_id     text,
    object        jsonb NOT NULL DEFAULT '{}'::jsonb,
    changes       jsonb,
    actor         jsonb DEFAULT hookrelay.current_actor(),
    account_id    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set when the worker has created this event's deliveries; NULL means "not fanned out yet".
    fanned_out_at timestamptz,
    CONSTRAINT event_name_must_be_1_to_200_characters_without_spaces
        CHECK (event ~ '^[^[:space:]]{1,200}$'),
    CONSTRAINT event_object_must_be_a_json_object
        CHECK (jsonb_typeof(object) = 'object'),
    CONSTRAINT event_changes_must_be_a_json_object
        CHECK (changes IS NULL OR jsonb_typeof(changes) = 'object')
);

-- Only events that still need fan-out are indexed, so claiming does not slow down as history grows.
CREATE INDEX events_to_fan_out ON hookrelay.events (id) WHERE fanned_out_at IS NULL;

CREATE FUNCTION hookrelay.emit(
    event      text,
    object     jsonb DEFAULT '{}'::jsonb,
    model      text  DEFAULT NULL,
    object_id  text  DEFAULT NULL,
    changes    jsonb DEFAULT NULL,
    account_id text  DEFAULT NULL
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id)
    VALUES (emit.event,
            coalesce(emit.object, '{}'::jsonb),
            emit.model,
            coalesce(emit.object_id,
                     CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
            emit.changes,
            emit.account_id)
    RETURNING id
$$;

CREATE TABLE hookrelay.endpoints (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    url              text NOT NULL,
    secret           text NOT NULL,
    account_id       text,
    events           text[] NOT NULL DEFAULT '{}',
    models           text[] NOT NULL DEFAULT '{}',
    active           boolean NOT NULL DEFAULT true,
    signature_scheme text NOT NULL DEFAULT 'hookrelay',
    max_attempts     integer,
    timeout_ms       integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT endpoint_url_must_be_http_or_https
        CHECK (url ~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$')
);

-- Friendlier messages than a bare constraint name, for people writing endpoints with SQL.
CREATE FUNCTION hookrelay.validate_endpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' THEN
        RAISE EXCEPTION 'endpoint name % is not valid', quote_nullable(NEW.name)
            USING ERRCODE = 'check_violation',
                  HINT = 'use 1 to 100 letters, digits, ".", "_" or "-", starting with a letter or digit';
    END IF;
    IF NEW.url IS NULL OR NEW.url !~* '^https?://' THEN
        RAISE EXCEPTION 'endpoint url % is not an http:// or https:// URL', quote_nullable(NEW.url)
            USING ERRCODE = 'check_violation',
                  HINT = 'give a full URL such as https://example.com/webhooks';
    END IF;
    IF NEW.url ~ '^[^:]+://[^/?#]*@' THEN
        RAISE EXCEPTION 'endpoint url must not contain credentials (user:password@)'
            USING ERRCODE = 'check_violation',
                  HINT = 'remove the credentials from the URL; receivers authenticate hookrelay by its signature';
    END IF;
    IF NEW.url !~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$' THEN
        RAISE EXCEPTION 'endpoint url % is malformed', quote_nullable(NEW.url)
            USING ERRCODE = 'check_violation',
                  HINT = 'a URL needs a host and no spaces, such as https://example.com/webhooks';
    END IF;
    IF NEW.secret IS NULL OR length(NEW.secret) NOT BETWEEN 8 AND 1000 THEN
        RAISE EXCEPTION 'endpoint secret must be 8 to 1000 characters'
            USING ERRCODE = 'check_violation',
                  HINT = 'leave the secret out of `hookrelay endpoint add` to have a strong one generated';
    END IF;
    IF NEW.signature_scheme IS NULL OR NEW.signature_scheme NOT IN ('hookrelay', 'body-hex', 'standard') THEN
        RAISE EXCEPTION 'unknown signature scheme %', quote_nullable(NEW.signature_scheme)
            USING ERRCODE = 'check_violation',
                  HINT = 'use one of: hookrelay, body-hex, standard';
    END IF;
    IF NEW.signature_scheme = 'standard' AND NEW.secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
        RAISE EXCEPTION 'a standard-webhooks secret must be "whsec_" followed by base64'
            USING ERRCODE = 'check_violation',
                  HINT = 'leave the secret out to have one generated, or give whsec_<base64 of 24 to 64 random bytes>';
    END IF;
    IF NEW.max_attempts IS NOT NULL AND NEW.max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'max_attempts % is out of range', NEW.max_attempts
            USING ERRCODE = 'check_violation', HINT = 'use 1 to 100, or NULL for the worker default';
    END IF;
    IF NEW.timeout_ms IS NOT NULL AND NEW.timeout_ms NOT BETWEEN 100 AND 300000 THEN
        RAISE EXCEPTION 'timeout_ms % is out of range', NEW.timeout_ms
            USING ERRCODE = 'check_violation', HINT = 'use 100 to 300000 (5 minutes), or NULL for the worker default';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(NEW.events || NEW.models) AS f(v) WHERE v IS NULL OR v !~ '^[^[:space:]]{1,200}$') THEN
        RAISE EXCEPTION 'event and model filters must be non-empty names without spaces'
            USING ERRCODE = 'check_violation', HINT = 'use an empty array to match every event or model';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER endpoints_validate
    BEFORE INSERT OR UPDATE ON hookrelay.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint();

CREATE TABLE hookrelay.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES hookrelay.events (id) ON DELETE CASCADE,
    endpoint_id     bigint NOT NULL REFERENCES hookrelay.endpoints (id) ON DELETE CASCADE,
    state           text NOT NULL DEFAULT 'pending',
    -- Attempts started so far. A claim counts its attempt up front, so a delivery that crashes
    -- its worker every time still ends `dead` instead of looping forever.
    attempts        integer NOT NULL DEFAULT 0,
    -- When a pending delivery is next due. While claimed it equals locked_until, so an
    -- expired lease simply makes the delivery due again.
    next_attempt_at timestamptz DEFAULT now(),
    locked_until    timestamptz,
    locked_by       text,
    last_status     integer,
    last_error_code text,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT delivery_state_is_known
        CHECK (state IN ('pending', 'delivered', 'dead', 'cancelled')),
    UNIQUE (event_id, endpoint_id)
);

-- Only pending work is indexed: claim cost stays flat however much history is kept.
CREATE INDEX deliveries_due ON hookrelay.deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_endpoint ON hookrelay.deliveries (endpoint_id, created_at);

CREATE TABLE hookrelay.attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      bigint NOT NULL REFERENCES hookrelay.deliveries (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer,
    status           integer,
    error_code       text,
    error            text,
    response_excerpt text,
    worker           text
);

CREATE INDEX attempts_by_delivery ON hookrelay.attempts (delivery_id, attempt);

-- Pausing an endpoint parks its pending deliveries out of the claim index's due range;
-- resuming it makes them due again at once.
CREATE FUNCTION hookrelay.endpoint_active_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER endpoints_active_changed
    AFTER UPDATE OF active ON hookrelay.endpoints
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active)
    EXECUTE FUNCTION hookrelay.endpoint_active_changed();

-- Running workers. `waiting` is true while a worker is idle and listening, which is the only
-- time an insert needs to notify: a NOTIFY takes a database-wide lock at commit, so notifying
-- on every insert would serialise the application's commits. Unlogged: it is live state only.
CREATE UNLOGGED TABLE hookrelay.workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    waiting      boolean NOT NULL DEFAULT false
) WITH (fillfactor = 50);

CREATE FUNCTION hookrelay.wake_workers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM hookrelay.workers
               WHERE waiting AND heartbeat_at > now() - interval '2 minutes') THEN
        PERFORM pg_notify('hookrelay_events', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_wake_workers
    AFTER INSERT ON hookrelay.events
    FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.wake_workers();
