-- 0006: cheaper claims and results.
--
-- Foreign keys on the hot tables cost a trigger call per row: a third of a fan-out claim
-- (measured with EXPLAIN ANALYZE: 1.2 ms of 3.7 ms for 100 events). hookrelay itself only
-- writes deliveries for events it has just locked and attempts for deliveries it has just
-- joined, so the checks never fire; what the foreign keys still did — removing deliveries and
-- attempts with their event or endpoint — is done here by statement-level triggers, once per
-- statement and set-based, which is also cheaper for retention's batch deletes.

ALTER TABLE hookrelay.deliveries DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE hookrelay.deliveries DROP CONSTRAINT deliveries_endpoint_id_fkey;
ALTER TABLE hookrelay.attempts DROP CONSTRAINT attempts_delivery_id_fkey;

CREATE FUNCTION hookrelay.forget_deliveries_of_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.deliveries d USING gone WHERE d.event_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_forget_deliveries
    AFTER DELETE ON hookrelay.events
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.forget_deliveries_of_events();

CREATE FUNCTION hookrelay.forget_deliveries_of_endpoints() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.deliveries d USING gone WHERE d.endpoint_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_forget_deliveries
    AFTER DELETE ON hookrelay.endpoints
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.forget_deliveries_of_endpoints();

CREATE FUNCTION hookrelay.forget_attempts_of_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.attempts a USING gone WHERE a.delivery_id = gone.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_forget_attempts
    AFTER DELETE ON hookrelay.deliveries
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.forget_attempts_of_deliveries();

-- Every delivery write (its insert and each non-HOT update) pays for every index on the table.
-- Listing by endpoint goes newest-first through the primary key, health counts through the
-- partial indexes on pending and dead work; removing an endpoint, rare, may scan.
DROP INDEX hookrelay.deliveries_by_endpoint;
