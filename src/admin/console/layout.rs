//! The page shell every console page shares (navigation, stylesheet), the error page, and
//! small formatting helpers. maud escapes every value inserted with `(…)`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::admin::endpoint::EndpointError;
use crate::admin::operator::OperatorError;
use crate::db::explain;

const CSS: &str = include_str!("assets/console.css");

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Endpoints,
    Deliveries,
}

/// A whole page: the shell around `body`.
pub fn page(title: &str, nav: Nav, body: Markup) -> Markup {
    let link = |href: &str, label: &str, here: Nav| {
        html! { a href=(href) class=[(nav == here).then_some("here")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookrelay console" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                header {
                    span.brand { "hookrelay" }
                    nav {
                        (link("/", "Overview", Nav::Overview))
                        (link("/endpoints", "Endpoints", Nav::Endpoints))
                        (link("/deliveries", "Deliveries", Nav::Deliveries))
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page without navigation, for refusals and errors.
pub fn bare(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · hookrelay console" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body { main { h1 { (title) } p.problem { (message) } p { a href="/" { "Overview" } } } }
        }
    }
}

/// The result of an action, shown at the top of the page it returns to.
pub enum Outcome {
    Done(String),
    Refused(String),
}

/// The banner for an action's outcome.
pub fn outcome(outcome: Option<&Outcome>) -> Markup {
    html! {
        @match outcome {
            Some(Outcome::Done(text)) => p.done role="status" { (text) },
            Some(Outcome::Refused(text)) => p.problem role="alert" { (text) },
            None => {},
        }
    }
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Database(String),
}

impl From<tokio_postgres::Error> for PageError {
    fn from(e: tokio_postgres::Error) -> Self {
        PageError::Database(explain(&e))
    }
}

impl From<deadpool_postgres::PoolError> for PageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PageError::Database(format!("could not reach the database: {e}"))
    }
}

impl From<OperatorError> for PageError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::NoDelivery(id) => PageError::NotFound(format!("No delivery {id}.")),
            OperatorError::BadState(_) => PageError::BadInput(e.to_string()),
            OperatorError::Db(e) => e.into(),
        }
    }
}

impl From<EndpointError> for PageError {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::NotFound(name) => {
                PageError::NotFound(format!("No endpoint named {name:?}."))
            }
            EndpointError::Db(e) => e.into(),
            other => PageError::BadInput(other.to_string()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::BadInput(_) => (StatusCode::BAD_REQUEST, "Cannot do that"),
            PageError::Database(_) => (StatusCode::SERVICE_UNAVAILABLE, "Database problem"),
        };
        (status, bare(title, &self.to_string())).into_response()
    }
}

/// A page's result.
pub type PageResult = Result<Markup, PageError>;

/// The embedded stylesheet.
pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// Any path the console does not have.
pub async fn not_found() -> PageError {
    PageError::NotFound("The console has no such page.".into())
}

/// A time as operators read it: UTC to the second.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// An optional time, or a dash.
pub fn maybe_time(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".into(), time)
}

/// A span of seconds in words: "42s", "5m 3s", "2h 10m", "3d 4h".
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// A share as a percentage, or a dash without one.
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "–".into(), |s| format!("{:.1}%", s * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_words_at_every_scale() {
        assert_eq!(age(0.4), "0s");
        assert_eq!(age(59.0), "59s");
        assert_eq!(age(303.0), "5m 3s");
        assert_eq!(age(7800.0), "2h 10m");
        assert_eq!(age(273600.0), "3d 4h");
        assert_eq!(percent(Some(0.9876)), "98.8%");
        assert_eq!(percent(None), "–");
    }
}
