-- 0023: track_table(…, ordering_key => 'customer_id'), the tracking side of ordered delivery
-- (0022): the events of a tracked table take their ordering key from a column's value.

-- track_table(…, ordering_key => 'customer_id'): the column whose value is the events' key
-- (NULL in a row: the row's own key). Kept by number like the other columns, so it follows
-- renames; passed to the row trigger after its other arguments.
ALTER TABLE hookrelay.tracking
    ADD COLUMN ordering_column text,
    ADD COLUMN ordering_attnum smallint;

CREATE OR REPLACE VIEW hookrelay.tracked_tables AS
 SELECT t.tbl,
    t.model,
    t.events,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.exclude_attnums)
            ELSE t.exclude_columns
        END AS exclude_columns,
        CASE
            WHEN ((t.account_column IS NULL) OR ((t.tbl)::oid <> t.tracked_oid)) THEN t.account_column
            ELSE COALESCE((hookrelay.column_names(t.tbl, ARRAY[t.account_attnum]))[1], (t.account_column || ' (dropped)'::text))
        END AS account_column,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.key_attnums)
            ELSE t.key_columns
        END AS key_columns,
    t.tracked_at,
    t.updated_at,
    hookrelay.tracking_problem(t.*) AS problem,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.ignore_attnums)
            ELSE t.ignore_columns
        END AS ignore_columns,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN hookrelay.column_names(t.tbl, t.column_attnums)
            ELSE t.columns
        END AS columns,
        CASE
            WHEN ((t.tbl)::oid = t.tracked_oid) THEN COALESCE(hookrelay.tracked_condition_now(t.tbl), t.condition)
            ELSE t.condition
        END AS condition,
        CASE
            WHEN ((t.ordering_column IS NULL) OR ((t.tbl)::oid <> t.tracked_oid)) THEN t.ordering_column
            ELSE COALESCE((hookrelay.column_names(t.tbl, ARRAY[t.ordering_attnum]))[1], (t.ordering_column || ' (dropped)'::text))
        END AS ordering_key
   FROM hookrelay.tracking t
  WHERE (EXISTS ( SELECT 1
           FROM pg_class c
          WHERE (c.oid = (t.tbl)::oid)));


CREATE OR REPLACE FUNCTION hookrelay.install_tracking(t hookrelay.tracking) RETURNS void
    LANGUAGE plpgsql
    AS $$
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
            || t.ignore_attnums::text[]
            || CASE WHEN t.ordering_column IS NOT NULL
                    THEN ARRAY['ordering', t.ordering_column, t.ordering_attnum::text]
                    ELSE '{}' END;
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


CREATE OR REPLACE FUNCTION hookrelay.tracked_row() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    old_style  boolean := TG_NARGS = 4;
    tbl        oid := CASE WHEN NOT old_style THEN TG_ARGV[1]::oid END;
    excluded   text[] := TG_ARGV[CASE WHEN old_style THEN 1 ELSE 2 END];
    key_cols   text[] := TG_ARGV[3];
    account    text := nullif(TG_ARGV[CASE WHEN old_style THEN 2 ELSE 4 END], '');
    n_excluded integer := cardinality(excluded);
    n_keys     integer := coalesce(cardinality(key_cols), 0);
    -- Where the numbers start: 0014's triggers have no ignored names before them.
    base       integer := CASE WHEN old_style THEN 0
                               WHEN TG_NARGS = 5 + n_excluded + n_keys + (account IS NOT NULL)::int THEN 5
                               ELSE 6 END;
    ignored    text[] := CASE WHEN base = 6 THEN TG_ARGV[5]::text[] ELSE '{}' END;
    -- 0022: 'ordering', the ordering column's name and number follow the numbers, if set.
    ord_at     integer := base + n_excluded + n_keys + (account IS NOT NULL)::int + cardinality(ignored);
    ord_col    text;
    ord_key    text;
    tracked_as text := account;
    by_number  boolean;
    col        text;
    row_json   jsonb;
    new_object jsonb;
    old_object jsonb;
    row_id     text;
BEGIN
    -- 'on' never gets here (the WHEN clause); other spellings of it, and bad values, do.
    IF current_setting('hookrelay.suppress', true) NOT IN ('', 'off') AND hookrelay.suppressed() THEN
        RETURN NULL;
    END IF;
    row_json := CASE TG_OP WHEN 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    by_number := tbl = TG_RELID OR tbl = pg_partition_root(TG_RELID);
    IF by_number THEN
        -- Numbers are the truth; an excluded column goes under both names when they differ.
        FOR i IN 1 .. n_excluded LOOP
            col := hookrelay.column_now(tbl, TG_ARGV[base - 1 + i]::int2);
            IF col IS DISTINCT FROM excluded[i] THEN
                IF col IS NULL THEN
                    PERFORM hookrelay.tracking_out_of_step(tbl, format('excluded column %I is not found', excluded[i]));
                END IF;
                excluded := excluded || col;
            END IF;
        END LOOP;
        FOR i IN 1 .. n_keys LOOP
            key_cols[i] := hookrelay.column_now(tbl, TG_ARGV[base - 1 + n_excluded + i]::int2);
        END LOOP;
        IF account IS NOT NULL THEN
            account := hookrelay.column_now(tbl, TG_ARGV[base + n_excluded + n_keys]::int2);
            -- Renamed, while another column took its old name: the numbers may be from before
            -- a restore that happened to reuse the oid, so neither column is trusted.
            IF account IS DISTINCT FROM tracked_as AND row_json ? tracked_as THEN
                PERFORM hookrelay.tracking_out_of_step(tbl, format(
                    'its account column %I was renamed to %I, and %I now names another column', tracked_as, account, tracked_as));
            END IF;
        END IF;
        IF TG_OP = 'UPDATE' THEN
            -- A dropped ignored column is simply not there to ignore.
            FOR i IN 1 .. cardinality(ignored) LOOP
                ignored[i] := hookrelay.column_now(
                    tbl, TG_ARGV[base + n_excluded + n_keys + (tracked_as IS NOT NULL)::int + i - 1]::int2);
            END LOOP;
        END IF;
    ELSIF NOT row_json ?& excluded THEN
        PERFORM hookrelay.tracking_out_of_step(TG_RELID, 'an excluded column is not found by name, so it may be sent under another name');
    END IF;
    IF tracked_as IS NOT NULL AND NOT coalesce(row_json ? account, false) THEN
        PERFORM hookrelay.tracking_out_of_step(CASE WHEN by_number THEN tbl ELSE TG_RELID END, format(
            'its account column (%I when tracked) was dropped, so the event''s account is unknown', tracked_as));
    END IF;
    IF base = 6 AND TG_NARGS > ord_at + 2 AND TG_ARGV[ord_at] = 'ordering' THEN
        ord_col := CASE WHEN by_number
                        THEN coalesce(hookrelay.column_now(tbl, TG_ARGV[ord_at + 2]::int2), TG_ARGV[ord_at + 1])
                        ELSE TG_ARGV[ord_at + 1] END;
        ord_key := row_json ->> ord_col;
        -- Rows sharing a key are not serialised by their row locks: the key's lock does it.
        PERFORM hookrelay.lock_ordering_key(ord_key);
    END IF;
    new_object := row_json - excluded;
    IF n_keys = 1 THEN
        row_id := row_json ->> key_cols[1];
    ELSIF n_keys > 1 THEN
        -- A composite key is sent as the JSON array of its values, in key order: [7, "b"].
        row_id := (SELECT jsonb_agg(row_json -> k ORDER BY i)
                   FROM unnest(key_cols) WITH ORDINALITY AS u(k, i))::text;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_object := to_jsonb(OLD) - excluded;
        -- Only excluded or ignored columns changed, or values that differ only in form (1.0
        -- and 1.00). Ignored columns still go out in object and, with a real change, changes.
        IF old_object - ignored = new_object - ignored THEN
            RETURN NULL;
        END IF;
        INSERT INTO hookrelay.events (event, model, object_id, object, changes, account_id, ordering_key)
        SELECT 'updated', TG_ARGV[0], row_id, new_object,
               jsonb_object_agg(n.key, jsonb_build_object('old', old_object -> n.key, 'new', n.value)),
               row_json ->> account, ord_key
        FROM jsonb_each(new_object) AS n
        WHERE n.value IS DISTINCT FROM old_object -> n.key
        HAVING count(*) > 0;
    ELSE
        INSERT INTO hookrelay.events (event, model, object_id, object, account_id, ordering_key)
        VALUES (CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'deleted' END,
                TG_ARGV[0], row_id, new_object, row_json ->> account, ord_key);
    END IF;
    RETURN NULL;
END
$$;


DROP FUNCTION hookrelay.track_table(regclass, text[], text[], text, text, text[], text[], text);
CREATE FUNCTION hookrelay.track_table(tbl regclass, events text[] DEFAULT '{created,updated,deleted}'::text[], exclude_columns text[] DEFAULT '{}'::text[], account_column text DEFAULT NULL::text, model text DEFAULT NULL::text, ignore_columns text[] DEFAULT '{}'::text[], columns text[] DEFAULT '{}'::text[], condition text DEFAULT NULL::text, ordering_key text DEFAULT NULL::text) RETURNS hookrelay.tracked_tables
    LANGUAGE plpgsql
    AS $$
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
    IF ordering_key IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = tbl AND a.attname = ordering_key AND a.attnum > 0
              AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'ordering_key names no column of %: %', tbl, to_jsonb(ordering_key)
            USING ERRCODE = 'undefined_column',
                  HINT = 'ordering_key is the column whose value orders the events, e.g. customer_id; '
                         'leave it out to order each row''s events by the row';
    END IF;
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
                    columns, hookrelay.column_numbers(tbl, columns), condition,
                    ordering_key,
                    CASE WHEN ordering_key IS NOT NULL
                         THEN (hookrelay.column_numbers(tbl, ARRAY[ordering_key]))[1] END);
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


