-- 0008: least privilege and secret hygiene.
--
-- Three NOLOGIN group roles, granted to the login roles that need them (see README, "Security"):
--   hookrelay_app      writes events: hookrelay.emit() and INSERT into hookrelay.events (also
--                      through the row triggers of tracked tables, which run as the app). It
--                      cannot read endpoints, deliveries, attempts, or the events themselves.
--   hookrelay_worker   what `hookrelay run` does: claims, results, retries, the 410/auto-disable
--                      bookkeeping on endpoints, retention deletes, its own row in workers.
--   hookrelay_operator reads everything except the secret columns of hookrelay.endpoints
--                      (secret, previous_secret, headers), and may redeliver.
--
-- Roles belong to the whole server while migrations run per database, so the roles are created
-- only when missing (two databases migrated at once may race: the loser finds the role made),
-- and the grants are made in every database. A migrating user without CREATEROLE gets a warning
-- instead of a failure; an administrator then creates the roles and runs, as the schema owner,
-- SELECT hookrelay.grant_roles();

-- Creates the group roles that are missing, when this user may; then grants each existing one
-- its privileges in this database. Safe to run again (later migrations call it after adding
-- objects). Returns the roles granted.
CREATE FUNCTION hookrelay.grant_roles() RETURNS text[]
LANGUAGE plpgsql AS $$
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
        GRANT EXECUTE ON FUNCTION hookrelay.emit(text, jsonb, text, text, jsonb, text)
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
        GRANT EXECUTE ON FUNCTION hookrelay.admit(bigint[], integer[], integer, boolean),
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

REVOKE EXECUTE ON FUNCTION hookrelay.grant_roles() FROM PUBLIC;

-- The fingerprint operators see instead of a secret: the first 8 hex digits of its SHA-256,
-- the same as `hookrelay endpoint list` printed before (sign::fingerprint).
CREATE FUNCTION hookrelay.fingerprint(secret text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT 'sha256:' || left(encode(sha256(convert_to(secret, 'UTF8')), 'hex'), 8)
$$;

-- Secrets and static header values as fingerprints. A view runs with its owner's rights, so
-- operators, who cannot read those columns, can still tell secrets apart and see which
-- headers an endpoint sends.
CREATE VIEW hookrelay.endpoint_fingerprints AS
SELECT ep.id AS endpoint_id,
       hookrelay.fingerprint(ep.secret) AS secret_fingerprint,
       CASE WHEN ep.previous_secret_expires_at > now()
            THEN hookrelay.fingerprint(ep.previous_secret) END AS previous_secret_fingerprint,
       (SELECT coalesce(jsonb_object_agg(h.key, hookrelay.fingerprint(h.value)), '{}'::jsonb)
        FROM jsonb_each_text(ep.headers) AS h) AS header_fingerprints
FROM hookrelay.endpoints ep;

-- Redelivery is the one write operators get. It runs with the owner's rights so that they need
-- no UPDATE on deliveries, and only roles granted it may call it.
ALTER FUNCTION hookrelay.redeliver(bigint)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION hookrelay.redeliver_dead(text, interval)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION hookrelay.redeliver(bigint), hookrelay.redeliver_dead(text, interval)
    FROM PUBLIC;

-- Endpoint checks as in 0001, with the credentials check first (a URL such as
-- ftp://user:password@host used to be echoed whole by the scheme check before it), values
-- quoted in messages cut short, and URLs limited to 2048 characters.
CREATE OR REPLACE FUNCTION hookrelay.validate_endpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' THEN
        RAISE EXCEPTION 'endpoint name % is not valid', quote_nullable(left(NEW.name, 120))
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
        RAISE EXCEPTION 'endpoint url % is not an http:// or https:// URL', quote_nullable(left(NEW.url, 200))
            USING ERRCODE = 'check_violation',
                  HINT = 'give a full URL such as https://example.com/webhooks';
    END IF;
    IF NEW.url !~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$' THEN
        RAISE EXCEPTION 'endpoint url % is malformed', quote_nullable(left(NEW.url, 200))
            USING ERRCODE = 'check_violation',
                  HINT = 'a URL needs a host and no spaces, such as https://example.com/webhooks';
    END IF;
    IF NEW.secret IS NULL OR length(NEW.secret) NOT BETWEEN 8 AND 1000 THEN
        RAISE EXCEPTION 'endpoint secret must be 8 to 1000 characters'
            USING ERRCODE = 'check_violation',
                  HINT = 'leave the secret out of `hookrelay endpoint add` to have a strong one generated';
    END IF;
    IF NEW.signature_scheme IS NULL OR NEW.signature_scheme NOT IN ('hookrelay', 'body-hex', 'standard') THEN
        RAISE EXCEPTION 'unknown signature scheme %', quote_nullable(left(NEW.signature_scheme, 40))
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

-- A `hookrelay.actor` that looks like JSON but is not: still never fails the application's
-- transaction (the value is kept as {"raw": …}), but the application now hears about it.
CREATE OR REPLACE FUNCTION hookrelay.parse_actor(raw text) RETURNS jsonb
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
    RAISE WARNING 'hookrelay.actor is not valid JSON (%); the event records it as {"raw": …}', SQLERRM
        USING HINT = 'set a JSON object such as {"id": "1", "username": "admin"}, or a bare id such as 42';
    RETURN jsonb_build_object('raw', raw);
END
$$;

SELECT hookrelay.grant_roles();
