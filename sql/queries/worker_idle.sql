-- Mark this worker idle (so inserts notify it; upserted in case its row was cleaned away while
-- it was busy) and report when the earliest pending delivery is due, in milliseconds from now
-- (NULL: nothing pending; negative: already due).
-- $1 worker id, $2 host, $3 pid.
WITH idle AS (
    INSERT INTO hookrelay.workers (id, host, pid, waiting)
    VALUES ($1, $2, $3, true)
    ON CONFLICT (id) DO UPDATE SET waiting = true, heartbeat_at = now()
)
SELECT (extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint AS due_in_ms
FROM hookrelay.deliveries
WHERE state = 'pending' AND next_attempt_at < 'infinity'
