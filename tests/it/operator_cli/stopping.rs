//! SIGTERM finishes the requests in flight and gives back what was claimed but not sent.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{binary, Receiver, Reply, TestDb};

/// `hookrelay run` with `settings`, warnings only, receivers on loopback allowed.
fn spawn_worker(db: &TestDb, settings: &[&str]) -> std::process::Child {
    Command::new(binary())
        .args(["run", "--database-url", &db.url, "--metrics-addr", "off"])
        .args(settings)
        .env("HOOKRELAY_LOG", "warn")
        .env("HOOKRELAY_ALLOW_NETWORKS", crate::support::LOOPBACK)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// `hookrelay run` with two slots and batches of two, waiting up to 10 s on shutdown.
fn spawn_two_slot_worker(db: &TestDb) -> std::process::Child {
    let two_slots = ["--concurrency", "2", "--batch-size", "2"];
    spawn_worker(
        db,
        &[&two_slots[..], &["--shutdown-timeout", "10s"]].concat(),
    )
}

/// Nothing new started after SIGTERM, no lease is left, the two in flight were recorded and
/// the two waiting are due again with their attempt uncounted.
async fn assert_stopped_cleanly(db: &TestDb, receiver: &Receiver) {
    assert_eq!(
        receiver.requests().len(),
        2,
        "nothing new started after SIGTERM"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE locked_until IS NOT NULL")
            .await,
        0,
        "no lease left held"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'")
            .await,
        2,
        "the requests in flight finished and were recorded"
    );
    let given_back = db
        .count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending' AND attempts = 0 AND next_attempt_at <= now()")
        .await;
    assert_eq!(
        given_back, 2,
        "claimed but unsent deliveries are due again, attempt uncounted"
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.workers").await, 0);
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_gives_back_the_rest() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(800),
    })
    .await;
    db.endpoint("a", &receiver.url("/a"), "secret-secret-secret")
        .await;
    db.endpoint("b", &receiver.url("/b"), "secret-secret-secret")
        .await;
    for i in 0..4 {
        db.emit("order.paid", json!({ "id": i })).await;
    }
    // Two slots: each claim fans two events out to two endpoints, so two requests run and two
    // claimed deliveries wait for a slot.
    let child = spawn_two_slot_worker(&db);
    let started = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(started.len(), 2);
    let status = crate::support::sigterm_and_wait(child).await;
    assert!(status.success(), "exit {status}");
    assert_stopped_cleanly(&db, &receiver).await;
}

#[tokio::test]
async fn requests_cut_off_by_the_shutdown_timeout_keep_their_leases_and_leave_a_trace() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_secs(20),
    })
    .await;
    db.endpoint("a", &receiver.url("/a"), "secret-secret-secret")
        .await;
    db.emit("order.paid", json!({ "id": 1 })).await;
    let child = spawn_worker(&db, &["--shutdown-timeout", "1s"]);
    assert_eq!(receiver.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    let status = crate::support::sigterm_and_wait(child).await;
    assert!(status.success(), "exit {status}");
    // The receiver may have it: not given back as never sent (which sent it again with no
    // attempt on record), but kept leased with its attempt counted.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.deliveries
             WHERE state = 'pending' AND attempts = 1 AND locked_until > now()"
        )
        .await,
        1,
        "the cut-off request keeps its lease"
    );
    // Once the lease expires, the due claim records why it goes out again.
    db.client
        .execute(
            "UPDATE hookrelay.deliveries SET locked_until = now() - interval '1 second',
                                             next_attempt_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let pool = hookrelay::db::pool(&db.url, 1).unwrap();
    let client = pool.pool.get().await.unwrap();
    let lease = hookrelay::pipeline::claim::Lease::new(Duration::from_secs(60), "next");
    let floor = hookrelay::pipeline::claim::work_floor(&client)
        .await
        .unwrap();
    let claimed = hookrelay::pipeline::claim::claim_due(&client, 10, &lease, floor)
        .await
        .unwrap();
    assert_eq!(claimed.taken, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.attempts WHERE error_code = 'lease_expired'")
            .await,
        1,
        "the duplicate has a lease_expired attempt to explain it"
    );
}
