//! Oversized payloads are never sent, response bodies are read only up to the cap, and the
//! request timeout covers a body that trickles.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use hookrelay::config::WorkerConfig;
use serde_json::json;

use super::{serve, set, SECRET};
use crate::support::{Receiver, TestDb};

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
