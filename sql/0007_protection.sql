-- 0007: protecting receivers: per-endpoint isolation (max_in_flight), rate limits that hold
-- across every worker process, disabling with a recorded reason (by an operator, by a
-- `410 Gone`, or automatically after failing for days), and the health view showing it.

ALTER TABLE hookrelay.endpoints
    -- Requests in flight at once to this endpoint, across all workers: a hanging receiver
    -- ties up at most this many of the workers' slots.
    ADD COLUMN max_in_flight   integer NOT NULL DEFAULT 8,
    -- Requests per second across all workers; NULL: no limit.
    ADD COLUMN rate_limit      double precision,
    -- Why and since when an inactive endpoint is disabled; NULL while it is active.
    ADD COLUMN disabled_reason text,
    ADD COLUMN disabled_at     timestamptz;

UPDATE hookrelay.endpoints
SET disabled_reason = 'disabled by an operator', disabled_at = updated_at
WHERE NOT active;

-- Range checks with messages that name the fix, and the disabled bookkeeping: an active
-- endpoint has no reason; an inactive one always has one (an operator's, unless the writer
-- gave another).
CREATE FUNCTION hookrelay.validate_endpoint_protection() RETURNS trigger
LANGUAGE plpgsql AS $$
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

-- Named to sort after endpoints_validate, so the basic checks (name, url, secret) come first.
CREATE TRIGGER endpoints_validate_protection
    BEFORE INSERT OR UPDATE ON hookrelay.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_protection();

-- Enabling an endpoint gives it a fresh start: its failure streak counts from zero again, so
-- an endpoint disabled for failing is not disabled again at once by the same old streak.
CREATE FUNCTION hookrelay.endpoint_reenabled() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hookrelay.endpoint_state
    SET consecutive_failures = 0, failing_since = NULL
    WHERE endpoint_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_reenabled
    AFTER UPDATE OF active ON hookrelay.endpoints
    FOR EACH ROW WHEN (NEW.active AND NOT OLD.active)
    EXECUTE FUNCTION hookrelay.endpoint_reenabled();

-- Leased deliveries: few (at most the workers' total concurrency), counted per endpoint by
-- every claim.
CREATE INDEX deliveries_leased ON hookrelay.deliveries (endpoint_id, locked_until)
    WHERE locked_until IS NOT NULL;

-- One row per endpoint that has been claimed for. Claims for an endpoint take turns on its
-- row (see admit), which is also its token bucket when it has a rate limit: `tokens` as of
-- `refilled_at`, refilled at rate_limit per second up to one second's worth. `waiting` is set
-- when a claim parked deliveries of the endpoint to wait for a slot or a token.
CREATE TABLE hookrelay.endpoint_throttle (
    endpoint_id bigint PRIMARY KEY REFERENCES hookrelay.endpoints (id) ON DELETE CASCADE,
    tokens      double precision NOT NULL DEFAULT 1,
    refilled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    waiting     boolean NOT NULL DEFAULT false
) WITH (fillfactor = 50);

-- Buckets that ran dry, and endpoints with deliveries waiting: the few rows claims and idle
-- workers look at.
CREATE INDEX endpoint_throttle_drained ON hookrelay.endpoint_throttle (endpoint_id)
    WHERE tokens < 1;
CREATE INDEX endpoint_throttle_waiting ON hookrelay.endpoint_throttle (endpoint_id)
    WHERE waiting;

-- Deliveries parked at 'infinity': those of paused endpoints, and those of active endpoints
-- waiting for a slot or a token (oldest first). Parked rows leave the due range, so a
-- saturated endpoint's backlog, however long, is never walked by the claims of others; the
-- index only changes when a delivery is parked or unparked.
CREATE INDEX deliveries_waiting ON hookrelay.deliveries (endpoint_id, id)
    WHERE state = 'pending' AND next_attempt_at = 'infinity';

-- Endpoints that cannot take another request right now, as of the calling statement's
-- snapshot: those with max_in_flight leases (ready_at NULL: when a request finishes) and those
-- out of tokens (ready_at: when the next token arrives). Idle workers use it to know when to
-- look again.
CREATE FUNCTION hookrelay.blocked_endpoints()
RETURNS TABLE (endpoint_id bigint, ready_at timestamptz)
LANGUAGE sql STABLE AS $$
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

-- How many deliveries a claim may lease for each endpoint: no more than its free slots
-- (max_in_flight minus its unexpired leases) and, with a rate limit, its whole tokens, which
-- are spent. `wanted` are deliveries the claim holds (new ones for a fan-out, due ones
-- otherwise). A due claim (`fan_out` false) may also take parked deliveries of an endpoint
-- flagged `waiting` with what is left (`from_waiting`), at most `waiting_limit` in all less
-- the due ones, shared evenly between endpoints. A fan-out leases nothing for an endpoint with
-- parked deliveries: new ones queue behind them. The caller parks what it may not lease; the
-- flag says there may be parked deliveries, and is cleared once a claim with room finds none.
--
-- Endpoints are taken in id order, each by locking its throttle row until the claim commits:
-- claims for one endpoint therefore take turns, and because each statement of a volatile
-- function sees everything committed before it ran, the counts include every earlier claim's
-- leases. That is what makes max_in_flight and rate_limit hold across worker processes.
CREATE FUNCTION hookrelay.admit(endpoint_ids bigint[], wanted integer[], waiting_limit integer,
                                fan_out boolean)
RETURNS TABLE (endpoint_id bigint, granted integer, from_waiting integer)
LANGUAGE plpgsql VOLATILE AS $$
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
        -- Room: free slots, and whole tokens.
        SELECT greatest(cap - count(*), 0) INTO room
        FROM hookrelay.deliveries d
        WHERE d.endpoint_id = ep_id AND d.locked_until > now();
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

-- Flags endpoints that have parked deliveries but no `waiting` flag (parked by a race between
-- a result and the endpoint being enabled), so claims find them. Run periodically.
CREATE FUNCTION hookrelay.flag_waiting_endpoints() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
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

-- A receiver answered `410 Gone`: disable its endpoints with the reason recorded and cancel
-- their pending deliveries (those in flight too: their results are still logged as attempts,
-- but no longer move the delivery). Returns how many deliveries were cancelled.
CREATE FUNCTION hookrelay.endpoint_gone(endpoint_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
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

-- Disables active endpoints whose every attempt has failed for `failing_for` with at least
-- `min_failures` failures in a row, recording why. Returns what it disabled.
CREATE FUNCTION hookrelay.disable_failing_endpoints(failing_for interval, min_failures integer)
RETURNS TABLE (name text, disabled_reason text)
LANGUAGE sql VOLATILE AS $$
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

-- The health view, with why an endpoint is disabled and how busy it is (columns added at the
-- end, so queries written against the old view keep working).
CREATE OR REPLACE VIEW hookrelay.endpoint_health AS
WITH pending AS (
    SELECT endpoint_id, count(*) AS n
    FROM hookrelay.deliveries WHERE state = 'pending' GROUP BY endpoint_id
), dead AS (
    SELECT endpoint_id, count(*) AS n
    FROM hookrelay.deliveries WHERE state = 'dead' GROUP BY endpoint_id
), hour AS (
    SELECT endpoint_id, sum(delivered) AS delivered, sum(failed) AS failed
    FROM hookrelay.endpoint_stats
    WHERE minute > now() - interval '1 hour'
    GROUP BY endpoint_id
), leased AS (
    SELECT endpoint_id, count(*) AS n
    FROM hookrelay.deliveries WHERE locked_until > now() GROUP BY endpoint_id
)
SELECT ep.id AS endpoint_id,
       ep.name,
       ep.active,
       ep.url,
       coalesce(pending.n, 0) AS pending,
       coalesce(dead.n, 0) AS dead,
       coalesce(hour.delivered, 0) AS delivered_last_hour,
       coalesce(hour.failed, 0) AS failed_last_hour,
       coalesce(st.consecutive_failures, 0) AS consecutive_failures,
       st.failing_since,
       st.last_success_at,
       st.last_failure_at,
       st.last_status,
       st.last_error,
       ep.disabled_reason,
       ep.disabled_at,
       coalesce(leased.n, 0) AS in_flight,
       ep.max_in_flight,
       ep.rate_limit
FROM hookrelay.endpoints ep
LEFT JOIN hookrelay.endpoint_state st ON st.endpoint_id = ep.id
LEFT JOIN pending ON pending.endpoint_id = ep.id
LEFT JOIN dead ON dead.endpoint_id = ep.id
LEFT JOIN hour ON hour.endpoint_id = ep.id
LEFT JOIN leased ON leased.endpoint_id = ep.id;

-- The backlog, with deliveries waiting for a slot or a token counted apart from those of
-- paused endpoints (both are parked at 'infinity'); the new column comes last.
CREATE OR REPLACE VIEW hookrelay.backlog AS
SELECT (SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL) AS events_to_fan_out,
       (SELECT now() - min(created_at) FROM hookrelay.events WHERE fanned_out_at IS NULL)
           AS oldest_event_age,
       count(*) FILTER (WHERE d.next_attempt_at <= now() AND d.locked_until IS NULL) AS due,
       count(*) FILTER (WHERE d.locked_until IS NOT NULL) AS in_flight,
       count(*) FILTER (WHERE d.next_attempt_at > now() AND d.locked_until IS NULL
                        AND d.next_attempt_at < 'infinity') AS retrying,
       count(*) FILTER (WHERE d.next_attempt_at = 'infinity' AND NOT ep.active) AS paused,
       now() - min(d.created_at) AS oldest_pending_age,
       count(*) FILTER (WHERE d.next_attempt_at = 'infinity' AND ep.active) AS waiting_for_slot
FROM hookrelay.deliveries d
JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
WHERE d.state = 'pending';
