-- 0017: fitting the application's own stack (Django, Rails, their fixtures and test suites).
--
--   * `SET LOCAL hookrelay.suppress = on` stops the row triggers of tracked tables from writing
--     events for the rest of the transaction (fixtures, data migrations, backfills), and lets a
--     test suite's TRUNCATE (Django's flush) through. Any role may set it: it is a placeholder
--     setting, so no superuser is needed, unlike session_replication_role. Each row trigger's
--     WHEN clause compares it with 'on' (a plain expression: an SQL function there would be
--     inlined, that is parsed, again for every statement), so a suppressed row never enters
--     PL/pgSQL; the row function reads the other spellings (true, yes, 1) and refuses bad
--     values.
--   * `hookrelay.set_actor(jsonb)` sets the acting user transaction-locally with a value that
--     can be a bind parameter (`SET LOCAL hookrelay.actor = $1` cannot), and refuses a call
--     sent as a query of its own outside a transaction block, where the setting would vanish
--     when the statement ends.
--   * `track_table(…, ignore_columns => '{updated_at}')`: an update that changes only those
--     columns sends nothing; they are still sent in `object`. Kept by column number like the
--     other column references (0014), so they follow renames.
--   * The TRUNCATE refusal says in its first line what to do in a test suite.

-- Whether this transaction (or session) asked for no events from row triggers: off for unset
-- or empty, PostgreSQL's boolean spellings otherwise, an error naming the setting for others.
CREATE FUNCTION hookrelay.suppress_value(raw text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN raw::boolean;
EXCEPTION WHEN invalid_text_representation THEN
    RAISE EXCEPTION 'hookrelay.suppress is set to %, which is not on or off', quote_literal(left(raw, 40))
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'SET LOCAL hookrelay.suppress = on inside the transaction whose rows should send no events; off (or unset) sends them';
END
$$;

CREATE FUNCTION hookrelay.suppressed() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE coalesce(current_setting('hookrelay.suppress', true), '')
        WHEN '' THEN false WHEN 'off' THEN false WHEN 'on' THEN true
        ELSE hookrelay.suppress_value(current_setting('hookrelay.suppress', true)) END
$$;

-- Sets the acting user for the rest of the transaction; returns it as events will record it.
-- NULL clears it. A JSON object is kept as is; a string or number is a bare id.
CREATE FUNCTION hookrelay.set_actor(actor jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    -- A query sent on its own outside BEGIN … COMMIT (autocommit) is its own transaction,
    -- started at the same instant; inside a block the statement starts later. That catches the
    -- trap as psql, Django (client-side binding, its default) and Rails' execute send it. With
    -- the extended protocol the transaction starts at Parse or Bind and the statement at
    -- Execute, and no function can tell the two apart: the recipes call it inside the
    -- transaction. A string of several statements runs as one transaction, so there the actor
    -- lasts for all of them and is allowed.
    IF transaction_timestamp() = statement_timestamp()
       AND position(';' IN rtrim(coalesce(current_query(), ''), E'; \t\r\n')) = 0 THEN
        RAISE EXCEPTION 'hookrelay.set_actor was called outside a transaction block, so the actor would be forgotten when this statement ends'
            USING ERRCODE = 'no_active_sql_transaction',
                  HINT = 'call it first thing inside the transaction that writes the rows: BEGIN … COMMIT, Django transaction.atomic() (or ATOMIC_REQUESTS), Rails ActiveRecord::Base.transaction';
    END IF;
    IF actor IS NOT NULL AND jsonb_typeof(actor) NOT IN ('object', 'string', 'number') THEN
        RAISE EXCEPTION 'hookrelay.set_actor takes a JSON object or an id, not a JSON %', jsonb_typeof(actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass an object such as {"id": "1", "username": "admin"}';
    END IF;
    PERFORM set_config('hookrelay.actor', coalesce(actor::text, ''), true);
    RETURN hookrelay.current_actor();
END
$$;

-- Ignored columns, in step with their numbers (the names when tracked).
ALTER TABLE hookrelay.tracking
    ADD COLUMN ignore_columns text[] NOT NULL DEFAULT '{}',
    ADD COLUMN ignore_attnums int2[] NOT NULL DEFAULT '{}';

-- TRUNCATE fires no row triggers. Arguments: model, then 'emit' (one `truncated` event) or
-- 'refuse'. Suppressed, it does neither: a test suite empties its tables this way.
CREATE OR REPLACE FUNCTION hookrelay.tracked_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF hookrelay.suppressed() THEN
        RETURN NULL;
    END IF;
    IF TG_ARGV[1] = 'emit' THEN
        INSERT INTO hookrelay.events (event, model) VALUES ('truncated', TG_ARGV[0]);
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'TRUNCATE of %.% is refused because hookrelay tracks its deletes; in a test suite (Django flush or TransactionTestCase, Rails fixtures or DatabaseCleaner) run SET hookrelay.suppress = on first, and no events are sent',
        quote_ident(TG_TABLE_SCHEMA), quote_ident(TG_TABLE_NAME)
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'TRUNCATE would delete the rows without any "deleted" event, so receivers would never hear they are gone',
              HINT = 'in the application use DELETE; or track ''truncated'' as well (one "truncated" event per TRUNCATE); '
                     'or SET LOCAL hookrelay.suppress = on in the transaction (the test database''s connections can set it '
                     'for the session, e.g. options=-c hookrelay.suppress=on); or call hookrelay.untrack_table first';
END
$$;

-- The row trigger. Arguments: model; the table's oid when tracked; excluded and key column
-- names when tracked (text[] literals); the account column's name ('' for none); since 0017
-- the ignored column names; then the column numbers: excluded, key, account (when there is
-- one), and since 0017 ignored. Triggers from 0014 lack the ignored names and numbers; those
-- from before 0014 have four arguments and are read by name, as a restored copy is.
CREATE OR REPLACE FUNCTION hookrelay.tracked_row() RETURNS trigger
LANGUAGE plpgsql AS $$
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

-- Installs a table's triggers with its settings (dropping any it had). Each row trigger skips
-- suppressed transactions (hookrelay.suppress = on) in its WHEN clause, before any PL/pgSQL.
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
        EXECUTE format('CREATE TRIGGER hookrelay_created AFTER INSERT ON %s FOR EACH ROW WHEN (current_setting(''hookrelay.suppress'', true) IS DISTINCT FROM ''on'') EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'updated' = ANY (t.events) THEN
        -- *<> compares the stored bytes, so it works for every column type (json and point have
        -- no equality operator) and skips the function entirely for no-op updates.
        EXECUTE format('CREATE TRIGGER hookrelay_updated AFTER UPDATE ON %s FOR EACH ROW WHEN (OLD *<> NEW AND current_setting(''hookrelay.suppress'', true) IS DISTINCT FROM ''on'') EXECUTE FUNCTION %s',
                       target, call);
    END IF;
    IF 'deleted' = ANY (t.events) THEN
        EXECUTE format('CREATE TRIGGER hookrelay_deleted AFTER DELETE ON %s FOR EACH ROW WHEN (current_setting(''hookrelay.suppress'', true) IS DISTINCT FROM ''on'') EXECUTE FUNCTION %s',
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

-- Checks ignore_columns (the other arguments are checked by check_tracking).
CREATE FUNCTION hookrelay.check_ignored(tbl regclass, ignore_columns text[], exclude_columns text[])
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    bad text;
BEGIN
    IF array_position(ignore_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'ignore_columns must not contain NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(ignore_columns) AS c
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table % has no column % to ignore', tbl, bad
            USING ERRCODE = 'undefined_column',
                  HINT = 'column names are case-sensitive and given without quotes, as \d lists them';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(ignore_columns) AS c WHERE c = ANY (exclude_columns);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % is both excluded and ignored', bad, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'exclude a column to never send it; ignore it to send it in object but not send an update that changes only it';
    END IF;
END
$$;

-- Tracked tables with their columns' current names.
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
            THEN hookrelay.column_names(t.tbl, t.ignore_attnums) ELSE t.ignore_columns END AS ignore_columns
FROM hookrelay.tracking t
WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);

-- Tracks a table: installs (or reconfigures in place) its triggers and records how.
DROP FUNCTION hookrelay.track_table(regclass, text[], text[], text, text);
CREATE FUNCTION hookrelay.track_table(
    tbl             regclass,
    events          text[] DEFAULT '{created,updated,deleted}',
    exclude_columns text[] DEFAULT '{}',
    account_column  text   DEFAULT NULL,
    model           text   DEFAULT NULL,
    ignore_columns  text[] DEFAULT '{}'
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
    key_columns := ARRAY(
        SELECT a.attname::text
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisprimary
        ORDER BY k.n);
    PERFORM hookrelay.check_tracking(tbl, events, exclude_columns, account_column, model, key_columns);
    PERFORM hookrelay.check_ignored(tbl, ignore_columns, exclude_columns);
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
                    ignore_columns, hookrelay.column_numbers(tbl, ignore_columns));
    PERFORM hookrelay.install_tracking(settings);

    -- Rows of tables dropped since they were tracked (their triggers went with them).
    DELETE FROM hookrelay.tracking t
    WHERE t.tbl = track_table.tbl OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.tbl);
    INSERT INTO hookrelay.tracking SELECT (settings).*;
    SELECT * INTO result FROM hookrelay.tracked_tables v WHERE v.tbl = track_table.tbl;
    RETURN result;
END
$$;

-- Existing installs: reinstall each table's triggers, so they skip suppressed transactions.
-- Where this user does not own the table, the old triggers stay (they still write events, also
-- when suppressed) and the warning says how to reinstall them.
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

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hookrelay_app') THEN
        GRANT EXECUTE ON FUNCTION hookrelay.set_actor(jsonb), hookrelay.suppressed(),
                                  hookrelay.suppress_value(text)
            TO hookrelay_app;
    END IF;
END
$$;
SELECT hookrelay.grant_roles();
