//! Fan-out: each event goes to exactly the endpoints whose filters match it.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{Receiver, TestDb};

/// One endpoint per filter: everything, one event, one model, one account, and a paused one.
async fn one_endpoint_per_filter(db: &TestDb, receiver: &Receiver) {
    let endpoints = [
        ("everything", "'{}'", "'{}'", "NULL", true),
        ("paid-only", "'{order.paid}'", "'{}'", "NULL", true),
        ("customers", "'{}'", "'{store.Customer}'", "NULL", true),
        ("account-a", "'{}'", "'{}'", "'a'", true),
        ("paused", "'{}'", "'{}'", "NULL", false),
    ];
    for (name, events, models, account, active) in endpoints {
        db.client
            .execute(
                &format!(
                    "INSERT INTO hookrelay.endpoints (name, url, secret, events, models, account_id, active)
                     VALUES ($1, $2, 'secret-secret-secret', {events}, {models}, {account}, $3)"
                ),
                &[&name, &receiver.url(&format!("/{name}")), &active],
            )
            .await
            .unwrap();
    }
}

/// (endpoint, event) pairs.
type Pairs = BTreeSet<(String, String)>;

/// (endpoint, event) of every request the receiver got, and of what the filters let through.
fn received_and_wanted(receiver: &Receiver) -> (Pairs, Pairs) {
    let got: BTreeSet<(String, String)> = receiver
        .requests()
        .iter()
        .map(|r| {
            (
                r.path.trim_start_matches('/').to_string(),
                r.header("x-webhook-event").to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("everything", "order.paid"),
        ("everything", "order.created"),
        ("everything", "customer.deleted"),
        ("paid-only", "order.paid"),
        ("customers", "order.created"),
        ("customers", "customer.deleted"),
        ("account-a", "order.paid"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    (got, want)
}

#[tokio::test]
async fn fan_out_honours_event_model_account_and_active_filters() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    one_endpoint_per_filter(&db, &receiver).await;
    db.client
        .batch_execute(
            "SELECT hookrelay.emit('order.paid', '{\"id\": \"1\"}', 'store.Order', account_id => 'a');
             SELECT hookrelay.emit('order.created', '{\"id\": \"2\"}', 'store.Customer', account_id => 'b');
             SELECT hookrelay.emit('customer.deleted', '{\"id\": \"3\"}', 'store.Customer');",
        )
        .await
        .unwrap();

    let worker = db.start_worker(db.config());
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            7,
            Duration::from_secs(10),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await;
    assert_eq!(delivered, 7);

    let (got, want) = received_and_wanted(&receiver);
    assert_eq!(got, want);
    assert_eq!(receiver.requests().len(), 7, "no duplicates");
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries").await,
        7
    );
}

#[tokio::test]
async fn a_paused_endpoint_keeps_its_deliveries_until_it_is_resumed() {
    let db = TestDb::new().await;
    let receiver =
        Receiver::with(|_, n| crate::support::Reply::status(if n == 0 { 500 } else { 200 })).await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    db.emit("order.paid", serde_json::json!({"id": "1"})).await;
    let mut config = db.config();
    config.retry_schedule = hookrelay::pipeline::retry::RetrySchedule::parse("1s").unwrap();
    let worker = db.start_worker(config);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    // Paused while its retry waits: the retry is not sent. (Usually parked, next_attempt_at
    // 'infinity'; a result written in the same instant as the pause may leave its retry time,
    // which the due claim passes over while the endpoint is paused.)
    db.client
        .execute("UPDATE hookrelay.endpoints SET active = false", &[])
        .await
        .unwrap();
    let waiting = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending' \
             AND locked_until IS NULL AND attempts = 1",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(waiting, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests().len(), 1);
    db.client
        .execute("UPDATE hookrelay.endpoints SET active = true", &[])
        .await
        .unwrap();
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            1,
            Duration::from_secs(5),
        )
        .await;
    worker.stop().await;
    assert_eq!(delivered, 1);
    assert_eq!(receiver.requests().len(), 2);
}

/// A paused endpoint's delivery that kept its retry time (its result was written as the
/// endpoint was paused) is not due: the idle check must not send a worker looking for it every
/// few milliseconds until the endpoint is resumed.
#[tokio::test]
async fn a_paused_endpoints_delivery_is_not_due_for_an_idle_worker() {
    let db = TestDb::new().await;
    let id = db
        .endpoint(
            "crm",
            "https://crm.example.com/hooks",
            "secret-secret-secret",
        )
        .await;
    db.emit("order.paid", serde_json::json!({"id": "1"})).await;
    db.client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.deliveries (event_id, endpoint_id, next_attempt_at)
             SELECT id, {id}, now() - interval '1 minute' FROM hookrelay.events;
             UPDATE hookrelay.events SET fanned_out_at = now();
             ALTER TABLE hookrelay.endpoints DISABLE TRIGGER endpoints_active_changed;
             UPDATE hookrelay.endpoints SET active = false;
             ALTER TABLE hookrelay.endpoints ENABLE TRIGGER endpoints_active_changed;"
        ))
        .await
        .unwrap();
    assert_eq!(
        idle_due_in_ms(&db).await,
        None,
        "nothing is due while crm is paused"
    );
    db.client
        .execute("UPDATE hookrelay.endpoints SET active = true", &[])
        .await
        .unwrap();
    assert!(
        idle_due_in_ms(&db).await.is_some_and(|ms| ms <= 0),
        "due at once when resumed"
    );
}

/// When the idle check says there is next something to claim, in milliseconds from now.
async fn idle_due_in_ms(db: &TestDb) -> Option<i64> {
    let idle = include_str!("../../sql/queries/worker_idle.sql");
    let row = db
        .client
        .query_one(idle, &[&"w", &"host", &1i32])
        .await
        .unwrap();
    row.get(0)
}
