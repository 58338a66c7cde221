-- $1 worker id.
DELETE FROM hookrelay.workers WHERE id = $1
