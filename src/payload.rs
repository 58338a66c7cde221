//! The JSON body a receiver gets: the default envelope of DESIGN.md.
//!
//! ```json
//! {"id": "evt_…", "event": "order.paid", "timestamp": "2026-01-24T10:00:00Z",
//!  "account_id": null, "model": {"app": "store", "name": "Order"}, "object_id": "42",
//!  "object": {…}, "changes": {"status": {"old": "PENDING", "new": "PAID"}},
//!  "user": {"id": "1", "username": "admin"}}
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
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

/// The request body for `event`, serialized once per attempt; its bytes are what gets signed.
pub fn body(event: &Event) -> Vec<u8> {
    let id = event_id(&event.id);
    let envelope = Envelope {
        id: &id,
        event: &event.event,
        timestamp: event.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        account_id: event.account_id.as_deref(),
        model: event.model.as_deref().map(ModelName::parse),
        object_id: event.object_id.as_deref(),
        object: &event.object,
        changes: event.changes.as_ref(),
        user: event.actor.as_ref(),
    };
    serde_json::to_vec(&envelope).expect("an envelope of JSON values always serializes")
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
            created_at: Utc.with_ymd_and_hms(2026, 1, 24, 10, 0, 0).unwrap(),
        }
    }

    #[test]
    fn envelope_matches_the_design_document() {
        let body = String::from_utf8(body(&order_paid())).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"id":"evt_0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f","event":"order.paid","#,
                r#""timestamp":"2026-01-24T10:00:00Z","account_id":null,"#,
                r#""model":{"app":"store","name":"Order"},"object_id":"42","#,
                r#""object":{"id":"42","status":"PAID"},"#,
                r#""changes":{"status":{"new":"PAID","old":"PENDING"}},"#,
                r#""user":{"id":"1","username":"admin"}}"#
            )
        );
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
}
