-- Mark this worker idle (so inserts notify it; upserted in case its row was cleaned away while
-- it was busy) and report when there is next something to claim, in milliseconds from now
-- (NULL: nothing pending; negative: already due): the earliest scheduled delivery, or, for an
-- endpoint with deliveries waiting for a slot or a token, now if it can take one, else when
-- its next token arrives. `capped` says such an endpoint is at max_in_flight: it can take more
-- once a result is recorded.
-- $1 worker id, $2 host, $3 pid.
WITH idle AS (
    INSERT INTO hookrelay.workers (id, host, pid, waiting)
    VALUES ($1, $2, $3, true)
    ON CONFLICT (id) DO UPDATE SET waiting = true, heartbeat_at = now()
), waiting AS MATERIALIZED (
    SELECT t.endpoint_id,
           bool_or(b.endpoint_id IS NOT NULL AND b.ready_at IS NULL) AS full,
           bool_and(b.endpoint_id IS NULL) AS free,
           max(b.ready_at) AS ready_at
    FROM hookrelay.endpoint_throttle t
    JOIN hookrelay.endpoints ep ON ep.id = t.endpoint_id AND ep.active
    LEFT JOIN hookrelay.blocked_endpoints() b ON b.endpoint_id = t.endpoint_id
    WHERE t.waiting
    GROUP BY t.endpoint_id
)
SELECT (extract(epoch FROM least(
            -- A paused endpoint's delivery is not due, whatever its time says (a result written
            -- as the endpoint was paused may keep its retry time): the due claim passes over it,
            -- so counting it here would make an idle worker look again every few milliseconds.
            (SELECT min(d.next_attempt_at) FROM hookrelay.deliveries d
             WHERE d.state = 'pending' AND d.next_attempt_at < 'infinity'
               AND EXISTS (SELECT 1 FROM hookrelay.endpoints ep
                           WHERE ep.id = d.endpoint_id AND ep.active)),
            (SELECT min(CASE WHEN w.free THEN now() WHEN NOT w.full THEN w.ready_at END)
             FROM waiting w))
        - now()) * 1000)::bigint AS due_in_ms,
       (SELECT bool_or(w.full) FROM waiting w) IS TRUE AS capped,
       -- The server's clock, for the time each claim must start by (src/pipeline/worker/clock.rs).
       clock_timestamp() AS server_now
