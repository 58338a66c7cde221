-- Record a batch of finished attempts: one attempts row each, the delivery moved to its next
-- state, and each endpoint's health and per-minute figures updated. A result only moves its
-- delivery if the delivery is still on that attempt (a worker whose lease expired and was
-- re-claimed elsewhere must not overwrite the newer state).
-- $1 delivery ids, $2 attempt numbers, $3 outcomes (delivered|retry|dead), $4 HTTP statuses,
-- $5 error codes, $6 error messages, $7 response excerpts, $8 retry delays in ms,
-- $9 durations in ms, $10 start times, $11 worker id, $12 the deliveries' event ids, $13 and
-- $14 the least and greatest of them.
--
-- Partitions (0030): deliveries and attempts are partitioned by their event's id. Deliveries
-- are looked up within the range of the batch's event ids ($13 to $14), so the generic plan
-- prunes, as it starts, every day's partition but those of the batch (usually today's alone):
-- PostgreSQL prunes with a range of parameters, not with a list of them (`= ANY ($12)`). The
-- list is given too, so that whichever index a plan takes, its first column has the batch's
-- keys: measured with the `plans` test, plans made on empty tables read deliveries through
-- (event_id, endpoint_id) as often as through the primary key, and with the range alone they
-- read every delivery between the batch's first and last event. A join on event_id is left
-- out: it let such plans walk that index whole.
WITH r AS (
    SELECT r.*, 'pending'::text AS open_state
    FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[],
                $7::text[], $8::bigint[], $9::int[], $10::timestamptz[], $12::uuid[])
         AS r(delivery_id, attempt, outcome, status, error_code, error, excerpt,
              retry_in_ms, duration_ms, started_at, event_id)
), owner AS (
    -- Joining drops results whose delivery was removed (with its endpoint) meanwhile.
    SELECT r.*, d.endpoint_id,
           max(r.started_at) FILTER (WHERE r.outcome = 'delivered')
               OVER (PARTITION BY d.endpoint_id) AS batch_success_at
    FROM r
    JOIN hookrelay.deliveries d ON d.id = r.delivery_id
    -- Named keys bound the scan whatever the plan (see claim_due.sql).
    WHERE d.id = ANY ($1::bigint[]) AND d.event_id = ANY ($12::uuid[])
      AND d.event_id BETWEEN $13::uuid AND $14::uuid
), logged AS (
    INSERT INTO hookrelay.attempts
        (delivery_id, event_id, attempt, started_at, duration_ms, status, error_code, error,
         response_excerpt, worker)
    SELECT o.delivery_id, o.event_id, o.attempt, o.started_at, o.duration_ms, o.status,
           o.error_code, o.error, o.excerpt, $11::text
    FROM owner o
), tally AS (
    SELECT o.endpoint_id,
           count(*) FILTER (WHERE o.outcome = 'delivered') AS delivered,
           count(*) FILTER (WHERE o.outcome <> 'delivered') AS failed,
           max(o.batch_success_at) AS last_success_at,
           max(o.started_at) FILTER (WHERE o.outcome <> 'delivered') AS last_failure_at,
           -- Failures after the batch's last success continue (or start) a streak.
           count(*) FILTER (WHERE o.outcome <> 'delivered'
                            AND o.started_at > coalesce(o.batch_success_at, '-infinity'))
               AS streak,
           min(o.started_at) FILTER (WHERE o.outcome <> 'delivered'
                                     AND o.started_at > coalesce(o.batch_success_at, '-infinity'))
               AS streak_since,
           (array_agg(o.status ORDER BY o.started_at DESC))[1] AS last_status,
           (array_agg(o.error ORDER BY o.started_at DESC)
               FILTER (WHERE o.outcome <> 'delivered'))[1] AS last_error
    FROM owner o
    GROUP BY o.endpoint_id
), health AS (
    -- Rows are locked in endpoint order, so concurrent batches cannot deadlock.
    INSERT INTO hookrelay.endpoint_state AS s
        (endpoint_id, consecutive_failures, failing_since, last_success_at, last_failure_at,
         last_status, last_error)
    SELECT t.endpoint_id, t.streak, t.streak_since, t.last_success_at, t.last_failure_at,
           t.last_status, t.last_error
    FROM tally t
    ORDER BY t.endpoint_id
    ON CONFLICT (endpoint_id) DO UPDATE SET
        consecutive_failures = CASE WHEN excluded.last_success_at IS NOT NULL
                                    THEN excluded.consecutive_failures
                                    ELSE s.consecutive_failures + excluded.consecutive_failures END,
        failing_since = CASE WHEN excluded.last_success_at IS NOT NULL THEN excluded.failing_since
                             ELSE coalesce(s.failing_since, excluded.failing_since) END,
        last_success_at = greatest(s.last_success_at, excluded.last_success_at),
        last_failure_at = greatest(s.last_failure_at, excluded.last_failure_at),
        last_status = coalesce(excluded.last_status, s.last_status),
        -- last_error goes with last_failure_at: a batch recorded late (its failures older
        -- than those already recorded) does not replace the newer error.
        last_error = CASE WHEN excluded.last_failure_at >= s.last_failure_at
                               OR s.last_failure_at IS NULL
                          THEN coalesce(excluded.last_error, s.last_error)
                          ELSE s.last_error END
), figures AS (
    INSERT INTO hookrelay.endpoint_stats AS s (endpoint_id, minute, delivered, failed)
    SELECT t.endpoint_id, date_trunc('minute', now()), t.delivered, t.failed
    FROM tally t
    ORDER BY t.endpoint_id
    ON CONFLICT (endpoint_id, minute) DO UPDATE SET
        delivered = s.delivered + excluded.delivered,
        failed = s.failed + excluded.failed
)
UPDATE hookrelay.deliveries d
SET state = CASE r.outcome WHEN 'retry' THEN 'pending' ELSE r.outcome END,
    -- A retry for an endpoint paused meanwhile is parked until the endpoint is resumed.
    next_attempt_at = CASE WHEN r.outcome <> 'retry' THEN NULL
                           WHEN NOT (SELECT ep.active FROM hookrelay.endpoints ep
                                     WHERE ep.id = d.endpoint_id) THEN 'infinity'
                           ELSE now() + r.retry_in_ms * interval '1 millisecond' END,
    locked_until = NULL,
    locked_by = NULL,
    last_status = r.status,
    last_error_code = r.error_code,
    last_error = r.error,
    delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() END,
    updated_at = now()
FROM r
-- Plan stability: `deliveries` is joined with nothing but the batch, so its only index
-- conditions are on `id`, and every plan reads it through its primary key. A join with
-- `endpoints` here (for `active`, now a subquery per updated row) let a generic plan made
-- while `deliveries` looked empty (ANALYZE with the backlog written and no delivery yet) loop
-- over the endpoint and walk deliveries_event_id_endpoint_id_key by its second column
-- (measured: 44,872 rows filtered to update 128, 65 ms a batch; now 128 rows by key). The
-- `plans` integration test checks this shape after an ANALYZE of empty tables.
WHERE d.id = r.delivery_id AND d.attempts = r.attempt
  -- Compared with a column of r, not a literal: a literal lets the planner reach the rows
  -- through the pending-work index (deliveries_due), whose dead entries its estimates cannot
  -- see (measured in a burn-down: 61,412 entries walked to update 128 rows, 4.8 ms); this way
  -- each delivery is looked up by its key.
  AND d.state = r.open_state
  AND d.id = ANY ($1::bigint[]) AND d.event_id = ANY ($12::uuid[])
  AND d.event_id BETWEEN $13::uuid AND $14::uuid
