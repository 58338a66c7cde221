-- Mark this worker idle (so inserts notify it; upserted in case its row was cleaned away while
-- it was busy) and report when there is next something to claim, in milliseconds from now
-- (NULL: nothing pending; negative: already due): the earliest pending delivery of an endpoint
-- that can take it, or the next rate-limit token of an endpoint that ran out. `capped` says
-- some endpoint is at max_in_flight: it can take more as soon as a result is recorded.
-- $1 worker id, $2 host, $3 pid.
WITH idle AS (
    INSERT INTO hookrelay.workers (id, host, pid, waiting)
    VALUES ($1, $2, $3, true)
    ON CONFLICT (id) DO UPDATE SET waiting = true, heartbeat_at = now()
), blocked AS MATERIALIZED (
    SELECT endpoint_id, ready_at FROM hookrelay.blocked_endpoints()
), due AS (
    SELECT min(next_attempt_at) AS at
    FROM hookrelay.deliveries
    WHERE state = 'pending' AND next_attempt_at < 'infinity'
      AND endpoint_id NOT IN (SELECT endpoint_id FROM blocked)
)
SELECT (extract(epoch FROM least((SELECT at FROM due), (SELECT min(ready_at) FROM blocked))
                            - now()) * 1000)::bigint AS due_in_ms,
       (SELECT bool_or(ready_at IS NULL) FROM blocked) IS TRUE AS capped
