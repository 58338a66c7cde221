-- 0009: storage settings for the tables every delivery writes.
--
-- Fanning out an event and recording a delivery's result update rows that live on recently
-- written pages. Neither update can be HOT (they change columns the partial indexes on pending
-- work look at), so each new row version goes wherever the free space map finds room; on full
-- pages that is a different old page for every row, read into the cache and dirtied one row at
-- a time (measured: 101 page reads for a fan-out claim of 100 events beside 5 million rows of
-- history, against 1 with room on the page). Leaving room on each page keeps the new version
-- next to the old one.
ALTER TABLE hookrelay.events SET (fillfactor = 85);
ALTER TABLE hookrelay.deliveries SET (fillfactor = 80);

-- Claimed events and finished deliveries leave dead index entries in the partial indexes the
-- claims walk; vacuum them after a small fraction of the table changed rather than the
-- default fifth.
ALTER TABLE hookrelay.events SET (autovacuum_vacuum_scale_factor = 0.02,
                                  autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE hookrelay.deliveries SET (autovacuum_vacuum_scale_factor = 0.02,
                                      autovacuum_vacuum_insert_scale_factor = 0.05);
