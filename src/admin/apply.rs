//! Declarative endpoints: `hookrelay endpoint apply FILE` makes the endpoints table match the
//! `[[endpoints]]` of a TOML file, in the Django document's style:
//!
//! ```toml
//! [[endpoints]]
//! name = "primary_crm"
//! url = "https://crm.example.com/webhooks/"
//! secret_env = "CRM_WEBHOOK_SECRET"        # or secret = "…"; neither: generated once
//! events = ["created", "updated"]
//! include_models = ["store.Order", "store.Customer"]
//! include_fields = { "store.Order" = ["id", "total", "status"] }
//! redact_fields = { "store.Customer" = { email = "***@***.com" } }
//! filter = '$.object.total > 100'          # a jsonpath predicate over the envelope
//! number_format = "string"                 # or "json" (the default)
//! skip_empty_changes = true
//! trace_context = false                    # no traceparent/tracestate headers (default true)
//! emit_dead = true                         # hookrelay.delivery.dead events (default false)
//! ordered = true                           # one delivery at a time per ordering key
//! on_dead = "block"                        # or "skip" (the default)
//! ```
//!
//! Endpoints are matched by name: missing ones are created, differing ones updated, and with
//! `--prune` the others removed. Everything happens in one transaction, so a file with an
//! error changes nothing; each change is reported, with secrets never shown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::admin::endpoint;
use crate::db::explain;
use crate::sign::{self, Scheme};

/// Errors from applying endpoints.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    File(String),
    #[error("endpoint {name:?}: {message}")]
    Endpoint { name: String, message: String },
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// One `[[endpoints]]` entry. Omitted settings take their defaults: the file describes the
/// whole endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub name: String,
    pub url: String,
    pub secret: Option<String>,
    /// The name of an environment variable holding the secret.
    pub secret_env: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default, alias = "models")]
    pub include_models: Vec<String>,
    #[serde(alias = "account_id")]
    pub account: Option<String>,
    #[serde(alias = "scheme")]
    pub signature_scheme: Option<String>,
    pub max_attempts: Option<i32>,
    /// A duration such as "10s".
    pub timeout: Option<String>,
    pub active: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Fields kept: an array for every model, or a table per model.
    pub include_fields: Option<Value>,
    /// Replacements per model and field.
    pub redact_fields: Option<Value>,
    /// Requests in flight at once, across all workers (default 16).
    pub max_in_flight: Option<i32>,
    /// Requests per second, across all workers (default: no limit).
    pub rate_limit: Option<f64>,
    /// A jsonpath predicate over the envelope (default: every event).
    pub filter: Option<String>,
    /// `json` (default) or `string`.
    pub number_format: Option<String>,
    /// Skip updates whose `changes` `include_fields` leaves empty (default false).
    #[serde(default)]
    pub skip_empty_changes: bool,
    /// Send `traceparent` and `tracestate` with each attempt (default true).
    pub trace_context: Option<bool>,
    /// Write a `hookrelay.delivery.dead` event when a delivery to it dies (default false).
    #[serde(default)]
    pub emit_dead: bool,
    /// Deliveries that share an ordering key go one at a time, in event order (default false).
    #[serde(default)]
    pub ordered: bool,
    /// `skip` (default) or `block`: what a dead delivery does to its key's next ones.
    pub on_dead: Option<String>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
}

/// What applying did (or, in a dry run, would do) to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Created {
        name: String,
        secret_generated: bool,
    },
    Updated {
        name: String,
        fields: Vec<String>,
    },
    Unchanged {
        name: String,
    },
    Removed {
        name: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Created {
                name,
                secret_generated: true,
            } => {
                write!(f, "created {name} (secret generated; see `hookrelay endpoint show {name} --reveal-secret`)")
            }
            Change::Created { name, .. } => write!(f, "created {name}"),
            Change::Updated { name, fields } => write!(f, "updated {name}: {}", fields.join(", ")),
            Change::Unchanged { name } => write!(f, "unchanged {name}"),
            Change::Removed { name } => write!(f, "removed {name}"),
        }
    }
}

/// Reads the `[[endpoints]]` of a TOML file (other keys are settings, checked elsewhere).
pub fn parse(text: &str) -> Result<Vec<EndpointSpec>, ApplyError> {
    let file: File = toml::from_str(text)
        .map_err(|e| ApplyError::File(crate::cli::settings::toml_error(&e, text)))?;
    let mut seen = BTreeMap::new();
    for spec in &file.endpoints {
        if let Some(first) = seen.insert(spec.name.to_lowercase(), spec.name.clone()) {
            return Err(ApplyError::File(format!(
                "endpoint {:?} is declared twice{}: names must be unique, ignoring case",
                spec.name,
                if first == spec.name {
                    String::new()
                } else {
                    format!(" (also as {first:?})")
                }
            )));
        }
    }
    Ok(file.endpoints)
}

fn invalid(name: &str, message: impl Into<String>) -> ApplyError {
    ApplyError::Endpoint {
        name: name.to_string(),
        message: message.into(),
    }
}

/// The secret a spec asks for, if any: given, or read from the named environment variable.
fn wanted_secret(spec: &EndpointSpec) -> Result<Option<String>, ApplyError> {
    match (&spec.secret, &spec.secret_env) {
        (Some(_), Some(_)) => Err(invalid(&spec.name, "give secret or secret_env, not both")),
        (Some(secret), None) => Ok(Some(secret.clone())),
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(invalid(
                &spec.name,
                format!("secret_env names {var}, which is not set: export it, or give secret"),
            )),
        },
        (None, None) => Ok(None),
    }
}

/// The endpoint's columns as the spec wants them (without the secret).
fn desired(spec: &EndpointSpec) -> Result<Map<String, Value>, ApplyError> {
    let bad = |e: endpoint::EndpointError| invalid(&spec.name, e.to_string());
    endpoint::check_url(&spec.url).map_err(bad)?;
    endpoint::check_filters(&spec.events, &spec.include_models).map_err(bad)?;
    let headers =
        endpoint::headers_json(spec.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .map_err(bad)?;
    let scheme: Scheme = spec
        .signature_scheme
        .as_deref()
        .unwrap_or("hookrelay")
        .parse()
        .map_err(|e: sign::SignError| invalid(&spec.name, e.to_string()))?;
    let timeout_ms = match &spec.timeout {
        None => Value::Null,
        Some(text) => {
            let d: Duration = humantime::parse_duration(text).map_err(|_| {
                invalid(
                    &spec.name,
                    format!("timeout {text:?} is not a duration such as \"10s\""),
                )
            })?;
            json!(d.as_millis().min(i32::MAX as u128) as i64)
        }
    };
    let value = json!({
        "url": spec.url,
        "events": spec.events,
        "models": spec.include_models,
        "account_id": spec.account,
        "signature_scheme": scheme.as_str(),
        "max_attempts": spec.max_attempts,
        "timeout_ms": timeout_ms,
        "headers": headers,
        "include_fields": spec.include_fields,
        "redact_fields": spec.redact_fields,
        "max_in_flight": spec.max_in_flight.unwrap_or(endpoint::DEFAULT_MAX_IN_FLIGHT),
        "rate_limit": spec.rate_limit,
        "filter": spec.filter,
        "number_format": spec.number_format.as_deref().unwrap_or("json"),
        "skip_empty_changes": spec.skip_empty_changes,
        "trace_context": spec.trace_context.unwrap_or(true),
        "emit_dead": spec.emit_dead,
        "ordered": spec.ordered,
        "on_dead": endpoint::check_on_dead(spec.on_dead.as_deref()).map_err(bad)?,
    });
    let Value::Object(mut map) = value else {
        unreachable!("a JSON object literal")
    };
    // Enabled or disabled is state as much as configuration: a 410 or auto-disable turned it
    // off for a reason, so only an explicit `active` in the file changes it (new endpoints
    // start enabled).
    if let Some(active) = spec.active {
        map.insert("active".into(), json!(active));
    }
    Ok(map)
}

fn write_error(name: &str, e: tokio_postgres::Error) -> ApplyError {
    match e.code() {
        Some(c) if c == &SqlState::CHECK_VIOLATION => invalid(name, explain(&e)),
        // Names are unique ignoring case: another endpoint differs only in case.
        Some(c) if c == &SqlState::UNIQUE_VIOLATION => invalid(
            name,
            "another endpoint has this name in other letter case (names ignore case): rename \
             one of them",
        ),
        _ => ApplyError::Db(e),
    }
}

/// Creates or updates one endpoint to match its spec, and says which it did.
async fn apply_one(
    tx: &tokio_postgres::Transaction<'_>,
    spec: &EndpointSpec,
) -> Result<Change, ApplyError> {
    let mut want = desired(spec)?;
    let secret = checked_secret(spec, &want)?;
    if let Some(filter) = &spec.filter {
        want.insert("filter".into(), stored_filter(tx, spec, filter).await?);
    }
    let current = tx
        .query_opt(
            "SELECT to_jsonb(e) FROM hookrelay.endpoints e WHERE name = $1 FOR UPDATE",
            &[&spec.name],
        )
        .await?;
    match current {
        None => create(tx, spec, want, secret).await,
        Some(row) => update(tx, spec, row.get(0), want, secret).await,
    }
}

/// The secret the file gives (directly or by environment variable), checked against the
/// scheme it will sign with.
fn checked_secret(
    spec: &EndpointSpec,
    want: &Map<String, Value>,
) -> Result<Option<String>, ApplyError> {
    let secret = wanted_secret(spec)?;
    if let Some(secret) = &secret {
        endpoint::check_secret(
            scheme_of(want),
            secret,
            "leave secret and secret_env out of the file",
        )
        .map_err(|e| invalid(&spec.name, e.to_string()))?;
    }
    Ok(secret)
}

/// The filter checked (with its own message and example) and as PostgreSQL stores it
/// (normalized), which is what the current row is compared with.
async fn stored_filter(
    tx: &tokio_postgres::Transaction<'_>,
    spec: &EndpointSpec,
    filter: &str,
) -> Result<Value, ApplyError> {
    let row = tx
        .query_one("SELECT hookrelay.check_filter($1)::text", &[&filter])
        .await
        .map_err(|e| write_error(&spec.name, e))?;
    Ok(json!(row.get::<_, Option<String>>(0)))
}

/// The signature scheme of a [`desired`] map (already checked there).
fn scheme_of(want: &Map<String, Value>) -> Scheme {
    want["signature_scheme"]
        .as_str()
        .unwrap_or("hookrelay")
        .parse()
        .unwrap_or_default()
}

/// Inserts a new endpoint, with a generated secret when the file gives none.
async fn create(
    tx: &tokio_postgres::Transaction<'_>,
    spec: &EndpointSpec,
    mut want: Map<String, Value>,
    secret: Option<String>,
) -> Result<Change, ApplyError> {
    let secret_generated = secret.is_none();
    let scheme = scheme_of(&want);
    want.insert("name".into(), json!(spec.name));
    want.insert(
        "secret".into(),
        json!(secret.unwrap_or_else(|| sign::generate_secret(scheme))),
    );
    let columns: Vec<&str> = want.keys().map(String::as_str).collect();
    let sql = format!(
        "INSERT INTO hookrelay.endpoints ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::hookrelay.endpoints, $1)",
        cols = columns.join(", ")
    );
    tx.execute(&sql, &[&Value::Object(want)])
        .await
        .map_err(|e| write_error(&spec.name, e))?;
    Ok(Change::Created {
        name: spec.name.clone(),
        secret_generated,
    })
}

/// Writes only the columns that differ from the current row (`have`); none is `Unchanged`.
async fn update(
    tx: &tokio_postgres::Transaction<'_>,
    spec: &EndpointSpec,
    have: Value,
    mut want: Map<String, Value>,
    secret: Option<String>,
) -> Result<Change, ApplyError> {
    if let Some(secret) = secret {
        want.insert("secret".into(), json!(secret));
    }
    let changed: Vec<String> = want
        .iter()
        .filter(|(k, v)| have.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    if changed.is_empty() {
        return Ok(Change::Unchanged {
            name: spec.name.clone(),
        });
    }
    let sql = format!(
        "UPDATE hookrelay.endpoints e SET ({cols}) = (SELECT {cols} FROM jsonb_populate_record(e, $2)) WHERE name = $1",
        cols = changed.join(", ")
    );
    tx.execute(&sql, &[&spec.name, &Value::Object(want)])
        .await
        .map_err(|e| write_error(&spec.name, e))?;
    Ok(Change::Updated {
        name: spec.name.clone(),
        fields: changed,
    })
}

/// Makes the endpoints match `specs`, in one transaction. With `prune`, endpoints not in
/// `specs` are removed; with `dry_run`, the changes are worked out and rolled back.
pub async fn apply(
    client: &mut Client,
    specs: &[EndpointSpec],
    prune: bool,
    dry_run: bool,
) -> Result<Vec<Change>, ApplyError> {
    let tx = client.transaction().await?;
    let mut changes = Vec::with_capacity(specs.len());
    for spec in specs {
        changes.push(apply_one(&tx, spec).await?);
    }
    if prune {
        let keep: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let removed = tx
            .query(
                "DELETE FROM hookrelay.endpoints WHERE NOT (name = ANY($1)) RETURNING name",
                &[&keep],
            )
            .await?;
        let mut names: Vec<String> = removed.iter().map(|r| r.get(0)).collect();
        names.sort();
        changes.extend(names.into_iter().map(|name| Change::Removed { name }));
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_django_style_file_parses() {
        let specs = parse(
            r#"
            [[endpoints]]
            name = "primary_crm"
            url = "https://crm.example.com/webhooks/"
            secret = "your-signing-secret"
            events = ["created", "updated"]
            include_models = ["store.Order", "store.Customer"]
            "#,
        )
        .unwrap();
        assert_eq!(specs.len(), 1);
        let want = desired(&specs[0]).unwrap();
        assert_eq!(want["models"], json!(["store.Order", "store.Customer"]));
        assert_eq!(want["events"], json!(["created", "updated"]));
        assert_eq!(
            want.get("active"),
            None,
            "left as it is unless the file says"
        );
        assert_eq!(want["timeout_ms"], Value::Null);
    }

    #[test]
    fn mistakes_name_the_endpoint_and_the_key() {
        let err =
            parse("[[endpoints]]\nname = \"a\"\nurl = \"https://x\"\nurls = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `urls`"), "{err}");
        let err = parse("[[endpoints]]\nname = \"a\"\nurl = \"https://x\"\n[[endpoints]]\nname = \"a\"\nurl = \"https://y\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("declared twice"), "{err}");
        let specs = parse("[[endpoints]]\nname = \"a\"\nurl = \"ftp://x\"\n").unwrap();
        let err = desired(&specs[0]).unwrap_err().to_string();
        assert!(
            err.starts_with("endpoint \"a\": ") && err.contains("only http"),
            "{err}"
        );
        let specs = parse("[[endpoints]]\nname = \"a\"\nurl = \"https://x\"\ntimeout = \"soon\"\n")
            .unwrap();
        assert!(desired(&specs[0])
            .unwrap_err()
            .to_string()
            .contains("timeout \"soon\""));
        let specs = parse("[[endpoints]]\nname = \"a\"\nurl = \"https://x\"\nsecret_env = \"HOOKRELAY_TEST_UNSET_VAR\"\n").unwrap();
        assert!(wanted_secret(&specs[0])
            .unwrap_err()
            .to_string()
            .contains("HOOKRELAY_TEST_UNSET_VAR, which is not set"));
    }
}
