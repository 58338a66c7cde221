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

/// Writes one event in its own transaction and returns its id.
pub async fn emit(client: &mut Client, event: &NewEvent) -> Result<Uuid, EmitError> {
    if let Some(actor) = &event.actor {
        check_actor(actor)?;
    }
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
            "SELECT hookrelay.emit($1, $2, $3, $4, $5, $6)",
            &[
                &event.event,
                &object,
                &event.model,
                &event.object_id,
                &event.changes,
                &event.account_id,
            ],
        )
        .await
        .map_err(|e| match e.as_db_error() {
            // Only the constraint's name: the row in the detail may hold personal data.
            Some(db) if db.code() == &SqlState::CHECK_VIOLATION => EmitError::Invalid(format!(
                "the event was refused by constraint {}: event names are 1 to 200 characters \
                 without spaces, object and changes are JSON objects",
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
    fn json_arguments_must_be_objects() {
        assert!(json_object("--object", r#"{"id": 1}"#).is_ok());
        let err = json_object("--object", "[1]").unwrap_err().to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
        let err = json_object("--changes", "{oops").unwrap_err().to_string();
        assert!(err.contains("--changes is not valid JSON"), "{err}");
    }
}
