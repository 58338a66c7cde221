-- 0011: one check on events instead of three.
--
-- PostgreSQL rebuilds a table's CHECK constraints from their stored text at the start of every
-- statement that writes to it (parsing and planning each expression); for the three on events
-- that was a tenth of the CPU of an `emit` (measured with perf at 16 clients: ExecConstraints
-- 12 %, most of it in stringToNode). One check calling a function keeps the stored expression
-- small and the rules in one place; the errors keep the constraint names they had, so callers
-- that match on them see no change, and now also say what was wrong and how to fix it.

CREATE FUNCTION hookrelay.check_event(event text, object jsonb, changes jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF length(event) NOT BETWEEN 1 AND 200 OR event ~ '[[:space:]]' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_name_must_be_1_to_200_characters_without_spaces'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_name_must_be_1_to_200_characters_without_spaces',
                  DETAIL = format('The event name %s has %s characters%s.', quote_literal(left(event, 60)),
                                  length(event),
                                  CASE WHEN event ~ '[[:space:]]' THEN ', some of them spaces' ELSE '' END),
                  HINT = 'Name events like order.paid: 1 to 200 characters, no spaces.';
    END IF;
    IF jsonb_typeof(object) <> 'object' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_object_must_be_a_json_object'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_object_must_be_a_json_object',
                  DETAIL = format('The object is a JSON %s.', jsonb_typeof(object)),
                  HINT = 'Pass the record as a JSON object, e.g. {"id": 42}.';
    END IF;
    IF changes IS NOT NULL AND jsonb_typeof(changes) <> 'object' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_changes_must_be_a_json_object'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_changes_must_be_a_json_object',
                  DETAIL = format('The changes are a JSON %s.', jsonb_typeof(changes)),
                  HINT = 'Pass changes as an object of field names to [old, new] pairs, or NULL.';
    END IF;
    RETURN true;
END
$$;

-- Rows already written satisfied the three constraints this one replaces, so it is added
-- without scanning them again.
ALTER TABLE hookrelay.events
    DROP CONSTRAINT event_name_must_be_1_to_200_characters_without_spaces,
    DROP CONSTRAINT event_object_must_be_a_json_object,
    DROP CONSTRAINT event_changes_must_be_a_json_object,
    ADD CONSTRAINT event_must_be_valid CHECK (hookrelay.check_event(event, object, changes))
        NOT VALID;
