-- 0030: history partitioned by day (issue 15, item 5).
--
-- events, deliveries and attempts are range-partitioned by the time of their EVENT: events by
-- id (uuid v7, time-ordered), deliveries by event_id, attempts by a new event_id column. A day
-- is one partition of each table with the same bounds, from hookrelay.id_floor(day) to
-- id_floor(next day) (UTC), so retention detaches and drops a whole day of the three tables at
-- once instead of DELETEing its rows (see hookrelay.retire_history_day). A DEFAULT partition of
-- each table holds rows outside every daily range: work kept past its day's drop (pending, or
-- dead and younger than the dead retention) and anything written while no daily partition
-- existed yet (the worker, which creates them ahead, down for days), so an insert never fails.
--
-- PostgreSQL 15 allows no identity column on a partitioned table: ids come from sequence
-- defaults (granted to the worker). A unique constraint must include the partition key:
-- deliveries and attempts are keyed (id, event_id). Storage parameters are set on each
-- partition (a partitioned table refuses them); new partitions copy those of the DEFAULT one.
--
-- The existing rows are copied (tables created anew, rows inserted, old tables dropped), with
-- indexes built after the copy: on a large database this migration takes about as long as
-- writing the history once more (see README, "Retention").

-- Names each index of a partition after its parent's index and the partition's suffix
-- (events_pkey_p20260124, deliveries_due_default), so a plan or a lock names the index an
-- operator knows instead of one PostgreSQL made up from its columns.
CREATE FUNCTION hookrelay.name_partition_indexes(tbl regclass, suffix text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i record;
BEGIN
    FOR i IN SELECT c.relname AS name, p.relname AS parent
             FROM pg_index x
             JOIN pg_class c ON c.oid = x.indexrelid
             JOIN pg_inherits h ON h.inhrelid = x.indexrelid
             JOIN pg_class p ON p.oid = h.inhparent
             WHERE x.indrelid = tbl
    LOOP
        CONTINUE WHEN i.name = i.parent || '_' || suffix;
        EXECUTE format('ALTER INDEX hookrelay.%I RENAME TO %I', i.name, i.parent || '_' || suffix);
    END LOOP;
END
$$;

-- One range of all three tables: plain tables made like their parent, then attached (a lighter
-- lock than CREATE ... PARTITION OF: SHARE UPDATE EXCLUSIVE on the parent; the new table and
-- the DEFAULT partition, which ATTACH scans for rows of the range, are locked briefly). `lo`
-- NULL: from the start. Either the three are attached or none ('attached'); 'rows in default'
-- when a DEFAULT partition already holds rows of the range (they stay there and are swept the
-- old way), 'overlap' when some partition covers part of it, 'busy' when a lock was not granted
-- within lock_timeout (the caller tries again later).
CREATE FUNCTION hookrelay.attach_history_range(lo timestamptz, hi timestamptz, suffix text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '200ms'
AS $$
DECLARE
    tbl text;
    lower_bound text := CASE WHEN lo IS NULL THEN 'MINVALUE'
                             ELSE quote_literal(hookrelay.id_floor(lo)) END;
    options text[];
BEGIN
    FOREACH tbl IN ARRAY ARRAY['events', 'deliveries', 'attempts'] LOOP
        SELECT c.reloptions INTO options FROM pg_class c
        WHERE c.oid = to_regclass(format('hookrelay.%I', tbl || '_default'));
        EXECUTE format('CREATE TABLE hookrelay.%I (LIKE hookrelay.%I INCLUDING DEFAULTS '
                       'INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)%s',
                       tbl || '_' || suffix, tbl,
                       CASE WHEN options IS NOT NULL
                            THEN format(' WITH (%s)', array_to_string(options, ', ')) END);
        EXECUTE format('ALTER TABLE hookrelay.%I ATTACH PARTITION hookrelay.%I '
                       'FOR VALUES FROM (%s) TO (%L)',
                       tbl, tbl || '_' || suffix, lower_bound, hookrelay.id_floor(hi));
        PERFORM hookrelay.name_partition_indexes(format('hookrelay.%I', tbl || '_' || suffix),
                                                 suffix);
    END LOOP;
    RETURN 'attached';
EXCEPTION
    -- Each a rollback of the whole range (the block is a subtransaction).
    WHEN check_violation THEN RETURN 'rows in default';
    WHEN invalid_object_definition OR duplicate_table THEN RETURN 'overlap';
    WHEN lock_not_available THEN RETURN 'busy';
END
$$;

-- Keeps a partition for today and each of the next `days_ahead` days (UTC). Returns the days it
-- looked at without finding a partition, and what became of each.
CREATE FUNCTION hookrelay.add_history_partitions(days_ahead integer)
RETURNS TABLE (day date, outcome text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR day IN SELECT today + i FROM generate_series(0, greatest(days_ahead, 0)) i LOOP
        CONTINUE WHEN to_regclass(format('hookrelay.%I', 'events_p' || to_char(day, 'YYYYMMDD')))
                      IS NOT NULL;
        outcome := hookrelay.attach_history_range(day::timestamp AT TIME ZONE 'UTC',
                                                  (day + 1)::timestamp AT TIME ZONE 'UTC',
                                                  'p' || to_char(day, 'YYYYMMDD'));
        RETURN NEXT;
    END LOOP;
END
$$;

-- The attached range partitions of events, oldest first, with the time their range ends.
CREATE FUNCTION hookrelay.history_partitions()
RETURNS TABLE (suffix text, ends_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT substr(c.relname, length('events_') + 1),
           hookrelay.id_time(substring(pg_get_expr(c.relpartbound, c.oid)
                                       FROM 'TO \(''([0-9a-f-]+)''\)')::uuid)
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'hookrelay.events'::regclass
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    ORDER BY 2
$$;

-- The events of one day's partitions that retention keeps, as the DELETE-based sweep
-- (sql/queries/prune_events.sql) keeps them: not fanned out yet, with a pending delivery, or
-- with a dead one younger than `keep_dead`. Each part read through a partial index (events to
-- fan out, pending deliveries, dead deliveries), never the whole day. At most `most` + 1.
CREATE FUNCTION hookrelay.kept_events(suffix text, keep_dead interval, most bigint)
RETURNS uuid[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kept uuid[];
BEGIN
    EXECUTE format(
        'SELECT ARRAY(SELECT k.id FROM (
             SELECT e.id FROM hookrelay.%1$I e WHERE e.fanned_out_at IS NULL
             UNION
             SELECT d.event_id FROM hookrelay.%2$I d WHERE d.state = ''pending''
             UNION
             SELECT d.event_id FROM hookrelay.%2$I d JOIN hookrelay.%1$I e ON e.id = d.event_id
             WHERE d.state = ''dead'' AND e.created_at >= now() - $1) k LIMIT $2 + 1)',
        'events_' || suffix, 'deliveries_' || suffix)
        INTO kept USING keep_dead, most;
    RETURN kept;
END
$$;

-- Copies rows of a detached table into its parent (they land in the DEFAULT partition, the
-- day's range being detached). `filter` is a condition on the detached table's rows, `t`.
CREATE FUNCTION hookrelay.move_to_parent(parent text, detached text, filter text, kept uuid[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    columns text := (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                     FROM pg_attribute a
                     WHERE a.attrelid = format('hookrelay.%I', parent)::regclass
                       AND a.attnum > 0 AND NOT a.attisdropped);
    moved bigint;
BEGIN
    EXECUTE format('INSERT INTO hookrelay.%1$I (%3$s) SELECT %3$s FROM hookrelay.%2$I t WHERE %4$s',
                   parent, detached, columns, filter)
        USING kept;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;

-- The part of hookrelay.retire_history_day that changes anything, for one day's partitions
-- (`suffix`) and the events kept (`ids`): detach, move the kept rows, drop.
CREATE FUNCTION hookrelay.detach_and_keep(suffix text, ids uuid[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['events', 'deliveries', 'attempts'] LOOP
        EXECUTE format('ALTER TABLE hookrelay.%I DETACH PARTITION hookrelay.%I',
                       tbl, tbl || '_' || suffix);
    END LOOP;
    PERFORM hookrelay.move_to_parent('events', 'events_' || suffix, 't.id = ANY ($1)', ids);
    PERFORM hookrelay.move_to_parent('deliveries', 'deliveries_' || suffix,
                                     't.event_id = ANY ($1)', ids);
    -- By delivery (attempts_by_delivery), the deliveries read by their event.
    PERFORM hookrelay.move_to_parent(
        'attempts', 'attempts_' || suffix,
        format('t.delivery_id = ANY (ARRAY(SELECT d.id FROM hookrelay.%I d '
               'WHERE d.event_id = ANY ($1)))', 'deliveries_' || suffix),
        ids);
    EXECUTE format('DROP TABLE hookrelay.%I, hookrelay.%I, hookrelay.%I',
                   'events_' || suffix, 'deliveries_' || suffix, 'attempts_' || suffix);
END
$$;

-- Retention of one day whose whole range is older than `keep`, the oldest that can go: in one
-- transaction, the day's three partitions are detached, the rows retention keeps (see
-- hookrelay.kept_events: the event with ALL its deliveries and attempts) are inserted again
-- through the parents, landing in the DEFAULT partitions, and the detached tables are dropped.
-- Nothing is lost if it fails midway. Detaching locks the three parents ACCESS EXCLUSIVE until
-- commit, so the transaction waits at most lock_timeout for its locks ('busy': tried again on
-- the next pass, nothing changed), and a day keeping more than `max_kept` events is left whole
-- for a later pass ('too many kept', one row for each such day), so the locks are held only
-- while a few rows are copied. Re-inserting fires the parents' triggers: events_wake_workers
-- and deliveries_ordered_added at most wake an idle worker, which then finds the kept work as
-- it was; nothing an application sees. Returns no 'dropped' row when no day could go.
CREATE FUNCTION hookrelay.retire_history_day(keep interval, keep_dead interval, max_kept bigint)
RETURNS TABLE (suffix text, outcome text, kept bigint, rows_estimate bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '200ms'
AS $$
DECLARE
    day record;
    ids uuid[];
BEGIN
    -- Looked at before taking any lock, and again under it.
    FOR day IN SELECT p.suffix FROM hookrelay.history_partitions() p
               WHERE p.ends_at <= now() - keep ORDER BY p.ends_at
    LOOP
        suffix := day.suffix;
        ids := hookrelay.kept_events(suffix, keep_dead, max_kept);
        kept := cardinality(ids);
        EXIT WHEN kept <= max_kept;
        outcome := 'too many kept';
        RETURN NEXT;
        suffix := NULL;
    END LOOP;
    IF suffix IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        -- Parents first, all three in one statement: no deadlock with the pipeline's statements.
        LOCK TABLE ONLY hookrelay.events, hookrelay.deliveries, hookrelay.attempts
            IN ACCESS EXCLUSIVE MODE;
        ids := hookrelay.kept_events(suffix, keep_dead, max_kept);
        kept := cardinality(ids);
        IF kept > max_kept THEN
            outcome := 'too many kept';
            RETURN NEXT;
            RETURN;
        END IF;
        rows_estimate := (SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c
                          WHERE c.oid = format('hookrelay.%I', 'events_' || suffix)::regclass);
        PERFORM hookrelay.detach_and_keep(suffix, ids);
        outcome := 'dropped';
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        -- The block is a subtransaction: whatever it did is undone.
        outcome := 'busy';
    END;
    RETURN NEXT;
END
$$;

-- The new tables, named apart until the old ones are gone.
CREATE TABLE hookrelay.events_next (
    id uuid DEFAULT hookrelay.uuid_v7() NOT NULL,
    event text NOT NULL,
    model text,
    object_id text,
    object jsonb DEFAULT '{}'::jsonb NOT NULL,
    changes jsonb,
    actor jsonb DEFAULT hookrelay.current_actor(),
    account_id text,
    created_at timestamptz DEFAULT clock_timestamp() NOT NULL,
    fanned_out_at timestamptz,
    ordering_key text,
    traceparent text DEFAULT hookrelay.current_traceparent(),
    tracestate text DEFAULT hookrelay.current_tracestate()
) PARTITION BY RANGE (id);

CREATE SEQUENCE hookrelay.deliveries_id_next;
CREATE TABLE hookrelay.deliveries_next (
    id bigint DEFAULT nextval('hookrelay.deliveries_id_next') NOT NULL,
    event_id uuid NOT NULL,
    endpoint_id bigint NOT NULL,
    state text DEFAULT 'pending' NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamptz DEFAULT now(),
    locked_until timestamptz,
    locked_by text,
    last_status integer,
    last_error_code text,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz DEFAULT now() NOT NULL,
    updated_at timestamptz DEFAULT now() NOT NULL,
    attempts_base integer DEFAULT 0 NOT NULL,
    ordering_key text,
    ordering_at timestamptz,
    CONSTRAINT delivery_state_is_known
        CHECK (state = ANY (ARRAY['pending', 'delivered', 'dead', 'cancelled']))
) PARTITION BY RANGE (event_id);

CREATE SEQUENCE hookrelay.attempts_id_next;
CREATE TABLE hookrelay.attempts_next (
    id bigint DEFAULT nextval('hookrelay.attempts_id_next') NOT NULL,
    delivery_id bigint NOT NULL,
    -- The delivery's event: the partition key, written with the attempt (the worker knows it).
    event_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer,
    status integer,
    error_code text,
    error text,
    response_excerpt text,
    worker text
) PARTITION BY RANGE (event_id);

CREATE TABLE hookrelay.events_next_default PARTITION OF hookrelay.events_next DEFAULT
    WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
          autovacuum_vacuum_insert_scale_factor = 0.05);
CREATE TABLE hookrelay.deliveries_next_default PARTITION OF hookrelay.deliveries_next DEFAULT
    WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
          autovacuum_vacuum_insert_scale_factor = 0.05);
CREATE TABLE hookrelay.attempts_next_default PARTITION OF hookrelay.attempts_next DEFAULT;

-- Sequences continue where the identities were.
SELECT setval('hookrelay.deliveries_id_next', s.last_value, s.is_called)
FROM hookrelay.deliveries_id_seq s;
SELECT setval('hookrelay.attempts_id_next', s.last_value, s.is_called)
FROM hookrelay.attempts_id_seq s;

-- What depends on the old tables, to be pointed at the new ones: views (recreated in place
-- with CREATE OR REPLACE, keeping their grants) and privileges (table and column grants).
CREATE TEMP TABLE history_views ON COMMIT DROP AS
SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition,
       v.reloptions
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
WHERE d.refobjid IN ('hookrelay.events'::regclass, 'hookrelay.deliveries'::regclass,
                     'hookrelay.attempts'::regclass)
  AND v.relkind IN ('v', 'm') AND v.oid <> d.refobjid;

CREATE TEMP TABLE history_grants ON COMMIT DROP AS
SELECT c.relname AS tbl, NULL::name AS col, x.grantee, x.privilege_type, x.is_grantable
FROM pg_class c, aclexplode(c.relacl) x
WHERE c.oid IN ('hookrelay.events'::regclass, 'hookrelay.deliveries'::regclass,
                'hookrelay.attempts'::regclass)
  AND x.grantee <> c.relowner
UNION ALL
SELECT c.relname, a.attname, x.grantee, x.privilege_type, x.is_grantable
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
CROSS JOIN LATERAL aclexplode(a.attacl) x
WHERE c.oid IN ('hookrelay.events'::regclass, 'hookrelay.deliveries'::regclass,
                'hookrelay.attempts'::regclass)
  AND x.grantee <> c.relowner;

ALTER TABLE hookrelay.events RENAME TO events_unpartitioned;
ALTER TABLE hookrelay.deliveries RENAME TO deliveries_unpartitioned;
ALTER TABLE hookrelay.attempts RENAME TO attempts_unpartitioned;
ALTER TABLE hookrelay.events_next RENAME TO events;
ALTER TABLE hookrelay.deliveries_next RENAME TO deliveries;
ALTER TABLE hookrelay.attempts_next RENAME TO attempts;
ALTER TABLE hookrelay.events_next_default RENAME TO events_default;
ALTER TABLE hookrelay.deliveries_next_default RENAME TO deliveries_default;
ALTER TABLE hookrelay.attempts_next_default RENAME TO attempts_default;

-- Daily partitions for the days that hold data (history older than 60 days shares one), and
-- for today and the next three days.
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    oldest date := least(
        today,
        (SELECT (hookrelay.id_time(e.id) AT TIME ZONE 'UTC')::date
         FROM hookrelay.events_unpartitioned e ORDER BY e.id LIMIT 1),
        (SELECT (hookrelay.id_time(d.event_id) AT TIME ZONE 'UTC')::date
         FROM hookrelay.deliveries_unpartitioned d ORDER BY d.event_id LIMIT 1));
    first_day date := greatest(oldest, today - 60);
    day date;
    outcome text;
BEGIN
    IF oldest < first_day THEN
        outcome := hookrelay.attach_history_range(
            NULL, first_day::timestamp AT TIME ZONE 'UTC',
            'before_' || to_char(first_day, 'YYYYMMDD'));
        ASSERT outcome = 'attached', outcome;
    END IF;
    FOR day IN SELECT first_day + i FROM generate_series(0, today - first_day) i LOOP
        outcome := hookrelay.attach_history_range(day::timestamp AT TIME ZONE 'UTC',
                                                  (day + 1)::timestamp AT TIME ZONE 'UTC',
                                                  'p' || to_char(day, 'YYYYMMDD'));
        ASSERT outcome = 'attached', outcome;
    END LOOP;
    PERFORM hookrelay.add_history_partitions(3);
END
$$;

-- The copy: every row with every value, attempts given their delivery's event (an attempt
-- whose delivery is gone, which the cascades leave none of, gets the nil id).
INSERT INTO hookrelay.events
    (id, event, model, object_id, object, changes, actor, account_id, created_at, fanned_out_at,
     ordering_key, traceparent, tracestate)
SELECT id, event, model, object_id, object, changes, actor, account_id, created_at,
       fanned_out_at, ordering_key, traceparent, tracestate
FROM hookrelay.events_unpartitioned;

INSERT INTO hookrelay.deliveries
    (id, event_id, endpoint_id, state, attempts, next_attempt_at, locked_until, locked_by,
     last_status, last_error_code, last_error, delivered_at, created_at, updated_at,
     attempts_base, ordering_key, ordering_at)
SELECT id, event_id, endpoint_id, state, attempts, next_attempt_at, locked_until, locked_by,
       last_status, last_error_code, last_error, delivered_at, created_at, updated_at,
       attempts_base, ordering_key, ordering_at
FROM hookrelay.deliveries_unpartitioned;

INSERT INTO hookrelay.attempts
    (id, delivery_id, event_id, attempt, started_at, duration_ms, status, error_code, error,
     response_excerpt, worker)
SELECT a.id, a.delivery_id, coalesce(d.event_id, '00000000-0000-0000-0000-000000000000'),
       a.attempt, a.started_at, a.duration_ms, a.status, a.error_code, a.error,
       a.response_excerpt, a.worker
FROM hookrelay.attempts_unpartitioned a
LEFT JOIN hookrelay.deliveries_unpartitioned d ON d.id = a.delivery_id;

-- Views read the new tables from now on (same text, same columns: replaced in place).
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM history_views LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s%s AS %s', v.name,
                       CASE WHEN v.reloptions IS NOT NULL
                            THEN format(' WITH (%s)', array_to_string(v.reloptions, ', '))
                       END,
                       v.definition);
    END LOOP;
END
$$;

DROP TABLE hookrelay.events_unpartitioned, hookrelay.deliveries_unpartitioned,
    hookrelay.attempts_unpartitioned;
ALTER SEQUENCE hookrelay.deliveries_id_next RENAME TO deliveries_id_seq;
ALTER SEQUENCE hookrelay.attempts_id_next RENAME TO attempts_id_seq;
ALTER SEQUENCE hookrelay.deliveries_id_seq OWNED BY hookrelay.deliveries.id;
ALTER SEQUENCE hookrelay.attempts_id_seq OWNED BY hookrelay.attempts.id;

-- Keys and indexes, built once the rows are in (faster than maintaining them row by row), each
-- on every partition. Unique keys include the partition key.
ALTER TABLE hookrelay.deliveries
    ADD CONSTRAINT deliveries_event_id_endpoint_id_key UNIQUE (event_id, endpoint_id);
CREATE INDEX attempts_by_delivery ON hookrelay.attempts (delivery_id, attempt);
CREATE INDEX deliveries_by_key ON hookrelay.deliveries
    (endpoint_id, ordering_key, state, ordering_at, event_id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'dead');
CREATE INDEX deliveries_dead ON hookrelay.deliveries (endpoint_id, created_at)
    WHERE state = 'dead';
CREATE INDEX deliveries_due ON hookrelay.deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_key_leased ON hookrelay.deliveries (endpoint_id, ordering_key)
    WHERE ordering_key IS NOT NULL AND locked_until IS NOT NULL;
CREATE INDEX deliveries_leased ON hookrelay.deliveries (endpoint_id, locked_until)
    WHERE locked_until IS NOT NULL;
CREATE INDEX deliveries_newest ON hookrelay.deliveries (created_at, id);
CREATE INDEX deliveries_waiting ON hookrelay.deliveries (endpoint_id, created_at, id)
    WHERE state = 'pending' AND next_attempt_at = 'infinity';
CREATE INDEX events_fanned_out_by_name ON hookrelay.events (event)
    WHERE fanned_out_at IS NOT NULL;
CREATE INDEX events_to_fan_out ON hookrelay.events (id, created_at) WHERE fanned_out_at IS NULL;
-- The primary keys come last, on purpose. On a partition whose statistics say it is empty (just
-- made, or analyzed before the first delivery), a lookup by id costs the same through the
-- primary key (id, event_id) as through an index with id as a later column (deliveries_newest
-- (created_at, id)), and the planner then takes the index made last: measured with the `plans`
-- test, keys made first let plans made then read deliveries by id through deliveries_newest,
-- which walks the whole index once the table has grown. A partition attached later gets its
-- indexes made in the parents' order, primary key last too. A later migration adding an index
-- to these tables must make the primary key again after it (the `plans` test shows it).
ALTER TABLE hookrelay.events ADD CONSTRAINT events_pkey PRIMARY KEY (id);
ALTER TABLE hookrelay.deliveries ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id, event_id);
ALTER TABLE hookrelay.attempts ADD CONSTRAINT attempts_pkey PRIMARY KEY (id, event_id);

-- The partitions' indexes, made with the parents', named after them.
SELECT hookrelay.name_partition_indexes(i.inhrelid,
                                        substr(c.relname, strpos(c.relname, '_') + 1))
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('hookrelay.events'::regclass, 'hookrelay.deliveries'::regclass,
                      'hookrelay.attempts'::regclass);

-- As 0028 left it: not validated against the copied rows (some predate the rules).
ALTER TABLE hookrelay.events ADD CONSTRAINT event_must_be_valid CHECK (
    (length(event) BETWEEN 1 AND 200
     AND event !~ '[^A-Za-z0-9._:/-]'
     AND jsonb_typeof(object) = 'object'
     AND (changes IS NULL OR jsonb_typeof(changes) = 'object'))
    OR hookrelay.check_event(event, object, changes, fanned_out_at)
) NOT VALID;

-- The triggers, as they were; a statement trigger with a transition table on a partitioned
-- table sees the rows of every partition.
CREATE TRIGGER events_forget_deliveries AFTER DELETE ON hookrelay.events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION hookrelay.forget_deliveries_of_events();
CREATE TRIGGER events_wake_workers AFTER INSERT ON hookrelay.events FOR EACH STATEMENT
    WHEN (pg_sequence_last_value('hookrelay.wake_until') > extract(epoch FROM now()))
    EXECUTE FUNCTION hookrelay.wake_workers();
CREATE TRIGGER deliveries_dead_event AFTER UPDATE OF state ON hookrelay.deliveries
    FOR EACH ROW WHEN (NEW.state = 'dead' AND OLD.state <> 'dead')
    EXECUTE FUNCTION hookrelay.delivery_dead_event();
CREATE TRIGGER deliveries_forget_attempts AFTER DELETE ON hookrelay.deliveries
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION hookrelay.forget_attempts_of_deliveries();
CREATE TRIGGER deliveries_ordered_added AFTER INSERT ON hookrelay.deliveries
    FOR EACH ROW WHEN (NEW.ordering_key IS NOT NULL AND NEW.locked_until IS NULL)
    EXECUTE FUNCTION hookrelay.ordered_delivery_added();
CREATE TRIGGER deliveries_release_key AFTER UPDATE OF state ON hookrelay.deliveries
    FOR EACH ROW
    WHEN (NEW.ordering_key IS NOT NULL AND NEW.state <> 'pending'
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION hookrelay.release_next_of_key();

-- The cascades name each partition key too, so each delete reads only the partitions of the
-- removed rows (run-time pruning) instead of probing every day's index.
CREATE OR REPLACE FUNCTION hookrelay.forget_attempts_of_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hookrelay.attempts a
    WHERE a.delivery_id = ANY (ARRAY(SELECT g.id FROM gone g))
      AND a.event_id = ANY (ARRAY(SELECT g.event_id FROM gone g));
    RETURN NULL;
END
$$;

-- Privileges as they were, granted again on the new tables. Whoever could read events may read
-- its DEFAULT partition too, which the retention sweep reads directly (a partition read by its
-- own name needs its own grant).
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM history_grants
             UNION ALL
             SELECT 'events_default', NULL, h.grantee, h.privilege_type, h.is_grantable
             FROM history_grants h
             WHERE h.tbl = 'events' AND h.col IS NULL AND h.privilege_type = 'SELECT'
    LOOP
        EXECUTE format('GRANT %s%s ON hookrelay.%I TO %s%s', g.privilege_type,
                       CASE WHEN g.col IS NOT NULL THEN format(' (%I)', g.col) END, g.tbl,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                            ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' END);
    END LOOP;
END
$$;

-- The worker now draws delivery and attempt ids from sequences, reads the DEFAULT partition of
-- events, and runs partition maintenance (functions that run as their owner, who owns the
-- tables).
ALTER FUNCTION hookrelay.grant_roles() RENAME TO grant_roles_0024;
CREATE FUNCTION hookrelay.grant_roles() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0024();
BEGIN
    IF 'hookrelay_worker' = ANY (granted) THEN
        GRANT USAGE ON SEQUENCE hookrelay.deliveries_id_seq, hookrelay.attempts_id_seq
            TO hookrelay_worker;
        -- The retention sweep reads the DEFAULT partition by its name.
        GRANT SELECT ON hookrelay.events_default TO hookrelay_worker;
        GRANT EXECUTE ON FUNCTION hookrelay.add_history_partitions(integer),
                                  hookrelay.retire_history_day(interval, interval, bigint)
            TO hookrelay_worker;
    END IF;
    RETURN granted;
END
$$;
REVOKE EXECUTE ON FUNCTION hookrelay.grant_roles(), hookrelay.grant_roles_0024() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION hookrelay.attach_history_range(timestamptz, timestamptz, text),
                           hookrelay.add_history_partitions(integer),
                           hookrelay.retire_history_day(interval, interval, bigint),
                           hookrelay.detach_and_keep(text, uuid[]),
                           hookrelay.move_to_parent(text, text, text, uuid[]),
                           hookrelay.kept_events(text, interval, bigint),
                           hookrelay.name_partition_indexes(regclass, text)
    FROM PUBLIC;
SELECT hookrelay.grant_roles();
