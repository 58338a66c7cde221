//! The JSON body a receiver gets: the envelope below, the same for every event and endpoint
//! (README.md shows it under "What receivers get"), field order included.
//!
//! ```json
//! {"id": "evt_…", "event": "order.paid", "timestamp": "2026-01-24T10:00:00.123456Z",
//!  "account_id": null, "model": {"app": "store", "name": "Order"}, "object_id": "42",
//!  "object": {…}, "changes": {"status": {"old": "PENDING", "new": "PAID"}},
//!  "user": {"id": "1", "username": "admin"}}
//! ```
//!
//! Each endpoint may shape what it gets ([`Shaping`]): `include_fields` keeps only the listed
//! keys of `object` and `changes`, `redact_fields` replaces values in `object` and on both sides
//! of `changes`. Shaping happens here, per endpoint, so the stored event stays whole.
//!
//! `timestamp` is when the event was written, in RFC 3339 with microseconds (what PostgreSQL
//! stores), always six digits: two states of one row written within a second still order.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// An event as stored in `hookrelay.events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub event: String,
    pub model: Option<String>,
    pub object_id: Option<String>,
    pub object: Value,
    pub changes: Option<Value>,
    pub actor: Option<Value>,
    pub account_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The id receivers see for an event: `evt_` and its UUID. The same on every retry and
/// every endpoint, so receivers can deduplicate on it.
pub fn event_id(id: &Uuid) -> String {
    format!("evt_{}", id.hyphenated())
}

/// The `model` object of the envelope: `"store.Order"` becomes app `store`, name `Order`
/// (split at the last dot); a model without a dot has no app.
#[derive(Debug, Serialize, PartialEq)]
pub struct ModelName<'a> {
    pub app: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> ModelName<'a> {
    /// Splits a stored model name.
    pub fn parse(model: &'a str) -> Self {
        match model.rsplit_once('.') {
            Some((app, name)) if !app.is_empty() && !name.is_empty() => ModelName {
                app: Some(app),
                name,
            },
            _ => ModelName {
                app: None,
                name: model,
            },
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    event: &'a str,
    timestamp: String,
    account_id: Option<&'a str>,
    model: Option<ModelName<'a>>,
    object_id: Option<&'a str>,
    object: &'a Value,
    changes: Option<&'a Value>,
    user: Option<&'a Value>,
}

/// The request body for `event`, unshaped.
pub fn body(event: &Event) -> Vec<u8> {
    body_for(event, &Shaping::default())
}

/// The request body for `event` as an endpoint with `shaping` gets it, serialized once per
/// attempt; its bytes are what gets signed.
pub fn body_for(event: &Event, shaping: &Shaping) -> Vec<u8> {
    let id = event_id(&event.id);
    let (object, changes) = shape(event, shaping);
    let envelope = Envelope {
        id: &id,
        event: &event.event,
        timestamp: event
            .created_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        account_id: event.account_id.as_deref(),
        model: event.model.as_deref().map(ModelName::parse),
        object_id: event.object_id.as_deref(),
        object: &object,
        changes: changes.as_deref(),
        user: event.actor.as_ref(),
    };
    serde_json::to_vec(&envelope).expect("an envelope of JSON values always serializes")
}

/// How one endpoint wants its payloads shaped: its `include_fields` and `redact_fields`
/// columns as stored. The database validates both when they are written; a part that does
/// not fit the documented forms is ignored here rather than failing a delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaping {
    /// `["id", …]` for every model, or `{"store.Order": ["id", …], "*": […]}` per model
    /// (`"*"` for models not listed). `None`: every field.
    pub include_fields: Option<Value>,
    /// `{"store.Customer": {"email": "***@***.com"}, "*": {…}}`: field → replacement per model.
    pub redact_fields: Option<Value>,
}

/// The word for "every model" in the per-model forms.
pub const ANY_MODEL: &str = "*";

impl Shaping {
    /// True when nothing is shaped.
    pub fn is_empty(&self) -> bool {
        self.include_fields.is_none() && self.redact_fields.is_none()
    }

    /// The fields kept for events of `model`; `None` keeps every field.
    pub fn kept_fields(&self, model: Option<&str>) -> Option<Vec<&str>> {
        let list = match self.include_fields.as_ref()? {
            list @ Value::Array(_) => list,
            Value::Object(by_model) => model
                .and_then(|m| by_model.get(m))
                .or_else(|| by_model.get(ANY_MODEL))?,
            _ => return None,
        };
        Some(list.as_array()?.iter().filter_map(Value::as_str).collect())
    }

    /// Field → replacement for events of `model`: the model's own entries, then those of
    /// `"*"` for fields the model does not name.
    pub fn replacements(&self, model: Option<&str>) -> Map<String, Value> {
        let mut out = Map::new();
        let Some(Value::Object(by_model)) = &self.redact_fields else {
            return out;
        };
        let own = model.and_then(|m| by_model.get(m));
        for fields in [own, by_model.get(ANY_MODEL)].into_iter().flatten() {
            for (field, replacement) in fields.as_object().into_iter().flatten() {
                out.entry(field.clone())
                    .or_insert_with(|| replacement.clone());
            }
        }
        out
    }
}

/// `object` and `changes` of `event` as an endpoint with `shaping` gets them: borrowed when
/// nothing changes, so unshaped endpoints cost no copy.
pub fn shape<'a>(event: &'a Event, shaping: &Shaping) -> (Cow<'a, Value>, Option<Cow<'a, Value>>) {
    let mut object = Cow::Borrowed(&event.object);
    let mut changes = event.changes.as_ref().map(Cow::Borrowed);
    if shaping.is_empty() {
        return (object, changes);
    }
    let model = event.model.as_deref();
    if let Some(keep) = shaping.kept_fields(model) {
        keep_fields(object.to_mut(), &keep);
        if let Some(changes) = changes.as_mut() {
            keep_fields(changes.to_mut(), &keep);
        }
    }
    let replacements = shaping.replacements(model);
    if !replacements.is_empty() {
        redact_object(object.to_mut(), &replacements);
        if let Some(changes) = changes.as_mut() {
            redact_changes(changes.to_mut(), &replacements);
        }
    }
    (object, changes)
}

/// Keeps only the keys of a JSON object that `keep` names; anything but an object is left alone.
pub fn keep_fields(value: &mut Value, keep: &[&str]) {
    if let Value::Object(map) = value {
        map.retain(|key, _| keep.contains(&key.as_str()));
    }
}

/// Replaces the value of each field of `object` that `replacements` names. Fields the object
/// does not have are not added.
pub fn redact_object(object: &mut Value, replacements: &Map<String, Value>) {
    let Value::Object(map) = object else { return };
    for (field, value) in map.iter_mut() {
        if let Some(replacement) = replacements.get(field) {
            *value = replacement.clone();
        }
    }
}

/// Replaces both sides of each change `replacements` names: `{"old": r, "new": r}`. A change
/// that is not an `{"old", "new"}` object (written by hand with `emit`) is replaced whole.
pub fn redact_changes(changes: &mut Value, replacements: &Map<String, Value>) {
    let Value::Object(map) = changes else { return };
    for (field, change) in map.iter_mut() {
        let Some(replacement) = replacements.get(field) else {
            continue;
        };
        match change {
            Value::Object(sides) if sides.contains_key("old") || sides.contains_key("new") => {
                for side in ["old", "new"] {
                    if let Some(v) = sides.get_mut(side) {
                        *v = replacement.clone();
                    }
                }
            }
            other => *other = replacement.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
