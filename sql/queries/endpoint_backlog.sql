-- Per-endpoint backlog for /metrics with --metrics-per-endpoint: each endpoint's pending
-- deliveries and the age of its oldest, in seconds (0 when none). Every endpoint has a row,
-- so a series drops to 0 instead of vanishing when its backlog drains.
SELECT ep.name, count(d.id) AS pending,
       coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest_age
FROM hookrelay.endpoints ep
LEFT JOIN hookrelay.deliveries d ON d.endpoint_id = ep.id AND d.state = 'pending'
GROUP BY ep.name
ORDER BY ep.name
