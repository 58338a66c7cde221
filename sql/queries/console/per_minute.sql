-- Attempts per minute across every endpoint, delivered and failed, for the last $1 minutes
-- (the current one included), one row per minute even when nothing happened.
SELECT m.minute,
       coalesce(sum(s.delivered), 0)::bigint AS delivered,
       coalesce(sum(s.failed), 0)::bigint AS failed
FROM generate_series(date_trunc('minute', now()) - ($1::int - 1) * interval '1 minute',
                     date_trunc('minute', now()),
                     interval '1 minute') AS m(minute)
LEFT JOIN hookrelay.endpoint_stats s ON s.minute = m.minute
GROUP BY m.minute
ORDER BY m.minute
