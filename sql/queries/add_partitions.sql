-- Partition maintenance (0030): keep a partition of the history tables for today and each of
-- the next $1 days. One row per day that had none: the day and what became of it (attached,
-- rows in default, overlap, busy); see hookrelay.add_history_partitions.
SELECT a.day::text, a.outcome FROM hookrelay.add_history_partitions($1::integer) a
