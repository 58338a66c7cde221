-- 0002: what operators need: endpoint health counters, per-minute delivery figures, views,
-- and redelivery.

-- Redelivery gives a delivery a fresh attempt budget while attempt numbers keep counting up in
-- the history: the retry schedule and max_attempts look at attempts - attempts_base.
ALTER TABLE hookrelay.deliveries ADD COLUMN attempts_base integer NOT NULL DEFAULT 0;

-- Dead deliveries are few and looked up by endpoint (health, redeliver_dead); pending ones by
-- endpoint come from the existing partial index on pending work.
CREATE INDEX deliveries_dead ON hookrelay.deliveries (endpoint_id, created_at) WHERE state = 'dead';

-- Live health of each endpoint, kept up to date as results are recorded (reading it never
-- scans history). Separate from hookrelay.endpoints so that configuration rows are not
-- rewritten on every delivery.
CREATE TABLE hookrelay.endpoint_state (
    endpoint_id          bigint PRIMARY KEY REFERENCES hookrelay.endpoints (id) ON DELETE CASCADE,
    consecutive_failures integer NOT NULL DEFAULT 0,
    -- The first failure since the last success; NULL while the endpoint is succeeding.
    failing_since        timestamptz,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    last_status          integer,
    last_error           text
) WITH (fillfactor = 50);

-- Attempts per endpoint and minute, for "delivered and failed in the last hour" and rates.
CREATE TABLE hookrelay.endpoint_stats (
    endpoint_id bigint NOT NULL REFERENCES hookrelay.endpoints (id) ON DELETE CASCADE,
    minute      timestamptz NOT NULL,
    delivered   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint_id, minute)
) WITH (fillfactor = 70);

CREATE VIEW hookrelay.endpoint_health AS
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
       st.last_error
FROM hookrelay.endpoints ep
LEFT JOIN hookrelay.endpoint_state st ON st.endpoint_id = ep.id
LEFT JOIN pending ON pending.endpoint_id = ep.id
LEFT JOIN dead ON dead.endpoint_id = ep.id
LEFT JOIN hour ON hour.endpoint_id = ep.id;

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
       'evt_' || d.event_id::text AS webhook_id,
       e.event,
       e.model,
       e.object_id,
       e.account_id,
       ep.name AS endpoint,
       ep.url
FROM hookrelay.attempts a
JOIN hookrelay.deliveries d ON d.id = a.delivery_id
JOIN hookrelay.events e ON e.id = d.event_id
JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id;

-- One row: how much work is waiting and how old the oldest is.
CREATE VIEW hookrelay.backlog AS
SELECT (SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL) AS events_to_fan_out,
       (SELECT now() - min(created_at) FROM hookrelay.events WHERE fanned_out_at IS NULL)
           AS oldest_event_age,
       count(*) FILTER (WHERE next_attempt_at <= now() AND locked_until IS NULL) AS due,
       count(*) FILTER (WHERE locked_until IS NOT NULL) AS in_flight,
       count(*) FILTER (WHERE next_attempt_at > now() AND locked_until IS NULL
                        AND next_attempt_at < 'infinity') AS retrying,
       count(*) FILTER (WHERE next_attempt_at = 'infinity') AS paused,
       now() - min(created_at) AS oldest_pending_age
FROM hookrelay.deliveries
WHERE state = 'pending';

-- Sends a delivery again, with a fresh attempt budget. Works for any state; a delivery that
-- is being attempted right now is left alone. Returns whether it was scheduled.
CREATE FUNCTION hookrelay.redeliver(delivery_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
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

-- Sends again every dead delivery of an endpoint (NULL: of every endpoint) created within
-- `since`. Returns how many were scheduled.
CREATE FUNCTION hookrelay.redeliver_dead(endpoint_name text, since interval DEFAULT '24 hours')
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
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
