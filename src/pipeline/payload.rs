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
//! of `changes`, and `number_format = "string"` sends every number in `object` and `changes`
//! as a string of its exact digits. Shaping happens here, per endpoint, so the stored event
//! stays whole.
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

/// How one endpoint sends numbers (its `number_format` column).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NumberFormat {
    /// JSON numbers with the digits PostgreSQL stored (`150.00` stays `150.00` on the wire).
    #[default]
    Json,
    /// Each number in `object` and `changes` as a string of those digits (`"150.00"`), which
    /// every JSON parser keeps exactly.
    String,
}

impl NumberFormat {
    /// The column's value; anything but `string` (the endpoints trigger admits only `json` and
    /// `string`) is `json`.
    pub fn from_column(value: &str) -> Self {
        if value == "string" {
            NumberFormat::String
        } else {
            NumberFormat::Json
        }
    }
}

/// How one endpoint wants its payloads shaped: its `include_fields`, `redact_fields` and
/// `number_format` columns as stored. The database validates both when they are written; a part that does
/// not fit the documented forms is ignored here rather than failing a delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaping {
    /// `["id", …]` for every model, or `{"store.Order": ["id", …], "*": […]}` per model
    /// (`"*"` for models not listed). `None`: every field.
    pub include_fields: Option<Value>,
    /// `{"store.Customer": {"email": "***@***.com"}, "*": {…}}`: field → replacement per model.
    pub redact_fields: Option<Value>,
    /// How numbers in `object` and `changes` are written.
    pub number_format: NumberFormat,
}

/// The word for "every model" in the per-model forms.
pub const ANY_MODEL: &str = "*";

impl Shaping {
    /// True when nothing is shaped.
    pub fn is_empty(&self) -> bool {
        self.include_fields.is_none()
            && self.redact_fields.is_none()
            && self.number_format == NumberFormat::Json
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
    if shaping.number_format == NumberFormat::String {
        numbers_as_strings(object.to_mut());
        if let Some(changes) = changes.as_mut() {
            numbers_as_strings(changes.to_mut());
        }
    }
    (object, changes)
}

/// Replaces every number in `value`, at any depth, with a string of its exact digits:
/// `150.00` becomes `"150.00"`, `12345678901234567890` becomes `"12345678901234567890"`.
/// (The numbers keep the text PostgreSQL stored: serde_json's arbitrary precision.)
pub fn numbers_as_strings(value: &mut Value) {
    match value {
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Array(items) => items.iter_mut().for_each(numbers_as_strings),
        Value::Object(map) => map.values_mut().for_each(numbers_as_strings),
        _ => {}
    }
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
mod tests;
