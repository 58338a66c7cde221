//! Database pressure: an application's long transaction holding locks does not stall delivery,
//! and a read-only database makes the worker back off with one clear log line, losing nothing.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{get, receipts, wait_status, WorkerProcess};
use crate::support::{connect, free_addr, metric, Receiver, Request, TestDb};

const SECRET: &str = "pressure-test-secret-0123456789";

/// The application's long transaction: a row locked FOR UPDATE, a whole table locked, an
/// update of a tracked row whose event is not committed yet, and an operator's edit of the
/// endpoint itself left uncommitted. Returns its session.
async fn hold_app_locks(db: &TestDb) -> tokio_postgres::Client {
    let holder = connect(&db.url).await;
    holder
        .batch_execute(
            "BEGIN;
             SELECT * FROM orders WHERE id = 1 FOR UPDATE;
             LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE;
             UPDATE orders SET status = 'held' WHERE id = 2;
             UPDATE hookrelay.endpoints SET timeout_ms = 3000 WHERE name = 'crm';",
        )
        .await
        .unwrap();
    holder
}

/// Delivery went on beside the long transaction, without its uncommitted update, and no
/// worker session waits on a lock.
async fn assert_delivery_went_on_beside(db: &TestDb, got: &[Request]) {
    assert_eq!(
        got.len(),
        68,
        "delivery goes on beside the long transaction"
    );
    assert!(
        got.iter().all(|r| r.json()["object"]["status"] != "held"),
        "the uncommitted update is not sent"
    );
    // No worker session waits on a lock meanwhile.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'hookrelay' AND wait_event_type = 'Lock'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_long_transaction_holding_app_locks_does_not_stall_delivery() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);
             CREATE TABLE ledger (id int PRIMARY KEY);
             SELECT hookrelay.track_table('orders');
             INSERT INTO orders SELECT i, 'new' FROM generate_series(1, 10) i;",
        )
        .await
        .unwrap();
    let worker = db.start_worker(db.config());
    assert_eq!(
        receiver.wait_for(10, Duration::from_secs(10)).await.len(),
        10
    );

    let holder = hold_app_locks(&db).await;
    let started = Instant::now();
    db.client
        .batch_execute("UPDATE orders SET status = 'paid' WHERE id >= 3")
        .await
        .unwrap();
    for i in 0..50 {
        db.emit("invoice.sent", json!({"id": i})).await;
    }
    let got = receiver
        .wait_for(10 + 8 + 50, Duration::from_secs(10))
        .await;
    let took = started.elapsed();
    assert_delivery_went_on_beside(&db, &got).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let got = receiver.wait_for(69, Duration::from_secs(10)).await;
    worker.stop().await;
    assert_eq!(got.len(), 69);
    let held = got
        .iter()
        .filter(|r| r.json()["object"]["status"] == "held")
        .count();
    assert_eq!(held, 1, "the committed update is delivered once");
    println!(
        "pressure: 58 events delivered in {:.2} s beside a transaction holding row and table locks",
        took.as_secs_f64()
    );
}

/// Closes the worker's sessions, so it reconnects and gets the database's new defaults.
async fn disconnect_workers(db: &TestDb) -> i64 {
    db.count(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'hookrelay'",
    )
    .await
}

/// Sets or resets `default_transaction_read_only` for new sessions of the test database.
async fn set_read_only(db: &TestDb, on: bool) {
    let database: String = db
        .client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let change = if on {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    db.client
        .batch_execute(&format!("ALTER DATABASE {database} {change}"))
        .await
        .unwrap();
}

/// Nothing is claimed while read-only: 5 delivered before, the 20 since wait as events.
async fn assert_nothing_claimed_while_read_only(db: &TestDb, receiver: &Receiver) {
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        receiver.requests().len(),
        5,
        "nothing is claimed while read-only"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL")
            .await,
        20,
        "the events wait"
    );
}

/// Exactly one log line about the read-only database, naming the cause, and no colour codes;
/// returns it.
fn the_one_read_only_line(log: &str) -> &str {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("read-only")).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line about the read-only database:\n{log}"
    );
    assert!(
        lines[0].contains("default_transaction_read_only") && lines[0].contains("standby"),
        "the line names the cause: {}",
        lines[0]
    );
    assert!(
        !log.contains('\u{1b}'),
        "no terminal colour codes in a log that is not a terminal"
    );
    lines[0]
}

/// Starts the worker with a metrics server and waits until it is ready; returns it and the
/// server's base URL.
async fn spawn_patient(db: &TestDb) -> (WorkerProcess, String) {
    let metrics = free_addr();
    let worker = WorkerProcess::spawn(
        &db.url,
        "patient",
        &[
            "--metrics-addr",
            &metrics.to_string(),
            "--poll-interval",
            "200ms",
        ],
    );
    let base = format!("http://{metrics}");
    let (ready, _) = wait_status(&format!("{base}/readyz"), 200, Duration::from_secs(10)).await;
    assert_eq!(ready.0, 200, "{ready:?}");
    (worker, base)
}

#[tokio::test]
async fn a_read_only_database_makes_the_worker_wait_with_one_clear_line() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;
    let (worker, base) = spawn_patient(&db).await;
    for i in 0..5 {
        db.emit("order.paid", json!({"id": i})).await;
    }
    assert_eq!(receiver.wait_for(5, Duration::from_secs(10)).await.len(), 5);

    // Read-only for new sessions (as on a standby, or after an operator's ALTER), and the
    // worker's sessions closed so it has to open new ones.
    set_read_only(&db, true).await;
    assert!(disconnect_workers(&db).await > 0);
    let (_, before) = get(&format!("{base}/metrics")).await;
    let errors_before = metric(&before, "hookrelay_database_errors_total");
    // This session predates the ALTER: the application can still write events.
    for i in 5..25 {
        db.emit("order.paid", json!({"id": i})).await;
    }
    let (down, _) = wait_status(&format!("{base}/readyz"), 503, Duration::from_secs(10)).await;
    assert_eq!(down.0, 503, "{down:?}");
    assert!(down.1.contains("read-only"), "{down:?}");
    assert_nothing_claimed_while_read_only(&db, &receiver).await;
    let (_, during) = get(&format!("{base}/metrics")).await;
    let errors = metric(&during, "hookrelay_database_errors_total") - errors_before;
    assert!(
        errors <= 30.0,
        "{errors} database errors in about 5 s: the worker spins instead of backing off"
    );

    set_read_only(&db, false).await;
    let got = receiver.wait_for(25, Duration::from_secs(45)).await;
    let (ready, _) = wait_status(&format!("{base}/readyz"), 200, Duration::from_secs(10)).await;
    let log = worker.terminate();
    assert_eq!(
        got.len(),
        25,
        "every event is delivered once writes work:\n{log}"
    );
    assert_eq!(ready.0, 200, "{ready:?}");
    let seen = receipts(&got);
    assert!(seen.values().all(|&n| n == 1));

    let line = the_one_read_only_line(&log);
    println!(
        "read-only: {errors} database errors while read-only, 20 events waited and were \
         delivered; the one line: {line}"
    );
}
