//! The actions: redeliver one delivery, redeliver an endpoint's dead deliveries since a time,
//! enable and disable an endpoint. Each is a POST carrying the CSRF token; each answers with the
//! page it was taken from and its outcome at the top. A refusal by the database (a role that may
//! not) is shown in words, with the hint naming the role that may.

use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use tokio_postgres::error::SqlState;

use super::layout::{self, Outcome, PageError};
use super::{deliveries, delivery, endpoints, Console};
use crate::admin::endpoint::{self, EndpointError};
use crate::admin::operator::{self, OperatorError};
use crate::db::explain;

/// What the console's forms send.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    since: Option<String>,
}

/// The answer to a form without this process's CSRF token, if it lacks it.
fn csrf_refusal(console: &Console, form: &ActionForm) -> Option<Response> {
    match &form.csrf {
        Some(given) if console.keys.csrf_matches(given) => None,
        _ => Some(
            (
                StatusCode::FORBIDDEN,
                layout::bare(
                    "Refused",
                    "The form's CSRF token is missing or stale (the console was restarted?): \
                     reload the page and try again.",
                ),
            )
                .into_response(),
        ),
    }
}

/// The status and banner for a database refusal.
fn refused(e: &tokio_postgres::Error) -> (StatusCode, Outcome) {
    let status = if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::CONFLICT
    };
    (
        status,
        Outcome::Refused(format!("Refused by the database: {}", explain(e))),
    )
}

fn respond(status: StatusCode, page: Result<maud::Markup, PageError>) -> Response {
    match page {
        Ok(markup) => (status, markup).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /deliveries/{id}/redeliver`.
pub async fn redeliver(
    State(console): State<Console>,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = csrf_refusal(&console, &form) {
        return refusal;
    }
    let id = match delivery::parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let done = match console.client().await {
        Ok(client) => operator::redeliver(&**client, &[id]).await,
        Err(e) => return e.into_response(),
    };
    let (status, outcome) = match done {
        Ok(r) if r.first().is_some_and(|(_, scheduled)| *scheduled) => (
            StatusCode::OK,
            Outcome::Done(format!(
                "Delivery {id} is scheduled again with a fresh attempt budget; a worker sends it \
                 within its poll interval (reload to see the new attempt)."
            )),
        ),
        Ok(_) => (
            StatusCode::CONFLICT,
            Outcome::Refused(format!(
                "Delivery {id} was not scheduled: it is being attempted right now. Try again \
                 when the attempt has finished."
            )),
        ),
        Err(OperatorError::Db(e)) => refused(&e),
        Err(e) => return PageError::from(e).into_response(),
    };
    respond(status, delivery::render(&console, id, Some(outcome)).await)
}

/// How far back "since" reaches: a duration (`24h`) or a time (`2026-01-24T10:00`, UTC).
fn since(text: Option<&str>) -> Result<Duration, PageError> {
    let text = text
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            PageError::BadInput(
                "give since: a duration such as 24h or a time such as 2026-01-24T10:00".into(),
            )
        })?;
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(d);
    }
    let at = deliveries::parse_time("since", text).map_err(|_| {
        PageError::BadInput(format!(
            "since {text:?} is neither a duration such as 24h nor a time such as 2026-01-24T10:00"
        ))
    })?;
    (Utc::now() - at).to_std().map_err(|_| {
        PageError::BadInput(format!(
            "since {text:?} is in the future: give a time in the past"
        ))
    })
}

/// `POST /endpoints/{name}/redeliver-dead`.
pub async fn redeliver_dead(
    State(console): State<Console>,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = csrf_refusal(&console, &form) {
        return refusal;
    }
    let window = match since(form.since.as_deref()) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let done = match console.client().await {
        Ok(client) => operator::redeliver_dead(&**client, Some(&name), window).await,
        Err(e) => return e.into_response(),
    };
    let (status, outcome) = match done {
        Ok(n) => (
            StatusCode::OK,
            Outcome::Done(format!(
                "{n} dead deliveries of {name} created in the last {} are scheduled again.",
                humantime::format_duration(Duration::from_secs(window.as_secs()))
            )),
        ),
        Err(OperatorError::Db(e)) => refused(&e),
        Err(e) => return PageError::from(e).into_response(),
    };
    respond(
        status,
        endpoints::render_detail(&console, &name, Some(outcome)).await,
    )
}

/// `POST /endpoints/{name}/enable`.
pub async fn enable(
    State(console): State<Console>,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    toggle(console, name, form, true).await
}

/// `POST /endpoints/{name}/disable`.
pub async fn disable(
    State(console): State<Console>,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    toggle(console, name, form, false).await
}

async fn toggle(console: Console, name: String, form: ActionForm, on: bool) -> Response {
    if let Some(refusal) = csrf_refusal(&console, &form) {
        return refusal;
    }
    let client = match console.client().await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let done = if on {
        endpoint::enable(&**client, &name).await.map(|was| match was {
            Some(reason) => format!("{name} is enabled (it had been disabled: {reason}); its parked deliveries are due now."),
            None => format!("{name} is enabled."),
        })
    } else {
        endpoint::disable(&**client, &name).await.map(|d| {
            format!(
                "{name} is disabled; its {} pending deliveries wait until it is enabled.",
                d.pending
            )
        })
    };
    drop(client);
    let (status, outcome) = match done {
        Ok(text) => (StatusCode::OK, Outcome::Done(text)),
        Err(EndpointError::Db(e)) => refused(&e),
        Err(e) => return PageError::from(e).into_response(),
    };
    respond(
        status,
        endpoints::render_detail(&console, &name, Some(outcome)).await,
    )
}
