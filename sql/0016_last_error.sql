-- 0016: when things happened, precisely enough to order them.
--
-- An event's time is the moment its row was written, not the start of the transaction that
-- wrote it. now() is the transaction's start: two updates of one row in one transaction got the
-- same time, and of two transactions updating one row, the one that started first (and waited
-- for the other's row lock) got the earlier time for the newer state. clock_timestamp() at the
-- insert follows the order in which the row's states were written, so the body's `timestamp`
-- (sent with microseconds) says which state is newer.
ALTER TABLE hookrelay.events ALTER COLUMN created_at SET DEFAULT clock_timestamp();

-- The health view with `last_error_at`, the time of `last_error` (the last failed attempt's
-- start), so that an error older than `last_success_at` reads as old rather than current.
-- Appended, so queries written against the old view keep working.
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
       ep.rate_limit,
       CASE WHEN st.last_error IS NOT NULL THEN st.last_failure_at END AS last_error_at
FROM hookrelay.endpoints ep
LEFT JOIN hookrelay.endpoint_state st ON st.endpoint_id = ep.id
LEFT JOIN pending ON pending.endpoint_id = ep.id
LEFT JOIN dead ON dead.endpoint_id = ep.id
LEFT JOIN hour ON hour.endpoint_id = ep.id
LEFT JOIN leased ON leased.endpoint_id = ep.id;
