-- Retention: examine the next window of events after a cursor (ids are time-ordered) and
-- delete those whose every delivery is finished and that are older than the retention, with
-- their deliveries and attempts (by cascade). Events with a dead delivery are kept for the
-- longer dead retention; events with pending work are never removed.
--
-- Partitions (0030): whole days are retired by dropping their partitions
-- (hookrelay.retire_history_day); this sweep reads only the DEFAULT partition, which holds
-- the work kept past its day's drop and what was written while no day's partition existed.
-- Sweeping the daily partitions would DELETE most of each day's rows before its drop. (With a
-- retention shorter than a day, src/pipeline/sweep.rs runs this on `hookrelay.events` instead:
-- no day's drop comes soon enough for it.)
-- $1 cursor (examine ids after it), $2 window size, $3 retention in seconds,
-- $4 dead retention in seconds.
--
-- Plan stability: each large table is read in a scan of its own whose only index condition is
-- a list of keys (the window's ids), and joins happen between those small results. Joined
-- directly (a NOT EXISTS over deliveries, events joined with the doomed ids), a generic plan
-- made while the tables looked empty walked all of deliveries for every event of the window
-- (measured after an ANALYZE of empty tables, 45,000 deliveries: 5,000,000 rows filtered,
-- 14.9 s for one window of 1,000). The `plans` integration test checks this shape.
WITH window_ AS (
    SELECT e.id, e.created_at, e.fanned_out_at
    FROM hookrelay.events_default e
    WHERE e.id > $1
    ORDER BY e.id
    LIMIT $2
), kept AS MATERIALIZED (
    -- The window's deliveries that keep their event, read by the window's keys alone
    -- (materialized: inlined, it would be read again for every event of the window).
    SELECT d.event_id, bool_or(d.state = 'pending') AS pending
    FROM hookrelay.deliveries d
    WHERE d.event_id = ANY (ARRAY(SELECT w.id FROM window_ w))
      AND d.state IN ('pending', 'dead')
    GROUP BY d.event_id
), doomed AS (
    SELECT w.id
    FROM window_ w
    WHERE w.created_at < now() - $3::float8 * interval '1 second'
      AND w.fanned_out_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM kept k
          WHERE k.event_id = w.id
            AND (k.pending OR w.created_at >= now() - $4::float8 * interval '1 second'))
), locked AS (
    -- Skip anything another transaction holds; the next sweep gets it.
    SELECT e.id FROM hookrelay.events e
    WHERE e.id = ANY (ARRAY(SELECT k.id FROM doomed k))
    FOR UPDATE OF e SKIP LOCKED
), deleted AS (
    DELETE FROM hookrelay.events e
    WHERE e.id = ANY (ARRAY(SELECT k.id FROM locked k))
    RETURNING e.id
)
SELECT (SELECT id FROM window_ ORDER BY id DESC LIMIT 1) AS last_examined,
       (SELECT count(*) FROM window_) AS examined,
       -- Once the window reaches events younger than the retention, the rest are younger too.
       coalesce((SELECT max(created_at) FROM window_)
                    >= now() - $3::float8 * interval '1 second', true) AS reached_recent,
       (SELECT count(*) FROM deleted) AS deleted
