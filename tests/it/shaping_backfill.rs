//! `hookrelay backfill`: one event per existing row of a tracked table, shaped as its triggers
//! shape rows, in keyset batches; resumable after any interruption; bad input refused.

use std::time::Duration;

use serde_json::json;

use crate::support::{binary, hookrelay, TestDb};

/// Runs `hookrelay ARGS`: whether it succeeded, its stdout and its stderr.
fn run(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = hookrelay(db, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tracked `orders` table with `rows` rows written while suppressed (so no events yet).
async fn orders(db: &TestDb, rows: i64) {
    db.client
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, status text, secret text, acct text);
             SELECT hookrelay.track_table('orders', exclude_columns => '{secret}',
                                          account_column => 'acct', model => 'store.Order');",
        )
        .await
        .unwrap();
    db.client
        .execute("SELECT set_config('hookrelay.suppress', 'on', false)", &[])
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO orders SELECT i, 'S' || i, 'x', 'a' || (i % 3)
             FROM generate_series(1, $1::bigint) i",
            &[&rows],
        )
        .await
        .unwrap();
    db.client
        .execute("SELECT set_config('hookrelay.suppress', 'off', false)", &[])
        .await
        .unwrap();
}

const SNAPSHOTS: &str = "SELECT count(*) FROM hookrelay.events WHERE event = 'snapshot'";
const DISTINCT: &str =
    "SELECT count(DISTINCT object_id) FROM hookrelay.events WHERE event = 'snapshot'";

/// A backfilled row's event carries the model, id, object and account it is tracked with.
async fn assert_shaped_as_tracked(db: &TestDb) {
    let row = db
        .client
        .query_one(
            "SELECT model, object_id, object, account_id FROM hookrelay.events
             WHERE event = 'snapshot' AND object_id = '7'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "store.Order");
    assert_eq!(row.get::<_, String>(1), "7");
    assert_eq!(
        row.get::<_, serde_json::Value>(2),
        json!({"id": 7, "status": "S7", "acct": "a1"})
    );
    assert_eq!(row.get::<_, String>(3), "a1");
}

#[tokio::test]
async fn backfill_writes_each_row_once_shaped_as_tracked_and_resumes() {
    let db = TestDb::new().await;
    orders(&db, 25).await;
    let (ok, stdout, stderr) = run(
        &db,
        &["backfill", "orders", "--where", "id > 3", "--dry-run"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("dry run: 22 rows of orders would be written"),
        "{stdout}"
    );
    assert_eq!(db.count(SNAPSHOTS).await, 0);
    // Interrupted after two batches of 10 (each its own transaction)...
    for _ in 0..2 {
        db.client
            .execute(
                "SELECT hookrelay.backfill_batch('orders', 'snapshot', 'id > 3', 10)",
                &[],
            )
            .await
            .unwrap();
    }
    // ...the same command resumes, and once done, running it again writes nothing.
    let (ok, stdout, stderr) = run(
        &db,
        &["backfill", "orders", "--where", "id > 3", "--batch", "10"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("backfilling 2 rows of orders"), "{stdout}");
    assert!(
        stdout.contains("run the same command again to resume"),
        "{stdout}"
    );
    assert!(
        stdout.contains("done: 2 events written now, 22 in all"),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&db, &["backfill", "orders", "--where", "id > 3"]);
    assert!(
        ok && stdout.contains("done: 0 events written now, 22 in all"),
        "{stdout}"
    );
    assert_eq!(
        (db.count(SNAPSHOTS).await, db.count(DISTINCT).await),
        (22, 22)
    );
    assert_shaped_as_tracked(&db).await;
    // Another event name is another backfill.
    let (ok, stdout, _) = run(
        &db,
        &["backfill", "orders", "--event", "created", "--batch", "7"],
    );
    assert!(
        ok && stdout.contains("done: 25 events written now, 25 in all"),
        "{stdout}"
    );
}

#[tokio::test]
async fn bad_backfills_are_refused_and_write_nothing() {
    let db = TestDb::new().await;
    orders(&db, 5).await;
    db.client
        .batch_execute(
            "CREATE TABLE untracked (id int PRIMARY KEY);
             CREATE TABLE keyless (a int);
             SELECT hookrelay.track_table('keyless');",
        )
        .await
        .unwrap();
    for (args, wanted) in [
        (
            vec!["backfill", "orders", "--where", "status"],
            "argument of WHERE must be type boolean",
        ),
        (
            vec!["backfill", "orders", "--where", "nope > 1"],
            "column \"nope\" does not exist",
        ),
        (
            vec!["backfill", "orders", "--where", "id >"],
            "syntax error",
        ),
        (vec!["backfill", "untracked"], "untracked is not tracked"),
        (vec!["backfill", "keyless"], "keyless has no primary key"),
        (vec!["backfill", "missing"], "no table named \"missing\""),
        (
            vec!["backfill", "orders", "--event", "has space"],
            "1 to 200 characters without spaces",
        ),
    ] {
        let (ok, _, stderr) = run(&db, &args);
        assert!(!ok, "{args:?} accepted");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.backfills").await,
        0
    );
}

/// The application keeps writing while the backfill runs: new rows (tracked: created
/// events) and updates.
async fn app_keeps_writing(db: &TestDb) -> tokio::task::JoinHandle<()> {
    let app = crate::support::connect(&db.url).await;
    tokio::spawn(async move {
        for i in 0..200i64 {
            app.execute(
                "INSERT INTO orders VALUES ($1, 'NEW', 'x', 'a0')",
                &[&(1_000_000 + i)],
            )
            .await
            .unwrap();
            app.execute(
                "UPDATE orders SET status = 'PAID' WHERE id = $1",
                &[&(1 + i * 997)],
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// `hookrelay backfill orders` in batches of 2000, started and not waited for.
fn spawn_backfill(db: &TestDb) -> std::process::Child {
    std::process::Command::new(binary())
        .args(["backfill", "orders", "--batch", "2000"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("HOOKRELAY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_killed_backfill_of_200k_rows_resumes_exactly_while_the_app_writes() {
    const ROWS: i64 = 200_000;
    let db = TestDb::new().await;
    orders(&db, ROWS).await;
    let writer = app_keeps_writing(&db).await;
    let mut child = spawn_backfill(&db);
    // Killed (-9) part way, mid-batch or between batches.
    let partway = db
        .wait_count(
            "SELECT (count(*) >= 20000)::int::bigint FROM hookrelay.events WHERE event = 'snapshot'",
            1,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(partway, 1, "the backfill made progress");
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = db.count(SNAPSHOTS).await;
    let (ok, stdout, stderr) = run(&db, &["backfill", "orders", "--batch", "5000"]);
    writer.await.unwrap();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("done: "), "{stdout}");
    let snapshots = db.count(SNAPSHOTS).await;
    println!("200k backfill: {after_kill} rows before the kill, {snapshots} in all");
    assert_eq!(snapshots, db.count(DISTINCT).await, "no row written twice");
    // Every row that existed before the backfill has its event; rows the app added while it
    // ran are included when the backfill had not passed them yet.
    let missing = db
        .count(
            "SELECT count(*) FROM orders o WHERE o.id <= 200000 AND NOT EXISTS (
                 SELECT 1 FROM hookrelay.events e
                 WHERE e.event = 'snapshot' AND e.object_id = o.id::text)",
        )
        .await;
    assert_eq!(missing, 0);
    assert!((ROWS..=ROWS + 200).contains(&snapshots), "{snapshots}");
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE event = 'created'")
            .await,
        200
    );
}
