//! Envelope and shaping tests.

use super::*;
use chrono::TimeZone;
use serde_json::json;

fn order_paid() -> Event {
    Event {
        id: Uuid::parse_str("0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f").unwrap(),
        event: "order.paid".into(),
        model: Some("store.Order".into()),
        object_id: Some("42".into()),
        object: json!({"id": "42", "status": "PAID"}),
        changes: Some(json!({"status": {"old": "PENDING", "new": "PAID"}})),
        actor: Some(json!({"id": "1", "username": "admin"})),
        account_id: None,
        created_at: Utc.with_ymd_and_hms(2026, 1, 24, 10, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456),
    }
}

#[test]
fn envelope_has_every_field_in_its_documented_order() {
    let body = String::from_utf8(body(&order_paid())).unwrap();
    assert_eq!(
        body,
        concat!(
            r#"{"id":"evt_0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f","event":"order.paid","#,
            r#""timestamp":"2026-01-24T10:00:00.123456Z","account_id":null,"#,
            r#""model":{"app":"store","name":"Order"},"object_id":"42","#,
            r#""object":{"id":"42","status":"PAID"},"#,
            r#""changes":{"status":{"new":"PAID","old":"PENDING"}},"#,
            r#""user":{"id":"1","username":"admin"}}"#
        )
    );
}

#[test]
fn timestamps_keep_microseconds_with_six_digits_always() {
    let mut e = order_paid();
    e.created_at = Utc.with_ymd_and_hms(2026, 1, 24, 10, 0, 0).unwrap();
    let v: Value = serde_json::from_slice(&body(&e)).unwrap();
    assert_eq!(v["timestamp"], "2026-01-24T10:00:00.000000Z");
    e.created_at += chrono::Duration::microseconds(7);
    let v: Value = serde_json::from_slice(&body(&e)).unwrap();
    assert_eq!(v["timestamp"], "2026-01-24T10:00:00.000007Z");
}

#[test]
fn missing_parts_are_null() {
    let mut e = order_paid();
    e.model = None;
    e.changes = None;
    e.actor = None;
    e.object_id = None;
    e.account_id = Some("acct_1".into());
    let v: Value = serde_json::from_slice(&body(&e)).unwrap();
    assert_eq!(v["model"], Value::Null);
    assert_eq!(v["changes"], Value::Null);
    assert_eq!(v["user"], Value::Null);
    assert_eq!(v["object_id"], Value::Null);
    assert_eq!(v["account_id"], "acct_1");
}

#[test]
fn model_names_split_at_the_last_dot() {
    assert_eq!(
        ModelName::parse("store.Order"),
        ModelName {
            app: Some("store"),
            name: "Order"
        }
    );
    assert_eq!(
        ModelName::parse("public.orders.v2"),
        ModelName {
            app: Some("public.orders"),
            name: "v2"
        }
    );
    assert_eq!(
        ModelName::parse("Order"),
        ModelName {
            app: None,
            name: "Order"
        }
    );
    assert_eq!(
        ModelName::parse("Order."),
        ModelName {
            app: None,
            name: "Order."
        }
    );
}

fn shaping(include: Value, redact: Value) -> Shaping {
    Shaping {
        include_fields: (!include.is_null()).then_some(include),
        redact_fields: (!redact.is_null()).then_some(redact),
        number_format: NumberFormat::Json,
    }
}

fn customer_updated() -> Event {
    Event {
        model: Some("store.Customer".into()),
        object: json!({"id": 7, "email": "ada@example.com", "name": "Ada", "phone": null}),
        changes: Some(json!({
            "email": {"old": "ada@old.example", "new": "ada@example.com"},
            "name": {"old": "A.", "new": "Ada"}
        })),
        ..order_paid()
    }
}

#[test]
fn an_include_array_keeps_those_fields_of_every_model() {
    let s = shaping(json!(["id", "status"]), Value::Null);
    let mut e = order_paid();
    e.object = json!({"id": "42", "status": "PAID", "total": "150.00"});
    e.changes = Some(
        json!({"status": {"old": "PENDING", "new": "PAID"}, "total": {"old": "1", "new": "150.00"}}),
    );
    let (object, changes) = shape(&e, &s);
    assert_eq!(*object, json!({"id": "42", "status": "PAID"}));
    assert_eq!(
        changes.as_deref(),
        Some(&json!({"status": {"old": "PENDING", "new": "PAID"}}))
    );
    let customer = customer_updated();
    let (object, changes) = shape(&customer, &s);
    assert_eq!(*object, json!({"id": 7}));
    assert_eq!(changes.as_deref(), Some(&json!({})));
}

#[test]
fn an_include_object_shapes_only_the_models_it_names_with_star_for_the_rest() {
    let s = shaping(json!({"store.Order": ["id", "total"]}), Value::Null);
    let mut e = order_paid();
    e.object = json!({"id": "42", "reference": "ORD-123", "total": "150.00", "status": "PAID"});
    let (object, changes) = shape(&e, &s);
    assert_eq!(*object, json!({"id": "42", "total": "150.00"}));
    assert_eq!(changes.as_deref(), Some(&json!({})));
    let customer = customer_updated();
    let (object, changes) = shape(&customer, &s);
    assert_eq!(
        *object, customer.object,
        "a model not named keeps every field"
    );
    assert_eq!(changes.as_deref(), customer.changes.as_ref());

    let s = shaping(json!({"store.Order": ["id"], "*": ["name"]}), Value::Null);
    assert_eq!(*shape(&e, &s).0, json!({"id": "42"}));
    assert_eq!(*shape(&customer, &s).0, json!({"name": "Ada"}));
    let mut anonymous = customer_updated();
    anonymous.model = None;
    assert_eq!(*shape(&anonymous, &s).0, json!({"name": "Ada"}));
}

#[test]
fn redaction_replaces_the_object_value_and_both_sides_of_its_change() {
    let s = shaping(
        Value::Null,
        json!({"store.Customer": {"email": "***@***.com", "phone": "***"}}),
    );
    let customer = customer_updated();
    let (object, changes) = shape(&customer, &s);
    assert_eq!(
        *object,
        json!({"id": 7, "email": "***@***.com", "name": "Ada", "phone": "***"})
    );
    assert_eq!(
        changes.as_deref(),
        Some(&json!({
            "email": {"old": "***@***.com", "new": "***@***.com"},
            "name": {"old": "A.", "new": "Ada"}
        }))
    );
    // Another model is untouched, and absent fields are not added.
    let e = order_paid();
    let (object, changes) = shape(&e, &s);
    assert_eq!(*object, e.object);
    assert_eq!(changes.as_deref(), e.changes.as_ref());
}

#[test]
fn star_redactions_apply_to_every_model_and_a_model_entry_wins() {
    let s = shaping(
        Value::Null,
        json!({"*": {"email": "hidden", "name": null}, "store.Customer": {"email": "***@***.com"}}),
    );
    let customer = customer_updated();
    let (object, _) = shape(&customer, &s);
    assert_eq!(
        *object,
        json!({"id": 7, "email": "***@***.com", "name": null, "phone": null})
    );
    let mut other = customer_updated();
    other.model = Some("crm.Lead".into());
    let (object, changes) = shape(&other, &s);
    assert_eq!(object["email"], "hidden");
    assert_eq!(changes.unwrap()["name"], json!({"old": null, "new": null}));
}

#[test]
fn include_and_redact_combine_and_hand_written_changes_are_replaced_whole() {
    let s = shaping(
        json!({"store.Customer": ["id", "email"]}),
        json!({"store.Customer": {"email": "x"}}),
    );
    let mut e = customer_updated();
    e.changes = Some(json!({"email": "changed", "name": {"old": "A.", "new": "Ada"}}));
    let (object, changes) = shape(&e, &s);
    assert_eq!(*object, json!({"id": 7, "email": "x"}));
    assert_eq!(changes.as_deref(), Some(&json!({"email": "x"})));
}

#[test]
fn unshaped_and_malformed_shaping_leave_the_event_as_stored() {
    let e = customer_updated();
    let (object, changes) = shape(&e, &Shaping::default());
    assert!(matches!(object, Cow::Borrowed(_)));
    assert!(matches!(changes, Some(Cow::Borrowed(_))));
    let odd = shaping(json!(5), json!(["email"]));
    let (object, changes) = shape(&e, &odd);
    assert_eq!(*object, e.object);
    assert_eq!(changes.as_deref(), e.changes.as_ref());
    assert_eq!(body_for(&e, &Shaping::default()), body(&e));
}

#[test]
fn a_shaped_body_matches_the_django_document_example() {
    let mut e = order_paid();
    e.object = json!({"id": "42", "reference": "ORD-123", "total": "150.00", "status": "PAID"});
    let s = shaping(
        json!({"store.Order": ["id", "reference", "total"]}),
        Value::Null,
    );
    let body = String::from_utf8(body_for(&e, &s)).unwrap();
    assert_eq!(
        body,
        concat!(
            r#"{"id":"evt_0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f","event":"order.paid","#,
            r#""timestamp":"2026-01-24T10:00:00.123456Z","account_id":null,"#,
            r#""model":{"app":"store","name":"Order"},"object_id":"42","#,
            r#""object":{"id":"42","reference":"ORD-123","total":"150.00"},"#,
            r#""changes":{},"#,
            r#""user":{"id":"1","username":"admin"}}"#
        )
    );
}

#[test]
fn numbers_keep_the_digits_postgresql_stored() {
    let stored =
        r#"{"total": 150.00, "big": 123456789012345678901234567890.123456789, "tiny": 1e-400}"#;
    let mut e = order_paid();
    e.object = serde_json::from_str(stored).unwrap();
    let body = String::from_utf8(body(&e)).unwrap();
    assert!(body.contains(r#""total":150.00"#), "{body}");
    assert!(
        body.contains(r#""big":123456789012345678901234567890.123456789"#),
        "{body}"
    );
    assert!(body.contains(r#""tiny":1e-400"#), "{body}");
}

#[test]
fn string_numbers_keep_exact_digits_in_object_and_changes_at_any_depth() {
    let mut e = order_paid();
    e.object = serde_json::from_str(
        r#"{"id": 42, "total": 150.00, "big": 12345678901234567890, "tiny": 1e-400,
            "lines": [{"qty": 2, "price": 0.10}], "paid": true, "note": null, "ref": "7"}"#,
    )
    .unwrap();
    e.changes = Some(
        serde_json::from_str(
            r#"{"total": {"old": 1.5, "new": 150.00}, "status": {"old": "A", "new": "B"}}"#,
        )
        .unwrap(),
    );
    let s = Shaping {
        number_format: NumberFormat::String,
        ..Shaping::default()
    };
    let body = String::from_utf8(body_for(&e, &s)).unwrap();
    assert!(
        body.contains(r#""object":{"big":"12345678901234567890","id":"42","lines":[{"price":"0.10","qty":"2"}],"note":null,"paid":true,"ref":"7","tiny":"1e-400","total":"150.00"}"#),
        "{body}"
    );
    assert!(
        body.contains(
            r#""changes":{"status":{"new":"B","old":"A"},"total":{"new":"150.00","old":"1.5"}}"#
        ),
        "{body}"
    );
    // The envelope's own fields are not numbers and stay as they are.
    assert!(body.contains(r#""object_id":"42""#), "{body}");
    assert!(!s.is_empty());
    assert_eq!(NumberFormat::from_column("string"), NumberFormat::String);
    assert_eq!(NumberFormat::from_column("json"), NumberFormat::Json);
}

#[test]
fn string_numbers_apply_after_include_and_redact() {
    let mut e = order_paid();
    e.object = serde_json::from_str(r#"{"id": 42, "total": 150.00, "cost": 99.5}"#).unwrap();
    let s = Shaping {
        include_fields: Some(json!(["id", "total"])),
        redact_fields: Some(json!({"*": {"id": 0}})),
        number_format: NumberFormat::String,
    };
    let (object, _) = shape(&e, &s);
    assert_eq!(*object, json!({"id": "0", "total": "150.00"}));
}
