//! `410 Gone` disables the endpoint and cancels its pending deliveries.

use std::time::Duration;

use serde_json::json;

use super::{set, SECRET};
use crate::signing_cli::text;
use crate::support::{hookrelay, Receiver, Reply, TestDb};

/// `gone` is off with a reason naming the 410, its one sent delivery is dead with code
/// `gone`, and the other four are cancelled, unlocked and never retried.
async fn assert_gone_is_disabled_with_its_rest_cancelled(db: &TestDb) {
    let row = db
        .client
        .query_one(
            "SELECT active, disabled_reason, disabled_at IS NOT NULL
             FROM hookrelay.endpoint_health WHERE name = 'gone'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    let reason: String = row.get(1);
    assert!(reason.contains("410 Gone"), "{reason}");
    assert!(row.get::<_, bool>(2));
    let dead = db
        .client
        .query_one(
            "SELECT d.last_status, d.last_error_code, d.last_error
             FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             WHERE ep.name = 'gone' AND d.state = 'dead'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dead.get::<_, Option<i32>>(0), Some(410));
    assert_eq!(dead.get::<_, Option<String>>(1).as_deref(), Some("gone"));
    let cancelled_rows = db
        .count(
            "SELECT count(*) FROM hookrelay.deliveries
             WHERE state = 'cancelled' AND last_error_code = 'gone' AND locked_until IS NULL
               AND next_attempt_at IS NULL",
        )
        .await;
    assert_eq!(cancelled_rows, 4);
}

/// One command turns `gone` back on, and says why it was off.
async fn assert_enable_turns_gone_back_on(db: &TestDb) {
    let out = hookrelay(db, &["endpoint", "enable", "gone"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("410 Gone"), "{}", text(&out));
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.endpoints
             WHERE name = 'gone' AND active AND disabled_reason IS NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_cancels_its_pending_deliveries() {
    let db = TestDb::new().await;
    let gone = Receiver::with(|_, _| Reply::status(410)).await;
    let healthy = Receiver::ok().await;
    db.endpoint("gone", &gone.url("/hooks"), SECRET).await;
    db.endpoint("healthy", &healthy.url("/hooks"), SECRET).await;
    // One request at a time, so the 410 is seen before any other delivery is sent.
    set(
        &db,
        "UPDATE hookrelay.endpoints SET max_in_flight = 1 WHERE name = 'gone'",
    )
    .await;
    for i in 0..5 {
        db.emit("order.paid", json!({ "id": i })).await;
    }
    let worker = db.start_worker(db.config());
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            5,
            Duration::from_secs(15),
        )
        .await;
    let cancelled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'cancelled'",
            4,
            Duration::from_secs(15),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    assert_eq!(delivered, 5, "the healthy endpoint got everything");
    assert_eq!(cancelled, 4);
    assert_eq!(gone.requests().len(), 1, "nothing was sent after the 410");
    assert_gone_is_disabled_with_its_rest_cancelled(&db).await;
    assert_enable_turns_gone_back_on(&db).await;
}
