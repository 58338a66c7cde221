//! Payload shaping on arbitrary events and endpoint settings: the body is always one JSON
//! object, include_fields keeps nothing it does not list, and redact_fields leaves no listed
//! field with its original value.

#![no_main]

use arbitrary::Arbitrary;
use hookrelay::pipeline::payload::{self, Event, Shaping};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Input {
    id: [u8; 16],
    event: String,
    model: Option<String>,
    object_id: Option<String>,
    account_id: Option<String>,
    /// JSON texts; anything that does not parse is left out.
    object: String,
    changes: Option<String>,
    actor: Option<String>,
    include_fields: Option<String>,
    redact_fields: Option<String>,
    created_at: i32,
}

fn json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

fuzz_target!(|input: Input| {
    let Some(created_at) = chrono::DateTime::from_timestamp(i64::from(input.created_at), 0) else {
        return;
    };
    let event = Event {
        id: uuid::Uuid::from_bytes(input.id),
        event: input.event,
        model: input.model,
        object_id: input.object_id,
        object: json(&input.object).unwrap_or(Value::Object(Default::default())),
        changes: input.changes.as_deref().and_then(json),
        actor: input.actor.as_deref().and_then(json),
        account_id: input.account_id,
        created_at,
    };
    let shaping = Shaping {
        include_fields: input.include_fields.as_deref().and_then(json),
        redact_fields: input.redact_fields.as_deref().and_then(json),
    };
    if let Some(model) = &event.model {
        let _ = payload::ModelName::parse(model);
    }
    let body = payload::body_for(&event, &shaping);
    let sent: Value = serde_json::from_slice(&body).expect("the body is JSON");
    let (object, changes) = payload::shape(&event, &shaping);
    assert_eq!(sent["object"], *object);
    assert_eq!(sent["id"], payload::event_id(&event.id));

    let model = event.model.as_deref();
    let replacements = shaping.replacements(model);
    if let Some(kept) = shaping.kept_fields(model) {
        for part in std::iter::once(&*object).chain(changes.as_deref()) {
            if let Value::Object(map) = part {
                for key in map.keys() {
                    assert!(kept.contains(&key.as_str()), "{key} kept");
                }
            }
        }
    }
    if let (Value::Object(shaped), Value::Object(original)) = (&*object, &event.object) {
        for (field, replacement) in &replacements {
            if let Some(value) = shaped.get(field) {
                assert_eq!(value, replacement, "{field} redacted");
            } else if shaping.kept_fields(model).is_none() {
                assert!(!original.contains_key(field), "{field} dropped");
            }
        }
    }
});
