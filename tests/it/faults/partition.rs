//! Network partitions between the worker and its database, made by a relay that keeps the
//! connections open and forwards nothing (see [`Relay`]): the silent stall that server-side
//! timeouts cannot see. With default settings the worker must notice, say why in one line,
//! carry on over new connections, and lose nothing.

use std::time::{Duration, Instant};

use super::relay::Relay;
use super::{duplicates_only_after_expired_leases, get, receipts, WorkerProcess};
use crate::support::{free_addr, socket_of, Receiver, Reply, TestDb};

const SECRET: &str = "partition-test-secret-0123456789";
const DELIVERED: &str = "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'";

/// A database with one endpoint whose receiver takes `delay` a request, and `events` events.
async fn backlog(events: i64, delay: Duration) -> (TestDb, Receiver) {
    let db = TestDb::new().await;
    let receiver = Receiver::with(move |_, _| Reply { status: 200, delay }).await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;
    db.emit_many(events).await;
    (db, receiver)
}

/// Waits until more than `than` deliveries are delivered; returns how long that took.
async fn progress(db: &TestDb, than: i64, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if db.count(DELIVERED).await > than {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Every event delivered once the fault is over, and no duplicates but for leases that
/// expired.
async fn nothing_lost(db: &TestDb, receiver: &Receiver, events: i64, worker: &WorkerProcess) {
    let done = db
        .wait_count(DELIVERED, events, Duration::from_secs(60))
        .await;
    assert_eq!(done, events, "{}", worker.log_text());
    let seen = receipts(&receiver.requests());
    assert_eq!(
        seen.len() as i64,
        events,
        "every event reached the receiver"
    );
    let duplicates = duplicates_only_after_expired_leases(db, &seen).await;
    println!("partition: {events} events delivered, {duplicates} received twice");
}

#[tokio::test]
async fn a_partition_of_the_existing_connections_is_noticed_and_delivery_resumes_on_new_ones() {
    let events = 400;
    let (db, receiver) = backlog(events, Duration::from_millis(20)).await;
    let relay = Relay::start(socket_of(&db.url)).await;
    let worker = WorkerProcess::spawn(&relay.url(&db.url), "partitioned", &[]);
    let before = progress(&db, 40, Duration::from_secs(30)).await;
    assert!(before.is_some(), "{}", worker.log_text());

    relay.partition_existing();
    let cut_at = db.count(DELIVERED).await;
    // Requests already sent finish; then progress needs a database that answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled = db.count(DELIVERED).await;
    let resumed = progress(&db, stalled, Duration::from_secs(30)).await;
    let resumed = resumed.unwrap_or_else(|| {
        panic!(
            "delivery did not resume within 30 s of the partition:\n{}",
            worker.log_text()
        )
    }) + Duration::from_secs(1);
    println!(
        "partition of existing connections: {cut_at} of {events} delivered at the cut, \
         delivery resumed {resumed:?} later"
    );
    nothing_lost(&db, &receiver, events, &worker).await;
    // The held connections come back late: what they carried must not undo newer state.
    relay.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db.count(DELIVERED).await,
        events,
        "late statements undid nothing"
    );
    let log = worker.terminate();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warned.iter().any(|l| l.contains("sent nothing back")),
        "one line names the cause:\n{log}"
    );
    assert!(warned.len() <= 3, "{log}");
}

#[tokio::test]
async fn a_total_partition_is_reported_by_readyz_and_delivery_resumes_soon_after_it_heals() {
    let events = 300;
    let (db, receiver) = backlog(events, Duration::from_millis(20)).await;
    let relay = Relay::start(socket_of(&db.url)).await;
    let metrics = free_addr();
    let readyz = format!("http://{metrics}/readyz");
    let worker = WorkerProcess::spawn(
        &relay.url(&db.url),
        "cut-off",
        &["--metrics-addr", &metrics.to_string()],
    );
    assert!(progress(&db, 30, Duration::from_secs(30)).await.is_some());

    relay.partition_all();
    let cut = Instant::now();
    let mut ready = (0, String::new());
    while cut.elapsed() < Duration::from_secs(20) {
        ready = get(&readyz).await;
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready.0, 503, "/readyz tells the truth: {ready:?}");
    assert!(ready.1.contains("database"), "{ready:?}");
    println!(
        "total partition: /readyz 503 after {:?}: {}",
        cut.elapsed(),
        ready.1.trim()
    );
    // Long enough for every connection to have been given up and retries to back off.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(cut.elapsed())).await;
    let stalled = db.count(DELIVERED).await;
    relay.heal();
    let resumed = progress(&db, stalled, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| {
            panic!(
                "delivery did not resume within 30 s of the heal:\n{}",
                worker.log_text()
            )
        });
    println!(
        "total partition: healed after {:?}, delivery resumed {resumed:?} later",
        cut.elapsed()
    );
    nothing_lost(&db, &receiver, events, &worker).await;
    worker.terminate();
}

/// A worker whose listener goes through `listen_url`, idle: only a notification (or the
/// listener's reconnection) can wake it in time.
async fn deaf_worker(db: &TestDb, listen_url: &str) -> WorkerProcess {
    let worker = WorkerProcess::spawn(
        &db.url,
        "deaf",
        &[
            "--listen-database-url",
            listen_url,
            "--poll-interval",
            "120s",
        ],
    );
    let idle = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.workers WHERE waiting",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(idle, 1, "{}", worker.log_text());
    worker
}

#[tokio::test]
async fn a_partition_of_the_listen_connection_alone_is_noticed_and_notifications_come_back() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;
    let relay = Relay::start(socket_of(&db.url)).await;
    let listen_url = relay.url(&db.url);
    let worker = deaf_worker(&db, &listen_url).await;
    let sent = Instant::now();
    db.emit("order.paid", serde_json::json!({"id": "warm-up"}))
        .await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    println!(
        "listen partition: before it, delivered in {:?}",
        sent.elapsed()
    );

    relay.partition_existing();
    let sent = Instant::now();
    db.emit("order.paid", serde_json::json!({"id": "during"}))
        .await;
    let got = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "{}", worker.log_text());
    println!(
        "listen partition: an event written during it delivered {:?} later",
        sent.elapsed()
    );
    // The listener is back (on a new connection): a notification wakes the worker at once.
    db.wait_count(
        "SELECT count(*) FROM hookrelay.workers WHERE waiting",
        1,
        Duration::from_secs(15),
    )
    .await;
    let sent = Instant::now();
    db.emit("order.paid", serde_json::json!({"id": "after"}))
        .await;
    let got = receiver.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3, "{}", worker.log_text());
    println!(
        "listen partition: after it, delivered in {:?}",
        sent.elapsed()
    );
    relay.heal();
    worker.terminate();
}

#[tokio::test]
async fn a_partition_longer_than_the_lease_lets_another_worker_take_over_without_losing_newer_state(
) {
    let events = 300;
    let (db, receiver) = backlog(events, Duration::from_millis(20)).await;
    let relay = Relay::start(socket_of(&db.url)).await;
    let short = [
        "--lease",
        "4s",
        "--request-timeout",
        "2s",
        "--retry-schedule",
        "200ms,200ms,200ms",
    ];
    let cut_off = WorkerProcess::spawn(&relay.url(&db.url), "cut-off", &short);
    assert!(progress(&db, 30, Duration::from_secs(30)).await.is_some());
    relay.partition_existing();
    // The other worker starts while the first one's leases are still held.
    let other = WorkerProcess::spawn(&db.url, "other", &short);
    nothing_lost(&db, &receiver, events, &other).await;
    // Every delivery ended delivered, and no result of the cut-off worker, written late,
    // moved one back: each delivery's last attempt is the one that delivered it.
    relay.heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let regressed = db
        .count(
            "SELECT count(*) FROM hookrelay.deliveries d
             WHERE d.state <> 'delivered'
                OR NOT EXISTS (SELECT 1 FROM hookrelay.attempts a
                               WHERE a.delivery_id = d.id AND a.attempt = d.attempts
                                 AND a.status BETWEEN 200 AND 299)",
        )
        .await;
    assert_eq!(regressed, 0, "{}", cut_off.log_text());
    let took_over = db
        .count("SELECT count(*) FROM hookrelay.attempts WHERE worker = 'other'")
        .await;
    assert!(took_over > 0, "the other worker took over");
    println!("lease takeover: the other worker made {took_over} attempts; nothing regressed");
    other.terminate();
    cut_off.terminate();
}
