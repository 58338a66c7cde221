//! Claiming work: new events (fanned out to matching endpoints) and due deliveries.
//!
//! Each claim is one short statement with `FOR UPDATE SKIP LOCKED` that commits at once and
//! leaves a lease (`locked_until`) on what it took, so any number of workers share the tables
//! safely and no lock is held while requests are in flight. A worker that dies loses nothing:
//! its leases expire and the deliveries become due again.
//!
//! Both claims lease an endpoint no more deliveries than its `max_in_flight` and `rate_limit`
//! allow across all workers (`hookrelay.admit`); the rest are parked until it has room.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Client;

use crate::db::pooler;
use serde_json::Value;
use tokio_postgres::Row;

use uuid::Uuid;

use crate::pipeline::payload::{Event, NumberFormat, Shaping};
use crate::sign::{self, Scheme};
use crate::trace::{EventTrace, TraceHeaders};

/// The columns [`job_from_row`] reads, written once for both claims.
const JOB_COLUMNS: &str = include_str!("../../sql/queries/job_columns.sql");
/// Where a claim's final SELECT takes [`JOB_COLUMNS`].
const JOB_COLUMNS_AT: &str = "-- @job_columns\n";

const WORK_FLOOR: &str = include_str!("../../sql/queries/work_floor.sql");

static CLAIM_NEW: LazyLock<String> =
    LazyLock::new(|| with_job_columns(include_str!("../../sql/queries/claim_new.sql")));
static CLAIM_DUE: LazyLock<String> =
    LazyLock::new(|| with_job_columns(include_str!("../../sql/queries/claim_due.sql")));

/// A claim query with the job's columns in place of its `-- @job_columns` line.
fn with_job_columns(query: &str) -> String {
    query.replacen(JOB_COLUMNS_AT, JOB_COLUMNS, 1)
}

/// The endpoint a claimed delivery goes to, as it was at claim time.
#[derive(Clone)]
pub struct Target {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub secret: String,
    /// The secret a rotation replaced, while its grace period lasts (judged at claim time by
    /// the database clock): it signs beside `secret`.
    pub previous_secret: Option<String>,
    pub scheme: Scheme,
    pub timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    /// The endpoint's static headers (names and values), sent with every request.
    pub headers: Vec<(String, String)>,
    /// The endpoint's `include_fields` and `redact_fields`.
    pub shaping: Shaping,
    /// Whether attempts send `traceparent` and `tracestate` (the endpoint's `trace_context`).
    pub trace_context: bool,
}

impl Target {
    /// The secrets that sign requests to this endpoint: the current one first.
    pub fn secrets(&self) -> Vec<&str> {
        std::iter::once(self.secret.as_str())
            .chain(self.previous_secret.as_deref())
            .collect()
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets and header values (often tokens) stay out of logs and panic messages.
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &sign::fingerprint(&self.secret))
            .field(
                "previous_secret",
                &self.previous_secret.as_deref().map(sign::fingerprint),
            )
            .field("scheme", &self.scheme)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("headers", &header_names)
            .finish()
    }
}

/// Static headers from the `headers` column (a JSON object; the endpoints trigger admits
/// string values only, anything else is skipped).
fn static_headers(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| Some((name.clone(), v.as_str()?.to_string())))
        .collect()
}

/// A claimed delivery, leased to this worker and ready to send.
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery_id: i64,
    /// This attempt's number (1 for the first), as recorded in the attempts table.
    pub attempt: u32,
    /// This attempt's number since the delivery was last redelivered: what the retry schedule
    /// and `max_attempts` count.
    pub budget_attempt: u32,
    pub event: Event,
    pub target: Target,
    /// Why this delivery cannot be sent at all (its event's JSON could not be read, e.g.
    /// nested too deeply): it ends `dead` without a request, instead of failing its batch.
    pub unreadable: Option<String>,
    /// The trace context the event was written with.
    pub trace: EventTrace,
    /// The trace headers this attempt sends, set as its span starts.
    pub trace_headers: Option<TraceHeaders>,
    /// Whether the delivery holds its ordering key's place (an ordered endpoint): its result
    /// may make the key's next delivery due.
    pub keyed: bool,
}

/// What one claim statement took.
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// Rows the statement locked: events for a fan-out claim, deliveries for a due claim.
    /// Fewer than the limit means nothing more was waiting.
    pub taken: usize,
    /// The greatest event id a fan-out claim took.
    pub last_event: Option<Uuid>,
}

/// The lease and identity a claim records.
#[derive(Debug, Clone)]
pub struct Lease<'a> {
    pub duration: Duration,
    pub worker: &'a str,
    /// This worker's leases whose requests have ended: they hold no slot.
    pub unwritten: Unwritten,
    /// When the claim must start on the server's clock, or take nothing (`None`: no limit).
    pub start_by: Option<SystemTime>,
}

/// Per endpoint, how many of a worker's leased deliveries have had their request end with
/// the result not yet written. An endpoint's `max_in_flight` counts requests in flight, and
/// these are not; other workers cannot know of them and count them, erring on the safe side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unwritten {
    pub endpoints: Vec<i64>,
    pub counts: Vec<i32>,
}

impl<'a> Lease<'a> {
    /// A lease of `duration` in `worker`'s name, with no ended requests to discount.
    pub fn new(duration: Duration, worker: &'a str) -> Lease<'a> {
        Lease {
            duration,
            worker,
            unwritten: Unwritten::default(),
            start_by: None,
        }
    }

    fn millis(&self) -> i64 {
        self.duration.as_millis().min(i64::MAX as u128) as i64
    }
}

/// A JSON column, or `None` with the reason noted when it cannot be decoded.
fn json_column(row: &Row, column: &str, problem: &mut Option<String>) -> Option<Value> {
    match row.try_get::<_, Option<Value>>(column) {
        Ok(value) => value,
        Err(e) => {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |c| c.to_string());
            problem.get_or_insert(format!("the event's {column} could not be read: {cause}"));
            None
        }
    }
}

/// A claimed job from a row of either claim: the columns `sql/queries/job_columns.sql` names.
fn job_from_row(row: &Row) -> Result<Job, tokio_postgres::Error> {
    let scheme: String = row.try_get("signature_scheme")?;
    let timeout_ms: Option<i32> = row.try_get("timeout_ms")?;
    let max_attempts: Option<i32> = row.try_get("max_attempts")?;
    let attempt: i32 = row.try_get("attempt")?;
    let base: i32 = row.try_get("attempts_base")?;
    let headers: Value = row.try_get("headers")?;
    let mut unreadable = None;
    let object = json_column(row, "object", &mut unreadable).unwrap_or(Value::Null);
    let changes = json_column(row, "changes", &mut unreadable);
    let actor = json_column(row, "actor", &mut unreadable);
    Ok(Job {
        delivery_id: row.try_get("delivery_id")?,
        attempt: attempt.max(1) as u32,
        budget_attempt: (attempt - base).max(1) as u32,
        keyed: row.try_get("keyed")?,
        event: Event {
            id: row.try_get("event_id")?,
            event: row.try_get("event")?,
            model: row.try_get("model")?,
            object_id: row.try_get("object_id")?,
            object,
            changes,
            actor,
            account_id: row.try_get("account_id")?,
            created_at: row.try_get("created_at")?,
        },
        target: Target {
            id: row.try_get("endpoint_id")?,
            name: row.try_get("endpoint_name")?,
            url: row.try_get("url")?,
            secret: row.try_get("secret")?,
            previous_secret: row.try_get("previous_secret")?,
            // The endpoints trigger only admits known schemes.
            scheme: scheme.parse().unwrap_or_default(),
            timeout: timeout_ms.map(|ms| Duration::from_millis(ms.max(1) as u64)),
            max_attempts: max_attempts.map(|n| n.max(1) as u32),
            headers: static_headers(&headers),
            shaping: Shaping {
                include_fields: row.try_get("include_fields")?,
                redact_fields: row.try_get("redact_fields")?,
                number_format: NumberFormat::from_column(row.try_get("number_format")?),
            },
            trace_context: row.try_get("trace_context")?,
        },
        unreadable,
        trace: EventTrace {
            traceparent: row.try_get("traceparent")?,
            tracestate: row.try_get("tracestate")?,
        },
        trace_headers: None,
    })
}

/// Where a fan-out claim starts looking.
///
/// Claimed events leave dead entries at the front of the index of events to fan out until
/// vacuum removes them, and a claim from the start steps over every one (measured: a claim of
/// 100 went from 2.8 ms to 7.2 ms after 10,000 claimed events). A worker therefore resumes
/// a little before the last event it claimed (see [`resume_point`]), and now and then looks
/// from the start for events that committed much later than their id was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every event not fanned out yet.
    FromStart,
    /// Only events with a greater id than this one.
    After(Uuid),
}

/// How far before the last claimed event a resumed claim starts looking: transactions that
/// made their event's id this much earlier than a later one, but committed after it, are still
/// found at once (later ones by the next scan from the start).
pub const RESUME_SLACK: Duration = Duration::from_millis(100);

/// Where a claim resumes after `last`: the same time-ordered (version 7) id, `slack` earlier,
/// with its random part zeroed. Ids that are not time-ordered (applications may supply their
/// own) give an arbitrary point; what lies below it is found by the scans from the start.
pub fn resume_point(last: Uuid, slack: Duration) -> Uuid {
    let bytes = last.as_bytes();
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[..6]);
    let earlier = u64::from_be_bytes(ms).saturating_sub(slack.as_millis() as u64);
    let mut point = [0u8; 16];
    point[..6].copy_from_slice(&earlier.to_be_bytes()[2..]);
    Uuid::from_bytes(point)
}

/// Fans out up to `limit` new events: creates their deliveries and returns them leased.
pub async fn claim_new(
    client: &Client,
    limit: usize,
    from: Scan,
    lease: &Lease<'_>,
) -> Result<Claimed, crate::db::DbError> {
    let after = match from {
        Scan::FromStart => Uuid::nil(),
        Scan::After(id) => id,
    };
    let rows = pooler::query(
        client,
        &CLAIM_NEW,
        &[
            &(limit as i64),
            &lease.millis(),
            &lease.worker,
            &after,
            &lease.unwritten.endpoints,
            &lease.unwritten.counts,
            &lease.start_by,
        ],
    )
    .await?;
    let taken = match rows.first() {
        Some(row) => row.try_get::<_, i64>("events_claimed")? as usize,
        None => 0,
    };
    let mut jobs = Vec::with_capacity(rows.len());
    let mut last_event = None;
    for row in &rows {
        let event: Uuid = row.try_get("event_id")?;
        last_event = last_event.max(Some(event));
        if row.try_get::<_, Option<i64>>("delivery_id")?.is_some() {
            jobs.push(job_from_row(row)?);
        }
    }
    Ok(Claimed {
        jobs,
        taken,
        last_event,
    })
}

/// Claims up to `limit` deliveries that are due (retries, expired leases), of events from
/// `floor` on: the work floor ([`work_floor`]), or the nil uuid for every day.
pub async fn claim_due(
    client: &Client,
    limit: usize,
    lease: &Lease<'_>,
    floor: Uuid,
) -> Result<Claimed, crate::db::DbError> {
    let rows = pooler::query(
        client,
        &CLAIM_DUE,
        &[
            &(limit as i64),
            &lease.millis(),
            &lease.worker,
            &lease.unwritten.endpoints,
            &lease.unwritten.counts,
            &floor,
            &lease.start_by,
        ],
    )
    .await?;
    let jobs: Vec<Job> = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
    Ok(Claimed {
        taken: jobs.len(),
        jobs,
        last_event: None,
    })
}

/// The work floor: no pending delivery belongs to an event with a lower id, as of now (see
/// `hookrelay.work_floor()`, migration 0034).
pub async fn work_floor(client: &Client) -> Result<Uuid, crate::db::DbError> {
    let row = pooler::query_one(client, WORK_FLOOR, &[]).await?;
    Ok(row.try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_claims_select_the_job_columns_once() {
        for query in [&*CLAIM_NEW, &*CLAIM_DUE] {
            assert!(!query.contains(JOB_COLUMNS_AT), "{query}");
            assert_eq!(query.matches(JOB_COLUMNS).count(), 1, "{query}");
            assert!(query.contains(&format!("SELECT\n{JOB_COLUMNS}")), "{query}");
        }
    }

    fn target(previous: Option<&str>) -> Target {
        Target {
            id: 1,
            name: "crm".into(),
            url: "https://crm.example.com".into(),
            secret: "new-secret-value".into(),
            previous_secret: previous.map(String::from),
            scheme: Scheme::Hookrelay,
            timeout: None,
            max_attempts: None,
            headers: static_headers(
                &serde_json::json!({"Authorization": "Bearer t0k3n", "X-N": 5}),
            ),
            shaping: Shaping::default(),
            trace_context: true,
        }
    }

    #[test]
    fn resumed_claims_start_a_little_before_the_last_event() {
        // 0x0190f0a41c2b ms = 1722024205355 (2024-07-26T20:03:25.355Z); 100 ms earlier is 0x..1bc7.
        let last = Uuid::parse_str("0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f").unwrap();
        let point = resume_point(last, Duration::from_millis(100));
        assert_eq!(point.to_string(), "0190f0a4-1bc7-0000-0000-000000000000");
        assert!(point < last);
        assert_eq!(
            resume_point(Uuid::nil(), Duration::from_millis(100)),
            Uuid::nil()
        );
    }

    #[test]
    fn the_current_secret_signs_first_and_the_previous_only_while_kept() {
        assert_eq!(target(None).secrets(), ["new-secret-value"]);
        assert_eq!(
            target(Some("old-secret-value")).secrets(),
            ["new-secret-value", "old-secret-value"]
        );
    }

    #[test]
    fn static_headers_keep_string_values_only() {
        assert_eq!(
            target(None).headers,
            [("Authorization".to_string(), "Bearer t0k3n".to_string())]
        );
        assert!(static_headers(&serde_json::json!(["a"])).is_empty());
    }

    #[test]
    fn debug_output_hides_secrets_and_header_values() {
        let shown = format!("{:?}", target(Some("old-secret-value")));
        for hidden in ["new-secret-value", "old-secret-value", "t0k3n"] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        assert!(shown.contains("Authorization") && shown.contains("sha256:"));
    }
}
