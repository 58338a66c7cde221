-- 0032: an ordered key's turn, looked up through its index (issue 15; found by the full-size
-- ordered bench, 100,000 events over 1,000 keys, which drained at 54 deliveries/s).
--
-- key_turn's last look for blockers that another transaction holds was two EXISTS, the first
-- asking for `state = ANY (CASE WHEN blocks_on_dead THEN '{pending,dead}' ELSE '{pending}'
-- END)`. The planner cannot tell that such a state is one of deliveries_by_key's (pending or
-- dead), so the statement could not use that partial index and read every delivery of the
-- partition instead: 5.6 ms per call at 40,000 deliveries (pg_stat_statements), once per
-- ordered delivery sent, growing with the delivered history. And with constant states, a
-- generic plan made on empty tables took deliveries_due (every pending delivery, of every
-- endpoint) or deliveries_dead for an EXISTS, where nothing tells the indexes apart. Now the
-- last look repeats the three lookups above it without SKIP LOCKED, each in the order only the
-- key's index has. Only functions change; the `plans_keyed` integration test reads the plans of
-- the statements inside key_turn and release_key.

CREATE OR REPLACE FUNCTION hookrelay.key_turn(delivery_id bigint, endpoint_id bigint, key text,
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
    -- Pending is written as none of the other states (delivery_state_is_known), which
    -- implies no other partial index's predicate: with `state = 'pending'`, a plan made on empty
    -- tables took deliveries_due as often as not, a walk of every pending delivery (0032).
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.locked_until IS NOT NULL
      AND p.locked_until > now() AND p.state NOT IN ('delivered', 'dead', 'cancelled')
      AND p.id <> me
    LIMIT 1
    FOR SHARE SKIP LOCKED;
    IF FOUND THEN
        RETURN 'park';
    END IF;
    -- Blockers seen but locked by another transaction (claiming or settling them): look again.
    -- The same three lookups without SKIP LOCKED (0032): each reads the key's own entries in
    -- an order only its index has, so that no plan can take another index.
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'pending'
      AND (p.ordering_at, p.event_id) < (at, evt)
    ORDER BY p.ordering_at DESC, p.event_id DESC
    LIMIT 1;
    IF FOUND THEN
        RETURN 'later';
    END IF;
    IF blocks_on_dead THEN
        SELECT p.id INTO blocker
        FROM hookrelay.deliveries p
        WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.state = 'dead'
          AND (p.ordering_at, p.event_id) < (at, evt)
        ORDER BY p.ordering_at DESC, p.event_id DESC
        LIMIT 1;
        IF FOUND THEN
            RETURN 'later';
        END IF;
    END IF;
    SELECT p.id INTO blocker
    FROM hookrelay.deliveries p
    WHERE p.endpoint_id = ep_id AND p.ordering_key = key AND p.locked_until IS NOT NULL
      AND p.locked_until > now() AND p.state NOT IN ('delivered', 'dead', 'cancelled')
      AND p.id <> me
    LIMIT 1;
    IF FOUND THEN
        RETURN 'later';
    END IF;
    RETURN 'send';
END
$$;

-- The release's update names its delivery's event too, which is the partition key of
-- `deliveries` (0030): by its id alone, the update looked the delivery up in every partition
-- (0.40 ms a call in the same bench; once per ordered delivery settled).
CREATE OR REPLACE FUNCTION hookrelay.release_key(endpoint_id bigint, key text) RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ep_id   bigint := release_key.endpoint_id;
    head    bigint;
    head_event uuid;
    touched integer;
BEGIN
    SELECT p.id, p.event_id INTO head, head_event
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
    WHERE d.id = head AND d.event_id = head_event AND ep.id = d.endpoint_id
      AND d.state = 'pending';
    GET DIAGNOSTICS touched = ROW_COUNT;
    IF touched > 0 THEN
        PERFORM hookrelay.wake_idle_workers();
    END IF;
    RETURN touched > 0;
END
$$;
