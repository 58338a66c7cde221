-- 0010: retention's cascades name the keys they remove.
--
-- The worker's statements run with generic plans, and a generic plan made while a table looked
-- small may hash the whole table on every call instead of looking rows up by key (measured:
-- every due claim read all 14,428 events, 33 ms, while producers wrote). The worker's queries
-- now name the keys each join needs (`= ANY (ARRAY(…))`); these are the cascades retention's
-- deletes run, in the worker's sessions too.

CREATE OR REPLACE FUNCTION hookrelay.forget_deliveries_of_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.deliveries d USING gone
    WHERE d.event_id = gone.id AND d.event_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION hookrelay.forget_attempts_of_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.attempts a USING gone
    WHERE a.delivery_id = gone.id AND a.delivery_id = ANY (ARRAY(SELECT g.id FROM gone g));
    RETURN NULL;
END
$$;
