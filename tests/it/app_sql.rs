//! The SQL surface an application's own stack uses (migration 0017): the schema printed for
//! the app's migrations, `hookrelay.suppress`, `hookrelay.set_actor` and `ignore_columns`,
//! tried as the application's role where it matters.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::roles::login;
use crate::support::{connect, hookrelay, TestDb};

/// What a successful command printed.
fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `sql` with psql in one transaction, as a migration tool would.
pub fn psql(url: &str, sql: &str) -> Output {
    let mut child = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    // psql stops reading at the first error (ON_ERROR_STOP): a broken pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(sql.as_bytes());
    child.wait_with_output().unwrap()
}

/// The recorded migrations: version, name and checksum.
async fn versions(client: &Client) -> Vec<(i32, String, String)> {
    client
        .query(
            "SELECT version, name, checksum FROM hookrelay.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Panics with psql's error unless it succeeded.
fn assert_psql_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An app that embedded an older hookrelay's SQL (`older`, everything before the newest
/// migration) upgrades, with `hookrelay migrate` or with the printed step, to what
/// `migrated` has.
async fn assert_upgrade_on_top(older: &str, upgrade_with_cli: bool, migrated: &TestDb) {
    let last = hookrelay::admin::migrate::MIGRATIONS.last().unwrap().name;
    let latest = hookrelay::admin::migrate::latest_version();
    let db = TestDb::empty().await;
    assert_psql_ok(&psql(&db.url, older));
    if upgrade_with_cli {
        let said = stdout(&hookrelay(&db, &["migrate"]));
        assert_eq!(
            said.trim(),
            format!("applied {last}\nschema hookrelay is at version {latest}")
        );
    } else {
        let from = (latest - 1).to_string();
        let step = stdout(&hookrelay(
            &db,
            &["migrate", "--print-sql", "--from", from.as_str()],
        ));
        assert_eq!(step.matches("EXECUTE $hookrelay_").count(), 1);
        assert_psql_ok(&psql(&db.url, &step));
    }
    assert_eq!(versions(&db.client).await, versions(&migrated.client).await);
}

/// A step from a version the schema has not reached says which step to print instead; an
/// unknown version is named.
async fn assert_wrong_steps_named() {
    let db = TestDb::empty().await;
    let out = psql(
        &db.url,
        &stdout(&hookrelay(&db, &["migrate", "--print-sql", "--from", "5"])),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("hookrelay migrate --print-sql --from 0"),
        "{stderr}"
    );
    let out = hookrelay(&db, &["migrate", "--print-sql", "--from", "999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from 999 is not a schema version"));
}

#[tokio::test]
async fn the_printed_schema_installs_as_migrate_does_and_upgrades_on_top() {
    let printed = TestDb::empty().await;
    let full = stdout(&hookrelay(&printed, &["migrate", "--print-sql"]));
    assert_psql_ok(&psql(&printed.url, &full));
    let again = stdout(&hookrelay(&printed, &["migrate"]));
    let latest = hookrelay::admin::migrate::latest_version();
    assert_eq!(
        again.trim(),
        format!("schema hookrelay is up to date (version {latest})")
    );
    // Recorded exactly as `hookrelay migrate` records them.
    let migrated = TestDb::new().await;
    assert_eq!(
        versions(&printed.client).await,
        versions(&migrated.client).await
    );
    // Running it again (a second app migration, a re-run) changes nothing.
    assert_psql_ok(&psql(&printed.url, &full));
    assert_eq!(
        printed
            .count("SELECT count(*) FROM hookrelay.schema_migrations")
            .await,
        latest as i64
    );

    // An app that embedded an older hookrelay's SQL, then upgrades.
    let last = hookrelay::admin::migrate::MIGRATIONS.last().unwrap().name;
    let older = &full[..full.find(&format!("\n-- {last}\n")).unwrap()];
    for upgrade_with_cli in [true, false] {
        assert_upgrade_on_top(older, upgrade_with_cli, &migrated).await;
    }
    assert_wrong_steps_named().await;
}

/// A tracked table the app role may write, and a connection as the app role.
async fn app_table(db: &TestDb, options: &str) -> (Client, String) {
    let app = login(db, "hookrelay_app", "app", "app-password").await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, updated_at timestamptz,
                                  lock_version int NOT NULL DEFAULT 0);
             GRANT ALL ON orders TO {};
             SELECT hookrelay.track_table('orders', model => 'store.Order');",
            app.name
        ))
        .await
        .unwrap();
    let url = format!("{}{options}", app.url);
    (connect(&url).await, url)
}

async fn events(db: &TestDb) -> Vec<Value> {
    db.client
        .query(
            "SELECT jsonb_build_object('event', event, 'object', object, 'changes', changes, \
             'actor', actor) FROM hookrelay.events ORDER BY created_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn first_line(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .expect("a server error")
        .message()
        .to_string()
}

#[tokio::test]
async fn suppress_is_transaction_local_needs_no_superuser_and_lets_a_test_suite_truncate() {
    let db = TestDb::new().await;
    let (app, url) = app_table(&db, "").await;
    app.batch_execute(
        "BEGIN;
         SET LOCAL hookrelay.suppress = on;
         INSERT INTO orders VALUES (1, 'NEW'), (2, 'NEW');
         UPDATE orders SET status = 'PAID' WHERE id = 1;
         DELETE FROM orders WHERE id = 2;
         COMMIT;",
    )
    .await
    .expect("the app role may suppress its own events");
    assert_eq!(events(&db).await, Vec::<Value>::new());
    // Only that transaction: the next one sends again.
    app.batch_execute("UPDATE orders SET status = 'SHIPPED' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(events(&db).await.len(), 1);
    // A value that is neither on nor off fails loudly instead of sending or dropping events.
    let e = app
        .batch_execute(
            "BEGIN; SET LOCAL hookrelay.suppress = 'maybe'; INSERT INTO orders VALUES (3, 'NEW');",
        )
        .await
        .unwrap_err();
    assert!(
        first_line(&e).contains("hookrelay.suppress is set to 'maybe'"),
        "{e:?}"
    );
    app.batch_execute("ROLLBACK").await.unwrap();
    // PostgreSQL's other spellings of on work too.
    app.batch_execute(
        "BEGIN; SET LOCAL hookrelay.suppress = 'TRUE'; INSERT INTO orders VALUES (3, 'NEW'); COMMIT;",
    )
    .await
    .unwrap();
    assert_eq!(events(&db).await.len(), 1);

    // A test suite's flush: the refusal's first line says what to do, and doing it works.
    let e = app.batch_execute("TRUNCATE orders").await.unwrap_err();
    let line = first_line(&e);
    assert!(
        line.starts_with("TRUNCATE of public.orders is refused")
            && line.contains("in a test suite")
            && line.contains("SET hookrelay.suppress = on"),
        "{line}"
    );
    let suite = connect(&format!("{url}?options=-c%20hookrelay.suppress%3Don")).await;
    suite
        .batch_execute("INSERT INTO orders VALUES (4, 'NEW'); TRUNCATE orders;")
        .await
        .expect("a suppressed session may TRUNCATE");
    assert_eq!(events(&db).await.len(), 1, "and sends nothing");
    assert_eq!(db.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test]
async fn set_actor_is_transaction_local_takes_a_bind_parameter_and_refuses_autocommit() {
    let db = TestDb::new().await;
    let (mut app, _) = app_table(&db, "").await;
    let admin = json!({"id": "1", "username": "admin"});
    // Sent on its own outside a transaction block it would be gone before the next statement
    // (as Django's default cursors and psql send it): refused.
    let e = app
        .batch_execute(r#"SELECT hookrelay.set_actor('{"id": "1", "username": "admin"}')"#)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION));
    assert!(
        first_line(&e).contains("called outside a transaction block"),
        "{e:?}"
    );
    let tx = app.transaction().await.unwrap();
    let set: Value = tx
        .query_one("SELECT hookrelay.set_actor($1)", &[&admin])
        .await
        .unwrap()
        .get(0);
    assert_eq!(set, admin);
    tx.execute("INSERT INTO orders VALUES (1, 'NEW')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Several statements sent at once are one transaction: the actor covers them all.
    app.batch_execute(r#"SELECT hookrelay.set_actor('"42"'); UPDATE orders SET status = 'PAID'"#)
        .await
        .unwrap();
    app.batch_execute("DELETE FROM orders").await.unwrap();
    let actors: Vec<Value> = events(&db)
        .await
        .iter()
        .map(|e| e["actor"].clone())
        .collect();
    assert_eq!(actors, vec![admin, json!({"id": "42"}), Value::Null]);
    let e = app
        .batch_execute("BEGIN; SELECT hookrelay.set_actor('[1]'); ROLLBACK;")
        .await
        .unwrap_err();
    assert!(
        first_line(&e).contains("takes a JSON object or an id"),
        "{e:?}"
    );
}

/// orders, tracked from the command line with updated_at and lock_version ignored, which the
/// command says.
async fn track_ignoring_timestamps(db: &TestDb) {
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, updated_at timestamptz,
                                  lock_version int NOT NULL DEFAULT 0);",
        )
        .await
        .unwrap();
    let listed = hookrelay(
        db,
        &[
            "track",
            "orders",
            "--ignore-columns",
            "updated_at,lock_version",
        ],
    );
    assert!(
        stdout(&listed).contains("no update sent when only lock_version, updated_at changed"),
        "{}",
        stdout(&listed)
    );
}

/// `track --list` and tracked_tables follow the rename of an ignored column.
async fn assert_ignored_follow_the_rename(db: &TestDb) {
    let list = stdout(&hookrelay(db, &["track", "--list"]));
    assert!(
        list.contains("no update sent when only lock_version, modified_at changed"),
        "{list}"
    );
    let ignored: Vec<String> = db
        .client
        .query_one("SELECT ignore_columns FROM hookrelay.tracked_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ignored, ["lock_version", "modified_at"]);
}

/// Ignoring a column that is not there, or one also excluded, is refused by name.
async fn assert_bad_ignores_refused(db: &TestDb) {
    for (sql, says) in [
        (
            "SELECT hookrelay.track_table('orders', ignore_columns => '{nope}')",
            "table orders has no column nope to ignore",
        ),
        (
            "SELECT hookrelay.track_table('orders', exclude_columns => '{status}', ignore_columns => '{status}')",
            "column status of orders is both excluded and ignored",
        ),
    ] {
        let e = db.client.batch_execute(sql).await.unwrap_err();
        assert_eq!(first_line(&e), says);
    }
}

#[tokio::test]
async fn ignored_columns_alone_send_nothing_are_still_sent_and_follow_renames() {
    let db = TestDb::new().await;
    track_ignoring_timestamps(&db).await;
    // One transaction each, so the events' order is their commit order.
    for sql in [
        "INSERT INTO orders VALUES (1, 'NEW', '2026-01-01', 0)",
        "UPDATE orders SET updated_at = '2026-01-02', lock_version = 1",
        "UPDATE orders SET status = 'PAID', updated_at = '2026-01-03', lock_version = 2",
        "ALTER TABLE orders RENAME COLUMN updated_at TO modified_at",
        "UPDATE orders SET modified_at = '2026-01-04'",
        "UPDATE orders SET status = 'SHIPPED'",
    ] {
        db.client.batch_execute(sql).await.unwrap();
    }
    let all = events(&db).await;
    let names: Vec<&str> = all.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["created", "updated", "updated"], "{all:#?}");
    assert_eq!(all[1]["object"]["lock_version"], 2, "still in object");
    assert_eq!(
        all[1]["changes"]["status"],
        json!({"old": "NEW", "new": "PAID"})
    );
    assert!(all[2]["object"]["modified_at"].is_string());
    assert_ignored_follow_the_rename(&db).await;
    assert_bad_ignores_refused(&db).await;
}
