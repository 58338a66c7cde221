//! Operating hookrelay: the views' figures, redelivery, retention, metrics and readiness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookrelay::pipeline::sweep::Retention;
use serde_json::json;

use crate::support::{
    free_addr, metric, socket_of, start_worker_at, Proxy, Receiver, Reply, TestDb,
};

const SECRET: &str = "secret-secret-secret";

/// Three endpoints on one receiver: `ok` always answers 200, `down` always 500 (2 attempts
/// allowed), `flaky` fails the first three requests it gets and then succeeds.
async fn known_sequence(db: &TestDb) -> (Receiver, Arc<AtomicBool>) {
    let down_fixed = Arc::new(AtomicBool::new(false));
    let fixed = down_fixed.clone();
    let flaky_seen = Arc::new(std::sync::Mutex::new(0usize));
    let receiver = Receiver::with(move |req, _| match req.path.as_str() {
        "/down" if !fixed.load(Ordering::SeqCst) => Reply::status(500),
        "/flaky" => {
            let mut seen = flaky_seen.lock().unwrap();
            *seen += 1;
            Reply::status(if *seen <= 3 { 502 } else { 200 })
        }
        _ => Reply::status(200),
    })
    .await;
    for name in ["ok", "down", "flaky"] {
        db.endpoint(name, &receiver.url(&format!("/{name}")), SECRET)
            .await;
    }
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET max_attempts = 2 WHERE name = 'down'",
            &[],
        )
        .await
        .unwrap();
    for i in 0..3 {
        db.emit("order.paid", json!({ "id": i })).await;
    }
    let worker = db.start_worker(db.config());
    let settled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
            9,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(settled, 9);
    (receiver, down_fixed)
}

/// endpoint_health's figures per endpoint after the known sequence.
async fn assert_endpoint_health(db: &TestDb) {
    let rows = db
        .client
        .query(
            "SELECT name, pending, dead, delivered_last_hour, failed_last_hour,
                    consecutive_failures, failing_since IS NOT NULL, last_success_at IS NOT NULL,
                    last_error
             FROM hookrelay.endpoint_health ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    // name, pending, dead, delivered and failed in the last hour, streak, failing, succeeded
    type HealthRow = (String, i64, i64, i64, i64, i32, bool, bool);
    let got: Vec<HealthRow> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("down".into(), 0, 3, 0, 6, 6, true, false),
            ("flaky".into(), 0, 0, 3, 3, 0, false, true),
            ("ok".into(), 0, 0, 3, 0, 0, false, true),
        ]
    );
    let down_error: Option<String> = rows[0].get(8);
    assert!(down_error.unwrap().contains("500"));
}

/// delivery_log has every attempt, each with its event and webhook id.
async fn assert_delivery_log(db: &TestDb) {
    let log = db
        .client
        .query(
            "SELECT endpoint, event, webhook_id, count(*) FROM hookrelay.delivery_log
             GROUP BY 1, 2, 3 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let attempts: i64 = log.iter().map(|r| r.get::<_, i64>(3)).sum();
    assert_eq!(attempts, 15, "3 ok + 6 down + 6 flaky attempts");
    assert!(log.iter().all(
        |r| r.get::<_, String>(2).starts_with("evt_") && r.get::<_, String>(1) == "order.paid"
    ));
}

/// Nothing is left in the backlog.
async fn assert_backlog_empty(db: &TestDb) {
    let backlog = db
        .client
        .query_one(
            "SELECT events_to_fan_out, due, in_flight, retrying, paused, oldest_pending_age
             FROM hookrelay.backlog",
            &[],
        )
        .await
        .unwrap();
    for i in 0..5 {
        assert_eq!(backlog.get::<_, i64>(i), 0, "backlog column {i}");
    }
}

#[tokio::test]
async fn the_views_show_what_happened() {
    let db = TestDb::new().await;
    known_sequence(&db).await;
    assert_endpoint_health(&db).await;
    assert_delivery_log(&db).await;
    assert_backlog_empty(&db).await;
}

/// The three dead deliveries are scheduled again from SQL: one by id, the rest by endpoint
/// and age; an unknown id is not. Returns their ids.
async fn redeliver_from_sql(db: &TestDb) -> Vec<i64> {
    let dead: Vec<i64> = db
        .client
        .query(
            "SELECT id FROM hookrelay.deliveries WHERE state = 'dead' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(dead.len(), 3);

    let one: bool = db
        .client
        .query_one("SELECT hookrelay.redeliver($1)", &[&dead[0]])
        .await
        .unwrap()
        .get(0);
    assert!(one);
    let rest: i64 = db
        .client
        .query_one("SELECT hookrelay.redeliver_dead('down', '1 hour')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rest, 2);
    let missing: bool = db
        .client
        .query_one("SELECT hookrelay.redeliver(-1)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!missing);

    dead
}

/// Attempt numbers go on from the history (attempts 1-2 failed, 3 succeeded), and a success
/// resets the failure streak.
async fn assert_history_goes_on(db: &TestDb, id: i64) {
    let numbers: Vec<(i32, Option<i32>)> = db
        .client
        .query(
            "SELECT attempt, status FROM hookrelay.attempts WHERE delivery_id = $1 ORDER BY attempt",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(numbers, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    let health: (i32, bool) = db
        .client
        .query_one(
            "SELECT consecutive_failures, failing_since IS NULL FROM hookrelay.endpoint_health WHERE name = 'down'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(health, (0, true), "a success resets the failure streak");
}

#[tokio::test]
async fn dead_deliveries_are_redelivered_with_a_fresh_budget() {
    let db = TestDb::new().await;
    let (receiver, down_fixed) = known_sequence(&db).await;
    down_fixed.store(true, Ordering::SeqCst);
    let dead = redeliver_from_sql(&db).await;
    let before = receiver.requests().len();
    let worker = db.start_worker(db.config());
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             WHERE ep.name = 'down' AND d.state = 'delivered'",
            3,
            Duration::from_secs(10),
        )
        .await;
    worker.stop().await;
    assert_eq!(delivered, 3);
    assert_eq!(receiver.requests().len(), before + 3);
    assert_history_goes_on(&db, dead[0]).await;
}

/// `ok` answers 200, `down` 500 with one attempt allowed, `retrying` 500 with retries; each
/// takes only its own event.
async fn one_endpoint_per_outcome(db: &TestDb) -> Receiver {
    let receiver =
        Receiver::with(|req, _| Reply::status(if req.path == "/ok" { 200 } else { 500 })).await;
    db.endpoint("ok", &receiver.url("/ok"), SECRET).await;
    db.endpoint("down", &receiver.url("/down"), SECRET).await;
    db.endpoint("retrying", &receiver.url("/retrying"), SECRET)
        .await;
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoints SET events = '{only.ok}' WHERE name = 'ok';
             UPDATE hookrelay.endpoints SET events = '{only.down}', max_attempts = 1 WHERE name = 'down';
             UPDATE hookrelay.endpoints SET events = '{only.retrying}' WHERE name = 'retrying';",
        )
        .await
        .unwrap();
    receiver
}

/// What is left: the dead and the retrying events with their deliveries and attempts, and
/// no orphan attempt.
async fn assert_only_unfinished_history_left(db: &TestDb) {
    let left: HashMap<String, i64> = db
        .client
        .query(
            "SELECT e.event, count(d.id) FROM hookrelay.events e
             LEFT JOIN hookrelay.deliveries d ON d.event_id = e.id GROUP BY e.event",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        left,
        HashMap::from([
            ("only.down".to_string(), 1),
            ("only.retrying".to_string(), 1)
        ])
    );
    let orphans = db
        .count(
            "SELECT count(*) FROM hookrelay.attempts a
             WHERE NOT EXISTS (SELECT 1 FROM hookrelay.deliveries d WHERE d.id = a.delivery_id)",
        )
        .await;
    assert_eq!(orphans, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.attempts").await,
        2,
        "only the attempts of the dead and the retrying delivery are left"
    );
}

#[tokio::test]
async fn retention_prunes_finished_history_and_keeps_the_rest() {
    let db = TestDb::new().await;
    let _receiver = one_endpoint_per_outcome(&db).await;
    let delivered = db.emit("only.ok", json!({})).await;
    db.emit("only.down", json!({})).await;
    // Fails and waits an hour for its retry: pending work is never pruned.
    db.emit("only.retrying", json!({})).await;
    let unmatched = db.emit("nobody.listens", json!({})).await;
    let mut config = db.config();
    config.retry_schedule = hookrelay::pipeline::retry::RetrySchedule::parse("1h").unwrap();
    config.retention = Retention {
        keep: Duration::from_secs(1),
        keep_dead: Duration::from_secs(3600),
        interval: Duration::from_millis(200),
    };
    let worker = db.start_worker(config);
    let gone = db
        .wait_count(
            &format!(
                "SELECT count(*) FROM hookrelay.events WHERE id IN ('{delivered}', '{unmatched}')"
            ),
            0,
            Duration::from_secs(15),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    worker.stop().await;
    assert_eq!(
        gone, 0,
        "finished events older than the retention are removed"
    );
    assert_only_unfinished_history_left(&db).await;
}

async fn get(url: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match reqwest::get(url).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        // Not listening yet: the worker task is still starting.
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `url` up to `tries` times, `pause` apart, until it answers `status`; returns the
/// last answer.
async fn poll_status(url: &str, status: u16, tries: usize, pause: Duration) -> (u16, String) {
    let mut answer = (0, String::new());
    for _ in 0..tries {
        answer = get(url).await;
        if answer.0 == status {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    answer
}

/// Two deliveries, one after a retry, three attempts timed, a notification heard, nothing
/// due and the listener connected.
async fn assert_delivery_metrics(base: &str) {
    let (status, after) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&after, r#"hookrelay_deliveries_total{outcome="delivered"}"#),
        2.0
    );
    assert_eq!(
        metric(&after, r#"hookrelay_deliveries_total{outcome="retry"}"#),
        1.0
    );
    assert_eq!(
        metric(&after, "hookrelay_attempt_duration_seconds_count"),
        3.0
    );
    assert!(metric(&after, "hookrelay_notifications_total") >= 1.0);
    assert_eq!(metric(&after, r#"hookrelay_backlog{kind="due"}"#), 0.0);
    assert_eq!(metric(&after, "hookrelay_listener_connected"), 1.0);
}

/// No delivery counted yet; once the worker is idle, two events are delivered (one after a
/// retry).
async fn deliver_two_from_idle(db: &TestDb, base: &str) {
    let (_, before) = get(&format!("{base}/metrics")).await;
    assert!(!before.contains(r#"hookrelay_deliveries_total{outcome="delivered"}"#));
    let idle = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.workers WHERE waiting",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(idle, 1);

    for i in 0..2 {
        db.emit("order.paid", json!({ "id": i })).await;
    }
    db.wait_count(
        "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
        2,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn metrics_change_after_deliveries_and_readiness_follows_the_database() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, n| Reply::status(if n == 0 { 503 } else { 200 })).await;
    db.endpoint("crm", &receiver.url("/"), SECRET).await;
    let proxy = Proxy::start(socket_of(&db.url)).await;
    let addr = free_addr();
    let mut config = db.config();
    config.metrics_addr = Some(addr);
    let worker = start_worker_at(&proxy.url(&db.url), config);
    let base = format!("http://{addr}");

    let ready = poll_status(
        &format!("{base}/readyz"),
        200,
        100,
        Duration::from_millis(50),
    )
    .await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    deliver_two_from_idle(&db, &base).await;
    assert_delivery_metrics(&base).await;

    proxy.cut();
    let down = poll_status(
        &format!("{base}/readyz"),
        503,
        100,
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(
        down.0, 503,
        "readiness goes false when the database is unreachable"
    );
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200, "still alive");

    proxy.restore();
    let back = poll_status(
        &format!("{base}/readyz"),
        200,
        200,
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(
        back.0, 200,
        "ready again once the database is back: {}",
        back.1
    );
    worker.stop().await;
}
