//! Deliveries: search by endpoint, state, event name, event id and time range; newest first,
//! paginated by key (the `(created_at, id)` of the last row shown), never by OFFSET, so a page
//! costs the same on the first screen and deep in millions of rows.

use axum::extract::{Query, State};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, Nav, PageError, PageResult};
use super::Console;

const SEARCH: &str = include_str!("../../../sql/queries/console/deliveries.sql");

/// Rows per page.
pub const PAGE: i64 = 50;

const STATES: [&str; 4] = ["pending", "delivered", "dead", "cancelled"];

/// The search form, as given in the query string (empty fields: any).
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    pub endpoint: Option<String>,
    pub state: Option<String>,
    pub event: Option<String>,
    pub event_id: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    /// The key of the last row of the previous page: `<created_at in µs since 1970>.<id>`.
    pub before: Option<String>,
}

/// The search, checked.
#[derive(Debug, Default)]
struct Search {
    endpoint: Option<String>,
    state: Option<String>,
    event: Option<String>,
    event_id: Option<Uuid>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    before: Option<(DateTime<Utc>, i64)>,
}

fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// An event id as receivers see it (`evt_…`) or its bare UUID.
pub fn parse_event_id(text: &str) -> Result<Uuid, PageError> {
    let bare = text.strip_prefix("evt_").unwrap_or(text);
    Uuid::parse_str(bare).map_err(|_| {
        PageError::BadInput(format!(
            "event id {text:?} is not an event id: give evt_ followed by a UUID, as in the \
             X-Webhook-Event-Id header"
        ))
    })
}

/// A time as typed: RFC 3339 (`2026-01-24T10:00:00Z`), or a date and time without a zone
/// (`2026-01-24T10:00`, `2026-01-24 10:00:00`), read as UTC.
pub fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, PageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()));
    }
    Err(PageError::BadInput(format!(
        "{field} {text:?} is not a time: give one such as 2026-01-24T10:00 (UTC) or \
         2026-01-24T10:00:00+02:00"
    )))
}

fn parse_key(text: &str) -> Result<(DateTime<Utc>, i64), PageError> {
    let bad = || {
        PageError::BadInput(format!(
            "page key {text:?} is not one this console made: start from the first page"
        ))
    };
    let (micros, id) = text.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id: i64 = id.parse().map_err(|_| bad())?;
    Ok((DateTime::from_timestamp_micros(micros).ok_or_else(bad)?, id))
}

impl Search {
    fn parse(q: &SearchQuery) -> Result<Search, PageError> {
        let state = given(&q.state);
        if let Some(s) = &state {
            if !STATES.contains(&s.as_str()) {
                return Err(PageError::BadInput(format!(
                    "unknown state {s:?}: use pending, delivered, dead or cancelled"
                )));
            }
        }
        Ok(Search {
            endpoint: given(&q.endpoint),
            state,
            event: given(&q.event),
            event_id: given(&q.event_id).map(|t| parse_event_id(&t)).transpose()?,
            from: given(&q.from).map(|t| parse_time("from", &t)).transpose()?,
            until: given(&q.until)
                .map(|t| parse_time("until", &t))
                .transpose()?,
            before: given(&q.before).map(|t| parse_key(&t)).transpose()?,
        })
    }
}

/// One row of the list.
struct Row {
    id: i64,
    endpoint: String,
    event: String,
    event_id: Uuid,
    state: String,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

async fn find(client: &tokio_postgres::Client, s: &Search) -> Result<Vec<Row>, PageError> {
    let (before_at, before_id) = s.before.map_or((None, None), |(t, id)| (Some(t), Some(id)));
    let rows = client
        .query(
            SEARCH,
            &[
                &s.endpoint,
                &s.state,
                &s.event,
                &s.event_id,
                &s.from,
                &s.until,
                &before_at,
                &before_id,
                &(PAGE + 1),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Row {
                id: r.try_get("id")?,
                endpoint: r.try_get("endpoint")?,
                event: r.try_get("event")?,
                event_id: r.try_get("event_id")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                last_status: r.try_get("last_status")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(PageError::from)
}

/// `GET /deliveries`.
pub async fn search(State(console): State<Console>, Query(q): Query<SearchQuery>) -> PageResult {
    let s = Search::parse(&q)?;
    let client = console.client().await?;
    let mut rows = find(&client, &s).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|last| next_link(&q, last));
    let body = html! {
        (form(&q))
        @if rows.is_empty() {
            p.muted { "No delivery matches." }
        } @else {
            (table(&rows))
        }
        p.pager {
            @if s.before.is_some() { a href=(next_link_first(&q)) { "« Newest" } " " }
            @if let Some(href) = next { a rel="next" href=(href) { "Older »" } }
        }
    };
    Ok(layout::page("Deliveries", Nav::Deliveries, body))
}

fn query_string(q: &SearchQuery, before: Option<String>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let fields = [
        ("endpoint", &q.endpoint),
        ("state", &q.state),
        ("event", &q.event),
        ("event_id", &q.event_id),
        ("from", &q.from),
        ("until", &q.until),
    ];
    for (name, value) in fields {
        if let Some(v) = given(value) {
            out.append_pair(name, &v);
        }
    }
    if let Some(b) = before {
        out.append_pair("before", &b);
    }
    format!("/deliveries?{}", out.finish())
}

fn next_link(q: &SearchQuery, last: &Row) -> String {
    query_string(
        q,
        Some(format!(
            "{}.{}",
            last.created_at.timestamp_micros(),
            last.id
        )),
    )
}

fn next_link_first(q: &SearchQuery) -> String {
    query_string(q, None)
}

fn form(q: &SearchQuery) -> Markup {
    let v = |f: &Option<String>| f.clone().unwrap_or_default();
    let state = v(&q.state);
    html! {
        form.search method="get" action="/deliveries" {
            label { "Endpoint" input type="text" name="endpoint" value=(v(&q.endpoint)); }
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[state == s] { (s) } }
                }
            }
            label { "Event name" input type="text" name="event" value=(v(&q.event)) placeholder="order.paid"; }
            label { "Event id" input type="text" name="event_id" value=(v(&q.event_id)) placeholder="evt_…" size="40"; }
            label { "From (UTC)" input type="text" name="from" value=(v(&q.from)) placeholder="2026-01-24T10:00"; }
            label { "Until (UTC)" input type="text" name="until" value=(v(&q.until)) placeholder="2026-01-24T12:00"; }
            button type="submit" { "Search" }
        }
    }
}

fn table(rows: &[Row]) -> Markup {
    html! {
        table {
            thead { tr {
                th.num { "Id" } th { "Created" } th { "Endpoint" } th { "Event" } th { "Event id" }
                th { "State" } th.num { "Attempts" } th.num { "Last status" } th { "Last error" }
            } }
            tbody {
                @for r in rows {
                    tr {
                        td.num { a href=(format!("/deliveries/{}", r.id)) { (r.id) } }
                        td { (layout::time(&r.created_at)) }
                        td { a href=(format!("/endpoints/{}", r.endpoint)) { (r.endpoint) } }
                        td { (r.event) }
                        td.mono { (crate::pipeline::payload::event_id(&r.event_id)) }
                        td { span class=(format!("state {}", r.state)) { (r.state) } }
                        td.num { (r.attempts) }
                        td.num { (r.last_status.map_or("–".into(), |s| s.to_string())) }
                        td { (r.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_and_times_are_read_as_operators_type_them() {
        let id = "0190d2c4-6b7e-7c3a-9f00-000000000001";
        assert_eq!(
            parse_event_id(&format!("evt_{id}")).unwrap().to_string(),
            id
        );
        assert_eq!(parse_event_id(id).unwrap().to_string(), id);
        let e = parse_event_id("evt_nope").unwrap_err().to_string();
        assert!(e.contains("evt_ followed by a UUID"), "{e}");
        let t = parse_time("from", "2026-01-24T10:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-24T10:00:00+00:00");
        let t = parse_time("from", "2026-01-24T10:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-24T08:00:00+00:00");
        let e = parse_time("until", "yesterday").unwrap_err().to_string();
        assert!(e.starts_with("until \"yesterday\" is not a time"), "{e}");
        let (t, id) = parse_key("1769248800000001.42").unwrap();
        assert_eq!((t.timestamp_micros(), id), (1769248800000001, 42));
        assert!(parse_key("x.1").is_err());
    }
}
