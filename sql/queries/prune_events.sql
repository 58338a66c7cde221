-- Retention: examine the next window of events after a cursor (ids are time-ordered) and
-- delete those whose every delivery is finished and that are older than the retention, with
-- their deliveries and attempts (by cascade). Events with a dead delivery are kept for the
-- longer dead retention; events with pending work are never removed.
-- $1 cursor (examine ids after it), $2 window size, $3 retention in seconds,
-- $4 dead retention in seconds.
WITH window_ AS (
    SELECT e.id, e.created_at, e.fanned_out_at
    FROM hookrelay.events e
    WHERE e.id > $1
    ORDER BY e.id
    LIMIT $2
), doomed AS (
    SELECT w.id
    FROM window_ w
    WHERE w.created_at < now() - $3::float8 * interval '1 second'
      AND w.fanned_out_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM hookrelay.deliveries d
          WHERE d.event_id = w.id
            AND (d.state = 'pending'
                 OR (d.state = 'dead' AND w.created_at >= now() - $4::float8 * interval '1 second')))
), locked AS (
    -- Skip anything another transaction holds; the next sweep gets it.
    SELECT e.id FROM hookrelay.events e JOIN doomed USING (id)
    WHERE e.id = ANY (ARRAY(SELECT k.id FROM doomed k))
    FOR UPDATE OF e SKIP LOCKED
), deleted AS (
    DELETE FROM hookrelay.events e USING locked
    WHERE e.id = locked.id AND e.id = ANY (ARRAY(SELECT k.id FROM locked k))
    RETURNING e.id
)
SELECT (SELECT id FROM window_ ORDER BY id DESC LIMIT 1) AS last_examined,
       (SELECT count(*) FROM window_) AS examined,
       -- Once the window reaches events younger than the retention, the rest are younger too.
       coalesce((SELECT max(created_at) FROM window_)
                    >= now() - $3::float8 * interval '1 second', true) AS reached_recent,
       (SELECT count(*) FROM deleted) AS deleted
