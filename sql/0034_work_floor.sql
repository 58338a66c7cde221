-- 0034: the work floor (issue 15, item 5: a claim costs about the same with days of history as
-- without).
--
-- Pending deliveries and unfanned events are in the last few days' partitions (0030); history
-- fills every day. A claim has no partition key to prune by, so each of its reads of
-- `deliveries` set up and locked the scans of every day's partition, before finding nothing in
-- the old ones: with ten days of history the due claim took 1.7 times as long as without, and
-- the gap grows with the days kept. The worker now asks now and then for the work floor, the
-- lower bound of the oldest day that holds pending work, and passes it to the due claim, whose
-- reads repeat it as `event_id >= floor`: an external parameter, so the executor leaves the
-- days before it out before setting their scans up.
--
-- The floor is a lower bound when it is read. Work can appear below it later (a redelivery of
-- an old delivery, the deliveries of an event that committed just after midnight with the
-- day before's id): a busy worker reads the floor again every poll interval, and any worker
-- 100 ms after a pump that expected due work found none, or after a scan from the start took
-- events (see src/pipeline/worker/floor.rs); such work waits that long at most.

-- The lowest event id pending work can have: the lower bound of the oldest daily partition
-- with a pending delivery or an event not fanned out yet, or of today (UTC) when no earlier
-- day has any; lower still when the DEFAULT partitions hold such work (of any day: kept past
-- its day's drop, or written while no day's partition existed), the least of its ids. Each day
-- is probed oldest first, by the partial indexes of pending deliveries and unfanned events
-- alone, stopping at the first that has work: one probe per day kept before it. The DEFAULT
-- partitions' least ids are taken over the same indexes (the ids as text, which no index
-- orders, so no plan walks the id index in search of the first pending row): their cost is
-- the work they hold. SECURITY DEFINER: it reads the partitions by name, and roles are
-- granted the parents only; it returns one id.
CREATE FUNCTION hookrelay.work_floor() RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
    bound uuid := hookrelay.id_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
    day   text;
    lo    uuid;
    found boolean;
BEGIN
    bound := least(bound,
                   (SELECT min(d.event_id::text COLLATE "C")::uuid
                    FROM hookrelay.deliveries_default d WHERE d.state = 'pending'),
                   (SELECT min(e.id::text COLLATE "C")::uuid
                    FROM hookrelay.events_default e WHERE e.fanned_out_at IS NULL));
    FOR day, lo IN
        SELECT substr(c.relname, length('deliveries_') + 1), b[1]::uuid
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        'FROM \(''([0-9a-f-]+)''\)') b
        WHERE i.inhparent = 'hookrelay.deliveries'::regclass
        ORDER BY 2
    LOOP
        EXIT WHEN lo >= bound;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM hookrelay.%I WHERE state = ''pending'')
                            OR EXISTS (SELECT 1 FROM hookrelay.%I WHERE fanned_out_at IS NULL)',
                       'deliveries_' || day, 'events_' || day)
            INTO found;
        IF found THEN
            RETURN lo;
        END IF;
    END LOOP;
    RETURN bound;
END
$$;
