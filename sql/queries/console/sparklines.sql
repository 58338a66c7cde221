-- Each endpoint's attempts per minute over the last $1 minutes, by name (minutes without
-- attempts have no row; the console fills them in).
SELECT ep.name,
       (extract(epoch FROM date_trunc('minute', now()) - s.minute) / 60)::int AS minutes_ago,
       s.delivered::bigint,
       s.failed::bigint
FROM hookrelay.endpoint_stats s
JOIN hookrelay.endpoints ep ON ep.id = s.endpoint_id
WHERE s.minute > date_trunc('minute', now()) - $1::int * interval '1 minute'
