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
}

/// The `max_in_flight` of an endpoint that does not set one (the column's default).
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 8;

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
                       ep.max_in_flight, ep.rate_limit, ep.disabled_reason, ep.disabled_at";

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
    })
}

/// Parses a `--header 'Name: value'` argument.
pub fn parse_header(arg: &str) -> Result<(String, String), EndpointError> {
    let (name, value) =
        arg.split_once(':').ok_or_else(|| {
            EndpointError::Invalid(format!(
            "header {:?} has no colon: write it as 'Name: value', e.g. 'Authorization: Bearer …'",
            arg.split(':').next().unwrap_or_default().chars().take(40).collect::<String>()
        ))
        })?;
    let name = name.trim();
    if name.is_empty() {
        return Err(EndpointError::Invalid(
            "a header has no name before its colon: write it as 'Name: value'".into(),
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// The JSON object stored in `headers`. The endpoints trigger checks names and values; here
/// only what a JSON object cannot show: the same name twice.
fn headers_json(headers: &[(String, String)]) -> Result<Value, EndpointError> {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if map.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            return Err(EndpointError::Invalid(format!(
                "header {name:?} is given more than once (names ignore case)"
            )));
        }
        map.insert(name.clone(), Value::String(value.clone()));
    }
    Ok(Value::Object(map))
}

/// The longest endpoint URL (the endpoints trigger checks the same).
pub const MAX_URL_CHARS: usize = 2048;

const CREDENTIALS: &str = "endpoint url must not contain credentials (user:password@): \
                           receivers authenticate hookrelay by its signature, or use endpoint \
                           headers";

/// Checks a URL before the database does, with a message that says what to fix. Credentials
/// are looked for first, and a URL is never echoed with them.
pub fn check_url(url: &str) -> Result<(), EndpointError> {
    let shown = without_credentials(url);
    if shown != url {
        return Err(EndpointError::Invalid(CREDENTIALS.into()));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(EndpointError::Invalid(format!(
            "endpoint url is {} characters long; at most {MAX_URL_CHARS} are allowed: receivers \
             and proxies commonly refuse longer URLs; move long tokens into a static header",
            url.chars().count()
        )));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        EndpointError::Invalid(format!(
            "endpoint url {shown:?} is malformed ({e}): give a full URL such as https://example.com/webhooks"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {shown:?} uses the {} scheme; only http:// and https:// are allowed",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EndpointError::Invalid(CREDENTIALS.into()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {shown:?} has no host"
        )));
    }
    Ok(())
}

/// `url` with any `user:password@` before its host cut out (as `***@`), for messages. Works on
/// text that does not parse as a URL too, which is when a message most needs to show it.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
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
    let sql = "INSERT INTO hookrelay.endpoints (name, url, secret, events, models, account_id, \
               signature_scheme, max_attempts, timeout_ms, headers, include_fields, \
               redact_fields, max_in_flight, rate_limit) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
    let headers = headers_json(&new.headers)?;
    client
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
            ],
        )
        .await
        .map_err(|e| write_error(e, &new.name))?;
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
    let row = tx
        .query_opt(
            "SELECT signature_scheme, secret, \
                    CASE WHEN previous_secret_expires_at > now() THEN previous_secret END \
             FROM hookrelay.endpoints WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .ok_or_else(|| EndpointError::NotFound(name.into()))?;
    let scheme: Scheme = row.get::<_, String>(0).parse().unwrap_or_default();
    let current: String = row.get(1);
    let still_signing: Option<String> = row.get(2);
    let generated = new_secret.is_none();
    let secret = new_secret.unwrap_or_else(|| sign::generate_secret(scheme));
    if secret == current {
        return Err(EndpointError::Invalid(
            "the new secret is the endpoint's current secret: give another one, or leave \
             --secret out to have one generated"
                .into(),
        ));
    }
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let row = tx
        .query_one(
            "UPDATE hookrelay.endpoints \
             SET previous_secret = CASE WHEN $3::bigint > 0 THEN secret END, \
                 previous_secret_expires_at = \
                     CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * interval '1 millisecond' END, \
                 secret = $2 \
             WHERE name = $1 RETURNING previous_secret_expires_at",
            &[&name, &secret, &grace_ms],
        )
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
    fn credentials_are_refused_first_and_never_echoed() {
        for url in [
            "ftp://user:hunter2-pw@example.com/x",
            "https://user:hunter2-pw@",
            "https://user:hunter2-pw@exa mple.com",
            "https://:hunter2-pw@example.com",
        ] {
            let err = check_url(url).unwrap_err().to_string();
            assert!(err.contains("credentials"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
        assert_eq!(
            without_credentials("https://a:b@host:8/p?q=x@y#z"),
            "https://***@host:8/p?q=x@y#z"
        );
        assert_eq!(
            without_credentials("https://host/p@q"),
            "https://host/p@q",
            "an @ after the host is not a credential"
        );
        assert_eq!(without_credentials("not a url"), "not a url");
    }

    #[test]
    fn header_arguments_are_name_colon_value() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap(),
            ("Authorization".into(), "Bearer a:b".into())
        );
        assert_eq!(
            parse_header(" X-Tenant :acme ").unwrap(),
            ("X-Tenant".into(), "acme".into())
        );
        assert!(parse_header("X-Tenant")
            .unwrap_err()
            .to_string()
            .contains("no colon"));
        assert!(parse_header(": value")
            .unwrap_err()
            .to_string()
            .contains("no name"));
        let twice = [
            ("X-Tenant".to_string(), "a".to_string()),
            ("x-tenant".to_string(), "b".to_string()),
        ];
        assert!(headers_json(&twice)
            .unwrap_err()
            .to_string()
            .contains("more than once"));
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
