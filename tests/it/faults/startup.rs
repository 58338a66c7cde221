//! PostgreSQL restarted while a worker starts: before it starts, in its first milliseconds
//! (connecting, checking or migrating the schema, registering), and while it stops. The
//! worker must neither exit nor need a supervisor: once the database is back, events are
//! delivered by the same process, and a stop with the database away still exits 0.

use std::time::Duration;

use hookrelay::db::embedded::{Cluster, Shutdown};

use super::{blocking, migrated_db, own_cluster, wait_status, WorkerProcess};
use crate::support::{connect, free_addr, Receiver, TestDb};

/// When the database goes away, relative to the worker's start.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Already down when the worker starts.
    Before,
    /// This long after the process was spawned.
    After(Duration),
}

/// One restart point: the database goes away at `moment` (stopped in `mode`), the worker
/// stays alive and serves /healthz, and once the database is back the same process delivers
/// event `i`.
async fn survive(
    cluster: &Cluster,
    db: &mut TestDb,
    receiver: &Receiver,
    i: usize,
    (moment, mode, migrate_flag): (Moment, Shutdown, bool),
) {
    let ms = Duration::from_millis;
    if matches!(moment, Moment::Before) {
        blocking(cluster, move |c| c.stop(mode)).await;
    }
    let metrics = free_addr();
    let mut args = vec![
        "--metrics-addr".to_string(),
        metrics.to_string(),
        "--poll-interval".into(),
        "200ms".into(),
    ];
    if migrate_flag {
        args.push("--migrate".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut worker = WorkerProcess::spawn(&db.url, &format!("startup-{i}"), &args);
    if let Moment::After(delay) = moment {
        tokio::time::sleep(delay).await;
        blocking(cluster, move |c| c.stop(mode)).await;
    }
    tokio::time::sleep(ms(300)).await;
    assert!(
        worker.is_running(),
        "{moment:?} {mode:?}: the worker exited while the database was away:\n{}",
        worker.log_text()
    );
    // While the database is away the worker is alive and says it is not ready.
    let (health, _) = wait_status(&format!("http://{metrics}/healthz"), 200, ms(5000)).await;
    assert_eq!(health.0, 200, "{moment:?}: /healthz is served: {health:?}");
    blocking(cluster, Cluster::start_again).await;
    db.client = connect(&db.url).await;
    db.emit("order.paid", serde_json::json!({"id": i})).await;
    let got = receiver.wait_for(i + 1, Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        i + 1,
        "{moment:?} {mode:?}: the same process delivers once the database is back:\n{}",
        worker.log_text()
    );
    assert!(worker.is_running(), "{moment:?}: {}", worker.log_text());
    println!("startup restart {moment:?} {mode:?}: survived, delivered");
    let log = worker.terminate();
    assert!(!log.contains("ERROR"), "{log}");
}

/// Stopping while the database is away still exits 0, promptly.
async fn assert_stop_with_the_database_away(cluster: &Cluster, db: &TestDb) {
    let worker = WorkerProcess::spawn(&db.url, "stopping", &["--poll-interval", "200ms"]);
    db.wait_count(
        "SELECT count(*) FROM hookrelay.workers WHERE id = 'stopping'",
        1,
        Duration::from_secs(10),
    )
    .await;
    blocking(cluster, |c| c.stop(Shutdown::Immediate)).await;
    let started = std::time::Instant::now();
    worker.terminate();
    println!(
        "stop with the database away: exited 0 in {:?}",
        started.elapsed()
    );
    blocking(cluster, Cluster::start_again).await;
}

#[tokio::test]
async fn a_restart_at_any_moment_of_the_workers_start_or_stop_is_survived() {
    let (cluster, dir) = own_cluster("startup-cluster").await;
    let mut db = migrated_db(&cluster, "startup").await;
    let receiver = Receiver::ok().await;
    db.endpoint(
        "crm",
        &receiver.url("/crm"),
        "startup-test-secret-0123456789",
    )
    .await;

    let ms = Duration::from_millis;
    let points = [
        (Moment::Before, Shutdown::Fast, false),
        (Moment::After(ms(0)), Shutdown::Fast, true),
        (Moment::After(ms(5)), Shutdown::Immediate, false),
        (Moment::After(ms(15)), Shutdown::Fast, false),
        (Moment::After(ms(40)), Shutdown::Immediate, true),
        (Moment::After(ms(100)), Shutdown::Fast, false),
        (Moment::After(ms(250)), Shutdown::Immediate, false),
    ];
    for (i, point) in points.into_iter().enumerate() {
        survive(&cluster, &mut db, &receiver, i, point).await;
    }
    assert_stop_with_the_database_away(&cluster, &db).await;
    blocking(&cluster, |c| c.stop(Shutdown::Fast)).await;
    let _ = std::fs::remove_dir_all(dir);
}
