-- 0020: conditional tracking. track_table(…, columns => '{status,total}'): an update emits
-- only when one of these columns changed; track_table(…, condition => 'NEW.status = ''PAID'''):
-- a boolean SQL expression over OLD/NEW, put in the row triggers' WHEN clause, so PostgreSQL
-- checks it when the triggers are created (a bad one is refused with its own message) and
-- rows it does not hold for cost no function call. Both are in each trigger's WHEN clause,
-- which PostgreSQL keeps by column number: they follow column renames. `columns` is stored by
-- number too (as exclude_columns, 0014), so tracked_tables shows current names and a
-- reinstall compares the right columns.

ALTER TABLE hookrelay.tracking
    ADD COLUMN columns        text[] NOT NULL DEFAULT '{}',
    ADD COLUMN column_attnums int2[] NOT NULL DEFAULT '{}',
    ADD COLUMN condition      text;

-- The WHEN clause of a table's row trigger for `op` (INSERT, UPDATE or DELETE): suppressed
-- transactions skipped; for updates, only when some byte changed (*<> compares the stored
-- bytes, so it works for every column type: json and point have no equality operator) and,
-- with `columns`, one of those changed (by text form: 1.0 and 1.00 differ, as for *<>); then
-- the condition.
CREATE FUNCTION hookrelay.tracking_when(t hookrelay.tracking, op text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cols    text[] := CASE WHEN t.tbl::oid = t.tracked_oid
                           THEN hookrelay.column_names(t.tbl, t.column_attnums) ELSE t.columns END;
    clauses text[] := '{}';
BEGIN
    IF op = 'UPDATE' THEN
        clauses := clauses || 'OLD *<> NEW'::text;
        IF cardinality(cols) > 0 THEN
            -- As text, like *<> a byte comparison that every type has (ROW(…) *<> ROW(…)
            -- would compare field by field, with operators json and point lack).
            clauses := clauses || ('(' || (
                SELECT string_agg(format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', c), ' OR ')
                FROM unnest(cols) AS c) || ')');
        END IF;
    END IF;
    IF t.condition IS NOT NULL THEN
        clauses := clauses || ('(' || t.condition || ')');
    END IF;
    clauses := clauses || 'current_setting(''hookrelay.suppress'', true) IS DISTINCT FROM ''on'''::text;
    RETURN array_to_string(clauses, ' AND ');
END
$$;

-- Checks `columns`: live columns of the table, none of them excluded.
CREATE FUNCTION hookrelay.check_columns(tbl regclass, columns text[], exclude_columns text[])
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    bad text;
BEGIN
    IF array_position(columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'columns must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(columns) AS c
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table % has no column % to watch', tbl, bad
            USING ERRCODE = 'undefined_column',
                  HINT = 'column names are case-sensitive and given without quotes, as \d lists them';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(columns) AS c WHERE c = ANY (exclude_columns);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % is both excluded and watched (columns)', bad, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'an excluded column is never sent, so a change to it alone sends nothing: leave it out of one list';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION hookrelay.install_tracking(t hookrelay.tracking) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    target text := t.tbl::text;
    call   text;
    args   text[];
BEGIN
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
       t.condition
FROM hookrelay.tracking t
WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);

-- Tracks a table: installs (or reconfigures in place) its triggers and records how.
DROP FUNCTION hookrelay.track_table(regclass, text[], text[], text, text, text[]);
CREATE FUNCTION hookrelay.track_table(
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

    -- Rows of tables dropped since they were tracked (their triggers went with them).
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = track_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    INSERT INTO hookrelay.tracking SELECT (settings).*;
    SELECT * INTO result FROM hookrelay.tracked_tables v WHERE v.tbl = track_table.tbl;
    RETURN result;
END
$$;


SELECT hookrelay.grant_roles();
