//! PostgreSQL restarted under a running worker, in fast and immediate shutdown modes: the worker
//! reconnects with backoff, `/readyz` follows the outage, the listener subscribes again (an idle
//! worker is woken by a notification, long before its poll), and nothing is lost.

use std::time::{Duration, Instant};

use hookrelay::db::embedded::{Cluster, Shutdown};

use super::{
    blocking, chaos, duplicates_only_after_expired_leases, migrated_db, own_cluster, receipts,
    wait_status, WorkerProcess,
};
use crate::support::{connect, free_addr, Receiver, Reply, TestDb};

const SECRET: &str = "restart-test-secret-0123456789";

const DELIVERED: &str = "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'";

/// A migrated database `faults` on `cluster`, with an endpoint whose receiver takes 20 ms a
/// request: with 8 at once a batch takes a few seconds, so the restart lands mid-run.
async fn slow_receiver_db(cluster: &Cluster) -> (TestDb, Receiver) {
    let db = migrated_db(cluster, "faults").await;
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(20),
    })
    .await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;
    (db, receiver)
}

/// The worker under test, ready: metrics on `metrics`, short leases and retries, and a poll
/// so long that only a notification can wake it within the test's time.
async fn spawn_survivor(url: &str, metrics: &str, readyz: &str) -> WorkerProcess {
    let worker = WorkerProcess::spawn(
        url,
        "survivor",
        &[
            "--metrics-addr",
            metrics,
            "--poll-interval",
            "60s",
            "--lease",
            "5s",
            "--request-timeout",
            "2s",
            "--retry-schedule",
            "200ms,200ms,200ms,200ms",
        ],
    );
    let (ready, _) = wait_status(readyz, 200, Duration::from_secs(10)).await;
    assert_eq!(ready.0, 200, "{ready:?}");
    worker
}

/// Waits until at least `before` deliveries are delivered; returns how many are.
async fn wait_mid_run(db: &TestDb, before: i64, mode: Shutdown) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = db.count(DELIVERED).await;
    while got < before {
        assert!(
            Instant::now() < deadline,
            "{mode:?}: the batch is not being delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        got = db.count(DELIVERED).await;
    }
    got
}

/// Stops the cluster in `mode`, checks `/readyz` reports the outage, starts it again a
/// second later and checks `/readyz` recovers.
async fn restart(cluster: &Cluster, mode: Shutdown, readyz: &str, worker: &WorkerProcess) {
    blocking(cluster, move |c| c.stop(mode)).await;
    let (down, took) = wait_status(readyz, 503, Duration::from_secs(10)).await;
    assert_eq!(
        down.0, 503,
        "{mode:?}: /readyz reports the outage: {down:?}"
    );
    assert!(down.1.contains("database"), "{down:?}");
    println!("restart {mode:?}: /readyz 503 after {took:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(cluster, Cluster::start_again).await;
    let (up, took) = wait_status(readyz, 200, Duration::from_secs(30)).await;
    assert_eq!(
        up.0,
        200,
        "{mode:?}: /readyz recovers: {up:?}\n{}",
        worker.log_text()
    );
    println!("restart {mode:?}: /readyz 200 again {took:?} after the restart");
}

/// The listener subscribed again: once the worker is idle, a new event reaches the receiver
/// at once (the poll is 60 s). Emits one event.
async fn assert_a_notification_wakes_the_idle_worker(
    db: &TestDb,
    receiver: &Receiver,
    worker: &WorkerProcess,
    mode: Shutdown,
) {
    let idle = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.workers WHERE waiting",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(idle, 1, "{mode:?}: the worker is idle again");
    let heard = receiver.requests().len();
    let sent = Instant::now();
    db.emit("order.paid", serde_json::json!({"id": "after"}))
        .await;
    let got = receiver.wait_for(heard + 1, Duration::from_secs(10)).await;
    assert!(
        got.len() > heard && sent.elapsed() < Duration::from_secs(10),
        "{mode:?}: a notification wakes the worker after the restart (poll is 60 s)\n{}",
        worker.log_text()
    );
    println!(
        "restart {mode:?}: an event after the restart delivered in {:?}",
        sent.elapsed()
    );
}

/// One warning per outage, not one per retry, and a line when the database is back; returns
/// the number of warning lines.
fn assert_one_warning_per_outage(log: &str, restarts: usize) -> usize {
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    let back = log
        .lines()
        .filter(|l| l.contains("database is reachable again"))
        .count();
    assert_eq!(back, restarts, "one recovery line per restart:\n{log}");
    assert!(warnings <= 2 * restarts, "{warnings} warnings:\n{log}");
    warnings
}

#[tokio::test]
async fn postgres_restarts_lose_nothing_and_the_worker_comes_back_by_itself() {
    let batch = chaos("RESTART_EVENTS", 1_000) as i64;
    let rounds = chaos("RESTARTS", 1) as usize;
    let (cluster, dir) = own_cluster("restart-cluster").await;
    let (mut db, receiver) = slow_receiver_db(&cluster).await;
    let metrics = free_addr().to_string();
    let readyz = format!("http://{metrics}/readyz");
    let worker = spawn_survivor(&db.url, &metrics, &readyz).await;

    let modes = [Shutdown::Fast, Shutdown::Immediate];
    let mut emitted = 0;
    let mut restarts = 0;
    for mode in modes.iter().copied().cycle().take(modes.len() * rounds) {
        db.emit_many(batch).await;
        emitted += batch;
        // Mid-run: some of the batch delivered, most not.
        let got = wait_mid_run(&db, emitted - batch + batch / 10, mode).await;
        println!("restart {mode:?}: stopping with {got} of {emitted} delivered");
        restart(&cluster, mode, &readyz, &worker).await;
        restarts += 1;
        db.client = connect(&db.url).await;
        let done = db
            .wait_count(DELIVERED, emitted, Duration::from_secs(60))
            .await;
        assert_eq!(
            done,
            emitted,
            "{mode:?}: the batch is delivered\n{}",
            worker.log_text()
        );
        assert_a_notification_wakes_the_idle_worker(&db, &receiver, &worker, mode).await;
        emitted += 1;
    }
    let done = db
        .wait_count(DELIVERED, emitted, Duration::from_secs(30))
        .await;
    let log = worker.terminate();
    assert_eq!(done, emitted);

    let seen = receipts(&receiver.requests());
    assert_eq!(
        seen.len() as i64,
        emitted,
        "every event reached the receiver"
    );
    let duplicates = duplicates_only_after_expired_leases(&db, &seen).await;
    let warnings = assert_one_warning_per_outage(&log, restarts);
    println!(
        "restart: {restarts} restarts survived (fast and immediate), {emitted} events checked, \
         {duplicates} duplicates, {warnings} warning lines"
    );
    blocking(&cluster, |c| c.stop(Shutdown::Fast)).await;
    let _ = std::fs::remove_dir_all(dir);
}
