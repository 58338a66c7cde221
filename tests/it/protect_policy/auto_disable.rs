//! An endpoint failing for too long is disabled, its deliveries parked, until one command
//! enables it again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookrelay::config::WorkerConfig;
use serde_json::json;

use super::{set, SECRET};
use crate::signing_cli::text;
use crate::support::{hookrelay, Receiver, Reply, TestDb};

/// `failing` answers 500 until the returned flag is set; `flaky` fails twice, then succeeds,
/// over and over: never five failures in a row. Both receivers are returned, to keep serving.
async fn failing_and_flaky(db: &TestDb) -> (Arc<AtomicBool>, Receiver, Receiver) {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let failing = Receiver::with(move |_, _| {
        Reply::status(if flag.load(Ordering::SeqCst) {
            200
        } else {
            500
        })
    })
    .await;
    let flaky = Receiver::with(|_, n| Reply::status(if n % 3 == 2 { 200 } else { 500 })).await;
    db.endpoint("failing", &failing.url("/hooks"), SECRET).await;
    db.endpoint("flaky", &flaky.url("/hooks"), SECRET).await;
    set(db, "UPDATE hookrelay.endpoints SET max_attempts = 100").await;
    (healthy, failing, flaky)
}

/// Only `failing` is off, with a reason, after 5 failures in a row and at least 1 s of
/// failing; each success reset `flaky`'s streak, so it stays enabled.
async fn assert_only_failing_was_disabled(db: &TestDb) {
    let health = db
        .client
        .query_one(
            "SELECT name, active, disabled_reason, consecutive_failures,
                    extract(epoch FROM disabled_at - failing_since)::float8
             FROM hookrelay.endpoint_health WHERE NOT active",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(health.get::<_, String>(0), "failing");
    let reason: String = health.get(2);
    assert!(
        reason.contains("every attempt failed for") && reason.contains("failures in a row"),
        "{reason}"
    );
    assert!(health.get::<_, i32>(3) >= 5);
    assert!(
        health.get::<_, f64>(4) >= 1.0,
        "disabled only after failing 1 s"
    );
    let flaky_state = db
        .client
        .query_one(
            "SELECT active, consecutive_failures < 5 FROM hookrelay.endpoint_health
             WHERE name = 'flaky'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        flaky_state.get::<_, bool>(0) && flaky_state.get::<_, bool>(1),
        "each success reset the flaky endpoint's streak, so it stays enabled"
    );
}

/// `endpoint enable failing` says why it was off and starts its failure streak from zero.
async fn assert_enable_says_why_and_resets_the_streak(db: &TestDb) {
    let out = hookrelay(db, &["endpoint", "enable", "failing"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("disabled automatically: every attempt failed"),
        "{}",
        text(&out)
    );
    assert_eq!(
        db.count(
            "SELECT consecutive_failures::bigint FROM hookrelay.endpoint_health
             WHERE name = 'failing' AND active AND disabled_reason IS NULL"
        )
        .await,
        0,
        "enabled, with its failure streak starting from zero"
    );
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled_and_one_command_enables_it() {
    let db = TestDb::new().await;
    let (healthy, failing, _flaky) = failing_and_flaky(&db).await;
    let config = WorkerConfig {
        disable_after: Duration::from_secs(1),
        disable_after_failures: 5,
        ..db.config()
    };
    let worker = db.start_worker(config);
    // Steady traffic for 2.5 s, well past --disable-after.
    for i in 0..25 {
        db.emit("order.paid", json!({ "id": i })).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let disabled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.endpoints WHERE NOT active",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(disabled, 1);
    assert_only_failing_was_disabled(&db).await;
    // Its deliveries wait, parked, instead of being dropped.
    let parked = db
        .count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep
             ON ep.id = d.endpoint_id
             WHERE ep.name = 'failing' AND d.state = 'pending' AND d.next_attempt_at = 'infinity'",
        )
        .await;
    let requests_when_disabled = failing.requests().len();
    assert!(parked > 0);

    assert_enable_says_why_and_resets_the_streak(&db).await;
    // Still failing, but the fresh streak is younger than --disable-after: it stays on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE name = 'failing' AND active")
            .await,
        1
    );
    assert!(failing.requests().len() > requests_when_disabled);
    healthy.store(true, Ordering::SeqCst);
    let left = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep
             ON ep.id = d.endpoint_id WHERE ep.name = 'failing' AND d.state <> 'delivered'",
            0,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(
        left, 0,
        "every parked delivery went out once it was enabled"
    );
}
