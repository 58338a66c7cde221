//! Endpoints: every endpoint's state, success rate, failure streak, last error and a
//! per-minute sparkline; and one endpoint's filters and settings (secrets and header values as
//! fingerprints only) with its actions.

use std::collections::HashMap;

use axum::extract::{Path, State};
use maud::{html, Markup};

use super::chart::{self, Minute};
use super::layout::{self, age, percent, Nav, Outcome, PageResult};
use super::Console;
use crate::admin::endpoint::{self, EndpointInfo};
use crate::admin::operator::{self, Health};

const SPARKLINES: &str = include_str!("../../../sql/queries/console/sparklines.sql");

/// Minutes a sparkline covers.
const SPARK_MINUTES: i32 = 60;

/// Each endpoint's last hour per minute, oldest first, by name.
async fn sparklines(
    client: &tokio_postgres::Client,
) -> Result<HashMap<String, Vec<Minute>>, tokio_postgres::Error> {
    let mut out: HashMap<String, Vec<Minute>> = HashMap::new();
    for row in client.query(SPARKLINES, &[&SPARK_MINUTES]).await? {
        let name: String = row.try_get(0)?;
        let ago: i32 = row.try_get(1)?;
        let line = out
            .entry(name)
            .or_insert_with(|| vec![Minute::default(); SPARK_MINUTES as usize]);
        if let Some(slot) = usize::try_from(SPARK_MINUTES - 1 - ago)
            .ok()
            .and_then(|i| line.get_mut(i))
        {
            slot.delivered += row.try_get::<_, i64>(2)?;
            slot.failed += row.try_get::<_, i64>(3)?;
        }
    }
    Ok(out)
}

/// The state of an endpoint in one word, coloured.
pub fn state_badge(h: &Health) -> Markup {
    let (class, word) = if !h.active {
        ("disabled", "disabled")
    } else if h.consecutive_failures > 0 {
        ("failing", "failing")
    } else {
        ("active", "active")
    };
    html! { span class=(format!("state {class}")) { (word) } }
}

/// `GET /endpoints`.
pub async fn list(State(console): State<Console>) -> PageResult {
    let client = console.client().await?;
    let health = operator::health(&**client).await?;
    let lines = sparklines(&client).await?;
    let empty = vec![Minute::default(); SPARK_MINUTES as usize];
    let body = html! {
        @if health.is_empty() {
            p.muted { "No endpoints yet: add one with `hookrelay endpoint add NAME URL`." }
        } @else {
            table {
                thead { tr {
                    th { "Endpoint" } th { "State" } th.num { "Success, last hour" }
                    th.num { "Failure streak" } th.num { "Pending" } th.num { "Dead" }
                    th { "Last error" } th { "Last hour, per minute" }
                } }
                tbody {
                    @for h in &health {
                        tr {
                            td { a href=(format!("/endpoints/{}", h.name)) { (h.name) } }
                            td { (state_badge(h)) }
                            td.num { (percent(h.success_rate_last_hour)) }
                            td.num { (h.consecutive_failures) }
                            td.num { (h.pending) }
                            td.num { (h.dead) }
                            td { (last_error(h)) }
                            td { (chart::sparkline(lines.get(&h.name).unwrap_or(&empty))) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Endpoints", Nav::Endpoints, body))
}

fn last_error(h: &Health) -> Markup {
    html! {
        @match &h.last_error {
            Some(e) => {
                (e)
                @if let Some(a) = h.last_error_age_seconds { span.muted { " (" (age(a)) " ago)" } }
            }
            None => span.muted { "–" },
        }
    }
}

/// `GET /endpoints/{name}`.
pub async fn detail(State(console): State<Console>, Path(name): Path<String>) -> PageResult {
    render_detail(&console, &name, None).await
}

/// One endpoint's page, with the outcome of an action when one was just taken.
pub(crate) async fn render_detail(
    console: &Console,
    name: &str,
    outcome: Option<Outcome>,
) -> PageResult {
    let client = console.client().await?;
    let info = endpoint::get(&**client, name).await?;
    let health = operator::health(&**client).await?;
    let health = health.into_iter().find(|h| h.name == info.name);
    let lines = sparklines(&client).await?;
    let body = html! {
        (layout::outcome(outcome.as_ref()))
        @if let Some(h) = &health {
            div.cards {
                div.card { div.label { "State" } div.value { (state_badge(h)) } }
                div.card { div.label { "Success, last hour" } div.value { (percent(h.success_rate_last_hour)) } }
                div.card { div.label { "Failure streak" } div.value { (h.consecutive_failures) } }
                div.card { div.label { "Pending" } div.value { (h.pending) } }
                div.card { div.label { "Dead" } div.value { (h.dead) } }
                div.card { div.label { "In flight" } div.value { (h.in_flight) " / " (h.max_in_flight) } }
            }
            p { "Last hour: " (chart::sparkline(lines.get(&info.name).map_or(&[][..], |v| v))) }
            p { "Last error: " (last_error(h)) }
        }
        p {
            a href=(format!("/deliveries?endpoint={}", info.name)) { "Its deliveries" } " · "
            a href=(format!("/deliveries?endpoint={}&state=dead", info.name)) { "its dead deliveries" }
        }
        h2 { "Actions" }
        (actions(console, &info))
        h2 { "Settings" }
        (settings(&info))
    };
    Ok(layout::page(
        &format!("Endpoint {}", info.name),
        Nav::Endpoints,
        body,
    ))
}

fn actions(console: &Console, info: &EndpointInfo) -> Markup {
    let csrf = console.keys.csrf();
    html! {
        @if info.active {
            form.action method="post" action=(format!("/endpoints/{}/disable", info.name)) {
                input type="hidden" name="csrf" value=(csrf);
                button.danger type="submit" { "Disable" }
            }
        } @else {
            form.action method="post" action=(format!("/endpoints/{}/enable", info.name)) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Enable" }
            }
        }
        form.action method="post" action=(format!("/endpoints/{}/redeliver-dead", info.name)) {
            input type="hidden" name="csrf" value=(csrf);
            label { "Dead deliveries created since (a duration such as 24h, or a time such as 2026-01-24T10:00)"
                input type="text" name="since" value="24h" required; }
            button type="submit" { "Redeliver dead" }
        }
    }
}

fn list_or_all(items: &[String], all: &str) -> String {
    if items.is_empty() {
        all.to_string()
    } else {
        items.join(", ")
    }
}

fn json_or(value: &Option<serde_json::Value>, none: &str) -> String {
    value
        .as_ref()
        .map_or_else(|| none.to_string(), |v| v.to_string())
}

fn settings(info: &EndpointInfo) -> Markup {
    html! {
        dl.fields {
            dt { "URL" } dd.mono { (info.url) }
            dt { "Active" } dd { (if info.active { "yes" } else { "no" }) }
            @if let Some(reason) = &info.disabled_reason {
                dt { "Disabled because" } dd { (reason) " (" (layout::maybe_time(info.disabled_at.as_ref())) ")" }
            }
            dt { "Secret" } dd.mono { (info.secret_fingerprint) }
            @if let Some(fp) = &info.previous_secret_fingerprint {
                dt { "Previous secret (still signing)" }
                dd.mono { (fp) " until " (layout::maybe_time(info.previous_secret_expires_at.as_ref())) }
            }
            dt { "Signature scheme" } dd { (info.signature_scheme) }
            dt { "Events" } dd { (list_or_all(&info.events, "every event")) }
            dt { "Models" } dd { (list_or_all(&info.models, "every model")) }
            dt { "Account" } dd { (info.account_id.as_deref().unwrap_or("every account")) }
            dt { "Fields kept" } dd.mono { (json_or(&info.include_fields, "every field")) }
            dt { "Fields redacted" } dd.mono { (json_or(&info.redact_fields, "none")) }
            dt { "Filter" } dd.mono { (info.filter.as_deref().unwrap_or("every event")) }
            dt { "Numbers sent as" } dd { (if info.number_format == "string" { "strings of their digits" } else { "JSON numbers" }) }
            dt { "Updates with no changes left" } dd { (if info.skip_empty_changes { "skipped" } else { "sent" }) }
            dt { "Static headers" } dd.mono {
                @if info.headers.is_empty() { "none" }
                @for (name, fp) in &info.headers { (name) ": " (fp) br; }
            }
            dt { "Max attempts" } dd { (info.max_attempts.map_or("worker default".into(), |n| n.to_string())) }
            dt { "Timeout" } dd { (info.timeout_ms.map_or("worker default".into(), |n| format!("{n} ms"))) }
            dt { "Max in flight" } dd { (info.max_in_flight) }
            dt { "Rate limit" } dd { (info.rate_limit.map_or("none".into(), |r| format!("{r} per second"))) }
            dt { "Created" } dd { (layout::time(&info.created_at)) }
        }
    }
}
