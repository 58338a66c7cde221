-- Give back claims that were never sent (shutdown): the attempt is uncounted and the delivery
-- is due at once for any worker.
-- $1 delivery ids, $2 attempt numbers, $3 worker id.
UPDATE hookrelay.deliveries d
SET attempts = d.attempts - 1,
    next_attempt_at = CASE WHEN ep.active THEN now() ELSE 'infinity' END,
    locked_until = NULL,
    locked_by = NULL,
    updated_at = now()
FROM unnest($1::bigint[], $2::int[]) AS r(delivery_id, attempt), hookrelay.endpoints ep
WHERE d.id = r.delivery_id AND ep.id = d.endpoint_id AND d.attempts = r.attempt AND d.state = 'pending'
  AND d.locked_by = $3::text
  -- Named keys bound the scan whatever the plan (see claim_due.sql).
  AND d.id = ANY ($1::bigint[])
