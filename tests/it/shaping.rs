//! Payload shaping per endpoint: include_fields and redact_fields, in each of their forms, on
//! `object` and `changes`, and refused on write when malformed.

use std::process::Command;

use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

use crate::model_events::{bodies, drain, parse, SECRET};
use crate::support::{binary, Receiver, TestDb};

/// Adds an endpoint at `/{name}` with the given shaping.
async fn shaped_endpoint(
    db: &TestDb,
    receiver: &Receiver,
    name: &str,
    include: Option<Value>,
    redact: Option<Value>,
) {
    db.client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, include_fields, redact_fields)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &name,
                &receiver.url(&format!("/{name}")),
                &SECRET,
                &include,
                &redact,
            ],
        )
        .await
        .unwrap();
}

/// Tracked store.Order and store.Customer tables, each with one insert and one update.
async fn order_and_customer(db: &TestDb) {
    db.client
        .batch_execute(
            r#"CREATE SCHEMA store;
               CREATE TABLE store."Order" (id int PRIMARY KEY, reference text, total numeric,
                                           status text);
               CREATE TABLE store."Customer" (id int PRIMARY KEY, name text, email text);
               SELECT hookrelay.track_table('store."Order"', '{created,updated}');
               SELECT hookrelay.track_table('store."Customer"', '{created,updated}');
               INSERT INTO store."Order" VALUES (42, 'ORD-123', 150.00, 'PENDING');
               UPDATE store."Order" SET status = 'PAID', total = 155.00;
               INSERT INTO store."Customer" VALUES (7, 'Ada', 'ada@example.com');
               UPDATE store."Customer" SET email = 'ada@new.example', name = 'Ada L.';"#,
        )
        .await
        .unwrap();
}

/// The body sent to `path` for `model` and `event`.
fn body(receiver: &Receiver, path: &str, model: &str, event: &str) -> Value {
    let found: Vec<Value> = bodies(receiver, Some(path))
        .into_iter()
        .filter(|b| b["model"]["name"] == model && b["event"] == event)
        .collect();
    assert_eq!(found.len(), 1, "{path} {model} {event}: {found:#?}");
    found.into_iter().next().unwrap()
}

#[tokio::test]
async fn include_fields_keep_only_those_keys_of_object_and_changes_in_both_forms() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    shaped_endpoint(&db, &receiver, "array", Some(json!(["id", "status"])), None).await;
    shaped_endpoint(
        &db,
        &receiver,
        "per-model",
        Some(json!({"store.Order": ["id", "total"], "*": ["name"]})),
        None,
    )
    .await;
    shaped_endpoint(&db, &receiver, "whole", None, None).await;
    order_and_customer(&db).await;
    drain(&db).await;
    assert_eq!(receiver.requests().len(), 12);

    let order = body(&receiver, "/array", "Order", "updated");
    assert_eq!(order["object"], json!({"id": 42, "status": "PAID"}));
    assert_eq!(
        order["changes"],
        json!({"status": {"old": "PENDING", "new": "PAID"}})
    );
    assert_eq!(order["object_id"], "42", "the envelope is not shaped");
    let customer = body(&receiver, "/array", "Customer", "updated");
    assert_eq!(customer["object"], json!({"id": 7}));
    assert_eq!(customer["changes"], json!({}));

    let order = body(&receiver, "/per-model", "Order", "updated");
    assert_eq!(order["object"], parse(r#"{"id": 42, "total": 155.00}"#));
    assert_eq!(
        order["changes"],
        parse(r#"{"total": {"old": 150.00, "new": 155.00}}"#)
    );
    let customer = body(&receiver, "/per-model", "Customer", "updated");
    assert_eq!(customer["object"], json!({"name": "Ada L."}));
    assert_eq!(
        customer["changes"],
        json!({"name": {"old": "Ada", "new": "Ada L."}})
    );

    let whole = body(&receiver, "/whole", "Customer", "updated");
    assert_eq!(
        whole["object"],
        json!({"id": 7, "name": "Ada L.", "email": "ada@new.example"})
    );
    // The stored event is whole: shaping happens per endpoint, at delivery.
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE object ? 'reference'")
            .await,
        2
    );
}

/// Per model: the customer's email is replaced in the object and both sides of its change,
/// other models are untouched, and the address never travels.
fn assert_redacted_per_model(receiver: &Receiver) {
    let created = body(receiver, "/per-model", "Customer", "created");
    assert_eq!(
        created["object"],
        json!({"id": 7, "name": "Ada", "email": "***@***.com"})
    );
    let updated = body(receiver, "/per-model", "Customer", "updated");
    assert_eq!(
        updated["object"],
        json!({"id": 7, "name": "Ada L.", "email": "***@***.com"})
    );
    assert_eq!(
        updated["changes"],
        json!({
            "email": {"old": "***@***.com", "new": "***@***.com"},
            "name": {"old": "Ada", "new": "Ada L."}
        })
    );
    let order = body(receiver, "/per-model", "Order", "updated");
    assert_eq!(order["object"]["status"], "PAID", "other models untouched");
    for r in receiver.requests() {
        if r.path == "/per-model" {
            let raw = String::from_utf8(r.body.to_vec()).unwrap();
            assert!(!raw.contains("ada@"), "{raw}");
        }
    }
}

/// For every model (`*`), with one model's own rules on top, in object and changes.
fn assert_redacted_for_every_model(receiver: &Receiver) {
    let updated = body(receiver, "/every-model", "Customer", "updated");
    assert_eq!(
        updated["object"],
        json!({"id": 7, "name": "***", "email": null})
    );
    assert_eq!(
        updated["changes"],
        json!({"email": {"old": null, "new": null}, "name": {"old": "***", "new": "***"}})
    );
    let order = body(receiver, "/every-model", "Order", "updated");
    assert_eq!(order["object"], json!({"id": 42, "status": "hidden"}));
    assert_eq!(
        order["changes"],
        json!({"status": {"old": "hidden", "new": "hidden"}})
    );
}

#[tokio::test]
async fn redact_fields_replace_values_in_object_and_both_sides_of_changes_in_both_forms() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    shaped_endpoint(
        &db,
        &receiver,
        "per-model",
        None,
        Some(json!({"store.Customer": {"email": "***@***.com"}})),
    )
    .await;
    shaped_endpoint(
        &db,
        &receiver,
        "every-model",
        Some(json!({"store.Order": ["id", "status"]})),
        Some(json!({"*": {"email": null, "status": "hidden"}, "store.Customer": {"name": "***"}})),
    )
    .await;
    order_and_customer(&db).await;
    drain(&db).await;
    assert_eq!(receiver.requests().len(), 8);

    assert_redacted_per_model(&receiver);
    assert_redacted_for_every_model(&receiver);
}

/// (include_fields, redact_fields, the start of the refusal), `null` for not given.
fn malformed_cases() -> Vec<(Value, Value, &'static str)> {
    vec![
        (json!("id"), Value::Null, "include_fields must be a JSON array of field names, or an object of model name to such an array, not a JSON string"),
        (json!(["id", 5]), Value::Null, "include_fields must be an array of field names (non-empty strings), not [\"id\", 5]"),
        (json!(["id", ""]), Value::Null, "include_fields must be an array of field names (non-empty strings), not [\"id\", \"\"]"),
        (json!({"store.Order": "id"}), Value::Null, "include_fields for model \"store.Order\" must be an array of field names, not \"id\""),
        (json!({"store Order": ["id"]}), Value::Null, "include_fields has an invalid model name \"store Order\""),
        (Value::Null, json!(["email"]), "redact_fields must be a JSON object of model name to {\"field\": replacement}, not a JSON array"),
        (Value::Null, json!({"email": "***"}), "redact_fields for model \"email\" must be an object of field name to replacement, not \"***\""),
        (Value::Null, json!({"": {"email": "x"}}), "redact_fields has an invalid model name \"\""),
        ]
}

/// Each malformed insert is a check violation whose message names the problem and whose hint
/// gives an example.
async fn assert_malformed_inserts_refused(db: &TestDb) {
    for (include, redact, message) in malformed_cases() {
        let include = (!include.is_null()).then_some(include);
        let redact = (!redact.is_null()).then_some(redact);
        let e = db
            .client
            .execute(
                "INSERT INTO hookrelay.endpoints (name, url, secret, include_fields, redact_fields)
                 VALUES ('bad', 'https://example.com/', $1, $2, $3)",
                &[&SECRET, &include, &redact],
            )
            .await
            .expect_err(message);
        let db_error = e.as_db_error().unwrap();
        assert_eq!(db_error.code(), &SqlState::CHECK_VIOLATION);
        assert!(
            db_error.message().starts_with(message),
            "{}",
            db_error.message()
        );
        assert!(db_error.hint().unwrap_or_default().contains("for example"));
    }
}

/// Updates are checked too, and the endpoint keeps its good configuration.
async fn assert_malformed_update_refused(db: &TestDb) {
    db.client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, include_fields)
             VALUES ('good', 'https://example.com/', $1, '[\"id\"]')",
            &[&SECRET],
        )
        .await
        .unwrap();
    let e = db
        .client
        .execute(
            "UPDATE hookrelay.endpoints SET redact_fields = '{\"store.Customer\": [\"email\"]}'",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION));
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE redact_fields IS NULL AND include_fields = '[\"id\"]'")
            .await,
        1
    );
}

/// From the command line: one line naming the problem, exit 1.
fn assert_malformed_flags_refused(db: &TestDb) {
    for (flag, value, expected) in [
        ("--include-fields", r#"{"store.Order": "id"}"#, "error: include_fields for model \"store.Order\" must be an array of field names, not \"id\"; hint: for example {\"store.Order\": [\"id\", \"total\"]}"),
        ("--redact-fields", "{email: x}", "error: --redact-fields is not valid JSON (key must be a string at line 1 column 2): give for example '[\"id\", \"total\"]', '{\"store.Order\": [\"id\", \"total\"]}' or '{\"store.Customer\": {\"email\": \"***@***.com\"}}'"),
    ] {
        let out = Command::new(binary())
            .args(["endpoint", "add", "--name", "cli", "--url", "https://example.com/", flag, value])
            .env("HOOKRELAY_DATABASE_URL", &db.url)
            .env("HOOKRELAY_LOG", "warn")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), expected);
    }
}

#[tokio::test]
async fn malformed_shaping_is_refused_when_written() {
    let db = TestDb::new().await;
    assert_malformed_inserts_refused(&db).await;
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0
    );
    assert_malformed_update_refused(&db).await;
    // Nothing written from the command line either.
    assert_malformed_flags_refused(&db);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        1
    );
}
