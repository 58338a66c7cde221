//! One delivery: the payload as its receiver got it (built by [`crate::pipeline::payload`] with that
//! endpoint's shaping, the same code the worker signs and sends), and every attempt with its
//! status, duration, error and response excerpt.

use axum::extract::{Path, State};
use maud::{html, Markup};

use super::layout::{self, Nav, Outcome, PageError, PageResult};
use super::Console;
use crate::admin::operator::{self, AttemptRow, DeliveryDetail};
use crate::pipeline::payload::{self, Event, NumberFormat, Shaping};

const DELIVERY_EVENT: &str = include_str!("../../../sql/queries/console/delivery_event.sql");

/// The body the endpoint got for delivery `id`; `None` when the event is gone.
async fn payload_of(client: &tokio_postgres::Client, id: i64) -> Result<Option<String>, PageError> {
    let Some(row) = client.query_opt(DELIVERY_EVENT, &[&id]).await? else {
        return Ok(None);
    };
    let event = Event {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        model: row.try_get("model")?,
        object_id: row.try_get("object_id")?,
        object: row.try_get("object")?,
        changes: row.try_get("changes")?,
        actor: row.try_get("actor")?,
        account_id: row.try_get("account_id")?,
        created_at: row.try_get("created_at")?,
    };
    let shaping = Shaping {
        include_fields: row.try_get("include_fields")?,
        redact_fields: row.try_get("redact_fields")?,
        number_format: NumberFormat::from_column(row.try_get("number_format")?),
    };
    // Exactly the bytes the worker signs and sends (not re-formatted: that would reorder keys).
    let body = payload::body_for(&event, &shaping);
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

/// `GET /deliveries/{id}`.
pub async fn page(State(console): State<Console>, Path(id): Path<String>) -> PageResult {
    render(&console, parse_id(&id)?, None).await
}

/// A delivery id from the path.
pub fn parse_id(text: &str) -> Result<i64, PageError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            PageError::NotFound(format!(
                "{text:?} is not a delivery id: ids are whole numbers"
            ))
        })
}

/// One delivery's page, with the outcome of an action when one was just taken.
pub(crate) async fn render(console: &Console, id: i64, outcome: Option<Outcome>) -> PageResult {
    let client = console.client().await?;
    let detail = operator::delivery(&**client, id).await?;
    let body_text = payload_of(&client, id).await?;
    let d = &detail.delivery;
    let body = html! {
        (layout::outcome(outcome.as_ref()))
        (summary(&detail))
        form.action method="post" action=(format!("/deliveries/{id}/redeliver")) {
            input type="hidden" name="csrf" value=(console.keys.csrf());
            button type="submit" { "Redeliver" }
        }
        h2 { "Attempts (" (detail.attempts_log.len()) ")" }
        (attempts(&detail.attempts_log))
        h2 { "Payload, as " (d.endpoint) " receives it" }
        p.muted { "The exact body signed and sent, shaped by this endpoint's kept and redacted fields." }
        @match body_text {
            Some(text) => pre.payload { (text) },
            None => p.muted { "The event is no longer stored." },
        }
    };
    Ok(layout::page(
        &format!("Delivery {id}"),
        Nav::Deliveries,
        body,
    ))
}

fn summary(detail: &DeliveryDetail) -> Markup {
    let d = &detail.delivery;
    html! {
        dl.fields {
            dt { "State" } dd { span class=(format!("state {}", d.state)) { (d.state) } }
            dt { "Endpoint" } dd { a href=(format!("/endpoints/{}", d.endpoint)) { (d.endpoint) } " " span.mono.muted { (detail.url) } }
            dt { "Event" } dd { (d.event) }
            dt { "Event id" } dd.mono { (d.event_id) }
            dt { "Model" } dd { (detail.model.as_deref().unwrap_or("–")) }
            dt { "Object id" } dd { (detail.object_id.as_deref().unwrap_or("–")) }
            dt { "Account" } dd { (detail.account_id.as_deref().unwrap_or("–")) }
            dt { "Attempts" } dd { (d.attempts) }
            dt { "Created" } dd { (layout::time(&d.created_at)) }
            dt { "Next attempt" } dd { (layout::maybe_time(d.next_attempt_at.as_ref())) }
            dt { "Delivered" } dd { (layout::maybe_time(d.delivered_at.as_ref())) }
            @if let Some(e) = &d.last_error {
                dt { "Last error" } dd { (d.last_error_code.as_deref().unwrap_or("")) " " (e) }
            }
        }
    }
}

fn attempts(log: &[AttemptRow]) -> Markup {
    if log.is_empty() {
        return html! { p.muted { "No attempt yet." } };
    }
    html! {
        table.attempts {
            thead { tr {
                th.num { "#" } th { "Started" } th.num { "Status" } th.num { "Duration" }
                th { "Error" } th { "Response (excerpt)" } th { "Worker" }
            } }
            tbody {
                @for a in log {
                    tr {
                        td.num { (a.attempt) }
                        td { (layout::time(&a.started_at)) }
                        td.num { (a.status.map_or("–".into(), |s| s.to_string())) }
                        td.num { (a.duration_ms.map_or("–".into(), |ms| format!("{ms} ms"))) }
                        td { @if let Some(code) = &a.error_code { code { (code) } " " } (a.error.as_deref().unwrap_or("")) }
                        td { @if let Some(r) = &a.response_excerpt { pre { (r) } } }
                        td.muted { (a.worker.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}
