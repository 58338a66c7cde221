-- 0031: what an outbox row costs the app's transaction, again (issue 15, item 4).
--
-- Measured by counting the instructions of one backend (valgrind, a single-user backend running
-- a prepared statement once per transaction, which no other load on the machine disturbs): an
-- order plus a bare second row 109k, plus an event by a direct INSERT 379k, by emit 488k. The
-- three largest parts of the difference are work PostgreSQL redoes at every statement, from
-- stored text: the check constraint (3.7 kB of node text read back and planned again: 128k),
-- emit's call of lock_ordering_key (a SQL function that could not be inlined, so its body
-- was parsed and planned at every call: 54k) and the wake-up trigger's WHEN (42k). After this
-- migration: direct INSERT 273k, emit 317k, with every property kept (tests: bad_input,
-- producer_cost, wakeup, trace, ordered, input_checks). Only statements that also work on a
-- partitioned events table are used: functions, a type and a domain, a constraint added NOT
-- VALID (no scan), a column default, a trigger dropped.

-- Strict, and one SELECT of an expression: the planner inlines it into the caller's cached
-- plan (emit's PERFORM, a tracking trigger, an app's own statement), where it costs a function
-- call; a strict function is not called for a NULL key, which is what the WHERE did.
CREATE OR REPLACE FUNCTION hookrelay.lock_ordering_key(key text) RETURNS void
LANGUAGE sql STRICT AS $$
    -- 1752198514: hookrelay's class of advisory locks, apart from the application's own.
    SELECT pg_advisory_xact_lock(1752198514, hashtext(key))
$$;

-- emit, with the ordering key's checks inside one test: without a key (the usual call) the
-- function evaluates one expression fewer before its insert (10k instructions per call).
CREATE OR REPLACE FUNCTION hookrelay.emit(event text, object jsonb DEFAULT '{}'::jsonb,
                                          model text DEFAULT NULL, object_id text DEFAULT NULL,
                                          changes jsonb DEFAULT NULL, account_id text DEFAULT NULL,
                                          ordering_key text DEFAULT NULL,
                                          traceparent text DEFAULT NULL, tracestate text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    IF emit.ordering_key IS NOT NULL THEN
        IF emit.ordering_key = '' THEN
            RAISE EXCEPTION 'ordering_key is empty'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'give a key such as ''customer:42'', or leave ordering_key out (NULL) to order by model and object_id';
        END IF;
        -- Before the insert: the event's id and created_at are made once the key is ours.
        PERFORM hookrelay.lock_ordering_key(emit.ordering_key);
    END IF;
    IF emit.traceparent IS NULL AND emit.tracestate IS NULL THEN
        INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id,
                                      ordering_key)
        VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                coalesce(emit.object_id,
                         CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                emit.changes, emit.account_id, emit.ordering_key)
        RETURNING id INTO new_id;
    ELSE
        INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id,
                                      ordering_key, traceparent, tracestate)
        VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                coalesce(emit.object_id,
                         CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                emit.changes, emit.account_id, emit.ordering_key,
                coalesce(hookrelay.trace_parent(emit.traceparent), hookrelay.current_traceparent()),
                coalesce(hookrelay.trace_state(emit.tracestate), hookrelay.current_tracestate()))
        RETURNING id INTO new_id;
    END IF;
    RETURN new_id;
END
$$;

-- The check, as a domain. A table's CHECK is read back from its stored text and planned at
-- every statement; a domain's constraints are planned once per session and kept in the type
-- cache. So the table's constraint only casts the fields it checks to the domain (a short
-- text), and the rules live in the domain: 128k instructions per insert → 50k. The function
-- still gives the message a user reads: the first branch is the whole rule for a good row, and
-- check_event runs only for a row that breaks some rule, raising the error naming it.
CREATE TYPE hookrelay.event_fields AS (event text, object jsonb, changes jsonb);

CREATE DOMAIN hookrelay.valid_event AS hookrelay.event_fields CHECK (
    (length((VALUE).event) BETWEEN 1 AND 200
     AND (VALUE).event !~ '[^A-Za-z0-9._:/-]'
     AND jsonb_typeof((VALUE).object) = 'object'
     AND ((VALUE).changes IS NULL OR jsonb_typeof((VALUE).changes) = 'object'))
    OR hookrelay.check_event((VALUE).event, (VALUE).object, (VALUE).changes, NULL)
);

-- A row is checked when it is written. The worker's fan-out, which marks every event by
-- setting fanned_out_at (the only column it may update), does not check it again: that was
-- one more evaluation of the rules per event on the same cores. Events written before 0015
-- under older rules are fanned out as before (the constraint is NOT VALID for old rows, and
-- the mark passes: the arms of an OR are evaluated in order, so the cast is never reached).
ALTER TABLE hookrelay.events
    DROP CONSTRAINT event_must_be_valid,
    ADD CONSTRAINT event_must_be_valid CHECK (
        fanned_out_at IS NOT NULL
        OR (ROW(event, object, changes)::hookrelay.valid_event).event IS NOT NULL
    ) NOT VALID;

-- The wake-up, in the default of created_at instead of a statement trigger. A trigger's WHEN
-- is read back from its stored text and planned at every statement (42k instructions); a
-- default is planned into the statement's cached plan. Every event gets created_at from it:
-- apps may not write the column (0008), and none of hookrelay's own inserts do. While no
-- worker waits, it costs reading one sequence; while one waits, it notifies (at commit, as
-- before; repeated notifications in a transaction are folded into one by PostgreSQL).
CREATE FUNCTION hookrelay.wake_idle_workers_now() RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookrelay_events', '');
    RETURN clock_timestamp();
END
$$;

ALTER TABLE hookrelay.events ALTER COLUMN created_at SET DEFAULT
    CASE WHEN pg_sequence_last_value('hookrelay.wake_until') > extract(epoch FROM now())
         THEN hookrelay.wake_idle_workers_now()
         ELSE clock_timestamp()
    END;

DROP TRIGGER events_wake_workers ON hookrelay.events;
DROP FUNCTION hookrelay.wake_workers();
