-- 0026: the console's search by event name, fast however rare the name. Without an index on
-- the name, a rare one (0.1% of 1 M deliveries) was found by walking deliveries newest first
-- and looking up each one's event until a page was full: 338 ms.
--
-- The index is partial, on events already fanned out: an app's INSERT into the outbox only
-- tests the predicate and writes no entry (the producer's cost stays what it was, see
-- DESIGN property 5). The entry is written by the worker's fan-out, which sets fanned_out_at
-- in the statement that creates the event's deliveries; that update already writes new
-- index entries (events_to_fan_out's predicate names fanned_out_at, so it is never HOT).
-- Every event that has a delivery is fanned out (claim_new, replay_events), so the search
-- finds them all. Names repeat: btree deduplication keeps the index small.
CREATE INDEX events_fanned_out_by_name ON hookrelay.events (event)
    WHERE fanned_out_at IS NOT NULL;
