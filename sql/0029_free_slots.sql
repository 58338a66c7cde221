-- Slots are freed when a request ends, not when its result is written.
--
-- max_in_flight counts the leases of an endpoint's deliveries. A lease lasts until the
-- recorder writes the result, one commit after the request ended: with the default cap of 8
-- and a fast receiver, each slot spent most of its time waiting for that commit and for the
-- claim that followed it (the default settings drained 2,700 deliveries/s on a quiet 2-core
-- machine). The worker now tells admit() how many of its leases per endpoint belong to
-- requests that have ended ("sent", not yet written); those hold no slot. Other workers do not
-- know about them and count them, which only errs on the side of fewer requests. So at most
-- max_in_flight requests are in flight to an endpoint, as before.
--
-- admit() gains two arguments: the endpoints and their counts of ended requests. 0008 grants
-- admit by its old signature, which no longer exists: that line of its function is rewritten.
DROP FUNCTION hookrelay.admit(bigint[], integer[], integer, boolean);
CREATE FUNCTION hookrelay.admit(endpoint_ids bigint[], wanted integer[], waiting_limit integer,
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
        SELECT cap - greatest(count(*) - done, 0) INTO room
        FROM hookrelay.deliveries d
        WHERE d.endpoint_id = ep_id AND d.locked_until > now();
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

DO $$
BEGIN
    EXECUTE replace(pg_get_functiondef('hookrelay.grant_roles_0008()'::regprocedure),
                    'hookrelay.admit(bigint[], integer[], integer, boolean)',
                    'hookrelay.admit(bigint[], integer[], integer, boolean, bigint[], integer[])');
END
$$;
