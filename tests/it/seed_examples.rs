//! The seed documents' examples, as written: the Rails card `moved` event and the Django
//! `order.paid` event sent with `emit`, and Django's automatic model events with field
//! filtering and redaction, driven through the command line.

use std::process::Output;

use serde_json::{json, Value};

use crate::model_events::{bodies, drain, parse};
use crate::support::{self, hmac_hex, Receiver, Request, TestDb};

/// Runs `hookrelay ARGS`, which must succeed.
fn hookrelay(db: &TestDb, args: &[&str]) -> Output {
    let out = support::hookrelay(db, args);
    assert!(
        out.status.success(),
        "hookrelay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn add_endpoint(db: &TestDb, name: &str, url: &str, secret: &str, extra: &[&str]) {
    let mut args = vec![
        "endpoint", "add", "--name", name, "--url", url, "--secret", secret,
    ];
    args.extend_from_slice(extra);
    hookrelay(db, &args);
}

/// The Rails webhook, which belongs to an account, filters by event and signs the body in
/// hex; and two that must not get the card event (another event, another account).
fn add_rails_endpoints(db: &TestDb, receiver: &Receiver, secret: &str) {
    add_endpoint(
        db,
        "rails",
        &receiver.url("/rails"),
        secret,
        &[
            "--scheme",
            "body-hex",
            "--events",
            "moved",
            "--account",
            "acct-1",
        ],
    );
    add_endpoint(
        db,
        "other-events",
        &receiver.url("/other"),
        secret,
        &["--events", "created"],
    );
    add_endpoint(
        db,
        "other-account",
        &receiver.url("/globex"),
        secret,
        &["--account", "acct-2"],
    );
}

/// The card event's body in the seed's vocabulary, signed as the Rails app signs.
fn assert_rails_card_moved(r: &Request, secret: &str) {
    let body = r.json();
    // eventable_type → model, eventable_id → object_id, particulars → object,
    // creator_id → user, created_at → timestamp.
    assert_eq!(body["event"], "moved");
    assert_eq!(body["model"], json!({"app": null, "name": "Card"}));
    assert_eq!(body["object_id"], "abc-123");
    assert_eq!(
        body["object"],
        json!({"old_column_id": "col-1", "new_column_id": "col-2"})
    );
    assert_eq!(body["user"], json!({"id": "user-456"}));
    assert_eq!(body["account_id"], "acct-1");
    let created_at = body["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created_at).is_ok());
    // OpenSSL::HMAC.hexdigest("SHA256", webhook.secret, payload.to_json)
    assert_eq!(
        r.header("x-webhook-signature"),
        hmac_hex(secret.as_bytes(), &r.body)
    );
    assert_eq!(r.header("content-type"), "application/json");
}

#[tokio::test]
async fn the_rails_card_moved_event_with_its_particulars() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let secret = "rails-webhook-secret";
    add_rails_endpoints(&db, &receiver, secret);
    hookrelay(
        &db,
        &[
            "emit",
            "moved",
            "--model",
            "Card",
            "--object-id",
            "abc-123",
            "--object",
            r#"{"old_column_id": "col-1", "new_column_id": "col-2"}"#,
            "--actor",
            "user-456",
            "--account",
            "acct-1",
        ],
    );
    drain(&db).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "only the Rails webhook wants it");
    let r = &requests[0];
    assert_eq!(r.path, "/rails");
    assert_rails_card_moved(r, secret);
}

/// An endpoint for every store.Order event, and the CRM, which takes created and updated
/// only.
fn add_order_endpoints(db: &TestDb, receiver: &Receiver, secret: &str) {
    add_endpoint(
        db,
        "orders",
        &receiver.url("/orders"),
        secret,
        &["--models", "store.Order"],
    );
    add_endpoint(
        db,
        "primary_crm",
        &receiver.url("/crm"),
        secret,
        &[
            "--events",
            "created,updated",
            "--models",
            "store.Order,store.Customer",
        ],
    );
}

/// The order.paid body as the seed writes it, with the printed id, and the signature the
/// seed's Node verifier computes.
fn assert_order_paid(r: &Request, printed_id: &str, secret: &str) {
    let mut body = r.json();
    assert_eq!(body["id"], printed_id);
    assert_eq!(r.header("x-webhook-event-id"), printed_id);
    let object = body.as_object_mut().unwrap();
    assert!(object.remove("timestamp").unwrap().is_string());
    object.remove("id");
    assert_eq!(
        body,
        json!({
            "event": "order.paid",
            "account_id": null,
            "model": {"app": "store", "name": "Order"},
            "object_id": "42",
            "object": {"id": "42", "reference": "ORD-123", "total": "150.00", "status": "PAID"},
            "changes": {"status": {"old": "PENDING", "new": "PAID"}},
            "user": {"id": "1", "username": "admin"}
        })
    );
    // The document's Node verifier: 'sha256=' + HMAC(secret, `${timestamp}.${payload}`).
    let message = [r.header("x-webhook-timestamp").as_bytes(), b".", &r.body].concat();
    assert_eq!(
        r.header("x-webhook-signature"),
        format!("sha256={}", hmac_hex(secret.as_bytes(), &message))
    );
}

#[tokio::test]
async fn the_django_order_paid_event_with_changes_and_user() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let secret = "your-signing-secret";
    add_order_endpoints(&db, &receiver, secret);
    // dispatch_model_event("order.paid", instance), from the application's shell.
    let out = hookrelay(
        &db,
        &[
            "emit",
            "order.paid",
            "--model",
            "store.Order",
            "--object",
            r#"{"id": "42", "reference": "ORD-123", "total": "150.00", "status": "PAID"}"#,
            "--changes",
            r#"{"status": {"old": "PENDING", "new": "PAID"}}"#,
            "--actor",
            r#"{"id": "1", "username": "admin"}"#,
        ],
    );
    let printed_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    drain(&db).await;
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        1,
        "primary_crm takes created and updated only"
    );
    let r = &requests[0];
    assert_eq!(r.path, "/orders");
    assert_order_paid(r, &printed_id, secret);
}

/// The seed's Django models, `store.Order` and `store.Customer`, tracked.
async fn track_django_models(db: &TestDb) {
    db.client
        .batch_execute(
            r#"CREATE SCHEMA store;
               CREATE TABLE store."Order" (id int PRIMARY KEY, reference text,
                                           total numeric(10, 2), status text);
               CREATE TABLE store."Customer" (id int PRIMARY KEY, name text, email text);"#,
        )
        .await
        .unwrap();
    hookrelay(db, &["track", r#"store."Order""#]);
    hookrelay(db, &["track", r#"store."Customer""#]);
}

/// The seed's three Django webhooks: a CRM filtered by event and model, analytics with the
/// fields it needs, and a partner with fields per model and the customer's email redacted.
fn add_django_endpoints(db: &TestDb, receiver: &Receiver) {
    add_endpoint(
        db,
        "primary_crm",
        &receiver.url("/crm"),
        "your-signing-secret",
        &[
            "--events",
            "created,updated",
            "--models",
            "store.Order,store.Customer",
        ],
    );
    add_endpoint(
        db,
        "analytics",
        &receiver.url("/analytics"),
        "secret_123",
        &[
            "--models",
            "store.Order",
            "--include-fields",
            r#"["id", "total", "status"]"#,
        ],
    );
    add_endpoint(
        db,
        "external_partner",
        &receiver.url("/partner"),
        "partner-secret",
        &[
            "--include-fields",
            r#"{"store.Order": ["id", "reference", "total"]}"#,
            "--redact-fields",
            r#"{"store.Customer": {"email": "***@***.com"}}"#,
        ],
    );
}

/// The model and event of each body sent to `path`, sorted.
fn events(receiver: &Receiver, path: &str) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = bodies(receiver, Some(path))
        .iter()
        .map(|b| {
            (
                b["model"]["name"].as_str().unwrap().to_string(),
                b["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

/// Each endpoint got the events its filters let through.
fn assert_each_endpoint_got_its_events(receiver: &Receiver) {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(m, e)| (m.to_string(), e.to_string()))
            .collect()
    };
    assert_eq!(
        events(receiver, "/crm"),
        pairs(&[
            ("Customer", "created"),
            ("Order", "created"),
            ("Order", "updated")
        ])
    );
    assert_eq!(
        events(receiver, "/analytics"),
        pairs(&[
            ("Order", "created"),
            ("Order", "deleted"),
            ("Order", "updated")
        ])
    );
    assert_eq!(events(receiver, "/partner").len(), 4);
}

/// What each endpoint got is shaped as configured: fields kept, the email redacted for the
/// partner only, changes and the acting user carried.
fn assert_bodies_are_shaped_per_endpoint(receiver: &Receiver) {
    let find = |path: &str, model: &str, event: &str| -> Value {
        bodies(receiver, Some(path))
            .into_iter()
            .find(|b| b["model"]["name"] == model && b["event"] == event)
            .unwrap()
    };
    let crm = find("/crm", "Order", "updated");
    assert_eq!(
        crm["object"],
        parse(r#"{"id": 42, "reference": "ORD-123", "total": 150.00, "status": "PAID"}"#)
    );
    assert_eq!(
        crm["changes"],
        json!({"status": {"old": "PENDING", "new": "PAID"}})
    );
    assert_eq!(crm["user"], json!({"id": "1", "username": "admin"}));
    let analytics = find("/analytics", "Order", "updated");
    assert_eq!(
        analytics["object"],
        parse(r#"{"id": 42, "total": 150.00, "status": "PAID"}"#)
    );
    assert_eq!(
        analytics["changes"],
        json!({"status": {"old": "PENDING", "new": "PAID"}})
    );
    let partner = find("/partner", "Order", "created");
    assert_eq!(
        partner["object"],
        parse(r#"{"id": 42, "reference": "ORD-123", "total": 150.00}"#)
    );
    let customer = find("/partner", "Customer", "created");
    assert_eq!(
        customer["object"],
        json!({"id": 7, "name": "Ada", "email": "***@***.com"})
    );
    let crm_customer = find("/crm", "Customer", "created");
    assert_eq!(crm_customer["object"]["email"], "ada@example.com");
}

#[tokio::test]
async fn django_model_events_with_include_fields_and_a_redacted_customer_email() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    track_django_models(&db).await;
    add_django_endpoints(&db, &receiver);
    db.client
        .batch_execute(
            r#"BEGIN;
               SET LOCAL hookrelay.actor = '{"id": "1", "username": "admin"}';
               INSERT INTO store."Customer" VALUES (7, 'Ada', 'ada@example.com');
               INSERT INTO store."Order" VALUES (42, 'ORD-123', 150.00, 'PENDING');
               UPDATE store."Order" SET status = 'PAID' WHERE id = 42;
               DELETE FROM store."Order" WHERE id = 42;
               COMMIT;"#,
        )
        .await
        .unwrap();
    drain(&db).await;
    assert_each_endpoint_got_its_events(&receiver);
    assert_bodies_are_shaped_per_endpoint(&receiver);
}
