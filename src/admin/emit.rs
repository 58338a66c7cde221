//! Writing an event from the command line, through `hookrelay.emit` as an application would.

use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::db::explain;

/// Errors from emitting an event.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// An event to write.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub event: String,
    pub object: Option<Value>,
    pub model: Option<String>,
    pub object_id: Option<String>,
    pub changes: Option<Value>,
    pub account_id: Option<String>,
    /// Recorded as the acting user, like `SET LOCAL hookrelay.actor` in an application.
    pub actor: Option<String>,
    /// The sequence it belongs to for ordered endpoints (`None`: its model and object id).
    pub ordering_key: Option<String>,
    /// W3C trace context of the trace it belongs to, sent on with every attempt.
    pub traceparent: Option<String>,
    /// W3C `tracestate`, sent on unchanged.
    pub tracestate: Option<String>,
}

/// The characters an event name may have, as documented: the name travels in the
/// `X-Webhook-Event` header, which is ASCII, and receivers route on it.
pub const EVENT_NAME_CHARS: &str = "A-Z a-z 0-9 . _ - : /";

/// The longest event name.
pub const MAX_EVENT_NAME_CHARS: usize = 200;

fn event_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')
}

/// A character as messages show it: `"é" (U+00E9)`; invisible ones by code point only.
pub fn shown_char(c: char) -> String {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    let invisible = matches!(
        c.general_category(),
        G::Control | G::Format | G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator
    );
    if invisible {
        format!("(U+{:04X})", u32::from(c))
    } else {
        format!("{:?} (U+{:04X})", c.to_string(), u32::from(c))
    }
}

/// Why `name` is not a valid event name, or `None` when it is. The database checks the same
/// (`hookrelay.event_name_problem`), for applications that write events with SQL.
pub fn event_name_problem(name: &str) -> Option<String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Some("the event name is empty".into());
    }
    if chars > MAX_EVENT_NAME_CHARS {
        return Some(format!(
            "the event name has {chars} characters; at most {MAX_EVENT_NAME_CHARS} are allowed"
        ));
    }
    let bad = name.chars().find(|c| !event_name_char(*c))?;
    let shown: String = name.chars().take(60).collect();
    Some(format!(
        "the event name {shown:?} has {}, which event names may not have",
        shown_char(bad)
    ))
}

/// Checks an event name, with the rule and an example in the message.
pub fn check_event_name(name: &str) -> Result<(), EmitError> {
    match event_name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(EmitError::Invalid(format!(
            "{problem}: name events like order.paid, with 1 to {MAX_EVENT_NAME_CHARS} of \
             {EVENT_NAME_CHARS}"
        ))),
    }
}

/// Parses a JSON argument that must be an object.
pub fn json_object(what: &str, text: &str) -> Result<Value, EmitError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        EmitError::Invalid(format!(
            "{what} is not valid JSON ({e}): give an object such as '{{\"id\": 1}}'"
        ))
    })?;
    if !value.is_object() {
        return Err(EmitError::Invalid(format!(
            "{what} must be a JSON object such as '{{\"id\": 1}}', not {value}"
        )));
    }
    Ok(value)
}

/// Checks an acting user as `hookrelay.current_actor()` will read it: a bare id, or JSON (a
/// value starting with `{` or `"`). The database keeps malformed JSON as `{"raw": …}` rather
/// than fail an application's transaction; from the command line it is refused instead.
pub fn check_actor(actor: &str) -> Result<(), EmitError> {
    const FORMS: &str = "give a bare id such as 42, or a JSON object such as \
                         '{\"id\": \"1\", \"username\": \"admin\"}'";
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(EmitError::Invalid(format!(
            "--actor is empty: {FORMS}, or leave it out"
        )));
    }
    if actor.starts_with(['{', '"']) {
        serde_json::from_str::<Value>(actor).map_err(|e| {
            EmitError::Invalid(format!(
                "--actor starts like JSON but is not valid JSON ({e}): {FORMS}"
            ))
        })?;
    }
    Ok(())
}

/// Checks `--traceparent` as the receiver's tracing will read it. The database drops a
/// malformed one with a warning rather than fail an application's transaction; from the
/// command line it is refused instead.
fn check_trace(event: &NewEvent) -> Result<(), EmitError> {
    match &event.traceparent {
        Some(tp) if crate::trace::parse_traceparent(tp).is_none() => Err(EmitError::Invalid(
            "--traceparent is not a W3C traceparent: give 00-<32 lowercase hex trace id>-<16 \
             lowercase hex parent id>-<2 hex flags>, ids not all zero, e.g. \
             00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .into(),
        )),
        _ if event.tracestate.is_some() && event.traceparent.is_none() => Err(EmitError::Invalid(
            "--tracestate needs --traceparent: it belongs to that trace".into(),
        )),
        _ => Ok(()),
    }
}

/// Writes one event in its own transaction and returns its id.
pub async fn emit(client: &mut Client, event: &NewEvent) -> Result<Uuid, EmitError> {
    check_event_name(&event.event)?;
    if let Some(actor) = &event.actor {
        check_actor(actor)?;
    }
    check_trace(event)?;
    let tx = client.transaction().await?;
    if let Some(actor) = &event.actor {
        tx.execute("SELECT set_config('hookrelay.actor', $1, true)", &[actor])
            .await?;
    }
    let object = event
        .object
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let row = tx
        .query_one(
            "SELECT hookrelay.emit($1, $2, $3, $4, $5, $6, ordering_key => $7, \
             traceparent => $8, tracestate => $9)",
            &[
                &event.event,
                &object,
                &event.model,
                &event.object_id,
                &event.changes,
                &event.account_id,
                &event.ordering_key,
                &event.traceparent,
                &event.tracestate,
            ],
        )
        .await
        .map_err(|e| match e.as_db_error() {
            // Only the constraint's name: the row in the detail may hold personal data.
            Some(db) if db.code() == &SqlState::CHECK_VIOLATION => EmitError::Invalid(format!(
                "the event was refused by constraint {}: event names are 1 to 200 of \
                 {EVENT_NAME_CHARS}, object and changes are JSON objects",
                db.constraint().unwrap_or("?")
            )),
            Some(db) if db.code() == &SqlState::UNTRANSLATABLE_CHARACTER => {
                EmitError::Invalid(format!(
                    "the event was refused: {}; PostgreSQL's jsonb cannot store the NUL \
                     character (\\u0000): remove it from --object or --changes, or encode the \
                     value (e.g. base64)",
                    db.message()
                ))
            }
            _ => EmitError::Db(e),
        })?;
    tx.commit().await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_ids_or_valid_json() {
        for ok in [
            "42",
            "alice",
            r#"{"id": "1", "username": "admin"}"#,
            r#""alice""#,
        ] {
            assert!(check_actor(ok).is_ok(), "{ok}");
        }
        let err = check_actor(r#"{"id": oops"#).unwrap_err().to_string();
        assert!(
            err.starts_with("--actor starts like JSON but is not valid JSON"),
            "{err}"
        );
        let err = check_actor("  ").unwrap_err().to_string();
        assert!(err.starts_with("--actor is empty"), "{err}");
    }

    #[test]
    fn event_names_are_a_documented_ascii_set() {
        for ok in ["order.paid", "orders/create", "user:signed-up", "a_b", "x"] {
            assert_eq!(event_name_problem(ok), None, "{ok}");
        }
        let cases = [
            ("order\u{a0}paid", "has (U+00A0)"),
            ("order\u{200b}.paid", "has (U+200B)"),
            ("order paid", "has (U+0020)"),
            ("café.paid", "has \"é\" (U+00E9)"),
            ("order\tpaid", "has (U+0009)"),
            ("", "is empty"),
        ];
        for (name, expected) in cases {
            let err = check_event_name(name).unwrap_err().to_string();
            assert!(err.contains(expected), "{name:?}: {err}");
            assert!(
                err.ends_with("with 1 to 200 of A-Z a-z 0-9 . _ - : /"),
                "{err}"
            );
        }
        let long = "é".repeat(201);
        assert!(check_event_name(&long)
            .unwrap_err()
            .to_string()
            .starts_with("the event name has 201 characters"));
    }

    #[test]
    fn json_arguments_must_be_objects() {
        assert!(json_object("--object", r#"{"id": 1}"#).is_ok());
        let err = json_object("--object", "[1]").unwrap_err().to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
        let err = json_object("--changes", "{oops").unwrap_err().to_string();
        assert!(err.contains("--changes is not valid JSON"), "{err}");
    }
}
