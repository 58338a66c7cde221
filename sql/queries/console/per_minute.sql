-- Attempts per minute across every endpoint, delivered and failed, for the last $1 minutes
-- (the current one included), one row per minute even when nothing happened. The figures are
-- summed first (endpoint_stats_by_minute finds the window), then laid on the minutes.
WITH figures AS (
    SELECT minute, sum(delivered)::bigint AS delivered, sum(failed)::bigint AS failed
    FROM hookrelay.endpoint_stats
    WHERE minute > date_trunc('minute', now()) - $1::int * interval '1 minute'
    GROUP BY minute
)
SELECT m.minute,
       coalesce(f.delivered, 0) AS delivered,
       coalesce(f.failed, 0) AS failed
FROM generate_series(date_trunc('minute', now()) - ($1::int - 1) * interval '1 minute',
                     date_trunc('minute', now()),
                     interval '1 minute') AS m(minute)
LEFT JOIN figures f ON f.minute = m.minute
ORDER BY m.minute
