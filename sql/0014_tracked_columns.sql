-- 0014: tracked columns are kept by column number, so exclusions, the account column and the
-- key follow a column through renames.
--
-- Until now track_table stored column names and baked them into the trigger arguments. After
-- `ALTER TABLE … RENAME COLUMN` (Django's RenameField) an excluded column's value went out under
-- its new name, and a renamed or dropped account column turned account_id NULL. Now each
-- column reference is kept as a pair: its number (pg_attribute.attnum, which a rename keeps)
-- and its name when tracked. The row trigger asks for the current name of each number, about a
-- microsecond per referenced column (pg_identify_object_as_address reads the catalog cache, no
-- query), and fails closed where the two disagree:
--   * an excluded column is left out under both its current and its tracked name;
--   * a dropped (or unresolvable) account column makes the write fail with an error naming
--     the fix, as TRUNCATE already does: the account is gone from the row, so an event written
--     now could never reach the right account's endpoints;
--   * a table restored from a dump has new numbers (the trigger arguments keep the old table
--     oid, which no longer matches): names are used, and a missing excluded or account column
--     makes the write fail.
-- Column references of later settings (columns, ignore_columns, ordering_key) can use the same
-- pair and the same helpers.

ALTER TABLE hookrelay.tracked_tables RENAME TO tracking;
COMMENT ON TABLE hookrelay.tracking IS
    'How each table is tracked; read it through the view hookrelay.tracked_tables';
ALTER TABLE hookrelay.tracking
    -- The oid when tracked: a restored copy of the table has another, and its numbers differ.
    ADD COLUMN tracked_oid     oid,
    -- Column numbers, in step with exclude_columns, account_column and key_columns (the names
    -- when tracked); 0 for a name that no longer resolved when this migration ran.
    ADD COLUMN exclude_attnums int2[] NOT NULL DEFAULT '{}',
    ADD COLUMN account_attnum  int2,
    ADD COLUMN key_attnums     int2[] NOT NULL DEFAULT '{}';

-- The numbers of columns given by name (0 for a name the table does not have).
CREATE FUNCTION hookrelay.column_numbers(tbl regclass, names text[]) RETURNS int2[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(coalesce(a.attnum, 0) ORDER BY u.i), '{}')
    FROM unnest(names) WITH ORDINALITY AS u(n, i)
    LEFT JOIN pg_attribute a
        ON a.attrelid = tbl AND a.attname = u.n AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- The current name of a column by number; NULL for 0, and a placeholder no row carries for a
-- dropped column. Read from the catalog cache, so the row trigger can afford it.
CREATE FUNCTION hookrelay.column_now(tbl oid, attnum int2) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN attnum > 0 THEN
        (pg_catalog.pg_identify_object_as_address(
            'pg_catalog.pg_class'::pg_catalog.regclass, tbl, attnum)).object_names[3] END
$$;

-- The current names of live columns by number, in order (dropped and unknown ones left out).
CREATE FUNCTION hookrelay.column_names(tbl regclass, attnums int2[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(a.attname::text ORDER BY u.i), '{}')
    FROM unnest(attnums) WITH ORDINALITY AS u(n, i)
    JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = u.n AND NOT a.attisdropped
$$;

-- Existing installs: the names stored so far become numbers, resolved now.
UPDATE hookrelay.tracking t
SET tracked_oid = t.tbl,
    exclude_attnums = hookrelay.column_numbers(t.tbl, t.exclude_columns),
    account_attnum = CASE WHEN t.account_column IS NOT NULL
                          THEN (hookrelay.column_numbers(t.tbl, ARRAY[t.account_column]))[1] END,
    key_attnums = hookrelay.column_numbers(t.tbl, t.key_columns)
WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
DELETE FROM hookrelay.tracking t WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
ALTER TABLE hookrelay.tracking ALTER COLUMN tracked_oid SET NOT NULL;


-- Raised by the row trigger when it cannot build an event that keeps the table's settings.
CREATE FUNCTION hookrelay.tracking_out_of_step(tbl oid, problem text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hookrelay cannot write the event for this change to %: %', tbl::regclass, problem
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = format('track the table again with its current columns (hookrelay.track_table(%L, …) or hookrelay track; '
                            'it replaces every setting, see hookrelay track --list), or stop tracking it: SELECT hookrelay.untrack_table(%L)',
                            tbl::regclass::text, tbl::regclass::text);
END
$$;

-- The row trigger. Arguments: model; the table's oid when tracked; excluded column names and
-- key column names when tracked (text[] literals); the account column's name ('' for none);
-- then the column numbers: excluded, key, account. Triggers from before 0014 have four
-- arguments (model, excluded, account, key names) and are read by name, as a restored copy is.
CREATE OR REPLACE FUNCTION hookrelay.tracked_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_style  boolean := TG_NARGS = 4;
    tbl        oid := CASE WHEN NOT old_style THEN TG_ARGV[1]::oid END;
    excluded   text[] := TG_ARGV[CASE WHEN old_style THEN 1 ELSE 2 END];
    key_cols   text[] := TG_ARGV[3];
    account    text := nullif(TG_ARGV[CASE WHEN old_style THEN 2 ELSE 4 END], '');
    n_excluded integer := cardinality(excluded);
    tracked_as text := account;
    by_number  boolean;
    col        text;
    row_json   jsonb;
    new_object jsonb;
    old_object jsonb;
    row_id     text;
BEGIN
    row_json := CASE TG_OP WHEN 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    by_number := tbl = TG_RELID OR tbl = pg_partition_root(TG_RELID);
    IF by_number THEN
        -- Numbers are the truth; an excluded column goes under both names when they differ.
        FOR i IN 1 .. n_excluded LOOP
            col := hookrelay.column_now(tbl, TG_ARGV[4 + i]::int2);
            IF col IS DISTINCT FROM excluded[i] THEN
                IF col IS NULL THEN
                    PERFORM hookrelay.tracking_out_of_step(tbl, format('excluded column %I is not found', excluded[i]));
                END IF;
                excluded := excluded || col;
            END IF;
        END LOOP;
        FOR i IN 1 .. cardinality(key_cols) LOOP
            key_cols[i] := hookrelay.column_now(tbl, TG_ARGV[4 + n_excluded + i]::int2);
        END LOOP;
        IF account IS NOT NULL THEN
            account := hookrelay.column_now(tbl, TG_ARGV[TG_NARGS - 1]::int2);
            -- Renamed, while another column took its old name: the numbers may be from before
            -- a restore that happened to reuse the oid, so neither column is trusted.
            IF account IS DISTINCT FROM tracked_as AND row_json ? tracked_as THEN
                PERFORM hookrelay.tracking_out_of_step(tbl, format(
                    'its account column %I was renamed to %I, and %I now names another column', tracked_as, account, tracked_as));
            END IF;
        END IF;
    ELSIF NOT row_json ?& excluded THEN
        PERFORM hookrelay.tracking_out_of_step(TG_RELID, 'an excluded column is not found by name, so it may be sent under another name');
    END IF;
    IF tracked_as IS NOT NULL AND NOT coalesce(row_json ? account, false) THEN
        PERFORM hookrelay.tracking_out_of_step(CASE WHEN by_number THEN tbl ELSE TG_RELID END, format(
            'its account column (%I when tracked) was dropped, so the event''s account is unknown', tracked_as));
    END IF;
    new_object := row_json - excluded;
    IF cardinality(key_cols) = 1 THEN
        row_id := row_json ->> key_cols[1];
    ELSIF cardinality(key_cols) > 1 THEN
        -- A composite key is sent as the JSON array of its values, in key order: [7, "b"].
        row_id := (SELECT jsonb_agg(row_json -> k ORDER BY i)
                   FROM unnest(key_cols) WITH ORDINALITY AS u(k, i))::text;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_object := to_jsonb(OLD) - excluded;
        -- Only excluded columns changed, or values that differ only in form (1.0 and 1.00).
        IF old_object = new_object THEN
            RETURN NULL;
        END IF;
        INSERT INTO hookrelay.events (event, model, object_id, object, changes, account_id)
        SELECT 'updated', TG_ARGV[0], row_id, new_object,
               jsonb_object_agg(n.key, jsonb_build_object('old', old_object -> n.key, 'new', n.value)),
               row_json ->> account
        FROM jsonb_each(new_object) AS n
        WHERE n.value IS DISTINCT FROM old_object -> n.key
        HAVING count(*) > 0;
    ELSE
        INSERT INTO hookrelay.events (event, model, object_id, object, account_id)
        VALUES (CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'deleted' END,
                TG_ARGV[0], row_id, new_object, row_json ->> account);
    END IF;
    RETURN NULL;
END
$$;

-- Installs a table's triggers with its settings (dropping any it had).
CREATE FUNCTION hookrelay.install_tracking(t hookrelay.tracking) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    target text := t.tbl::text;
    call   text;
    args   text[];
BEGIN
    PERFORM hookrelay.drop_tracking_triggers(t.tbl);
    args := ARRAY[t.model, t.tracked_oid::text, t.exclude_columns::text, t.key_columns::text,
                  coalesce(t.account_column, '')]
            || t.exclude_attnums::text[] || t.key_attnums::text[]
            || CASE WHEN t.account_column IS NOT NULL THEN ARRAY[t.account_attnum::text] ELSE '{}' END;
    call := format('hookrelay.tracked_row(%s)',
                   (SELECT string_agg(quote_literal(a), ', ' ORDER BY i) FROM unnest(args) WITH ORDINALITY AS u(a, i)));
    IF 'created' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_created AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'updated' = ANY (t.events) THEN
        -- *<> compares the stored bytes, so it works for every column type (json and point have
        -- no equality operator) and skips the function entirely for no-op updates.
        EXECUTE format('CREATE TRIGGER hookrelay_updated AFTER UPDATE ON %s FOR EACH ROW WHEN (OLD *<> NEW) EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'deleted' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_deleted AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s',
                       target, call);
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

-- What is wrong with a table's tracking, for operators; NULL when nothing is.
CREATE FUNCTION hookrelay.tracking_problem(t hookrelay.tracking) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.tbl::oid <> t.tracked_oid
            THEN 'restored from another database: its columns are read by name until it is tracked again'
        WHEN EXISTS (SELECT 1 FROM pg_trigger g
                     WHERE g.tgrelid = t.tbl AND g.tgnargs = 4
                       AND g.tgfoid = 'hookrelay.tracked_row()'::regprocedure)
            THEN 'tracked before hookrelay''s migration 14, which could not reinstall its triggers: exclusions do not follow renames until it is tracked again'
        WHEN 0 = ANY (t.exclude_attnums || t.account_attnum)
            THEN 'a column it names was not found when migration 14 ran: its writes fail until it is tracked again'
        WHEN t.account_attnum IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = t.tbl AND a.attnum = t.account_attnum AND NOT a.attisdropped)
            THEN 'its account column was dropped: its writes fail until it is tracked again or untracked'
    END
$$;

-- Tracked tables with their columns' current names.
CREATE VIEW hookrelay.tracked_tables AS
SELECT t.tbl, t.model, t.events,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN hookrelay.column_names(t.tbl, t.exclude_attnums) ELSE t.exclude_columns END AS exclude_columns,
       CASE WHEN t.account_column IS NULL OR t.tbl::oid <> t.tracked_oid THEN t.account_column
            ELSE coalesce((hookrelay.column_names(t.tbl, ARRAY[t.account_attnum]))[1],
                          t.account_column || ' (dropped)') END AS account_column,
       CASE WHEN t.tbl::oid = t.tracked_oid
            THEN hookrelay.column_names(t.tbl, t.key_attnums) ELSE t.key_columns END AS key_columns,
       t.tracked_at, t.updated_at, hookrelay.tracking_problem(t) AS problem
FROM hookrelay.tracking t
WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);

-- Tracks a table: installs (or reconfigures in place) its triggers and records how.
DROP FUNCTION hookrelay.track_table(regclass, text[], text[], text, text);
CREATE FUNCTION hookrelay.track_table(
    tbl             regclass,
    events          text[] DEFAULT '{created,updated,deleted}',
    exclude_columns text[] DEFAULT '{}',
    account_column  text   DEFAULT NULL,
    model           text   DEFAULT NULL
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
    key_columns := ARRAY(
        SELECT a.attname::text
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisprimary
        ORDER BY k.n);
    PERFORM hookrelay.check_tracking(tbl, events, exclude_columns, account_column, model, key_columns);
    exclude_columns := ARRAY(SELECT DISTINCT c FROM unnest(exclude_columns) AS c ORDER BY c);
    settings := ROW(tbl, coalesce(model, rel.nspname || '.' || rel.relname),
                    ARRAY(SELECT e FROM unnest('{created,updated,deleted,truncated}'::text[]) AS e
                          WHERE e = ANY (events)),
                    exclude_columns, account_column, key_columns, now(), now(), tbl::oid,
                    hookrelay.column_numbers(tbl, exclude_columns),
                    CASE WHEN account_column IS NOT NULL
                         THEN (hookrelay.column_numbers(tbl, ARRAY[account_column]))[1] END,
                    hookrelay.column_numbers(tbl, key_columns));
    PERFORM hookrelay.install_tracking(settings);

    -- Rows of tables dropped since they were tracked (their triggers went with them).
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = track_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    INSERT INTO hookrelay.tracking SELECT (settings).*;
    SELECT * INTO result FROM hookrelay.tracked_tables v WHERE v.tbl = track_table.tbl;
    RETURN result;
END
$$;

-- Stops tracking a table. Returns false when it was not tracked.
CREATE OR REPLACE FUNCTION hookrelay.untrack_table(tbl regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    dropped integer;
    removed integer;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'untrack_table needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    dropped := hookrelay.drop_tracking_triggers(tbl);
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = untrack_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN dropped > 0 OR removed > 0;
END
$$;

-- Existing installs: reinstall each table's triggers with the new arguments. Creating a trigger
-- takes the table's owner; where this user is not, the old triggers stay (read by name, failing
-- closed when a name is missing) and tracked_tables.problem says to track the table again.
DO $$
DECLARE
    t hookrelay.tracking;
BEGIN
    FOR t IN SELECT * FROM hookrelay.tracking LOOP
        BEGIN
            PERFORM hookrelay.install_tracking(t);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'could not reinstall the hookrelay triggers of %: %', t.tbl, SQLERRM
                USING HINT = format('as its owner, run SELECT hookrelay.track_table(%L, …) with its settings (hookrelay track --list)', t.tbl::text);
        END;
    END LOOP;
END
$$;

-- The view replaces the table operators could read.
SELECT hookrelay.grant_roles();
