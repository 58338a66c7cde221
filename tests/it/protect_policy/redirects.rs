//! Redirects are recorded as failures and never followed.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;

use super::{serve, set, SECRET};
use crate::support::{Receiver, TestDb};

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
