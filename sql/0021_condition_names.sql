-- 0021: a tracking condition shown and reused with its columns' current names. PostgreSQL
-- keeps a trigger's WHEN clause by column number, so the condition follows renames; the
-- text given to track_table does not. The condition now also lives alone in a disabled
-- trigger (hookrelay_condition, which never fires), and is read back as PostgreSQL deparses
-- it: tracked_tables shows it, and every reinstall (install_tracking, as 0014/0017/0020's
-- migrations reinstall) uses it instead of the stored text, which names the old columns.

-- The function of the condition's trigger: disabled, it never runs; a no-op should someone
-- enable all of a table's triggers.
CREATE FUNCTION hookrelay.tracked_condition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END
$$;

-- The table's tracking condition as PostgreSQL deparses it now (NULL without one). An UPDATE
-- trigger's WHEN clause may name both OLD and NEW, so it holds every valid condition.
CREATE FUNCTION hookrelay.tracked_condition_now(tbl regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT substring(pg_get_triggerdef(t.oid)
                     FROM ' FOR EACH ROW WHEN \((.*)\) EXECUTE FUNCTION hookrelay\.tracked_condition\(\)$')
    FROM pg_trigger t
    WHERE t.tgrelid = tbl AND t.tgparentid = 0 AND t.tgname = 'hookrelay_condition'
      AND t.tgfoid = 'hookrelay.tracked_condition()'::regprocedure
$$;

CREATE OR REPLACE FUNCTION hookrelay.drop_tracking_triggers(tbl regclass) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    trigger_name name;
    dropped integer := 0;
BEGIN
    FOR trigger_name IN
        SELECT t.tgname FROM pg_trigger t
        WHERE t.tgrelid = tbl AND t.tgparentid = 0
          AND t.tgfoid IN ('hookrelay.tracked_row()'::regprocedure,
                           'hookrelay.tracked_truncate()'::regprocedure,
                           'hookrelay.tracked_condition()'::regprocedure)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- Installs t's triggers. The condition of the triggers it replaces wins over t.condition:
-- that one has the columns' current names (track_table drops the old triggers first, so a
-- condition given there is used as given).
CREATE OR REPLACE FUNCTION hookrelay.install_tracking(t hookrelay.tracking) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    target text := t.tbl::text;
    call   text;
    args   text[];
BEGIN
    IF t.tbl::oid = t.tracked_oid THEN
        t.condition := coalesce(hookrelay.tracked_condition_now(t.tbl), t.condition);
    END IF;
    PERFORM hookrelay.drop_tracking_triggers(t.tbl);
    args := ARRAY[t.model, t.tracked_oid::text, t.exclude_columns::text, t.key_columns::text,
                  coalesce(t.account_column, ''), t.ignore_columns::text]
            || t.exclude_attnums::text[] || t.key_attnums::text[]
            || CASE WHEN t.account_column IS NOT NULL THEN ARRAY[t.account_attnum::text] ELSE '{}' END
            || t.ignore_attnums::text[];
    call := format('hookrelay.tracked_row(%s)',
                   (SELECT string_agg(quote_literal(a), ', ' ORDER BY i) FROM unnest(args) WITH ORDINALITY AS u(a, i)));
    IF 'created' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_created AFTER INSERT ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                       target, hookrelay.tracking_when(t, 'INSERT'), call);
    END IF;
    IF 'updated' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_updated AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                       target, hookrelay.tracking_when(t, 'UPDATE'), call);
    END IF;
    IF 'deleted' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_deleted AFTER DELETE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                       target, hookrelay.tracking_when(t, 'DELETE'), call);
    END IF;
    IF 'truncated' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_truncated AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.tracked_truncate(%L, %L)',
                       target, t.model, 'emit');
    ELSIF 'deleted' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_truncated BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION hookrelay.tracked_truncate(%L, %L)',
                       target, t.model, 'refuse');
    END IF;
    IF t.condition IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER hookrelay_condition AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION hookrelay.tracked_condition()',
                       target, t.condition);
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER hookrelay_condition', target);
    END IF;
END
$$;

-- Tracked tables with their columns' current names, and their columns and condition.
CREATE OR REPLACE VIEW hookrelay.tracked_tables AS
SELECT t.tbl, t.model, t.events,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN hookrelay.column_names(t.tbl, t.exclude_attnums) ELSE t.exclude_columns END AS exclude_columns,
       CASE WHEN t.account_column IS NULL OR t.tbl::oid <> t.tracked_oid THEN t.account_column
            ELSE coalesce((hookrelay.column_names(t.tbl, ARRAY[t.account_attnum]))[1],
                          t.account_column || ' (dropped)') END AS account_column,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN hookrelay.column_names(t.tbl, t.key_attnums) ELSE t.key_columns END AS key_columns,
       t.tracked_at, t.updated_at, hookrelay.tracking_problem(t) AS problem,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN hookrelay.column_names(t.tbl, t.ignore_attnums) ELSE t.ignore_columns END AS ignore_columns,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN hookrelay.column_names(t.tbl, t.column_attnums) ELSE t.columns END AS columns,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN coalesce(hookrelay.tracked_condition_now(t.tbl), t.condition) ELSE t.condition END AS condition
FROM hookrelay.tracking t
WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);

-- Tracks a table: installs (or reconfigures in place) its triggers and records how. The old
-- triggers go first, so the condition given here replaces theirs; it is stored as PostgreSQL
-- deparses it.
CREATE OR REPLACE FUNCTION hookrelay.track_table(
    tbl             regclass,
    events          text[] DEFAULT '{created,updated,deleted}',
    exclude_columns text[] DEFAULT '{}',
    account_column  text   DEFAULT NULL,
    model           text   DEFAULT NULL,
    ignore_columns  text[] DEFAULT '{}',
    columns         text[] DEFAULT '{}',
    condition       text   DEFAULT NULL
) RETURNS hookrelay.tracked_tables
LANGUAGE plpgsql AS $$
DECLARE
    rel         record;
    key_columns text[];
    settings    hookrelay.tracking;
    result      hookrelay.tracked_tables;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'track_table needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no table with oid %', tbl::oid USING ERRCODE = 'undefined_table';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'track the table a view or materialized view reads from';
    END IF;
    IF rel.nspname = 'hookrelay' THEN
        RAISE EXCEPTION 'hookrelay''s own table % cannot be tracked', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    events := coalesce(events, '{created,updated,deleted}');
    exclude_columns := coalesce(exclude_columns, '{}');
    ignore_columns := coalesce(ignore_columns, '{}');
    columns := coalesce(columns, '{}');
    condition := nullif(btrim(condition), '');
    key_columns := ARRAY(
        SELECT a.attname::text
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisprimary
        ORDER BY k.n);
    PERFORM hookrelay.check_tracking(tbl, events, exclude_columns, account_column, model, key_columns);
    PERFORM hookrelay.check_ignored(tbl, ignore_columns, exclude_columns);
    PERFORM hookrelay.check_columns(tbl, columns, exclude_columns);
    columns := ARRAY(SELECT DISTINCT c FROM unnest(columns) AS c ORDER BY c);
    exclude_columns := ARRAY(SELECT DISTINCT c FROM unnest(exclude_columns) AS c ORDER BY c);
    ignore_columns := ARRAY(SELECT DISTINCT c FROM unnest(ignore_columns) AS c ORDER BY c);
    settings := ROW(tbl, coalesce(model, rel.nspname || '.' || rel.relname),
                    ARRAY(SELECT e FROM unnest('{created,updated,deleted,truncated}'::text[]) AS e
                          WHERE e = ANY (events)),
                    exclude_columns, account_column, key_columns, now(), now(), tbl::oid,
                    hookrelay.column_numbers(tbl, exclude_columns),
                    CASE WHEN account_column IS NOT NULL
                         THEN (hookrelay.column_numbers(tbl, ARRAY[account_column]))[1] END,
                    hookrelay.column_numbers(tbl, key_columns),
                    ignore_columns, hookrelay.column_numbers(tbl, ignore_columns),
                    columns, hookrelay.column_numbers(tbl, columns), condition);
    PERFORM hookrelay.drop_tracking_triggers(tbl);
    BEGIN
        PERFORM hookrelay.install_tracking(settings);
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch
                   OR invalid_object_definition OR undefined_table OR feature_not_supported
                   OR invalid_text_representation OR ambiguous_column THEN
        IF condition IS NULL THEN
            RAISE;
        END IF;
        -- PostgreSQL's own message, about the condition as given.
        RAISE EXCEPTION 'condition % is refused: %', to_jsonb(left(condition, 200)), SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'a condition is a boolean SQL expression over NEW (created, updated) and OLD '
                         '(updated, deleted), as in a trigger''s WHEN clause, e.g. NEW.status = ''PAID''; '
                         'one naming OLD cannot apply to created events, nor one naming NEW to deleted: '
                         'leave those out of events';
    END;

    settings.condition := hookrelay.tracked_condition_now(tbl);

    -- Rows of tables dropped since they were tracked (their triggers went with them).
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = track_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    INSERT INTO hookrelay.tracking SELECT (settings).*;
    SELECT * INTO result FROM hookrelay.tracked_tables v WHERE v.tbl = track_table.tbl;
    RETURN result;
END
$$;

-- Existing installs: each condition gets its trigger. One whose columns were renamed since
-- (its text names the old ones) is refused: the table keeps its working triggers and the
-- warning says how to give the condition again.
DO $$
DECLARE
    t hookrelay.tracking;
BEGIN
    FOR t IN SELECT * FROM hookrelay.tracking tr
             WHERE tr.condition IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tr.tbl)
    LOOP
        BEGIN
            PERFORM hookrelay.install_tracking(t);
            UPDATE hookrelay.tracking tr SET condition = hookrelay.tracked_condition_now(t.tbl)
            WHERE tr.tbl = t.tbl;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not keep the condition of % by column: %', t.tbl, SQLERRM
                USING HINT = format('as its owner, run SELECT hookrelay.track_table(%L, …, condition => …) with its settings (hookrelay track --list) and the condition''s current column names', t.tbl::text);
        END;
    END LOOP;
END
$$;
