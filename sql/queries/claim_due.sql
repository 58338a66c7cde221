-- Claim deliveries that are due: retries whose time has come and claims whose lease expired
-- (their worker died before recording a result), then deliveries parked to wait for a slot or
-- a token (oldest first). Each claim counts its attempt and sets a lease; an expired lease is
-- logged as an attempt of its own so operators can see it. hookrelay.admit() grants each
-- endpoint no more than its max_in_flight and rate_limit allow, across all workers; due
-- deliveries it cannot take are parked, out of the due range, so a saturated endpoint's
-- backlog never fills the batches of others.
-- A delivery of an ordered endpoint goes only when it is its key's turn (hookrelay.key_turn,
-- 0022); the others are parked until the delivery they wait for settles.
-- $1 deliveries to claim, $2 lease in milliseconds, $3 worker id, $4 and $5 endpoints and how
-- many of this worker's requests to each have ended, their results not yet written (see admit),
-- $6 the work floor: no pending delivery belongs to an event with a lower id (the nil uuid: no
-- bound; see hookrelay.work_floor, 0034), $7 when the claim must start by on this server's
-- clock, or take nothing (NULL: no limit; see claim_new.sql).
-- Partitions (0030): deliveries are partitioned by their event's id, and their primary key is
-- (id, event_id). The updates here find their deliveries by a list of ids and join nothing:
-- joined with the batch on id (as before 0030), plans made on empty tables read each delivery
-- through deliveries_newest (created_at, id) by its second column, a walk of the whole index per
-- row once the table has grown; joined on event_id too, they walked (event_id, endpoint_id)
-- whole (both measured with the `plans` test). A list of ids leaves the primary key the only
-- index whose first column it bounds (and 0030 makes the primary key last, which the planner
-- prefers when empty statistics make the costs equal). The attempts written here carry the
-- event id (their partition key).
-- History (0034): pending work is in the last few days, history in every day, and a generic
-- plan sets up (and locks) every day's scans of each reference to a partitioned table. With
-- ten days more than a fresh install, an empty claim took 0.55 ms against 0.31 (pgbench, worker
-- session settings). Two things bring it to 0.33-0.36 against 0.29: the reads of deliveries
-- and events repeat `event_id >= $6`, the work floor, an external parameter, so the executor
-- leaves out the days before it before setting their scans up; and deliveries are updated
-- once, not three times. That one update finds its rows by id and is not bounded: given the
-- bound, plans made on empty tables read them by (event_id, endpoint_id), every delivery of
-- the days kept, instead of by primary key.
WITH due AS (
    SELECT d.id, d.endpoint_id, d.attempts, d.locked_until, d.locked_by, d.next_attempt_at,
           d.ordering_key, d.ordering_at, d.event_id
    FROM hookrelay.deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND d.event_id >= $6::uuid
      AND EXISTS (SELECT 1 FROM hookrelay.endpoints ep WHERE ep.id = d.endpoint_id AND ep.active)
    ORDER BY d.next_attempt_at
    -- Nothing once the time to start by has passed ($7); as the limit, see claim_new.sql.
    LIMIT CASE WHEN $7::timestamptz IS NULL OR statement_timestamp() < $7::timestamptz
               THEN $1::bigint ELSE 0 END
    -- NO KEY: key_turn's share locks on the deliveries a key waits for must not wait for claims.
    FOR NO KEY UPDATE OF d SKIP LOCKED
), turn AS (
    -- Only deliveries with a key to an endpoint still ordered; the first unfanned event is
    -- looked up once, and only if one of them is there.
    SELECT due.id,
           hookrelay.key_turn(due.id, due.endpoint_id, due.ordering_key, due.ordering_at,
                              due.event_id, ep.on_dead = 'block',
                              (SELECT e.id FROM hookrelay.events e WHERE e.fanned_out_at IS NULL
                               ORDER BY e.id, e.created_at LIMIT 1)) AS verdict
    FROM due
    JOIN hookrelay.endpoints ep ON ep.id = due.endpoint_id AND ep.ordered
    WHERE due.ordering_key IS NOT NULL
), ready AS (
    -- The due deliveries without a key, or whose key's turn it is; the others are parked or
    -- looked at again shortly (see `changes`).
    SELECT due.* FROM due
    WHERE NOT EXISTS (SELECT 1 FROM turn k WHERE k.id = due.id AND k.verdict <> 'send')
), wanted AS (
    SELECT w.endpoint_id, sum(w.n)::integer AS n
    FROM (SELECT ready.endpoint_id, count(*) AS n FROM ready GROUP BY ready.endpoint_id
          UNION ALL
          SELECT t.endpoint_id, 0
          FROM hookrelay.endpoint_throttle t
          JOIN hookrelay.endpoints ep ON ep.id = t.endpoint_id AND ep.active
          WHERE t.waiting) w
    GROUP BY w.endpoint_id
), granted AS (
    SELECT a.endpoint_id, a.granted, a.from_waiting
    FROM hookrelay.admit(ARRAY(SELECT w.endpoint_id FROM wanted w ORDER BY w.endpoint_id),
                         ARRAY(SELECT w.n FROM wanted w ORDER BY w.endpoint_id),
                         -- No budget for parked deliveries once the time has passed.
                         CASE WHEN $7::timestamptz IS NULL OR statement_timestamp() < $7::timestamptz
                              THEN $1::integer ELSE 0 END,
                         false, $4::bigint[], $5::integer[]) a
), ranked AS (
    SELECT ready.*, row_number() OVER (PARTITION BY ready.endpoint_id
                                       ORDER BY ready.next_attempt_at, ready.id) AS rank
    FROM ready
), admitted AS (
    SELECT r.id, r.event_id, r.attempts, r.locked_until, r.locked_by
    FROM ranked r
    JOIN granted g ON g.endpoint_id = r.endpoint_id AND r.rank <= g.granted
    UNION ALL
    SELECT w.id, w.event_id, w.attempts, w.locked_until, w.locked_by
    FROM granted g
    CROSS JOIN LATERAL (
        SELECT d.id, d.event_id, d.attempts, d.locked_until, d.locked_by
        FROM hookrelay.deliveries d
        -- The endpoint's rows, written as a range on deliveries_waiting's leading columns
        -- rather than `d.endpoint_id = g.endpoint_id`: an equality makes the endpoint a
        -- constant of the order below, which deliveries_newest (created_at, id) then provides
        -- too, and a generic plan made while `deliveries` looked empty walked that whole index
        -- (measured: 43,000 rows filtered to take 64 parked deliveries, on every claim, growing
        -- with history). As a range, only deliveries_waiting has the order, so every plan
        -- reads just the endpoint's parked deliveries. The `plans` integration test checks it.
        WHERE (d.endpoint_id, d.created_at) > (g.endpoint_id, '-infinity'::timestamptz)
          AND d.endpoint_id <= g.endpoint_id
          AND d.state = 'pending'
          AND d.next_attempt_at = 'infinity'
          AND d.event_id >= $6::uuid
          AND (d.locked_until IS NULL OR d.locked_until <= now())
          -- An ordered delivery waited here after its turn came; it goes if still its turn.
          AND (d.ordering_key IS NULL
               OR hookrelay.key_turn(d.id, d.endpoint_id, d.ordering_key, d.ordering_at,
                                     d.event_id,
                                     (SELECT ep.on_dead = 'block' FROM hookrelay.endpoints ep
                                      WHERE ep.id = d.endpoint_id),
                                     NULL) = 'send')
        -- Oldest first, in an order only deliveries_waiting has (see 0012).
        ORDER BY d.endpoint_id, d.created_at, d.id
        LIMIT g.from_waiting
        FOR NO KEY UPDATE OF d SKIP LOCKED
    ) w
    WHERE g.from_waiting > 0
), expired AS (
    INSERT INTO hookrelay.attempts
        (delivery_id, event_id, attempt, started_at, error_code, error, worker)
    SELECT admitted.id, admitted.event_id, admitted.attempts, now(), 'lease_expired',
           'worker ' || coalesce(admitted.locked_by, '?')
               || ' stopped before recording a result; the request may or may not have been sent',
           admitted.locked_by
    FROM admitted
    WHERE admitted.locked_until IS NOT NULL
), changes AS (
    -- What becomes of each delivery this claim changes: sent now ('claim', or 'expired' when
    -- its lease ran out), parked until its key's turn ('key'), looked at again shortly
    -- ('later'), or parked for a slot or a token ('slot'). The sets do not meet: the due
    -- deliveries are split by turn and rank, and the ones taken from the waiting were not due.
    SELECT k.id, CASE k.verdict WHEN 'park' THEN 'key' ELSE 'later' END AS kind
    FROM turn k WHERE k.verdict <> 'send'
    UNION ALL
    SELECT r.id, 'slot' FROM ranked r
    JOIN granted g ON g.endpoint_id = r.endpoint_id
    WHERE r.rank > g.granted
    UNION ALL
    SELECT a.id, CASE WHEN a.locked_until IS NOT NULL THEN 'expired' ELSE 'claim' END
    FROM admitted a
), changed AS (
    -- One update for all of them, since each reference to `deliveries` sets up every day's
    -- scans (there were three: waits, parked and claimed). Parked for its key,
    -- a delivery is out of the due range until released (0022), and gives an expired lease
    -- up: the release looks for unleased deliveries, and a lease would count as one of the
    -- key in flight.
    UPDATE hookrelay.deliveries d
    SET attempts = CASE WHEN c.kind IN ('claim', 'expired') THEN d.attempts + 1
                        ELSE d.attempts END,
        next_attempt_at = CASE c.kind
                              WHEN 'key' THEN NULL
                              WHEN 'later' THEN now() + interval '200 milliseconds'
                              WHEN 'slot' THEN 'infinity'
                              ELSE now() + $2::bigint * interval '1 millisecond' END,
        locked_until = CASE c.kind
                           WHEN 'key' THEN NULL
                           WHEN 'later' THEN d.locked_until
                           WHEN 'slot' THEN d.locked_until
                           ELSE now() + $2::bigint * interval '1 millisecond' END,
        locked_by = CASE c.kind
                        WHEN 'key' THEN NULL
                        WHEN 'later' THEN d.locked_by
                        WHEN 'slot' THEN d.locked_by
                        ELSE $3::text END,
        last_error_code = CASE WHEN c.kind = 'expired' THEN 'lease_expired'
                               ELSE d.last_error_code END,
        updated_at = now()
    FROM changes c
    WHERE d.id = ANY (ARRAY(SELECT k.id FROM changes k)) AND d.id = c.id
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.attempts_base, d.ordering_key,
              c.kind
), claimed AS (
    SELECT k.* FROM changed k WHERE k.kind IN ('claim', 'expired')
)
SELECT
-- @job_columns
       0::bigint AS events_claimed
FROM claimed d
JOIN hookrelay.events e ON e.id = d.event_id
JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
-- Every join with a large table also names the keys it needs (`= ANY (ARRAY(…))`): a
-- generic plan made while a table looked small may otherwise hash the whole table on each
-- call (measured: every due claim read all 14,428 events, 33 ms, while producers wrote).
WHERE e.id = ANY (ARRAY(SELECT k.event_id FROM claimed k)) AND e.id >= $6::uuid
