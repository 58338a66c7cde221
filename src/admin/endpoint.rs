//! Endpoint management: the rows of `hookrelay.endpoints`, written with checks that name the
//! problem, and read back with their secrets and static header values masked. Also secret
//! rotation: the old secret keeps signing beside the new one for a grace period.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Row};

use crate::db::explain;
use crate::sign::{self, Scheme};

mod checks;
pub use checks::*;

/// Errors from endpoint commands.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{0}")]
    Invalid(String),
    #[error("an endpoint named {0:?} already exists: pick another name, or remove it first")]
    Exists(String),
    #[error(
        "endpoint name {name:?} is taken by {existing:?} (names ignore case): pick another \
         name, or remove {existing:?} first"
    )]
    ExistsIgnoringCase { name: String, existing: String },
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
    /// Static headers sent with every request, e.g. `("Authorization", "Bearer …")`.
    pub headers: Vec<(String, String)>,
    /// Fields kept in `object` and `changes`: an array, or an object keyed by model.
    pub include_fields: Option<Value>,
    /// Replacements per model and field: `{"store.Customer": {"email": "***@***.com"}}`.
    pub redact_fields: Option<Value>,
    /// Requests in flight at once, across all workers (`None`: [`DEFAULT_MAX_IN_FLIGHT`]).
    pub max_in_flight: Option<i32>,
    /// Requests per second, across all workers (`None`: no limit).
    pub rate_limit: Option<f64>,
    /// A jsonpath predicate over the envelope: only events it holds for are delivered.
    pub filter: Option<String>,
    /// `json` or `string` (`None`: `json`).
    pub number_format: Option<String>,
    /// Send no update whose `changes` `include_fields` leaves empty.
    pub skip_empty_changes: bool,
    /// Send `traceparent` and `tracestate` with each attempt.
    pub trace_context: bool,
    /// Write a `hookrelay.delivery.dead` event when one of its deliveries dies.
    pub emit_dead: bool,
    /// Deliveries that share an ordering key go one at a time, in event order.
    pub ordered: bool,
    /// `skip` or `block` (`None`: `skip`): what a dead delivery does to its key's next ones.
    pub on_dead: Option<String>,
}

/// The `max_in_flight` of an endpoint that does not set one (the column's default).
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 16;

/// An endpoint as shown to operators: secrets and header values only as fingerprints.
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
    /// The secret a rotation replaced, while it still signs beside the current one.
    pub previous_secret_fingerprint: Option<String>,
    /// When the previous secret stops signing (only while it still does).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Static header names, each with its value's fingerprint (values can be tokens).
    pub headers: BTreeMap<String, String>,
    /// Requests in flight at once, across all workers.
    pub max_in_flight: i32,
    /// Requests per second, across all workers; `None`: no limit.
    pub rate_limit: Option<f64>,
    /// Why the endpoint is disabled (by an operator, a `410 Gone`, or failing for days).
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// The content filter (a jsonpath predicate over the envelope); `None`: every event.
    pub filter: Option<String>,
    /// `json` or `string`: how numbers in `object` and `changes` are sent.
    pub number_format: String,
    /// Whether updates whose `changes` `include_fields` leaves empty are skipped.
    pub skip_empty_changes: bool,
    /// Whether attempts send `traceparent` and `tracestate`.
    pub trace_context: bool,
    /// Whether a dead delivery writes a `hookrelay.delivery.dead` event.
    pub emit_dead: bool,
    /// Whether deliveries that share an ordering key go one at a time, in event order.
    pub ordered: bool,
    /// `skip` or `block`: whether a dead delivery lets its key's next one go or holds the key.
    pub on_dead: String,
}

/// What operators see of an endpoint. Secrets and header values come as fingerprints from the
/// `hookrelay.endpoint_fingerprints` view, never as themselves, so a role without access to
/// those columns (`hookrelay_operator`) can list endpoints too.
const COLUMNS: &str = "ep.id, ep.name, ep.url, ep.account_id, ep.events, ep.models, ep.active, \
                       ep.signature_scheme, ep.max_attempts, ep.timeout_ms, ep.include_fields, \
                       ep.redact_fields, ep.created_at, f.secret_fingerprint, \
                       f.previous_secret_fingerprint, f.header_fingerprints, \
                       CASE WHEN ep.previous_secret_expires_at > now() \
                           THEN ep.previous_secret_expires_at END AS previous_secret_expires_at, \
                       ep.max_in_flight, ep.rate_limit, ep.disabled_reason, ep.disabled_at, \
                       ep.filter::text AS filter, ep.number_format, ep.skip_empty_changes, \
                       ep.trace_context, ep.emit_dead, ep.ordered, ep.on_dead";

/// The tables [`COLUMNS`] reads.
const FROM: &str = "hookrelay.endpoints ep \
                    JOIN hookrelay.endpoint_fingerprints f ON f.endpoint_id = ep.id";

/// The longest grace period a rotation may have.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

fn info(row: &Row) -> Result<EndpointInfo, tokio_postgres::Error> {
    let headers: Value = row.try_get("header_fingerprints")?;
    Ok(EndpointInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        secret_fingerprint: row.try_get("secret_fingerprint")?,
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
        previous_secret_fingerprint: row.try_get("previous_secret_fingerprint")?,
        previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
        headers: headers
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, fp)| (name.clone(), fp.as_str().unwrap_or("?").to_string()))
            .collect(),
        max_in_flight: row.try_get("max_in_flight")?,
        rate_limit: row.try_get("rate_limit")?,
        disabled_reason: row.try_get("disabled_reason")?,
        disabled_at: row.try_get("disabled_at")?,
        filter: row.try_get("filter")?,
        number_format: row.try_get("number_format")?,
        skip_empty_changes: row.try_get("skip_empty_changes")?,
        trace_context: row.try_get("trace_context")?,
        emit_dead: row.try_get("emit_dead")?,
        ordered: row.try_get("ordered")?,
        on_dead: row.try_get("on_dead")?,
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

/// The error for a name already taken, naming the endpoint that has it when it differs only
/// in case (names are unique ignoring case).
pub async fn name_taken(client: &impl GenericClient, name: &str) -> EndpointError {
    let existing = client
        .query_opt(
            "SELECT name FROM hookrelay.endpoints WHERE lower(name) = lower($1)",
            &[&name],
        )
        .await;
    match existing {
        Ok(Some(row)) if row.get::<_, String>(0) != name => EndpointError::ExistsIgnoringCase {
            name: name.into(),
            existing: row.get(0),
        },
        _ => EndpointError::Exists(name.into()),
    }
}

/// How to have a secret generated with `endpoint add`, for messages about a secret given.
const ADD_GENERATES: &str =
    "leave --secret (and HOOKRELAY_ENDPOINT_SECRET) out of `hookrelay endpoint add`";

/// The same for `endpoint rotate-secret`.
const ROTATE_GENERATES: &str =
    "leave --secret (and HOOKRELAY_NEW_SECRET) out of `hookrelay endpoint rotate-secret`";

const SIGNING_SECRETS: &str = include_str!("../../sql/queries/endpoint_signing_secrets.sql");
const ROTATE_SECRET: &str = include_str!("../../sql/queries/endpoint_rotate_secret.sql");

/// Adds an endpoint. Returns it, and whether its secret was generated.
pub async fn add(
    client: &impl GenericClient,
    new: &NewEndpoint,
) -> Result<(EndpointInfo, bool), EndpointError> {
    check_url(&new.url)?;
    check_filters(&new.events, &new.models)?;
    if let Some(secret) = &new.secret {
        check_secret(new.scheme, secret, ADD_GENERATES)?;
    }
    let generated = new.secret.is_none();
    let secret = new
        .secret
        .clone()
        .unwrap_or_else(|| sign::generate_secret(new.scheme));
    let sql = "INSERT INTO hookrelay.endpoints (name, url, secret, events, models, account_id, \
               signature_scheme, max_attempts, timeout_ms, headers, include_fields, \
               redact_fields, max_in_flight, rate_limit, filter, number_format, \
               skip_empty_changes, trace_context, emit_dead, ordered, on_dead) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                       hookrelay.check_filter($15), coalesce($16, 'json'), $17, $18, $19, $20, \
                       $21)";
    let on_dead = check_on_dead(new.on_dead.as_deref())?;
    let headers = headers_json(new.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
    let written = client
        .execute(
            sql,
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
                &headers,
                &new.include_fields,
                &new.redact_fields,
                &new.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
                &new.rate_limit,
                &new.filter,
                &new.number_format,
                &new.skip_empty_changes,
                &new.trace_context,
                &new.emit_dead,
                &new.ordered,
                &on_dead,
            ],
        )
        .await;
    match written {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(name_taken(client, &new.name).await)
        }
        Err(e) => return Err(write_error(e, &new.name)),
        Ok(_) => {}
    }
    Ok((get(client, &new.name).await?, generated))
}

/// Every endpoint, by name.
pub async fn list(client: &impl GenericClient) -> Result<Vec<EndpointInfo>, EndpointError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} ORDER BY ep.name");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(info).collect::<Result<_, _>>()?)
}

/// One endpoint by name.
pub async fn get(client: &impl GenericClient, name: &str) -> Result<EndpointInfo, EndpointError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE ep.name = $1");
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

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Fingerprint of the new secret.
    pub secret_fingerprint: String,
    /// Whether the new secret was generated (it is then shown only on request).
    pub generated: bool,
    /// Fingerprint of the replaced secret, and until when it keeps signing (`None`: a grace
    /// period of zero, it stopped at once).
    pub previous: Option<(String, DateTime<Utc>)>,
    /// Fingerprint of an older secret that was still signing from an earlier rotation and
    /// no longer does.
    pub dropped: Option<String>,
}

/// Replaces an endpoint's secret (`None`: generate one). The old secret keeps signing beside
/// the new one for `grace` (zero: it stops at once), by the database clock.
pub async fn rotate_secret(
    client: &mut impl GenericClient,
    name: &str,
    new_secret: Option<String>,
    grace: Duration,
) -> Result<Rotation, EndpointError> {
    if grace > MAX_GRACE {
        return Err(EndpointError::Invalid(
            "the grace period may be at most 30 days: receivers should switch secrets sooner"
                .into(),
        ));
    }
    let tx = client.transaction().await?;
    let (scheme, current, still_signing) = signing_secrets(&tx, name).await?;
    let generated = new_secret.is_none();
    let secret = next_secret(scheme, &current, new_secret)?;
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let row = tx
        .query_one(ROTATE_SECRET, &[&name, &secret, &grace_ms])
        .await
        .map_err(|e| write_error(e, name))?;
    let expires_at: Option<DateTime<Utc>> = row.get(0);
    tx.commit().await?;
    Ok(Rotation {
        secret_fingerprint: sign::fingerprint(&secret),
        generated,
        previous: expires_at.map(|at| (sign::fingerprint(&current), at)),
        dropped: still_signing
            .filter(|old| *old != secret)
            .as_deref()
            .map(sign::fingerprint),
    })
}

/// The endpoint's scheme, current secret and the previous secret if it still signs, locked
/// until the rotation commits (a rotation running at the same time waits, then sees this one).
async fn signing_secrets(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
) -> Result<(Scheme, String, Option<String>), EndpointError> {
    let row = tx
        .query_opt(SIGNING_SECRETS, &[&name])
        .await?
        .ok_or_else(|| EndpointError::NotFound(name.into()))?;
    let scheme: Scheme = row.get::<_, String>(0).parse().unwrap_or_default();
    Ok((scheme, row.get(1), row.get(2)))
}

/// The secret to sign with from now on: the one given, checked, or a generated one; never
/// the current one again.
fn next_secret(
    scheme: Scheme,
    current: &str,
    given: Option<String>,
) -> Result<String, EndpointError> {
    if let Some(secret) = &given {
        check_secret(scheme, secret, ROTATE_GENERATES)?;
    }
    let secret = given.unwrap_or_else(|| sign::generate_secret(scheme));
    if secret == current {
        return Err(EndpointError::Invalid(
            "the new secret is the endpoint's current secret: give another one, or leave \
             --secret out to have one generated"
                .into(),
        ));
    }
    Ok(secret)
}

/// What disabling an endpoint did.
#[derive(Debug, Clone, PartialEq)]
pub struct Disabled {
    /// Whether it was active before (`false`: it was already disabled; nothing changed).
    pub was_active: bool,
    /// Why it is disabled (when it already was: the reason recorded then).
    pub reason: Option<String>,
    /// Its pending deliveries, which now wait until it is enabled.
    pub pending: i64,
}

/// Disables an endpoint. Its pending deliveries wait (parked) until it is enabled; events
/// fanned out while it is disabled get no delivery to it at all (the claim matches active
/// endpoints only), so they are not sent after it is enabled either.
pub async fn disable(client: &impl GenericClient, name: &str) -> Result<Disabled, EndpointError> {
    let row = client
        .query_opt(
            "WITH old AS (SELECT id, active, disabled_reason FROM hookrelay.endpoints \
                          WHERE name = $1 FOR UPDATE), \
                  changed AS (UPDATE hookrelay.endpoints ep SET active = false FROM old \
                              WHERE ep.id = old.id AND old.active RETURNING ep.id) \
             SELECT old.active, old.disabled_reason, \
                    (SELECT count(*) FROM hookrelay.deliveries d \
                     WHERE d.endpoint_id = old.id AND d.state = 'pending') \
             FROM old",
            &[&name],
        )
        .await?
        .ok_or_else(|| EndpointError::NotFound(name.into()))?;
    Ok(Disabled {
        was_active: row.get(0),
        reason: row.get(1),
        pending: row.get(2),
    })
}

/// Enables an endpoint: its parked deliveries are due at once and its failure streak starts
/// from zero. Returns why it had been disabled (`None`: it was active).
pub async fn enable(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, EndpointError> {
    let row = client
        .query_opt(
            "UPDATE hookrelay.endpoints ep SET active = true \
             FROM (SELECT id, disabled_reason FROM hookrelay.endpoints \
                   WHERE name = $1 FOR UPDATE) old \
             WHERE ep.id = old.id RETURNING old.disabled_reason",
            &[&name],
        )
        .await?
        .ok_or_else(|| EndpointError::NotFound(name.into()))?;
    Ok(row.get(0))
}

/// What a dead delivery of an ordered endpoint does to its key's next ones.
pub const ON_DEAD: [&str; 2] = ["skip", "block"];

/// `on_dead` as given (`None`: `skip`), or an error naming the values it may take.
pub fn check_on_dead(on_dead: Option<&str>) -> Result<&str, EndpointError> {
    match on_dead.unwrap_or("skip") {
        value @ ("skip" | "block") => Ok(value),
        other => Err(EndpointError::Invalid(format!(
            "on_dead {other:?} is not skip or block: skip lets a key's next delivery go when \
             one ends dead, block holds the key until the dead one is redelivered or cancelled"
        ))),
    }
}

/// Changes whether an endpoint delivers in order per key, and what a dead delivery does
/// (`None`: unchanged). Returns the endpoint as it now is.
pub async fn set_ordering(
    client: &impl GenericClient,
    name: &str,
    ordered: Option<bool>,
    on_dead: Option<&str>,
) -> Result<EndpointInfo, EndpointError> {
    let on_dead = on_dead.map(|v| check_on_dead(Some(v))).transpose()?;
    let n = client
        .execute(
            "UPDATE hookrelay.endpoints SET ordered = coalesce($2, ordered), \
             on_dead = coalesce($3, on_dead), updated_at = now() WHERE name = $1",
            &[&name, &ordered, &on_dead],
        )
        .await
        .map_err(|e| write_error(e, name))?;
    if n == 0 {
        return Err(EndpointError::NotFound(name.into()));
    }
    get(client, name).await
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
