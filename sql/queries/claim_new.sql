-- Claim a batch of events that are not fanned out yet, create one delivery per matching
-- endpoint, and return those deliveries already leased to this worker so their first attempt
-- goes out without a second claim (as many as each endpoint may take; see hookrelay.admit).
-- One statement: an event is fanned out exactly once.
-- $1 events to claim, $2 lease in milliseconds, $3 worker id, $4 claim only events with a
-- greater id (the nil uuid: from the start), $5 and $6 endpoints and how many of this worker's
-- requests to each have ended, their results not yet written (they hold no slot; see admit),
-- $7 when the claim must start by on this server's clock, or take nothing (NULL: no limit): a
-- claim that reaches the server after its worker gave up on the connection would lease what no
-- request will be made for (see src/pipeline/worker/clock.rs).
WITH claimed AS (
    SELECT e.id
    FROM hookrelay.events e
    WHERE e.fanned_out_at IS NULL AND e.id > $4::uuid
    -- Oldest first, in an order only the index of events to fan out has (see 0012).
    ORDER BY e.id, e.created_at
    -- Nothing once the time to start by has passed ($7). As the limit, not a condition: a
    -- condition is copied onto each day's scan, and the executor then no longer leaves out
    -- the days before $4 (the `pruning` test).
    LIMIT CASE WHEN $7::timestamptz IS NULL OR statement_timestamp() < $7::timestamptz
               THEN $1::bigint ELSE 0 END
    FOR UPDATE SKIP LOCKED
), marked AS (
    -- By key: a join with `claimed` may be planned as a merge join over the whole primary key
    -- when the table's statistics are stale (measured: 5,065 rows walked to mark 64, 2 ms).
    -- The claim's lower bound again, which every claimed id meets: as a parameter it lets the
    -- executor leave out the days before it (partitions, 0030) before setting their scans up.
    UPDATE hookrelay.events e
    SET fanned_out_at = now()
    WHERE e.id = ANY (ARRAY(SELECT c.id FROM claimed c)) AND e.id > $4::uuid
    RETURNING e.id, e.event, e.model, e.object_id, e.object, e.changes, e.actor,
              e.account_id, e.created_at, e.traceparent, e.tracestate, e.ordering_key,
              -- What content filters test (0019): built once per event, and only while some
              -- active endpoint has a filter, so a setup without filters pays nothing.
              CASE WHEN (SELECT bool_or(f.filter IS NOT NULL) FROM hookrelay.endpoints f
                         WHERE f.active)
                   THEN hookrelay.envelope(e.id, e.event, e.created_at, e.account_id, e.model,
                                           e.object_id, e.object, e.changes, e.actor)
              END AS envelope
), matched AS (
    -- A delivery to an ordered endpoint with a key (0022) is created due but not leased: the
    -- due claim sends it when it is its key's turn. Only the others are ranked for a lease.
    SELECT m.id AS event_id, ep.id AS endpoint_id, k.key, m.created_at,
           row_number() OVER (PARTITION BY ep.id, k.key IS NOT NULL ORDER BY m.id) AS rank
    FROM marked m
    JOIN hookrelay.endpoints ep
      ON ep.active
     -- Operational events (0024) go only to endpoints that name them, never to the one
     -- they are about.
     AND ((cardinality(ep.events) = 0 AND left(m.event, 10) <> 'hookrelay.')
          OR m.event = ANY (ep.events))
     AND (left(m.event, 10) <> 'hookrelay.' OR m.object ->> 'endpoint' IS DISTINCT FROM ep.name)
     AND (cardinality(ep.models) = 0 OR m.model = ANY (ep.models))
     AND (ep.account_id IS NULL OR ep.account_id = m.account_id)
     -- Per-endpoint options (0019), each tested only for endpoints that set it.
     AND (ep.filter IS NULL OR jsonb_path_match(m.envelope, ep.filter, '{}', true))
     AND (NOT ep.skip_empty_changes
          OR NOT hookrelay.changes_left_empty(m.changes, m.model, ep.include_fields))
    CROSS JOIN LATERAL (
        SELECT CASE WHEN ep.ordered
                    THEN hookrelay.event_ordering_key(m.ordering_key, m.model, m.object_id)
               END AS key
    ) k
), wanted AS (
    SELECT x.endpoint_id, count(*)::integer AS n FROM matched x
    WHERE x.key IS NULL
    GROUP BY x.endpoint_id
), granted AS (
    -- Each endpoint gets no more leases than its free slots and rate-limit tokens allow; its
    -- other deliveries are created parked, waiting for a slot or a token (see claim_due).
    SELECT a.endpoint_id, a.granted
    FROM hookrelay.admit(ARRAY(SELECT w.endpoint_id FROM wanted w ORDER BY w.endpoint_id),
                         ARRAY(SELECT w.n FROM wanted w ORDER BY w.endpoint_id), 0, true,
                         $5::bigint[], $6::integer[]) a
), fanned AS (
    INSERT INTO hookrelay.deliveries
        (event_id, endpoint_id, attempts, next_attempt_at, locked_until, locked_by,
         ordering_key, ordering_at)
    SELECT x.event_id, x.endpoint_id, l.attempts, l.next_attempt_at, l.locked_until, l.locked_by,
           x.key, CASE WHEN x.key IS NOT NULL THEN x.created_at END
    FROM matched x
    LEFT JOIN granted g ON g.endpoint_id = x.endpoint_id AND x.key IS NULL
    CROSS JOIN LATERAL (
        SELECT CASE WHEN x.rank <= g.granted THEN 1 ELSE 0 END AS attempts,
               CASE WHEN x.key IS NOT NULL THEN now()
                    WHEN x.rank <= g.granted
                    THEN now() + $2::bigint * interval '1 millisecond' ELSE 'infinity' END
                   AS next_attempt_at,
               CASE WHEN x.rank <= g.granted
                    THEN now() + $2::bigint * interval '1 millisecond' END AS locked_until,
               CASE WHEN x.rank <= g.granted THEN $3::text END AS locked_by
    ) l
    -- Delivery ids follow the events' order, which is what operators expect to read.
    ORDER BY x.event_id, x.endpoint_id
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING id, event_id, endpoint_id, attempts, attempts_base, ordering_key
)
SELECT
-- @job_columns
       (SELECT count(*) FROM marked) AS events_claimed
-- Events that matched no endpoint still give a row (with a NULL delivery) so the worker can
-- tell a full batch from a drained queue.
FROM marked e
LEFT JOIN fanned d ON d.event_id = e.id AND d.attempts > 0
LEFT JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
