-- The console's delivery search: newest first, one page at a time by key. Every filter is
-- optional (NULL: any). $7/$8 are the (created_at, id) of the last row of the previous page.
SELECT d.id, ep.name AS endpoint, e.event, d.event_id, d.state, d.attempts, d.last_status,
       d.last_error_code, d.last_error, d.created_at
FROM hookrelay.deliveries d
JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
JOIN hookrelay.events e ON e.id = d.event_id
WHERE ($1::text IS NULL OR d.endpoint_id = (SELECT id FROM hookrelay.endpoints WHERE name = $1))
  AND ($2::text IS NULL OR d.state = $2)
  -- Fanned out: every event with a delivery is, and it lets the search use the index of
  -- names (events_fanned_out_by_name, 0026) instead of walking deliveries for a rare one.
  AND ($3::text IS NULL OR (e.event = $3 AND e.fanned_out_at IS NOT NULL))
  AND ($4::uuid IS NULL OR d.event_id = $4)
  AND ($5::timestamptz IS NULL OR d.created_at >= $5)
  AND ($6::timestamptz IS NULL OR d.created_at < $6)
  AND ($7::timestamptz IS NULL OR (d.created_at, d.id) < ($7, $8::bigint))
ORDER BY d.created_at DESC, d.id DESC
LIMIT $9
