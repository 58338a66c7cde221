-- Give back leases this worker holds but no longer knows of: a claim whose answer was lost with
-- its connection (a partition, a silent proxy) may still have run and leased deliveries that no
-- request will ever be made for. Without this they would wait for their lease to expire, and
-- count against their endpoint's max_in_flight meanwhile. The attempt is uncounted and the
-- delivery is due at once for any worker.
-- $1 worker id, $2 ids of the deliveries this worker holds (in flight or not yet recorded).
UPDATE hookrelay.deliveries d
SET attempts = d.attempts - 1,
    next_attempt_at = CASE WHEN ep.active THEN now() ELSE 'infinity' END,
    locked_until = NULL,
    locked_by = NULL,
    updated_at = now()
FROM hookrelay.endpoints ep
WHERE ep.id = d.endpoint_id
  AND d.state = 'pending'
  AND d.locked_until > now()
  AND d.locked_by = $1::text
  AND d.id <> ALL ($2::bigint[])
