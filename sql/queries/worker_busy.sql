-- Mark this worker busy: while it drains a backlog, inserts need not notify it.
-- $1 worker id.
UPDATE hookrelay.workers SET waiting = false, heartbeat_at = now() WHERE id = $1 AND waiting
