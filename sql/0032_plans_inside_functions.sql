-- 0032: the plans of the statements inside functions, which EXPLAIN of the claims does not
-- show (issue 15). Found by the full-size ordered bench (100,000 events over 1,000 keys drained
-- at 54 deliveries/s) and then by the `plans` and `plans_keyed` integration tests, which now
-- read these plans with auto_explain.
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
-- key's index has.
--
-- On a partition that is empty and analyzed (the days made ahead, after any ANALYZE), every
-- index costs the same to the planner, and one that can take a condition on a later column
-- wins as often as the right one: admit's count of an endpoint's leases took (event_id,
-- endpoint_id) by endpoint, a walk of the partition's whole index on every claim once the day
-- came and filled. Only functions change.

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

CREATE OR REPLACE FUNCTION hookrelay.admit(endpoint_ids bigint[], wanted integer[], waiting_limit integer,
                                fan_out boolean, sent_ids bigint[], sent integer[])
RETURNS TABLE (endpoint_id bigint, granted integer, from_waiting integer)
LANGUAGE plpgsql VOLATILE
    AS $$
#variable_conflict use_column
DECLARE
    ep_id   bigint;
    asked   integer;
    cap     integer;
    rate    double precision;
    room    integer;
    parked  integer;
    share   integer;
    budget  integer;
    tok     double precision;
    filled  timestamptz;
    queued  boolean;
    remains boolean;
    now_at  timestamptz;
    done    integer;
BEGIN
    budget := greatest(waiting_limit - coalesce((SELECT sum(n) FROM unnest(wanted) n), 0), 0);
    share := ceil(budget::numeric / greatest(cardinality(endpoint_ids), 1))::integer;
    FOR ep_id, asked IN
        SELECT u.id, u.n FROM unnest(endpoint_ids, wanted) AS u(id, n) ORDER BY u.id
    LOOP
        endpoint_id := ep_id;
        granted := 0;
        from_waiting := 0;
        SELECT ep.max_in_flight, ep.rate_limit INTO cap, rate
        FROM hookrelay.endpoints ep WHERE ep.id = ep_id AND ep.active;
        IF NOT FOUND THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT t.tokens, t.refilled_at, t.waiting INTO tok, filled, queued
        FROM hookrelay.endpoint_throttle t WHERE t.endpoint_id = ep_id FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO hookrelay.endpoint_throttle AS t (endpoint_id) VALUES (ep_id)
            ON CONFLICT DO NOTHING;
            SELECT t.tokens, t.refilled_at, t.waiting INTO tok, filled, queued
            FROM hookrelay.endpoint_throttle t WHERE t.endpoint_id = ep_id FOR UPDATE;
        END IF;
        -- Room: free slots, and whole tokens. A lease whose request has ended (the caller's
        -- `sent`, waiting for its result to be written) holds no slot.
        done := coalesce((SELECT s.n FROM unnest(sent_ids, sent) AS s(id, n)
                          WHERE s.id = ep_id), 0);
        -- The endpoint is compared as `endpoint_id + 0`, which no index can take as a
        -- condition (0032): written as a plain equality, a plan made while a partition was
        -- empty and analyzed (the days made ahead, after any ANALYZE) read that partition
        -- through (event_id, endpoint_id) by its second column, a walk of the whole day's
        -- deliveries once it filled, on every claim. Now the only index that fits is
        -- deliveries_leased, whose entries are the leases in force: the walk is bounded by
        -- the requests in flight, whatever the history.
        SELECT cap - greatest(count(*) - done, 0) INTO room
        FROM hookrelay.deliveries d
        WHERE d.endpoint_id + 0 = ep_id AND d.locked_until > now();
        room := greatest(room, 0);
        IF rate IS NOT NULL THEN
            now_at := clock_timestamp();
            tok := least(greatest(rate, 1),
                         tok + rate * greatest(extract(epoch FROM now_at - filled), 0));
            room := least(room, floor(tok)::integer);
        END IF;
        IF fan_out THEN
            -- Parked deliveries go first: new ones queue behind them.
            IF queued AND EXISTS (SELECT 1 FROM hookrelay.deliveries d
                                  WHERE d.endpoint_id = ep_id AND d.state = 'pending'
                                    AND d.next_attempt_at = 'infinity') THEN
                remains := true;
            ELSE
                granted := least(asked, room);
                remains := granted < asked;
            END IF;
        ELSE
            granted := least(asked, room);
            remains := granted < asked;
            IF queued AND NOT remains THEN
                parked := least(room - granted, share, budget);
                IF parked > 0 THEN
                    SELECT count(*) INTO from_waiting FROM (
                        SELECT 1 FROM hookrelay.deliveries d
                        WHERE d.endpoint_id = ep_id AND d.state = 'pending'
                          AND d.next_attempt_at = 'infinity'
                        LIMIT parked) p;
                    budget := budget - from_waiting;
                    -- Taking all it looked for: there may be more.
                    remains := from_waiting = parked;
                ELSE
                    -- No room or budget to look: they may still be there.
                    remains := true;
                END IF;
            ELSIF queued THEN
                remains := true;
            END IF;
        END IF;
        IF rate IS NOT NULL THEN
            UPDATE hookrelay.endpoint_throttle t
            SET tokens = tok - granted - from_waiting, refilled_at = now_at, waiting = remains
            WHERE t.endpoint_id = ep_id;
        ELSIF remains IS DISTINCT FROM queued THEN
            UPDATE hookrelay.endpoint_throttle t SET waiting = remains
            WHERE t.endpoint_id = ep_id;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
