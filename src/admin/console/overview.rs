//! The overview: the backlog, attempts per minute over the last hours, endpoints failing now.

use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::chart::{self, Minute};
use super::layout::{self, age, Nav, PageError, PageResult};
use super::Console;
use crate::admin::operator::{self, Health};

const PER_MINUTE: &str = include_str!("../../../sql/queries/console/per_minute.sql");

/// The hours the chart covers by default, and at most (endpoint_stats keeps two days).
const DEFAULT_HOURS: i32 = 3;
const MAX_HOURS: i32 = 48;

/// `?hours=N`.
#[derive(Debug, Deserialize)]
pub struct OverviewQuery {
    hours: Option<String>,
}

fn hours(query: &OverviewQuery) -> Result<i32, PageError> {
    let Some(text) = query.hours.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Ok(DEFAULT_HOURS);
    };
    match text.trim().parse::<i32>() {
        Ok(h) if (1..=MAX_HOURS).contains(&h) => Ok(h),
        _ => Err(PageError::BadInput(format!(
            "hours {text:?} is not a whole number from 1 to {MAX_HOURS}"
        ))),
    }
}

/// Attempts per minute, oldest first, over the last `minutes`.
pub(crate) async fn per_minute(
    client: &tokio_postgres::Client,
    minutes: i32,
) -> Result<Vec<(DateTime<Utc>, Minute)>, PageError> {
    let rows = client.query(PER_MINUTE, &[&minutes]).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Minute {
                    delivered: r.try_get(1)?,
                    failed: r.try_get(2)?,
                },
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(PageError::from)
}

/// `GET /`.
pub async fn page(
    State(console): State<Console>,
    Query(query): Query<OverviewQuery>,
) -> PageResult {
    let hours = hours(&query)?;
    let client = console.client().await?;
    let backlog = operator::backlog(&**client).await?;
    let health = operator::health(&**client).await?;
    let minutes = per_minute(&client, hours * 60).await?;
    let failing: Vec<&Health> = health
        .iter()
        .filter(|h| h.consecutive_failures > 0 || !h.active)
        .collect();
    let body = html! {
        div.cards {
            (card("Due now", backlog.due.to_string()))
            (card("Retrying", backlog.retrying.to_string()))
            (card("In flight", backlog.in_flight.to_string()))
            (card("Paused (endpoint disabled)", backlog.paused.to_string()))
            (card("Events to fan out", backlog.events_to_fan_out.to_string()))
            (card("Oldest pending", backlog.oldest_pending_age_seconds.map_or("–".into(), age)))
        }
        h2 { "Attempts per minute, last " (hours) " hours" }
        (chart::per_minute(&minutes))
        p.muted {
            "Other spans: "
            @for h in [1, 3, 12, 48] { a href=(format!("/?hours={h}")) { (h) "h" } " " }
        }
        h2 { "Endpoints failing now" }
        (failing_table(&failing))
    };
    Ok(layout::page("Overview", Nav::Overview, body))
}

fn card(label: &str, value: String) -> Markup {
    html! { div.card { div.label { (label) } div.value { (value) } } }
}

fn failing_table(failing: &[&Health]) -> Markup {
    if failing.is_empty() {
        return html! { p.done { "No endpoint is failing or disabled." } };
    }
    html! {
        table {
            thead { tr {
                th { "Endpoint" } th { "State" } th.num { "Failure streak" }
                th { "Failing since" } th.num { "Dead" } th { "Last error" }
            } }
            tbody {
                @for h in failing {
                    tr {
                        td { a href=(format!("/endpoints/{}", h.name)) { (h.name) } }
                        td { (super::endpoints::state_badge(h)) }
                        td.num { (h.consecutive_failures) }
                        td { (layout::maybe_time(h.failing_since.as_ref())) }
                        td.num { (h.dead) }
                        td { (h.last_error.as_deref().unwrap_or("–")) }
                    }
                }
            }
        }
    }
}
