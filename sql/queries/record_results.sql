-- Record a batch of finished attempts: one attempts row each, and the delivery moved to its
-- next state. A result only moves its delivery if the delivery is still on that attempt (a
-- worker whose lease expired and was re-claimed elsewhere must not overwrite the newer state).
-- $1 delivery ids, $2 attempt numbers, $3 outcomes (delivered|retry|dead), $4 HTTP statuses,
-- $5 error codes, $6 error messages, $7 response excerpts, $8 retry delays in ms,
-- $9 durations in ms, $10 start times, $11 worker id.
WITH r AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[],
                $7::text[], $8::bigint[], $9::int[], $10::timestamptz[])
         AS r(delivery_id, attempt, outcome, status, error_code, error, excerpt,
              retry_in_ms, duration_ms, started_at)
), logged AS (
    INSERT INTO hookrelay.attempts
        (delivery_id, attempt, started_at, duration_ms, status, error_code, error,
         response_excerpt, worker)
    SELECT r.delivery_id, r.attempt, r.started_at, r.duration_ms, r.status, r.error_code,
           r.error, r.excerpt, $11::text
    FROM r
    -- The endpoint (and with it the delivery) may have been removed while the request ran.
    WHERE EXISTS (SELECT 1 FROM hookrelay.deliveries d WHERE d.id = r.delivery_id)
)
UPDATE hookrelay.deliveries d
SET state = CASE r.outcome WHEN 'retry' THEN 'pending' ELSE r.outcome END,
    -- A retry for an endpoint paused meanwhile is parked until the endpoint is resumed.
    next_attempt_at = CASE WHEN r.outcome <> 'retry' THEN NULL
                           WHEN NOT ep.active THEN 'infinity'
                           ELSE now() + r.retry_in_ms * interval '1 millisecond' END,
    locked_until = NULL,
    locked_by = NULL,
    last_status = r.status,
    last_error_code = r.error_code,
    last_error = r.error,
    delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() END,
    updated_at = now()
FROM r, hookrelay.endpoints ep
WHERE d.id = r.delivery_id AND ep.id = d.endpoint_id AND d.attempts = r.attempt AND d.state = 'pending'
