//! Tracking configuration: track_table's checks, reconfiguring in place, untracking, TRUNCATE,
//! partitioned tables, and the `track` / `untrack` commands.

use std::process::Output;

use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

use crate::model_events::{bodies, drain, setup};
use crate::support::hookrelay;
use crate::support::TestDb;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The error a statement fails with: its SQLSTATE and message with hint.
async fn refusal(db: &TestDb, sql: &str) -> (SqlState, String) {
    let e = db.client.batch_execute(sql).await.expect_err(sql);
    let db_error = e.as_db_error().expect("a server error");
    let text = format!(
        "{} / {}",
        db_error.message(),
        db_error.hint().unwrap_or_default()
    );
    (db_error.code().clone(), text)
}

async fn trigger_count(db: &TestDb, table: &str) -> i64 {
    db.client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

/// Each bad call, the SQLSTATE it must end in and what its message must say.
fn bad_track_cases() -> Vec<(&'static str, SqlState, &'static str)> {
    vec![
        (
            "SELECT hookrelay.track_table('orders', '{created,moved}')",
            SqlState::INVALID_PARAMETER_VALUE,
            "unknown event 'moved' / events are created, updated, deleted and truncated",
        ),
        (
            "SELECT hookrelay.track_table('orders', '{}')",
            SqlState::INVALID_PARAMETER_VALUE,
            "needs at least one event",
        ),
        (
            "SELECT hookrelay.track_table('orders', exclude_columns => '{note,Status}')",
            SqlState::UNDEFINED_COLUMN,
            "table orders has no column \"Status\" / column names are case-sensitive",
        ),
        (
            "SELECT hookrelay.track_table('orders', account_column => 'tenant')",
            SqlState::UNDEFINED_COLUMN,
            "table orders has no column tenant",
        ),
        (
            "SELECT hookrelay.track_table('orders', exclude_columns => '{id}')",
            SqlState::INVALID_PARAMETER_VALUE,
            "column id of orders cannot be excluded: it is part of the primary key",
        ),
        (
            "SELECT hookrelay.track_table('orders', exclude_columns => '{note}', account_column => 'note')",
            SqlState::INVALID_PARAMETER_VALUE,
            "cannot be both the account column and excluded",
        ),
        (
            "SELECT hookrelay.track_table('orders', model => 'store Order')",
            SqlState::INVALID_PARAMETER_VALUE,
            "model name 'store Order' is not valid / use 1 to 200 characters without spaces",
        ),
        (
            "SELECT hookrelay.track_table('open_orders')",
            SqlState::WRONG_OBJECT_TYPE,
            "open_orders is not a table / track the table a view",
        ),
        (
            "SELECT hookrelay.track_table('hookrelay.events')",
            SqlState::INVALID_PARAMETER_VALUE,
            "hookrelay's own table hookrelay.events cannot be tracked",
        ),
        (
            "SELECT hookrelay.track_table('no_such_table')",
            SqlState::UNDEFINED_TABLE,
            "relation \"no_such_table\" does not exist",
        ),
        ]
}

#[tokio::test]
async fn track_table_refuses_bad_arguments_with_the_fix() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, note text);
             CREATE VIEW open_orders AS SELECT * FROM orders;",
        )
        .await
        .unwrap();
    for (sql, code, message) in bad_track_cases() {
        let (got_code, got) = refusal(&db, sql).await;
        assert_eq!(got_code, code, "{sql}: {got}");
        assert!(got.contains(message), "{sql}: {got}");
    }
    // Nothing was half-installed by any of them.
    assert_eq!(trigger_count(&db, "orders").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.tracked_tables")
            .await,
        0
    );
}

#[tokio::test]
async fn tracking_again_reconfigures_in_place_and_untracking_stops_events() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, note text);
             SELECT hookrelay.track_table('orders');
             SELECT hookrelay.track_table('orders', '{created,deleted}', '{note}', NULL, 'store.Order');
             SELECT hookrelay.track_table('orders', '{created,deleted,created}', '{note}', NULL, 'store.Order');
             INSERT INTO orders VALUES (1, 'NEW', 'internal');
             UPDATE orders SET status = 'PAID';",
        )
        .await
        .unwrap();
    // created, deleted, and the TRUNCATE guard: no duplicates from tracking three times.
    assert_eq!(trigger_count(&db, "orders").await, 3);
    let row = db
        .client
        .query_one(
            "SELECT model, events, exclude_columns, key_columns FROM hookrelay.tracked_tables",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "store.Order");
    assert_eq!(row.get::<_, Vec<String>>(1), ["created", "deleted"]);
    assert_eq!(row.get::<_, Vec<String>>(2), ["note"]);
    assert_eq!(row.get::<_, Vec<String>>(3), ["id"]);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.tracked_tables")
            .await,
        1
    );

    let untracked: bool = db
        .client
        .query_one("SELECT hookrelay.untrack_table('orders')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(untracked);
    let again: bool = db
        .client
        .query_one("SELECT hookrelay.untrack_table('orders')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!again, "untracking twice is harmless and says so");
    db.client
        .batch_execute("INSERT INTO orders VALUES (2, 'NEW'); DELETE FROM orders;")
        .await
        .unwrap();
    assert_eq!(trigger_count(&db, "orders").await, 0);
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 1, "only the insert made while tracked: {all:#?}");
    assert_eq!(all[0]["event"], "created");
    assert_eq!(all[0]["model"], json!({"app": "store", "name": "Order"}));
    assert_eq!(all[0]["object"], json!({"id": 1, "status": "NEW"}));
}

#[tokio::test]
async fn truncate_is_refused_while_deletes_are_tracked_or_sent_as_one_event() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE guarded (id int PRIMARY KEY);
             CREATE TABLE announced (id int PRIMARY KEY);
             CREATE TABLE inserts_only (id int PRIMARY KEY);
             INSERT INTO guarded VALUES (1); INSERT INTO announced VALUES (1);
             INSERT INTO inserts_only VALUES (1);
             SELECT hookrelay.track_table('guarded');
             SELECT hookrelay.track_table('announced', '{created,updated,deleted,truncated}', model => 'shop.Cart');
             SELECT hookrelay.track_table('inserts_only', '{created}');",
        )
        .await
        .unwrap();
    let (code, message) = refusal(&db, "TRUNCATE guarded").await;
    assert_eq!(code, SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert!(
        message.contains("TRUNCATE of public.guarded is refused")
            && message.contains("track 'truncated' as well"),
        "{message}"
    );
    assert_eq!(db.count("SELECT count(*) FROM guarded").await, 1);
    db.client
        .batch_execute("TRUNCATE announced; TRUNCATE inserts_only;")
        .await
        .unwrap();
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["event"], "truncated");
    assert_eq!(all[0]["model"], json!({"app": "shop", "name": "Cart"}));
    assert_eq!(all[0]["object"], json!({}));
    assert_eq!(all[0]["object_id"], Value::Null);
}

#[tokio::test]
async fn a_tracked_partitioned_table_reports_every_partition_under_its_model() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE readings (region text, id int, value int, PRIMARY KEY (region, id))
                 PARTITION BY LIST (region);
             CREATE TABLE readings_eu PARTITION OF readings FOR VALUES IN ('eu');
             SELECT hookrelay.track_table('readings');
             CREATE TABLE readings_us PARTITION OF readings FOR VALUES IN ('us');
             INSERT INTO readings VALUES ('eu', 1, 10), ('us', 1, 20);
             UPDATE readings SET value = value + 1 WHERE region = 'us';",
        )
        .await
        .unwrap();
    drain(&db).await;
    let mut got: Vec<(String, String, Value)> = bodies(&receiver, None)
        .iter()
        .map(|b| {
            assert_eq!(b["model"], json!({"app": "public", "name": "readings"}));
            (
                b["event"].as_str().unwrap().to_string(),
                b["object_id"].as_str().unwrap().to_string(),
                b["changes"].clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        got,
        [
            ("created".into(), r#"["eu", 1]"#.into(), Value::Null),
            ("created".into(), r#"["us", 1]"#.into(), Value::Null),
            (
                "updated".into(),
                r#"["us", 1]"#.into(),
                json!({"value": {"old": 20, "new": 21}})
            ),
        ]
    );
    // Untracking the parent removes the triggers PostgreSQL cloned onto the partitions.
    db.client
        .batch_execute("SELECT hookrelay.untrack_table('readings')")
        .await
        .unwrap();
    assert_eq!(trigger_count(&db, "readings_us").await, 0);
}

/// tracked_tables and `track --list` show the table as tracked from the command line.
async fn assert_tracked_as_asked(db: &TestDb) {
    let row = db
        .client
        .query_one(
            "SELECT events, exclude_columns, account_column FROM hookrelay.tracked_tables",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), ["created", "updated"]);
    assert_eq!(row.get::<_, Vec<String>>(1), ["note"]);
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("tenant"));
    let list = hookrelay(db, &["track", "--list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("store.\"Order\" as model store.Order"));
}

/// An unquoted mixed-case name, an unknown event and a column in the wrong case are refused
/// with the fix.
fn assert_track_refusals_name_the_fix(db: &TestDb) {
    for (args, expected) in [
        (
            vec!["track", "store.Order"],
            "error: no table store.Order: give it as schema.table, with mixed-case or unusual \
             names quoted as in SQL, e.g. 'store.\"Order\"'",
        ),
        (
            vec!["track", r#"store."Order""#, "--events", "created,moved"],
            "error: unknown event 'moved'; hint: events are created, updated, deleted and truncated",
        ),
        (
            vec!["track", r#"store."Order""#, "--exclude", "Note"],
            "error: table store.\"Order\" has no column \"Note\"; hint: column names are \
             case-sensitive and given without quotes, as \\d lists them",
        ),
    ] {
        let out = hookrelay(db, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out).trim(), expected, "{args:?}");
    }
}

/// `untrack` removes the trigger, and a second one says there was nothing to do.
async fn assert_untrack_and_again(db: &TestDb) {
    let out = hookrelay(db, &["untrack", r#"store."Order""#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"stopped tracking store."Order""#
    );
    assert_eq!(trigger_count(db, r#"store."Order""#).await, 0);
    let out = hookrelay(db, &["untrack", r#"store."Order""#]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("was not tracked; nothing to do"));
}

#[tokio::test]
async fn track_and_untrack_from_the_command_line() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            r#"CREATE SCHEMA store;
               CREATE TABLE store."Order" (id int PRIMARY KEY, total numeric, note text,
                                           tenant text);"#,
        )
        .await
        .unwrap();
    let out = hookrelay(
        &db,
        &[
            "track",
            r#"store."Order""#,
            "--events",
            "created,updated",
            "--exclude",
            "note",
            "--account-column",
            "tenant",
            "--model",
            "store.Order",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"tracking store."Order" as model store.Order: events created, updated; excluding note; account from tenant; object_id from id"#
    );
    assert_tracked_as_asked(&db).await;
    assert_track_refusals_name_the_fix(&db);
    assert_untrack_and_again(&db).await;
}

/// The body's `timestamp` orders the states of one row, even within a second: microseconds,
/// and the time the row was written rather than when its transaction began.
#[tokio::test]
async fn timestamps_order_the_states_of_a_row_written_within_a_second() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE doc (id int PRIMARY KEY, state text);
             SELECT hookrelay.track_table('doc', '{updated}');
             INSERT INTO doc VALUES (1, 'A');",
        )
        .await
        .unwrap();
    // `early` begins first but writes last: its states are the newest.
    let mut other = crate::support::connect(&db.url).await;
    let early = other.transaction().await.unwrap();
    early.batch_execute("SELECT 1").await.unwrap();
    db.client
        .batch_execute("UPDATE doc SET state = 'B' WHERE id = 1")
        .await
        .unwrap();
    early
        .batch_execute(
            "UPDATE doc SET state = 'C' WHERE id = 1;
             UPDATE doc SET state = 'D' WHERE id = 1;",
        )
        .await
        .unwrap();
    early.commit().await.unwrap();
    drain(&db).await;

    let mut states: Vec<(String, String)> = bodies(&receiver, None)
        .iter()
        .map(|b| {
            let ts = b["timestamp"].as_str().unwrap().to_string();
            (ts, b["object"]["state"].as_str().unwrap().to_string())
        })
        .collect();
    for (ts, _) in &states {
        let fraction = ts.rsplit_once('.').map(|(_, f)| f).unwrap_or_default();
        assert!(
            fraction.len() == 7
                && fraction.ends_with('Z')
                && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "RFC 3339 with six fractional digits: {ts}"
        );
    }
    // Six fixed digits: the text sorts as the time does.
    states.sort();
    let order: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(order, ["B", "C", "D"], "{states:?}");
    states.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(states.len(), 3, "distinct timestamps: {states:?}");
}
