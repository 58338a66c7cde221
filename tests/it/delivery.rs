//! Delivery: what receivers get, how it is signed, and how failures are retried and recorded.

use std::time::Duration;

use serde_json::json;

use crate::support::{hmac_hex, Receiver, Reply, Request, TestDb};

const SECRET: &str = "test-secret-0123456789";

/// One event committed, one rolled back, and one inserted into the outbox directly.
async fn commit_roll_back_and_insert(db: &TestDb) {
    let mut client = crate::support::connect(&db.url).await;
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "SELECT hookrelay.emit('order.created', '{\"id\": \"1\"}', 'store.Order')",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "SELECT hookrelay.emit('order.refunded', '{\"id\": \"2\"}')",
        &[],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    // Applications may also insert into the outbox directly.
    client
        .execute(
            "INSERT INTO hookrelay.events (event, object, object_id) VALUES ('order.shipped', '{\"id\": \"3\"}', '3')",
            &[],
        )
        .await
        .unwrap();
}

/// order.created arrives with its model, object, id and timestamp, and no changes or account.
fn assert_created_body(requests: &[Request]) {
    let created = requests
        .iter()
        .find(|r| r.json()["event"] == "order.created")
        .unwrap()
        .json();
    assert_eq!(created["model"], json!({"app": "store", "name": "Order"}));
    assert_eq!(created["object"], json!({"id": "1"}));
    assert_eq!(created["object_id"], "1");
    assert_eq!(created["changes"], serde_json::Value::Null);
    assert_eq!(created["account_id"], serde_json::Value::Null);
    let ts = created["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
}

#[tokio::test]
async fn committed_events_are_delivered_and_rolled_back_ones_never_are() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/hooks"), SECRET).await;

    commit_roll_back_and_insert(&db).await;
    let worker = db.start_worker(db.config());
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            2,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(delivered, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;

    let requests = receiver.requests();
    let mut events: Vec<String> = requests
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    events.sort();
    assert_eq!(events, ["order.created", "order.shipped"]);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE event = 'order.refunded'")
            .await,
        0
    );
    assert_created_body(&requests);
}

/// order.paid with changes, in a transaction whose acting user is admin; returns its id.
async fn emit_paid_as_admin(db: &TestDb) -> uuid::Uuid {
    let mut client = crate::support::connect(&db.url).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(r#"SET LOCAL hookrelay.actor = '{"id": "1", "username": "admin"}'"#)
        .await
        .unwrap();
    let id: uuid::Uuid = tx
        .query_one(
            "SELECT hookrelay.emit('order.paid', '{\"id\": \"42\", \"status\": \"PAID\"}', 'store.Order', \
             changes => '{\"status\": {\"old\": \"PENDING\", \"new\": \"PAID\"}}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();

    id
}

/// Each request is signed as a receiver verifies it, carries the event's id, name and user,
/// and is timestamped now.
fn assert_signed_with_the_event(request: &Request, expected_id: &str) {
    let ts = request.header("x-webhook-timestamp");
    let mut message = format!("{ts}.").into_bytes();
    message.extend_from_slice(&request.body);
    let expected = format!("sha256={}", hmac_hex(SECRET.as_bytes(), &message));
    assert_eq!(request.header("x-webhook-signature"), expected);
    assert_eq!(request.header("x-webhook-event-id"), expected_id);
    assert_eq!(request.header("x-webhook-event"), "order.paid");
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("hookrelay/"));
    let body = request.json();
    assert_eq!(body["id"], expected_id);
    assert_eq!(body["user"], json!({"id": "1", "username": "admin"}));
    assert_eq!(
        body["changes"],
        json!({"status": {"old": "PENDING", "new": "PAID"}})
    );
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp is current: {ts}");
}

/// Two failed attempts, then a success, each recorded with its status and code.
async fn assert_attempts_recorded(db: &TestDb) {
    let rows = db
        .client
        .query(
            "SELECT a.attempt, a.status, a.error_code, a.response_excerpt
             FROM hookrelay.attempts a JOIN hookrelay.deliveries d ON d.id = a.delivery_id
             ORDER BY a.attempt",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, Option<i32>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (1, Some(500), Some("http_status".to_string())),
            (2, Some(500), Some("http_status".to_string())),
            (3, Some(200), None)
        ]
    );
    assert_eq!(rows[2].get::<_, Option<String>>(3).as_deref(), Some("ok"));
}

#[tokio::test]
async fn signatures_verify_independently_and_the_event_id_is_stable_across_retries() {
    let db = TestDb::new().await;
    // Fails twice, then succeeds.
    let receiver = Receiver::with(|_, n| Reply::status(if n < 2 { 500 } else { 200 })).await;
    db.endpoint("crm", &receiver.url("/hooks"), SECRET).await;

    let id = emit_paid_as_admin(&db).await;
    let worker = db.start_worker(db.config());
    let requests = receiver.wait_for(3, Duration::from_secs(10)).await;
    let state = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered' AND attempts = 3",
            1,
            Duration::from_secs(5),
        )
        .await;
    worker.stop().await;
    assert_eq!(requests.len(), 3);
    assert_eq!(state, 1);

    let expected_id = format!("evt_{id}");
    for request in &requests {
        assert_signed_with_the_event(request, &expected_id);
    }
    // The same bytes every time: receivers can compare retries byte for byte.
    assert!(requests.iter().all(|r| r.body == requests[0].body));

    assert_attempts_recorded(&db).await;
}

#[tokio::test]
async fn a_delivery_that_always_fails_ends_dead_after_the_allowed_attempts() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, _| Reply::status(503)).await;
    let endpoint = db.endpoint("flaky", &receiver.url("/"), SECRET).await;
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET max_attempts = 3 WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": "1"})).await;

    let worker = db.start_worker(db.config());
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            1,
            Duration::from_secs(10),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    worker.stop().await;
    assert_eq!(dead, 1);
    assert_eq!(receiver.requests().len(), 3);
    let row = db
        .client
        .query_one(
            "SELECT attempts, last_status, last_error_code, last_error, next_attempt_at IS NULL,
                    locked_until IS NULL, (SELECT count(*) FROM hookrelay.attempts)
             FROM hookrelay.deliveries",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(row.get::<_, Option<i32>>(1), Some(503));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("http_status")
    );
    assert!(row.get::<_, Option<String>>(3).unwrap().contains("503"));
    assert!(row.get::<_, bool>(4) && row.get::<_, bool>(5));
    assert_eq!(row.get::<_, i64>(6), 3);
}

/// The error code, status and duration of endpoint `endpoint`'s one attempt.
async fn only_attempt(db: &TestDb, endpoint: i64) -> (String, Option<i32>, i32) {
    let row = db
        .client
        .query_one(
            "SELECT a.error_code, a.status, a.duration_ms FROM hookrelay.attempts a
             JOIN hookrelay.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    (
        row.get::<_, String>(0),
        row.get::<_, Option<i32>>(1),
        row.get::<_, i32>(2),
    )
}

#[tokio::test]
async fn network_failures_are_recorded_with_stable_codes() {
    let db = TestDb::new().await;
    // A port with nothing listening: bind, note the port, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let slow = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_secs(5),
    })
    .await;
    let refused = db
        .endpoint("refused", &format!("http://{closed}/"), SECRET)
        .await;
    let hanging = db.endpoint("hanging", &slow.url("/"), SECRET).await;
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoints SET max_attempts = 1;
             UPDATE hookrelay.endpoints SET timeout_ms = 300 WHERE name = 'hanging'",
        )
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": "1"})).await;

    let worker = db.start_worker(db.config());
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            2,
            Duration::from_secs(10),
        )
        .await;
    worker.stop().await;
    assert_eq!(dead, 2);
    let (refused_code, refused_status, _) = only_attempt(&db, refused).await;
    assert_eq!((refused_code.as_str(), refused_status), ("connect", None));
    let (hang_code, hang_status, hang_ms) = only_attempt(&db, hanging).await;
    assert_eq!((hang_code.as_str(), hang_status), ("timeout", None));
    assert!(
        (250..2000).contains(&hang_ms),
        "timed out after {hang_ms} ms"
    );
}

#[tokio::test]
async fn an_event_too_deeply_nested_to_read_ends_dead_without_stalling_its_batch() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), SECRET).await;
    // 200 levels: valid for PostgreSQL, beyond what a JSON reader should recurse into.
    let deep = format!("{}1{}", "{\"a\": ".repeat(200), "}".repeat(200));
    db.client
        .execute(
            "INSERT INTO hookrelay.events (event, object) VALUES ('deep.one', $1::text::jsonb)",
            &[&deep],
        )
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    let settled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state IN ('delivered', 'dead')",
            2,
            Duration::from_secs(10),
        )
        .await;
    worker.stop().await;
    assert_eq!(settled, 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "only the readable event is sent");
    assert_eq!(requests[0].header("x-webhook-event"), "order.paid");
    let row = db
        .client
        .query_one(
            "SELECT d.state, d.last_error_code, d.last_error, d.attempts
             FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id
             WHERE e.event = 'deep.one'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("payload_invalid")
    );
    let error: String = row.get(2);
    assert!(
        error.contains("object could not be read") && error.contains("recursion"),
        "{error}"
    );
    assert_eq!(row.get::<_, i32>(3), 1, "not retried: retrying cannot help");
}
