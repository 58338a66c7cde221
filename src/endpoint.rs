//! Endpoint management: the rows of `hookrelay.endpoints`, written with checks that name the
//! problem, and read back with their secrets masked.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Row};

use crate::db::explain;
use crate::sign::{self, Scheme};

/// Errors from endpoint commands.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{0}")]
    Invalid(String),
    #[error("an endpoint named {0:?} already exists: pick another name, or remove it first")]
    Exists(String),
    #[error("no endpoint named {0:?}: `hookrelay endpoint list` shows them")]
    NotFound(String),
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// A new endpoint, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub name: String,
    pub url: String,
    /// `None`: generate one.
    pub secret: Option<String>,
    pub events: Vec<String>,
    pub models: Vec<String>,
    pub account_id: Option<String>,
    pub scheme: Scheme,
    pub max_attempts: Option<i32>,
    pub timeout_ms: Option<i32>,
    /// Fields kept in `object` and `changes`: an array, or an object keyed by model.
    pub include_fields: Option<Value>,
    /// Replacements per model and field: `{"store.Customer": {"email": "***@***.com"}}`.
    pub redact_fields: Option<Value>,
}

/// An endpoint as shown to operators: the secret only as a fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointInfo {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub secret_fingerprint: String,
    pub account_id: Option<String>,
    pub events: Vec<String>,
    pub models: Vec<String>,
    pub active: bool,
    pub signature_scheme: String,
    pub max_attempts: Option<i32>,
    pub timeout_ms: Option<i32>,
    pub include_fields: Option<Value>,
    pub redact_fields: Option<Value>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, url, secret, account_id, events, models, active, \
                       signature_scheme, max_attempts, timeout_ms, include_fields, \
                       redact_fields, created_at";

fn info(row: &Row) -> Result<EndpointInfo, tokio_postgres::Error> {
    let secret: String = row.try_get("secret")?;
    Ok(EndpointInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        secret_fingerprint: sign::fingerprint(&secret),
        account_id: row.try_get("account_id")?,
        events: row.try_get("events")?,
        models: row.try_get("models")?,
        active: row.try_get("active")?,
        signature_scheme: row.try_get("signature_scheme")?,
        max_attempts: row.try_get("max_attempts")?,
        timeout_ms: row.try_get("timeout_ms")?,
        include_fields: row.try_get("include_fields")?,
        redact_fields: row.try_get("redact_fields")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Checks a URL before the database does, with a message that says what to fix.
pub fn check_url(url: &str) -> Result<(), EndpointError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        EndpointError::Invalid(format!(
            "endpoint url {url:?} is malformed ({e}): give a full URL such as https://example.com/webhooks"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {url:?} uses {}://; only http:// and https:// are allowed",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EndpointError::Invalid(
            "endpoint url must not contain credentials (user:password@): receivers authenticate \
             hookrelay by its signature, or use endpoint headers"
                .into(),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {url:?} has no host"
        )));
    }
    Ok(())
}

/// Parses the JSON of `--include-fields` or `--redact-fields`. Its shape is checked by the
/// database when the endpoint is written, with a message naming what is wrong.
pub fn shaping_json(flag: &str, text: &str) -> Result<Value, EndpointError> {
    serde_json::from_str(text).map_err(|e| {
        EndpointError::Invalid(format!(
            "{flag} is not valid JSON ({e}): give for example '[\"id\", \"total\"]', \
             '{{\"store.Order\": [\"id\", \"total\"]}}' or \
             '{{\"store.Customer\": {{\"email\": \"***@***.com\"}}}}'"
        ))
    })
}

/// Turns a rejected write into a message naming the field and the fix.
fn write_error(e: tokio_postgres::Error, name: &str) -> EndpointError {
    match e.code() {
        Some(code) if code == &SqlState::UNIQUE_VIOLATION => EndpointError::Exists(name.into()),
        Some(code) if code == &SqlState::CHECK_VIOLATION => EndpointError::Invalid(explain(&e)),
        _ => EndpointError::Db(e),
    }
}

/// Adds an endpoint. Returns it, and whether its secret was generated.
pub async fn add(
    client: &impl GenericClient,
    new: &NewEndpoint,
) -> Result<(EndpointInfo, bool), EndpointError> {
    check_url(&new.url)?;
    let generated = new.secret.is_none();
    let secret = new
        .secret
        .clone()
        .unwrap_or_else(|| sign::generate_secret(new.scheme));
    let sql = format!(
        "INSERT INTO hookrelay.endpoints (name, url, secret, events, models, account_id, \
         signature_scheme, max_attempts, timeout_ms, include_fields, redact_fields) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &new.name,
                &new.url,
                &secret,
                &new.events,
                &new.models,
                &new.account_id,
                &new.scheme.as_str(),
                &new.max_attempts,
                &new.timeout_ms,
                &new.include_fields,
                &new.redact_fields,
            ],
        )
        .await
        .map_err(|e| write_error(e, &new.name))?;
    Ok((info(&row)?, generated))
}

/// Every endpoint, by name.
pub async fn list(client: &impl GenericClient) -> Result<Vec<EndpointInfo>, EndpointError> {
    let sql = format!("SELECT {COLUMNS} FROM hookrelay.endpoints ORDER BY name");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(info).collect::<Result<_, _>>()?)
}

/// One endpoint by name.
pub async fn get(client: &impl GenericClient, name: &str) -> Result<EndpointInfo, EndpointError> {
    let sql = format!("SELECT {COLUMNS} FROM hookrelay.endpoints WHERE name = $1");
    let row = client
        .query_opt(&sql, &[&name])
        .await?
        .ok_or_else(|| EndpointError::NotFound(name.into()))?;
    Ok(info(&row)?)
}

/// The secret of an endpoint, for an operator who asked for it explicitly.
pub async fn secret(client: &impl GenericClient, name: &str) -> Result<String, EndpointError> {
    let row = client
        .query_opt(
            "SELECT secret FROM hookrelay.endpoints WHERE name = $1",
            &[&name],
        )
        .await?
        .ok_or_else(|| EndpointError::NotFound(name.into()))?;
    Ok(row.get(0))
}

/// Pauses (`false`) or resumes (`true`) an endpoint. Pending deliveries wait while it is paused.
pub async fn set_active(
    client: &impl GenericClient,
    name: &str,
    active: bool,
) -> Result<(), EndpointError> {
    let n = client
        .execute(
            "UPDATE hookrelay.endpoints SET active = $2 WHERE name = $1",
            &[&name, &active],
        )
        .await?;
    if n == 0 {
        return Err(EndpointError::NotFound(name.into()));
    }
    Ok(())
}

/// Removes an endpoint with its deliveries and their attempts.
pub async fn remove(client: &impl GenericClient, name: &str) -> Result<(), EndpointError> {
    let n = client
        .execute("DELETE FROM hookrelay.endpoints WHERE name = $1", &[&name])
        .await?;
    if n == 0 {
        return Err(EndpointError::NotFound(name.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_with_a_reason() {
        assert!(check_url("https://example.com/hooks").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        let cases = [
            ("ftp://example.com", "only http:// and https://"),
            ("example.com/hooks", "malformed"),
            ("https://user:pw@example.com", "credentials"),
            ("", "malformed"),
        ];
        for (url, expected) in cases {
            let err = check_url(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn shaping_flags_must_be_json() {
        assert_eq!(
            shaping_json("--include-fields", r#"["id"]"#).unwrap(),
            serde_json::json!(["id"])
        );
        let err = shaping_json("--redact-fields", "{email: x}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--redact-fields is not valid JSON"),
            "{err}"
        );
    }
}
