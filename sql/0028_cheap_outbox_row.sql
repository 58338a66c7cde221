-- 0028: what an outbox row costs the app's transaction (issue 15, item 4).
--
-- The check on events called a PL/pgSQL function for every row written, and again for every
-- event the worker marks fanned out. Measured (perf of the inserting backends, 16 clients, one
-- event per transaction): the check was the largest single cost of the row, about 17 µs of
-- PostgreSQL CPU per transaction, most of it PL/pgSQL setting up its expressions again in each
-- new transaction (its expression state lives for one transaction, so a loop of inserts in one
-- transaction hides it). The same rules written as a plain SQL expression are evaluated inline.
--
-- The function still gives the message a user reads: the constraint's first branch is the
-- whole rule for a good row (any name the strict rule accepts also passes the older one), so
-- the function runs only for a row that breaks some rule, and raises the error naming it. For
-- events named before 0015 (fanned_out_at set by the worker) it still decides, as before.
ALTER TABLE hookrelay.events
    DROP CONSTRAINT event_must_be_valid,
    ADD CONSTRAINT event_must_be_valid CHECK (
        (length(event) BETWEEN 1 AND 200
         AND event !~ '[^A-Za-z0-9._:/-]'
         AND jsonb_typeof(object) = 'object'
         AND (changes IS NULL OR jsonb_typeof(changes) = 'object'))
        OR hookrelay.check_event(event, object, changes, fanned_out_at)
    ) NOT VALID;
