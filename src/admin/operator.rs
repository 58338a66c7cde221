//! What operators ask and do: list deliveries, show one with every attempt, the backlog and
//! per-endpoint health, and redelivery. Reads go through the same views operators use in SQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::db::explain;

/// Errors from operator commands.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no delivery with id {0}: `hookrelay deliveries` lists them")]
    NoDelivery(i64),
    #[error("unknown state {0:?}: use pending, delivered, dead or cancelled")]
    BadState(String),
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint: Option<String>,
    pub state: Option<String>,
    pub event: Option<String>,
    pub since: Option<Duration>,
    pub limit: i64,
}

/// One delivery, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint: String,
    pub event: String,
    pub event_id: String,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: Option<i32>,
    pub status: Option<i32>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub worker: Option<String>,
}

/// A delivery with its event and every attempt.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryRow,
    pub url: String,
    pub model: Option<String>,
    pub object_id: Option<String>,
    pub account_id: Option<String>,
    pub attempts_log: Vec<AttemptRow>,
}

/// How much work is waiting (the `hookrelay.backlog` view).
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub events_to_fan_out: i64,
    pub oldest_event_age_seconds: Option<f64>,
    pub due: i64,
    pub in_flight: i64,
    pub retrying: i64,
    pub paused: i64,
    pub oldest_pending_age_seconds: Option<f64>,
    /// Deliveries of active endpoints waiting for a slot (max_in_flight) or a rate-limit token.
    pub waiting_for_slot: i64,
}

/// One endpoint's health (the `hookrelay.endpoint_health` view).
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub name: String,
    pub active: bool,
    pub pending: i64,
    pub dead: i64,
    pub delivered_last_hour: i64,
    pub failed_last_hour: i64,
    /// Delivered ÷ attempted in the last hour; `None` without attempts.
    pub success_rate_last_hour: Option<f64>,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed attempt's error, kept after later successes (compare `last_error_at`
    /// with `last_success_at`).
    pub last_error: Option<String>,
    /// When `last_error` happened, and how long ago by the database's clock.
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error_age_seconds: Option<f64>,
    /// Why the endpoint is disabled, when it is.
    pub disabled_reason: Option<String>,
    /// Requests in flight now (unexpired leases), and the endpoint's cap.
    pub in_flight: i64,
    pub max_in_flight: i32,
}

/// A key of an ordered endpoint held back by its failing first delivery (the
/// `hookrelay.held_keys` view).
#[derive(Debug, Clone, Serialize)]
pub struct HeldKey {
    pub endpoint: String,
    pub ordering_key: String,
    /// The delivery holding the key.
    pub delivery_id: i64,
    /// `retrying` or `dead` (with `on_dead = block`).
    pub reason: String,
    pub attempts: i32,
    pub last_error_code: Option<String>,
    pub since: DateTime<Utc>,
    /// Deliveries of the key waiting behind it.
    pub waiting: i64,
}

/// Ordered keys held back, and how many deliveries wait for their key's turn in all.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub keys: Vec<HeldKey>,
    pub waiting_for_key: i64,
}

const STATES: [&str; 4] = ["pending", "delivered", "dead", "cancelled"];

fn seconds(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn delivery_row(row: &Row) -> Result<DeliveryRow, tokio_postgres::Error> {
    let event_id: Uuid = row.try_get("event_id")?;
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        endpoint: row.try_get("endpoint")?,
        event: row.try_get("event")?,
        event_id: crate::pipeline::payload::event_id(&event_id),
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error_code: row.try_get("last_error_code")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

const DELIVERY_COLUMNS: &str = "d.id, ep.name AS endpoint, e.event, d.event_id, d.state, \
     d.attempts, d.last_status, d.last_error_code, d.last_error, d.created_at, \
     CASE WHEN d.next_attempt_at < 'infinity' THEN d.next_attempt_at END AS next_attempt_at, \
     d.delivered_at, ep.url, e.model, e.object_id, e.account_id";

/// Deliveries matching `filter`, newest first.
pub async fn deliveries(
    client: &impl GenericClient,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRow>, OperatorError> {
    if let Some(state) = &filter.state {
        if !STATES.contains(&state.as_str()) {
            return Err(OperatorError::BadState(state.clone()));
        }
    }
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}
         FROM hookrelay.deliveries d
         JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
         JOIN hookrelay.events e ON e.id = d.event_id
         WHERE ($1::text IS NULL OR ep.name = $1)
           AND ($2::text IS NULL OR d.state = $2)
           AND ($3::text IS NULL OR e.event = $3)
           AND ($4::float8 IS NULL OR d.created_at >= now() - $4 * interval '1 second')
         ORDER BY d.id DESC
         LIMIT $5"
    );
    let rows = client
        .query(
            &sql,
            &[
                &filter.endpoint,
                &filter.state,
                &filter.event,
                &seconds(filter.since),
                &filter.limit.max(1),
            ],
        )
        .await?;
    Ok(rows.iter().map(delivery_row).collect::<Result<_, _>>()?)
}

/// One delivery with every attempt.
pub async fn delivery(
    client: &impl GenericClient,
    id: i64,
) -> Result<DeliveryDetail, OperatorError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}
         FROM hookrelay.deliveries d
         JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
         JOIN hookrelay.events e ON e.id = d.event_id
         WHERE d.id = $1"
    );
    let row = client
        .query_opt(&sql, &[&id])
        .await?
        .ok_or(OperatorError::NoDelivery(id))?;
    let attempts = client
        .query(
            "SELECT attempt, started_at, duration_ms, status, error_code, error,
                    response_excerpt, worker
             FROM hookrelay.attempts WHERE delivery_id = $1 ORDER BY attempt, id",
            &[&id],
        )
        .await?;
    let attempts_log = attempts
        .iter()
        .map(|a| {
            Ok(AttemptRow {
                attempt: a.try_get(0)?,
                started_at: a.try_get(1)?,
                duration_ms: a.try_get(2)?,
                status: a.try_get(3)?,
                error_code: a.try_get(4)?,
                error: a.try_get(5)?,
                response_excerpt: a.try_get(6)?,
                worker: a.try_get(7)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(DeliveryDetail {
        delivery: delivery_row(&row)?,
        url: row.try_get("url")?,
        model: row.try_get("model")?,
        object_id: row.try_get("object_id")?,
        account_id: row.try_get("account_id")?,
        attempts_log,
    })
}

/// The backlog figures.
pub async fn backlog(client: &impl GenericClient) -> Result<Backlog, OperatorError> {
    let row = client
        .query_one(
            "SELECT events_to_fan_out, extract(epoch FROM oldest_event_age)::float8,
                    due, in_flight, retrying, paused,
                    extract(epoch FROM oldest_pending_age)::float8, waiting_for_slot
             FROM hookrelay.backlog",
            &[],
        )
        .await?;
    Ok(Backlog {
        events_to_fan_out: row.try_get(0)?,
        oldest_event_age_seconds: row.try_get(1)?,
        due: row.try_get(2)?,
        in_flight: row.try_get(3)?,
        retrying: row.try_get(4)?,
        paused: row.try_get(5)?,
        oldest_pending_age_seconds: row.try_get(6)?,
        waiting_for_slot: row.try_get(7)?,
    })
}

/// The held keys (longest held first) and the deliveries parked behind their keys.
pub async fn held(client: &impl GenericClient) -> Result<Held, OperatorError> {
    let rows = client
        .query(
            "SELECT endpoint, ordering_key, delivery_id, reason, attempts, last_error_code,
                    since, waiting
             FROM hookrelay.held_keys ORDER BY since, endpoint, ordering_key",
            &[],
        )
        .await?;
    let keys = rows
        .iter()
        .map(|r| {
            Ok(HeldKey {
                endpoint: r.try_get(0)?,
                ordering_key: r.try_get(1)?,
                delivery_id: r.try_get(2)?,
                reason: r.try_get(3)?,
                attempts: r.try_get(4)?,
                last_error_code: r.try_get(5)?,
                since: r.try_get(6)?,
                waiting: r.try_get(7)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    // Parked deliveries are the pending ones without a next attempt time (0022).
    let waiting_for_key = client
        .query_one(
            "SELECT count(*) FROM hookrelay.deliveries
             WHERE state = 'pending' AND next_attempt_at IS NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(Held {
        keys,
        waiting_for_key,
    })
}

/// Every endpoint's health, by name.
pub async fn health(client: &impl GenericClient) -> Result<Vec<Health>, OperatorError> {
    let rows = client
        .query(
            "SELECT name, active, pending, dead, delivered_last_hour, failed_last_hour,
                    consecutive_failures, failing_since, last_success_at, last_error,
                    disabled_reason, in_flight, max_in_flight, last_error_at,
                    extract(epoch FROM now() - last_error_at)::float8
             FROM hookrelay.endpoint_health ORDER BY name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let delivered: i64 = r.try_get(4)?;
            let failed: i64 = r.try_get(5)?;
            let attempted = delivered + failed;
            Ok(Health {
                name: r.try_get(0)?,
                active: r.try_get(1)?,
                pending: r.try_get(2)?,
                dead: r.try_get(3)?,
                delivered_last_hour: delivered,
                failed_last_hour: failed,
                success_rate_last_hour: (attempted > 0)
                    .then(|| delivered as f64 / attempted as f64),
                consecutive_failures: r.try_get(6)?,
                failing_since: r.try_get(7)?,
                last_success_at: r.try_get(8)?,
                last_error: r.try_get(9)?,
                disabled_reason: r.try_get(10)?,
                in_flight: r.try_get(11)?,
                max_in_flight: r.try_get(12)?,
                last_error_at: r.try_get(13)?,
                last_error_age_seconds: r.try_get(14)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(OperatorError::from)
}

/// Schedules the given deliveries again. Returns, per id, whether it was scheduled (false:
/// no such delivery, or it is being attempted right now).
pub async fn redeliver(
    client: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<(i64, bool)>, OperatorError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let row = client
            .query_one("SELECT hookrelay.redeliver($1)", &[&id])
            .await?;
        out.push((id, row.get(0)));
    }
    Ok(out)
}

/// Schedules again the dead deliveries of `endpoint` (all endpoints when `None`) created
/// within `since`. Returns how many.
pub async fn redeliver_dead(
    client: &impl GenericClient,
    endpoint: Option<&str>,
    since: Duration,
) -> Result<i64, OperatorError> {
    let row = client
        .query_one(
            "SELECT hookrelay.redeliver_dead($1, $2 * interval '1 second')",
            &[&endpoint, &since.as_secs_f64()],
        )
        .await?;
    Ok(row.get(0))
}

/// Which past events `hookrelay replay` sends again, and to which endpoint.
#[derive(Debug, Clone)]
pub struct Replay<'a> {
    pub endpoint: &'a str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Only these event names (empty: every event the endpoint takes).
    pub events: &'a [String],
    /// Count, change nothing.
    pub dry_run: bool,
    /// The worker's retention: a `since` older than it is refused.
    pub retention: Option<Duration>,
}

/// Schedules fresh deliveries of past events to one endpoint (`hookrelay.replay`), and
/// returns how many (with `dry_run`: how many it would).
pub async fn replay(
    client: &impl GenericClient,
    replay: &Replay<'_>,
) -> Result<i64, OperatorError> {
    let retention = replay.retention.map(|r| r.as_secs_f64());
    let row = client
        .query_one(
            "SELECT hookrelay.replay($1, $2, $3, $4, $5, $6 * interval '1 second')",
            &[
                &replay.endpoint,
                &replay.since,
                &replay.until,
                &replay.events,
                &replay.dry_run,
                &retention,
            ],
        )
        .await?;
    Ok(row.get(0))
}
