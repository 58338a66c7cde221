//! PostgreSQL restarted under a running worker, in fast and immediate shutdown modes: the worker
//! reconnects with backoff, `/readyz` follows the outage, the listener subscribes again (an idle
//! worker is woken by a notification, long before its poll), and nothing is lost.

use std::time::{Duration, Instant};

use hookrelay::admin::migrate;
use hookrelay::db::embedded::{Cluster, Shutdown};

use super::{
    blocking, chaos, duplicates_only_after_expired_leases, own_cluster, receipts, wait_status,
    WorkerProcess,
};
use crate::support::{connect, free_addr, Receiver, Reply, TestDb};

const SECRET: &str = "restart-test-secret-0123456789";

#[tokio::test]
async fn postgres_restarts_lose_nothing_and_the_worker_comes_back_by_itself() {
    let batch = chaos("RESTART_EVENTS", 1_000) as i64;
    let rounds = chaos("RESTARTS", 1) as usize;
    let (cluster, dir) = own_cluster("restart-cluster").await;
    cluster.ensure_database("faults").await.unwrap();
    let url = cluster.url("faults");
    let mut client = connect(&url).await;
    migrate::migrate(&mut client).await.unwrap();
    let mut db = TestDb { url, client };
    // 20 ms a request, 8 at once: a batch takes a few seconds, so the restart lands mid-run.
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(20),
    })
    .await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;

    let metrics = free_addr();
    let readyz = format!("http://{metrics}/readyz");
    let worker = WorkerProcess::spawn(
        &db.url,
        "survivor",
        &[
            "--metrics-addr",
            &metrics.to_string(),
            // Only a notification can wake an idle worker within the test's time.
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
    let (ready, _) = wait_status(&readyz, 200, Duration::from_secs(10)).await;
    assert_eq!(ready.0, 200, "{ready:?}");

    let modes = [Shutdown::Fast, Shutdown::Immediate];
    let mut emitted = 0;
    let mut restarts = 0;
    for mode in modes.iter().copied().cycle().take(modes.len() * rounds) {
        db.emit_many(batch).await;
        emitted += batch;
        // Mid-run: some of the batch delivered, most not.
        let delivered_sql = "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'";
        let before = emitted - batch + batch / 10;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = db.count(delivered_sql).await;
        while got < before {
            assert!(
                Instant::now() < deadline,
                "{mode:?}: the batch is not being delivered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            got = db.count(delivered_sql).await;
        }
        blocking(&cluster, move |c| c.stop(mode)).await;
        let (down, took) = wait_status(&readyz, 503, Duration::from_secs(10)).await;
        assert_eq!(
            down.0, 503,
            "{mode:?}: /readyz reports the outage: {down:?}"
        );
        assert!(down.1.contains("database"), "{down:?}");
        println!("restart {mode:?}: stopped with {got} of {emitted} delivered, /readyz 503 after {took:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        blocking(&cluster, Cluster::start_again).await;
        restarts += 1;
        let (up, took) = wait_status(&readyz, 200, Duration::from_secs(30)).await;
        assert_eq!(
            up.0,
            200,
            "{mode:?}: /readyz recovers: {up:?}\n{}",
            worker.log_text()
        );
        println!("restart {mode:?}: /readyz 200 again {took:?} after the restart");
        db.client = connect(&db.url).await;
        let done = db
            .wait_count(delivered_sql, emitted, Duration::from_secs(60))
            .await;
        assert_eq!(
            done,
            emitted,
            "{mode:?}: the batch is delivered\n{}",
            worker.log_text()
        );

        // The listener subscribed again: an idle worker hears of a new event at once.
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
        emitted += 1;
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
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            emitted,
            Duration::from_secs(30),
        )
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
    // One warning per outage, not one per retry, and a line when the database is back.
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    let back = log
        .lines()
        .filter(|l| l.contains("database is reachable again"))
        .count();
    assert_eq!(back, restarts, "one recovery line per restart:\n{log}");
    assert!(warnings <= 2 * restarts, "{warnings} warnings:\n{log}");
    println!(
        "restart: {restarts} restarts survived (fast and immediate), {emitted} events checked, \
         {duplicates} duplicates, {warnings} warning lines"
    );
    blocking(&cluster, |c| c.stop(Shutdown::Fast)).await;
    let _ = std::fs::remove_dir_all(dir);
}
