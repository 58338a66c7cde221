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



-- Backfill: one event per existing row of a tracked table, shaped as its triggers shape rows
-- (excluded columns left out, object_id from the key, account from the account column, the
-- table's model), written in keyset batches by primary key, each batch one short transaction.
-- Progress is kept here, in the transaction that writes each batch's events, so a backfill
-- interrupted at any instant resumes where it stopped, with no row written twice or skipped.
CREATE TABLE hookrelay.backfills (
    tbl         regclass    NOT NULL,
    event       text        NOT NULL,
    where_sql   text        NOT NULL DEFAULT '',
    last_key    jsonb,
    rows_done   bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tbl, event, where_sql)
);

-- The parts of a backfill's statements for a tracked table: its row filter (rows after
-- `after`, by key, and `where_sql`) and its key order. Refuses untracked tables, tables
-- without a primary key, and a where_sql that is not a boolean over the table's columns.
CREATE FUNCTION hookrelay.backfill_parts(tbl regclass, where_sql text, after jsonb,
                                         OUT t hookrelay.tracking, OUT filter text,
                                         OUT key_order text, OUT key_json text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    keys  text[];
    types text[];
BEGIN
    SELECT * INTO t FROM hookrelay.tracking tr WHERE tr.tbl = backfill_parts.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not tracked, so there is no shape for its events', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('track it first: SELECT hookrelay.track_table(%L) or hookrelay track %s', tbl::text, tbl::text);
    END IF;
    keys := hookrelay.column_names(tbl, t.key_attnums);
    IF cardinality(keys) = 0 THEN
        RAISE EXCEPTION '% has no primary key, which a backfill walks in batches', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'add a primary key, or write the events with hookrelay.emit';
    END IF;
    types := ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
                   FROM unnest(t.key_attnums) WITH ORDINALITY AS u(n, i)
                   JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = u.n ORDER BY u.i);
    key_order := (SELECT string_agg(format('r.%I', k), ', ') FROM unnest(keys) AS k);
    key_json := (SELECT format('jsonb_build_array(%s)', string_agg(format('r.%I', k), ', '))
                 FROM unnest(keys) AS k);
    -- The condition alone first, so PostgreSQL's message is about it (argument of WHERE…).
    IF nullif(btrim(where_sql), '') IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT 1 FROM %s r WHERE (%s) LIMIT 0', tbl, where_sql);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'the backfill''s --where % is refused: %', to_jsonb(left(where_sql, 200)), SQLERRM
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('--where is a boolean SQL condition over the columns of %s, e.g. "created_at > now() - interval ''30 days''"', tbl);
        END;
    END IF;
    filter := format('(%s) AND (%s)',
        CASE WHEN after IS NULL THEN 'true'
             ELSE format('(%s) > (%s)', key_order,
                         (SELECT string_agg(format('(%L::jsonb ->> %s)::%s', after, i - 1, types[i]), ', ')
                          FROM generate_series(1, cardinality(keys)) AS i)) END,
        coalesce(nullif(btrim(where_sql), ''), 'true'));
END
$$;

-- How many rows a backfill has left (all of them when it has not started).
CREATE FUNCTION hookrelay.backfill_remaining(tbl regclass, event text, where_sql text DEFAULT '')
RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p record;
    n bigint;
BEGIN
    p := hookrelay.backfill_parts(tbl, where_sql,
        (SELECT b.last_key FROM hookrelay.backfills b
         WHERE b.tbl = backfill_remaining.tbl AND b.event = backfill_remaining.event
           AND b.where_sql = coalesce(backfill_remaining.where_sql, '')));
    EXECUTE format('SELECT count(*) FROM %s r WHERE %s', tbl, p.filter) INTO n;
    RETURN n;
END
$$;

-- One batch: up to `batch` rows after the last one done, as events; returns the rows written
-- by this batch, in all, and whether the backfill is finished. Run in its own transaction.
CREATE FUNCTION hookrelay.backfill_batch(tbl regclass, event text, where_sql text DEFAULT '',
                                         batch integer DEFAULT 1000,
                                         OUT written bigint, OUT rows_done bigint,
                                         OUT finished boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b        hookrelay.backfills;
    p        record;
    excluded text[];
    account  text;
    n_keys   integer;
    last     jsonb;
BEGIN
    where_sql := coalesce(where_sql, '');
    IF event IS NULL OR length(event) NOT BETWEEN 1 AND 200 OR event ~ '[[:space:]]' THEN
        RAISE EXCEPTION 'event name %: 1 to 200 characters without spaces', to_jsonb(event)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch IS NULL OR batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'batch must be 1 to 100000 rows, not %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO hookrelay.backfills AS x (tbl, event, where_sql)
    VALUES (backfill_batch.tbl, backfill_batch.event, backfill_batch.where_sql)
    ON CONFLICT ON CONSTRAINT backfills_pkey DO UPDATE SET updated_at = now()
    RETURNING * INTO b;
    -- Locked: two runs of the same backfill take turns instead of writing rows twice.
    SELECT * INTO b FROM hookrelay.backfills x
    WHERE x.tbl = b.tbl AND x.event = b.event AND x.where_sql = b.where_sql FOR UPDATE;
    IF b.finished_at IS NOT NULL THEN
        written := 0; rows_done := b.rows_done; finished := true;
        RETURN;
    END IF;
    p := hookrelay.backfill_parts(tbl, where_sql, b.last_key);
    excluded := hookrelay.column_names(tbl, (p.t).exclude_attnums);
    account := CASE WHEN (p.t).account_column IS NOT NULL
                    THEN hookrelay.column_now(tbl, (p.t).account_attnum) END;
    n_keys := cardinality((p.t).key_attnums);
    EXECUTE format(
        'WITH rows AS (
             -- Numbered in key order (the index''s order, not jsonb''s) after the LIMIT.
             SELECT x.*, row_number() OVER () AS n
             FROM (SELECT to_jsonb(r) AS row_json, %1$s AS key FROM %2$s r WHERE %3$s
                   ORDER BY %4$s LIMIT %5$s) x
         ), written AS (
             INSERT INTO hookrelay.events (event, model, object_id, object, account_id)
             SELECT $1, $2,
                    CASE WHEN $4 = 1 THEN rows.key ->> 0 ELSE rows.key::text END,
                    rows.row_json - $3::text[], rows.row_json ->> $5
             FROM rows ORDER BY rows.n
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM written),
                (SELECT rows.key FROM rows ORDER BY rows.n DESC LIMIT 1)',
        p.key_json, tbl, p.filter, p.key_order, batch)
    INTO written, last
    USING event, (p.t).model, excluded, n_keys, account;
    UPDATE hookrelay.backfills x
    SET last_key = coalesce(last, x.last_key), rows_done = x.rows_done + written,
        updated_at = now(), finished_at = CASE WHEN written < batch THEN now() END
    WHERE x.tbl = b.tbl AND x.event = b.event AND x.where_sql = b.where_sql
    RETURNING x.rows_done, x.finished_at IS NOT NULL INTO rows_done, finished;
END
$$;

-- Operators may read backfill progress; grant_roles() (0019's) grants it too from now on.
CREATE OR REPLACE FUNCTION hookrelay.grant_roles() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    granted text[] := hookrelay.grant_roles_0008();
BEGIN
    IF 'hookrelay_operator' = ANY (granted) THEN
        GRANT SELECT (filter, number_format, skip_empty_changes) ON hookrelay.endpoints
            TO hookrelay_operator;
        GRANT EXECUTE ON FUNCTION
            hookrelay.replay(text, timestamptz, timestamptz, text[], boolean, interval)
            TO hookrelay_operator;
        GRANT SELECT ON hookrelay.backfills TO hookrelay_operator;
    END IF;
    RETURN granted;
END
$$;
SELECT hookrelay.grant_roles();
