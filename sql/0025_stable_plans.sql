-- 0025: retention's cascades read the rows they remove by key alone.
--
-- Each cascade deletes by the list of removed keys (`= ANY (ARRAY(…))`) with no join: joined
-- with the transition table as well (0010), a generic plan made while the tables looked empty
-- (an ANALYZE before the first delivery) compared every deleted event with every removed
-- delivery (measured: 999,000 rows filtered, 439 ms to remove 1,000 events' deliveries; now
-- 1,000 rows by key). See sql/queries/prune_events.sql and the `plans` integration test.

CREATE OR REPLACE FUNCTION hookrelay.forget_deliveries_of_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.deliveries d WHERE d.event_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION hookrelay.forget_attempts_of_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.attempts a WHERE a.delivery_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END
$$;
