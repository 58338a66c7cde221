-- 0013: the wake-up check costs an insert almost nothing while no worker waits.
--
-- Every INSERT statement on events ran a PL/pgSQL trigger whose query looked for a waiting
-- worker: 6-8 % of each inserting backend's CPU (perf), and emit went 10.9-11.5k → 11.6k tx/s
-- with this change (pgbench, 16 clients, no worker). The answer now lives in one value, the time until which some worker waits (epoch
-- seconds; 0 when none), kept in a sequence because a builtin reads a sequence without a query.
-- The trigger's WHEN clause compares it with now(), so the function, which only notifies, runs
-- only while a worker waits. The workers table stays the record: a trigger on it recomputes the
-- value after every change, so whatever changes a worker's row (the worker, an operator, a
-- crashed worker's row going stale) keeps the two in step.
CREATE UNLOGGED SEQUENCE hookrelay.wake_until MINVALUE 0 START 0;

-- Reading it is harmless (when some worker's wait ends) and every inserting role needs to.
GRANT SELECT ON SEQUENCE hookrelay.wake_until TO PUBLIC;

-- As before, a waiting worker counts for two minutes after its last heartbeat, so a worker that
-- died while waiting stops being notified by itself.
CREATE FUNCTION hookrelay.track_waiting_workers() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Serialized, and read in a statement of its own after the lock: two workers changing their
    -- rows at once each see the other's committed row, so the last to finish cannot drop the
    -- other's wait.
    -- The key spells "hookwake" in ASCII (the migrations' lock spells "hookrela").
    PERFORM pg_advisory_xact_lock(7525356009714445157);
    PERFORM setval('hookrelay.wake_until',
                   coalesce((SELECT ceil(extract(epoch FROM max(w.heartbeat_at)
                                                  + interval '2 minutes'))::bigint
                             FROM hookrelay.workers w
                             WHERE w.waiting), 0));
    RETURN NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION hookrelay.track_waiting_workers() FROM PUBLIC;

CREATE TRIGGER workers_track_waiting
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hookrelay.workers
    FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.track_waiting_workers();

-- Rows written before this migration.
UPDATE hookrelay.workers SET waiting = waiting;

CREATE OR REPLACE FUNCTION hookrelay.wake_workers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookrelay_events', '');
    RETURN NULL;
END
$$;

DROP TRIGGER events_wake_workers ON hookrelay.events;
CREATE TRIGGER events_wake_workers
    AFTER INSERT ON hookrelay.events
    FOR EACH STATEMENT
    WHEN (pg_sequence_last_value('hookrelay.wake_until') > extract(epoch FROM now()))
    EXECUTE FUNCTION hookrelay.wake_workers();
