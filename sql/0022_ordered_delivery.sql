-- 0022: ordered delivery per key. An endpoint with `ordered` sends the deliveries that share
-- an ordering key one at a time, in the order their events were written; other keys still go
-- out concurrently. A failing delivery holds back only its own key; once dead, `on_dead` says
-- whether the key's next delivery proceeds (`skip`) or the key stays held (`block`) until an
-- operator redelivers or cancels it.
--
-- How the order holds with any number of workers and no coordinator:
-- * Every claim of an ordered delivery asks hookrelay.key_turn whether it is its key's turn:
--   no earlier delivery of the key is pending (or dead while on_dead = block), no other one is
--   leased, and no earlier event of the key is still waiting to be fanned out. A claim reads
--   other workers' committed state, so a delivery that another worker has claimed (leased) or
--   is fanning out blocks the later ones however the SKIP LOCKED races fall.
-- * A delivery that is not its key's turn is parked (next_attempt_at NULL: out of the due
--   range, so a long queue behind one key costs the claims nothing) while the claim holds a
--   share lock on the delivery it waits for. That delivery cannot settle before the park
--   commits, and when it settles (trigger deliveries_release_key) it makes the key's earliest
--   pending delivery due again. A blocker the claim cannot lock (another transaction is
--   changing it) leaves the delivery due a moment later instead, so no release is missed.
-- * Fan-out never leases an ordered delivery itself: it creates it due, and the next due claim
--   (woken by a notification while workers are idle) decides.

ALTER TABLE hookrelay.endpoints
    ADD COLUMN ordered boolean NOT NULL DEFAULT false,
    ADD COLUMN on_dead text NOT NULL DEFAULT 'skip'
        CONSTRAINT endpoint_on_dead_is_skip_or_block CHECK (on_dead IN ('skip', 'block'));

-- An explicit ordering key (emit's ordering_key, a tracked table's ordering column); NULL: the
-- row's own key, model and object id (see event_ordering_key).
ALTER TABLE hookrelay.events ADD COLUMN ordering_key text;

-- Set at fan-out for deliveries to ordered endpoints only: the key, and the event's created_at
-- (with event_id, the order within the key). NULL: the delivery is unordered.
ALTER TABLE hookrelay.deliveries
    ADD COLUMN ordering_key text,
    ADD COLUMN ordering_at timestamptz;

-- The deliveries that can hold a key, in key order; unordered deliveries are not in it.
CREATE INDEX deliveries_by_key ON hookrelay.deliveries
    (endpoint_id, ordering_key, state, ordering_at, event_id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'dead');

-- A key's deliveries in flight (leased): found without walking the key's queue, whose length
-- would otherwise make every claim of a hot key cost as much as its backlog (measured: 2,000
-- events over one key drained at 79/s, 10,000 over 1,000 keys at 235/s, when this lookup
-- walked the endpoint's pending deliveries).
CREATE INDEX deliveries_key_leased ON hookrelay.deliveries (endpoint_id, ordering_key)
    WHERE ordering_key IS NOT NULL AND locked_until IS NOT NULL;

-- The sequence an event belongs to: its explicit key, else its model and object id (every
-- change to one row is one sequence); NULL (unordered) without an object id.
CREATE FUNCTION hookrelay.event_ordering_key(ordering_key text, model text, object_id text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(ordering_key, coalesce(model, '') || ':' || object_id)
$$;

-- The millisecond a time-ordered (version 7) event id was made.
CREATE FUNCTION hookrelay.id_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint / 1000.0)
$$;

-- The smallest version 7 id of a millisecond: every id made before `at` sorts below it.
CREATE FUNCTION hookrelay.id_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- Serialises the writers of one explicit key until they commit, as row locks serialise the
-- writers of one row: an event of the key is then made (id and created_at) only after every
-- earlier writer of the key committed, so write order and commit order agree. emit() and the
-- tracking triggers call it; an application inserting events with an ordering_key directly
-- calls it first. A hash collision only serialises two keys more than needed.
CREATE FUNCTION hookrelay.lock_ordering_key(key text) RETURNS void
LANGUAGE sql AS $$
    -- 1752198514: hookrelay's class of advisory locks, apart from the application's own.
    SELECT pg_advisory_xact_lock(1752198514, hashtext(key)) WHERE key IS NOT NULL
$$;

DROP FUNCTION hookrelay.emit(text, jsonb, text, text, jsonb, text);
-- 0008's grants name emit by its arguments: they follow the new ones.
DO $$
BEGIN
    EXECUTE replace(pg_get_functiondef('hookrelay.grant_roles_0008()'::regprocedure),
                    'hookrelay.emit(text, jsonb, text, text, jsonb, text)',
                    'hookrelay.emit(text, jsonb, text, text, jsonb, text, text)');
END
$$;
CREATE FUNCTION hookrelay.emit(event text, object jsonb DEFAULT '{}'::jsonb,
                               model text DEFAULT NULL, object_id text DEFAULT NULL,
                               changes jsonb DEFAULT NULL, account_id text DEFAULT NULL,
                               ordering_key text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    IF emit.ordering_key = '' THEN
        RAISE EXCEPTION 'ordering_key is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'give a key such as ''customer:42'', or leave ordering_key out (NULL) to order by model and object_id';
    END IF;
    -- Before the insert: the event's id and created_at are made once the key is ours.
    PERFORM hookrelay.lock_ordering_key(emit.ordering_key);
    INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id, ordering_key)
    VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
            coalesce(emit.object_id,
                     CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
            emit.changes, emit.account_id, emit.ordering_key)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- Wakes idle workers (as an event insert does, 0013): an ordered delivery became due outside
-- the claims they would otherwise wait for.
CREATE FUNCTION hookrelay.wake_idle_workers() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_sequence_last_value('hookrelay.wake_until') > extract(epoch FROM now()) THEN
        PERFORM pg_notify('hookrelay_events', '');
    END IF;
END
$$;

-- Whether a claimed delivery of an ordered endpoint may be sent now: 'send'; 'park' (an
-- earlier delivery of its key is unsettled, or another is in flight: it waits, out of the due
-- range, until that one settles); or 'later' (look again in a moment). The caller holds the
-- delivery's row lock. `first_unfanned` is the lowest id of the events not fanned out yet
-- (NULL: none), looked up once per claim.
CREATE FUNCTION hookrelay.key_turn(delivery_id bigint, endpoint_id bigint, key text,
                                   at timestamptz, event_id uuid, blocks_on_dead boolean,
                                   first_unfanned uuid)
RETURNS text LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    me      bigint := key_turn.delivery_id;
    ep_id   bigint := key_turn.endpoint_id;
    evt     uuid := key_turn.event_id;
    blocker bigint;
BEGIN
    -- An earlier event of the key not fanned out yet gets its delivery ahead of this one. Events
    -- are looked at first: a fan-out marks an event and creates its deliveries at once, so the
    -- deliveries read below include those of every event seen fanned out here. An id is made
    -- no later than its created_at (rounded to the millisecond), hence the bounds.
    IF first_unfanned IS NOT NULL AND hookrelay.id_time(first_unfanned) <= at + interval '1 millisecond'
       AND EXISTS (SELECT 1 FROM hookrelay.events e
                   WHERE e.fanned_out_at IS NULL
                     AND e.id < hookrelay.id_floor(at + interval '2 milliseconds')
                     AND (e.created_at, e.id) < (at, evt)
                     AND hookrelay.event_ordering_key(e.ordering_key, e.model, e.object_id) = key)
    THEN
        RETURN 'later';
    END IF;
    -- The nearest earlier delivery still pending (or dead, holding the key), locked so that it
    -- cannot settle before this claim commits: its release then sees this delivery parked.
    -- Pending and dead are looked up apart, each a walk back along deliveries_by_key.
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'pending'
      AND (p.ordering_at, p.event_id) < (at, evt)
    ORDER BY p.ordering_at DESC, p.event_id DESC
    LIMIT 1
    FOR SHARE SKIP LOCKED;
    IF FOUND THEN
        RETURN 'park';
    END IF;
    IF blocks_on_dead THEN
        SELECT p.id INTO blocker
        FROM hookrelay.deliveries p
        WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'dead'
          AND (p.ordering_at, p.event_id) < (at, evt)
        ORDER BY p.ordering_at DESC, p.event_id DESC
        LIMIT 1
        FOR SHARE SKIP LOCKED;
        IF FOUND THEN
            RETURN 'park';
        END IF;
    END IF;
    -- Another delivery of the key in flight (an earlier one reopened by redeliver or replay
    -- while a later one was sent): never two at once. Looked up among the key's leases
    -- (deliveries_key_leased); an expired lease is not in flight (its worker is gone, and it
    -- is due again itself).
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.locked_until IS NOT NULL
      AND p.locked_until > now() AND p.state = 'pending' AND p.id <> me
    LIMIT 1
    FOR SHARE SKIP LOCKED;
    IF FOUND THEN
        RETURN 'park';
    END IF;
    -- Blockers seen but locked by another transaction (claiming or settling them): look again.
    IF EXISTS (SELECT 1 FROM hookrelay.deliveries p
               WHERE p.endpoint_id = ep_id AND p.ordering_key = key
                 AND p.state = ANY (CASE WHEN blocks_on_dead THEN '{pending,dead}'::text[] ELSE '{pending}' END)
                 AND (p.ordering_at, p.event_id) < (at, evt))
       OR EXISTS (SELECT 1 FROM hookrelay.deliveries p
                  WHERE p.endpoint_id = ep_id AND p.ordering_key = key
                    AND p.locked_until IS NOT NULL AND p.locked_until > now()
                    AND p.state = 'pending' AND p.id <> me)
    THEN
        RETURN 'later';
    END IF;
    RETURN 'send';
END
$$;

-- Makes the key's earliest pending delivery due if it waits parked; true if it did. The update
-- waits for a claim that holds the row (locked to send or park it, or share-locked by a claim
-- parking a later delivery behind it), then decides on the row as that claim left it: skipping
-- it instead would strand a delivery parked behind one that has just settled. Claims never
-- wait for locks (SKIP LOCKED), so this wait cannot close a cycle with them.
CREATE FUNCTION hookrelay.release_key(endpoint_id bigint, key text) RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ep_id   bigint := release_key.endpoint_id;
    head    bigint;
    touched integer;
BEGIN
    SELECT p.id INTO head
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'pending'
      AND p.locked_until IS NULL
    ORDER BY p.ordering_at, p.event_id
    LIMIT 1;
    IF head IS NULL THEN
        RETURN false;
    END IF;
    -- A head waiting for a slot ('infinity' while active) is made due too: the waiting queue
    -- may have passed it over while it was not its turn, and the due claim parks it again
    -- for a slot if there is none.
    UPDATE hookrelay.deliveries d
    SET next_attempt_at = CASE WHEN d.next_attempt_at IS NULL
                                    OR (d.next_attempt_at = 'infinity' AND ep.active)
                               THEN CASE WHEN ep.active THEN now() ELSE 'infinity' END
                               ELSE d.next_attempt_at END,
        updated_at = now()
    FROM hookrelay.endpoints ep
    WHERE d.id = head AND ep.id = d.endpoint_id AND d.state = 'pending';
    GET DIAGNOSTICS touched = ROW_COUNT;
    IF touched > 0 THEN
        PERFORM hookrelay.wake_idle_workers();
    END IF;
    RETURN touched > 0;
END
$$;

-- A delivery of an ordered key settled (delivered, dead, cancelled): its key's next delivery
-- may go, unless it died and the endpoint blocks on dead.
CREATE FUNCTION hookrelay.release_next_of_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'dead' AND EXISTS (SELECT 1 FROM hookrelay.endpoints ep
                                      WHERE ep.id = NEW.endpoint_id AND ep.on_dead = 'block') THEN
        RETURN NULL;
    END IF;
    PERFORM hookrelay.release_key(NEW.endpoint_id, NEW.ordering_key);
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_release_key
    AFTER UPDATE OF state ON hookrelay.deliveries
    FOR EACH ROW
    WHEN (NEW.ordering_key IS NOT NULL AND NEW.state <> 'pending'
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION hookrelay.release_next_of_key();

-- A fan-out created an ordered delivery due (fan-out never leases those): wake idle workers,
-- whose own due claim ran before it.
CREATE FUNCTION hookrelay.ordered_delivery_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hookrelay.wake_idle_workers();
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_ordered_added
    AFTER INSERT ON hookrelay.deliveries
    FOR EACH ROW
    WHEN (NEW.ordering_key IS NOT NULL AND NEW.locked_until IS NULL)
    EXECUTE FUNCTION hookrelay.ordered_delivery_added();

-- An endpoint stops being ordered, or stops blocking on dead: what waited parked behind its
-- keys goes (unordered: all of it; skip: each key's earliest).
CREATE FUNCTION hookrelay.endpoint_ordering_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.ordered THEN
        UPDATE hookrelay.deliveries d
        SET next_attempt_at = CASE WHEN NEW.active THEN now() ELSE 'infinity' END,
            updated_at = now()
        WHERE d.endpoint_id = NEW.id AND d.state = 'pending' AND d.next_attempt_at IS NULL;
    ELSIF NEW.on_dead = 'skip' THEN
        PERFORM hookrelay.release_key(NEW.id, k.ordering_key)
        FROM (SELECT DISTINCT d.ordering_key FROM hookrelay.deliveries d
              WHERE d.endpoint_id = NEW.id AND d.state = 'dead' AND d.ordering_key IS NOT NULL) k;
    END IF;
    PERFORM hookrelay.wake_idle_workers();
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_ordering_changed
    AFTER UPDATE OF ordered, on_dead ON hookrelay.endpoints
    FOR EACH ROW
    WHEN (OLD.ordered AND (NOT NEW.ordered OR (OLD.on_dead = 'block' AND NEW.on_dead = 'skip')))
    EXECUTE FUNCTION hookrelay.endpoint_ordering_changed();

-- A clear message for a bad on_dead, before the CHECK constraint's generic one.
CREATE FUNCTION hookrelay.validate_endpoint_ordering() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.on_dead IS NULL OR NEW.on_dead NOT IN ('skip', 'block') THEN
        RAISE EXCEPTION 'on_dead must be skip or block, not %', coalesce(to_jsonb(NEW.on_dead)::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  HINT = 'skip: when a delivery of a key ends dead, the key''s next delivery proceeds; '
                         'block: the key stays held until the dead delivery is redelivered or cancelled';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER endpoints_validate_ordering
    BEFORE INSERT OR UPDATE OF on_dead ON hookrelay.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_ordering();

-- Keys held back: each ordered key whose earliest unsettled delivery has failed (retrying, in
-- flight again, or dead while on_dead = block) with deliveries waiting behind it.
CREATE VIEW hookrelay.held_keys AS
SELECT ep.name AS endpoint,
       h.ordering_key,
       h.id AS delivery_id,
       h.event_id,
       CASE WHEN h.state = 'dead' THEN 'dead' ELSE 'retrying' END AS reason,
       h.attempts,
       h.last_status,
       h.last_error_code,
       h.next_attempt_at,
       h.updated_at AS since,
       w.waiting
FROM hookrelay.endpoints ep
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (d.ordering_key) d.*
    FROM hookrelay.deliveries d
    WHERE d.endpoint_id = ep.id AND d.ordering_key IS NOT NULL
      AND (d.state = 'pending' OR (d.state = 'dead' AND ep.on_dead = 'block'))
    ORDER BY d.ordering_key, d.ordering_at, d.event_id
) h
CROSS JOIN LATERAL (
    SELECT count(*) AS waiting
    FROM hookrelay.deliveries n
    WHERE n.endpoint_id = ep.id AND n.ordering_key = h.ordering_key AND n.state = 'pending'
      AND (n.ordering_at, n.event_id) > (h.ordering_at, h.event_id)
) w
WHERE ep.ordered
  AND (h.state = 'dead' OR h.last_error_code IS NOT NULL)
  AND w.waiting > 0;

-- Replay gives the deliveries it creates (or reopens without one) their key when the endpoint
-- is ordered; key_turn then sends each key's in event order.
CREATE OR REPLACE FUNCTION hookrelay.replay(endpoint_name text, since timestamptz,
                                            until timestamptz DEFAULT now(),
                                            only_events text[] DEFAULT '{}'::text[],
                                            dry_run boolean DEFAULT false,
                                            retention interval DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path TO 'pg_catalog', 'pg_temp' AS $$
DECLARE
    ep hookrelay.endpoints;
    n  bigint;
BEGIN
    SELECT * INTO ep FROM hookrelay.endpoints e WHERE e.name = endpoint_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no endpoint named %', to_jsonb(endpoint_name)
            USING ERRCODE = 'no_data_found',
                  HINT = '`hookrelay endpoint list` (or SELECT name FROM hookrelay.endpoints) shows them';
    END IF;
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'nothing to replay between % and %: since must be before until', since, until
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'for example --since 24h, or --since 2026-01-24T00:00:00Z --until 2026-01-25T00:00:00Z';
    END IF;
    IF retention IS NOT NULL AND since < now() - retention THEN
        RAISE EXCEPTION 'events older than the retention (%) are not kept: replay from % or later',
                        justify_interval(retention), to_char((now() - retention) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the worker deletes finished events after --retention (HOOKRELAY_RETENTION)';
    END IF;
    IF dry_run THEN
        SELECT count(*) INTO n FROM hookrelay.replay_events(ep, since, until, only_events);
        RETURN n;
    END IF;
    WITH chosen AS (
        SELECT * FROM hookrelay.replay_events(ep, since, until, only_events)
    ), due AS (
        -- In event order: claims take due deliveries by next_attempt_at.
        SELECT c.event_id, c.rank,
               CASE WHEN ep.active THEN now() + c.rank * interval '1 microsecond'
                    ELSE 'infinity' END AS at,
               CASE WHEN ep.ordered
                    THEN hookrelay.event_ordering_key(e.ordering_key, e.model, e.object_id) END AS key,
               e.created_at
        FROM chosen c
        JOIN hookrelay.events e ON e.id = c.event_id
    ), again AS (
        UPDATE hookrelay.deliveries d
        SET state = 'pending', attempts_base = d.attempts, next_attempt_at = due.at,
            delivered_at = NULL, updated_at = now(),
            ordering_key = coalesce(d.ordering_key, due.key),
            ordering_at = CASE WHEN d.ordering_key IS NULL AND due.key IS NOT NULL
                               THEN due.created_at ELSE d.ordering_at END
        FROM due
        WHERE d.event_id = due.event_id AND d.endpoint_id = ep.id
          AND NOT (d.state = 'pending' AND d.locked_until > now())
        RETURNING 1
    ), added AS (
        INSERT INTO hookrelay.deliveries (event_id, endpoint_id, next_attempt_at, ordering_key,
                                          ordering_at)
        SELECT due.event_id, ep.id, due.at, due.key,
               CASE WHEN due.key IS NOT NULL THEN due.created_at END
        FROM due
        WHERE NOT EXISTS (SELECT 1 FROM hookrelay.deliveries d
                          WHERE d.event_id = due.event_id AND d.endpoint_id = ep.id)
        ORDER BY due.rank
        ON CONFLICT (event_id, endpoint_id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM again) + (SELECT count(*) FROM added) INTO n;
    RETURN n;
END
$$;


-- Roles: the app writes keys (emit, its own inserts after lock_ordering_key); operators read
-- the new endpoint columns and the held keys.
CREATE OR REPLACE FUNCTION hookrelay.grant_roles() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0008();
BEGIN
    IF 'hookrelay_app' = ANY (granted) THEN
        GRANT INSERT (ordering_key) ON hookrelay.events TO hookrelay_app;
        GRANT EXECUTE ON FUNCTION
            hookrelay.emit(text, jsonb, text, text, jsonb, text, text),
            hookrelay.lock_ordering_key(text)
            TO hookrelay_app;
    END IF;
    IF 'hookrelay_operator' = ANY (granted) THEN
        GRANT SELECT (filter, number_format, skip_empty_changes, ordered, on_dead)
            ON hookrelay.endpoints TO hookrelay_operator;
        GRANT EXECUTE ON FUNCTION
            hookrelay.replay(text, timestamptz, timestamptz, text[], boolean, interval)
            TO hookrelay_operator;
        GRANT SELECT ON hookrelay.backfills, hookrelay.held_keys TO hookrelay_operator;
    END IF;
    RETURN granted;
END
$$;
SELECT hookrelay.grant_roles();
