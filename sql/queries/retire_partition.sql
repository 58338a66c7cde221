-- Retention by partition (0030): retire the oldest day whose whole range is older than the
-- retention and that keeps few enough events, in one transaction of its own; see
-- hookrelay.retire_history_day. A row for that day and for each older day left whole: its
-- partitions (their suffix), the outcome (dropped, busy, too many kept), the events kept and
-- the events the day held (the planner's estimate). No row when no day is that old.
-- $1 retention in seconds, $2 dead retention in seconds, $3 most events a day may keep.
SELECT r.suffix, r.outcome, coalesce(r.kept, 0) AS kept, coalesce(r.rows_estimate, 0) AS rows
FROM hookrelay.retire_history_day($1::float8 * interval '1 second',
                                  $2::float8 * interval '1 second', $3::bigint) r
