//! Delivery policy toward receivers: redirects are not followed, `410 Gone` disables and
//! cancels, `Retry-After` sets the next attempt within bounds, oversized payloads are never
//! sent, response bodies are read only up to the cap, the timeout covers a trickled body, and
//! endpoints failing for too long are disabled until an operator enables them again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use hookrelay::config::WorkerConfig;
use serde_json::json;

use crate::signing_cli::text;
use crate::support::hookrelay;
use crate::support::{Receiver, Reply, TestDb};

const SECRET: &str = "test-secret-0123456789";

/// Serves `app` on 127.0.0.1.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn set(db: &TestDb, sql: &str) {
    db.client.batch_execute(sql).await.unwrap();
}

#[tokio::test]
async fn redirects_are_recorded_as_failures_and_never_followed() {
    let db = TestDb::new().await;
    let target = Receiver::ok().await;
    let location = target.url("/elsewhere");
    let app = axum::Router::new().route(
        "/{status}",
        post(
            move |axum::extract::Path(status): axum::extract::Path<u16>| {
                let location = location.clone();
                async move {
                    let status = StatusCode::from_u16(status).unwrap();
                    (status, [(header::LOCATION, location)], "moved").into_response()
                }
            },
        ),
    );
    let addr = serve(app).await;
    for status in [301, 302, 303, 307, 308] {
        db.endpoint(
            &format!("redirect-{status}"),
            &format!("http://{addr}/{status}"),
            SECRET,
        )
        .await;
    }
    set(&db, "UPDATE hookrelay.endpoints SET max_attempts = 1").await;
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            5,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(dead, 5);
    assert!(
        target.requests().is_empty(),
        "the redirect target was never contacted"
    );
    let rows = db
        .client
        .query(
            "SELECT a.status, a.error_code FROM hookrelay.attempts a ORDER BY a.status",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(Option<i32>, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(Option<i32>, String)> = [301, 302, 303, 307, 308]
        .iter()
        .map(|s| (Some(*s), "http_status".to_string()))
        .collect();
    assert_eq!(got, want);
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

    // One command turns it back on, and says why it was off.
    let out = hookrelay(&db, &["endpoint", "enable", "gone"]);
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

async fn retry_after_app() -> SocketAddr {
    let app = axum::Router::new()
        .route(
            "/seconds",
            post(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "30")],
                    "",
                )
            }),
        )
        .route(
            "/date",
            post(|| async {
                let at = chrono::Utc::now() + chrono::Duration::seconds(120);
                let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, date)],
                    "",
                )
            }),
        )
        .route(
            "/huge",
            post(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "999999999")],
                    "",
                )
            }),
        )
        .route(
            "/ignored",
            post(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::RETRY_AFTER, "30")],
                    "",
                )
            }),
        );
    serve(app).await
}

#[tokio::test]
async fn retry_after_sets_the_next_attempt_within_its_bounds() {
    let db = TestDb::new().await;
    let addr = retry_after_app().await;
    for name in ["seconds", "date", "huge", "ignored"] {
        db.endpoint(name, &format!("http://{addr}/{name}"), SECRET)
            .await;
    }
    set(
        &db,
        "UPDATE hookrelay.endpoints SET max_attempts = 2 WHERE name = 'ignored'",
    )
    .await;
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    let settled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries d
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             WHERE CASE WHEN ep.name = 'ignored' THEN d.state = 'dead'
                        ELSE d.state = 'pending' AND d.locked_until IS NULL AND d.attempts = 1 END",
            4,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(settled, 4);
    // The wait the schedule chose: from the attempt's start to the delivery's next attempt.
    let gap = |name: &'static str| {
        let client = &db.client;
        async move {
            let row = client
                .query_one(
                    "SELECT extract(epoch FROM d.next_attempt_at - a.started_at)::float8
                     FROM hookrelay.deliveries d
                     JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
                     JOIN hookrelay.attempts a ON a.delivery_id = d.id AND a.attempt = 1
                     WHERE ep.name = $1",
                    &[&name],
                )
                .await
                .unwrap();
            row.get::<_, f64>(0)
        }
    };
    let seconds = gap("seconds").await;
    assert!(
        (30.0..32.0).contains(&seconds),
        "Retry-After: 30 gave {seconds}"
    );
    let date = gap("date").await;
    assert!(
        (118.0..122.0).contains(&date),
        "an HTTP date 120 s ahead gave {date}"
    );
    let huge = gap("huge").await;
    assert!(
        (86_400.0..86_402.0).contains(&huge),
        "a huge Retry-After is capped at 24 h, got {huge}"
    );
    // On a 500 the header is not honoured: the second attempt followed the 100 ms schedule.
    let row = db
        .client
        .query_one(
            "SELECT d.state, extract(epoch FROM max(a.started_at) - min(a.started_at))::float8
             FROM hookrelay.deliveries d
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             JOIN hookrelay.attempts a ON a.delivery_id = d.id
             WHERE ep.name = 'ignored' GROUP BY d.state",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert!(row.get::<_, f64>(1) < 5.0, "{}", row.get::<_, f64>(1));
}

#[tokio::test]
async fn payloads_over_the_limit_end_dead_without_being_sent() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/hooks"), SECRET).await;
    db.emit("order.big", json!({"id": "1", "blob": "x".repeat(5000)}))
        .await;
    db.emit("order.small", json!({"id": "2"})).await;
    let config = WorkerConfig {
        max_payload_bytes: 2048,
        ..db.config()
    };
    let worker = db.start_worker(config);
    let settled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state IN ('dead', 'delivered')",
            2,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(settled, 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["event"], "order.small");
    let row = db
        .client
        .query_one(
            "SELECT d.state, d.attempts, a.error_code, a.error, a.status
             FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id
             JOIN hookrelay.attempts a ON a.delivery_id = d.id
             WHERE e.event = 'order.big'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert_eq!(row.get::<_, String>(2), "payload_too_large");
    let error: String = row.get(3);
    assert!(
        error.contains("--max-payload-bytes") && error.contains("2048"),
        "{error}"
    );
    assert_eq!(row.get::<_, Option<i32>>(4), None);
}

#[tokio::test]
async fn response_bodies_are_read_only_up_to_the_cap() {
    const TOTAL: usize = 50 << 20;
    const CHUNK: usize = 64 << 10;
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let app = axum::Router::new().fallback(post(move || {
        let counter = counter.clone();
        async move {
            // 50 MB, produced only as fast as the client takes it.
            let chunks = futures_util::stream::iter(0..TOTAL / CHUNK).map(move |_| {
                counter.fetch_add(CHUNK, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; CHUNK]))
            });
            Response::new(Body::from_stream(chunks))
        }
    }));
    let addr = serve(app).await;
    let db = TestDb::new().await;
    db.endpoint("chatty", &format!("http://{addr}/hooks"), SECRET)
        .await;
    db.emit("order.paid", json!({"id": "1"})).await;
    let config = WorkerConfig {
        excerpt_bytes: 1000,
        ..db.config()
    };
    let worker = db.start_worker(config);
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            1,
            Duration::from_secs(15),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    assert_eq!(delivered, 1);
    let row = db
        .client
        .query_one(
            "SELECT length(response_excerpt), duration_ms FROM hookrelay.attempts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1000);
    assert!(row.get::<_, i32>(1) < 2000, "{} ms", row.get::<_, i32>(1));
    let sent = produced.load(Ordering::SeqCst);
    assert!(
        sent < TOTAL / 2,
        "the receiver produced {sent} bytes: the body was read past the cap"
    );
}

#[tokio::test]
async fn the_timeout_covers_a_body_that_trickles() {
    let app = axum::Router::new().fallback(post(|| async {
        // Headers at once, then one byte every 100 ms for 10 s.
        let drip = futures_util::stream::iter(0..100).then(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"."))
        });
        Response::new(Body::from_stream(drip))
    }));
    let addr = serve(app).await;
    let db = TestDb::new().await;
    db.endpoint("trickle", &format!("http://{addr}/hooks"), SECRET)
        .await;
    set(
        &db,
        "UPDATE hookrelay.endpoints SET max_attempts = 1, timeout_ms = 500",
    )
    .await;
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            1,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(dead, 1);
    let row = db
        .client
        .query_one(
            "SELECT error_code, duration_ms FROM hookrelay.attempts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "timeout");
    let ms: i32 = row.get(1);
    assert!((450..1500).contains(&ms), "ended after {ms} ms");
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled_and_one_command_enables_it() {
    let db = TestDb::new().await;
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
    // Fails twice, then succeeds, over and over: never five failures in a row.
    let flaky = Receiver::with(|_, n| Reply::status(if n % 3 == 2 { 200 } else { 500 })).await;
    db.endpoint("failing", &failing.url("/hooks"), SECRET).await;
    db.endpoint("flaky", &flaky.url("/hooks"), SECRET).await;
    set(&db, "UPDATE hookrelay.endpoints SET max_attempts = 100").await;
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

    let out = hookrelay(&db, &["endpoint", "enable", "failing"]);
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

#[tokio::test]
async fn worker_sessions_have_statement_and_lock_timeouts() {
    let db = TestDb::new().await;
    let pool = hookrelay::db::pool(&db.url, 1).unwrap();
    let client = pool.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),
                    current_setting('idle_in_transaction_session_timeout')",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(got, ("10s".into(), "5s".into(), "1min".into()));
}
