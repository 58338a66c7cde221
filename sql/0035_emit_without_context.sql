-- 0035: emit without context skips the context defaults (issue 15, item 4).
--
-- Counted as in 0031 (valgrind, a single-user backend running the bench's statement, an order
-- plus emit, once per transaction): 339k instructions per transaction before, 314k after; an
-- order alone is 60k, an order plus a bare second row 115k. The defaults of actor, traceparent
-- and tracestate are inlined expressions that read, trim and compare settings; the executor
-- compiles them at every insert (37k together), though in the usual call none is set and
-- each gives NULL. emit now tests the three settings once and, when none is set and no key or
-- context is passed, writes the three columns as NULL itself: what the defaults would have
-- written. Any other call takes the path it took before. Direct inserts and tracked tables
-- keep the defaults.
--
-- Measured and not taken, on the same count: the check constraint as a call of a PL/pgSQL
-- function (332k: its stored text is still read back and planned at every insert, and the
-- call costs what the domain's rules cost), as a BEFORE INSERT trigger (323k), or as domains
-- on the three columns (350k: each cast is compiled at every insert, and clients that ask
-- for parameter types would get the domains); uuid_v7 from random() instead of
-- gen_random_uuid() (316k and 324k: the expression costs more to compile than the strong
-- random bytes cost); the wake-up test with a float epoch instead of a numeric one (313k,
-- within noise); inserting into the day's partition directly (1.4k saved).

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
    IF emit.ordering_key IS NULL AND emit.traceparent IS NULL AND emit.tracestate IS NULL THEN
        -- The usual call. With no actor or trace context set either, the insert names the three
        -- context columns, so their defaults (which read and check the settings) are not
        -- evaluated: each would give NULL.
        IF coalesce(current_setting('hookrelay.actor', true), '') = ''
           AND coalesce(current_setting('hookrelay.traceparent', true), '') = ''
           AND coalesce(current_setting('hookrelay.tracestate', true), '') = '' THEN
            INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id,
                                          actor, traceparent, tracestate)
            VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                    coalesce(emit.object_id,
                             CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                    emit.changes, emit.account_id, NULL, NULL, NULL)
            RETURNING id INTO new_id;
        ELSE
            INSERT INTO hookrelay.events (event, object, model, object_id, changes, account_id)
            VALUES (emit.event, coalesce(emit.object, '{}'::jsonb), emit.model,
                    coalesce(emit.object_id,
                             CASE WHEN jsonb_typeof(emit.object) = 'object' THEN emit.object ->> 'id' END),
                    emit.changes, emit.account_id)
            RETURNING id INTO new_id;
        END IF;
        RETURN new_id;
    END IF;
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
