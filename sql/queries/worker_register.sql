-- Register this worker, and forget workers whose heartbeat stopped long ago. Returns the
-- server's clock (see src/pipeline/worker/clock.rs).
-- $1 worker id, $2 host, $3 pid.
WITH gone AS (
    DELETE FROM hookrelay.workers WHERE heartbeat_at < now() - interval '10 minutes'
)
INSERT INTO hookrelay.workers (id, host, pid)
VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), waiting = false
RETURNING clock_timestamp()
