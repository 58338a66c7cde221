//! `Retry-After` sets the next attempt, within its bounds, on 429 and 503 only.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::post;
use serde_json::json;

use super::{serve, set, SECRET};
use crate::support::TestDb;

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

/// The wait the schedule chose for endpoint `name`: from its first attempt's start to the
/// delivery's next attempt, in seconds.
async fn gap(db: &TestDb, name: &str) -> f64 {
    let row = db
        .client
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

/// On a 500 the header is not honoured: the second attempt followed the 100 ms schedule.
async fn assert_a_500_ignores_retry_after(db: &TestDb) {
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
    let seconds = gap(&db, "seconds").await;
    assert!(
        (30.0..32.0).contains(&seconds),
        "Retry-After: 30 gave {seconds}"
    );
    let date = gap(&db, "date").await;
    assert!(
        (118.0..122.0).contains(&date),
        "an HTTP date 120 s ahead gave {date}"
    );
    let huge = gap(&db, "huge").await;
    assert!(
        (86_400.0..86_402.0).contains(&huge),
        "a huge Retry-After is capped at 24 h, got {huge}"
    );
    assert_a_500_ignores_retry_after(&db).await;
}
