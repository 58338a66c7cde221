//! How endpoints are printed: tables and detail views, with secrets and static header
//! values shown only as fingerprints unless the operator asks for the secret.

use crate::admin::endpoint::EndpointInfo;

fn or_all(list: &[String]) -> String {
    if list.is_empty() {
        "*".into()
    } else {
        list.join(",")
    }
}

fn rotation(e: &EndpointInfo) -> String {
    match (&e.previous_secret_fingerprint, e.previous_secret_expires_at) {
        (Some(fingerprint), Some(until)) => format!(
            "{fingerprint} signs too until {}",
            until.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        _ => "-".into(),
    }
}

fn header_list(e: &EndpointInfo, with_values: bool) -> String {
    if e.headers.is_empty() {
        return "-".into();
    }
    let shown: Vec<String> = e
        .headers
        .iter()
        .map(|(name, fingerprint)| match with_values {
            // Values are often tokens: only their fingerprint.
            true => format!("{name} ({fingerprint})"),
            false => name.clone(),
        })
        .collect();
    shown.join(", ")
}

fn state(e: &EndpointInfo) -> String {
    match (&e.disabled_reason, e.disabled_at) {
        _ if e.active => "active".into(),
        (Some(reason), Some(at)) => format!(
            "disabled since {}: {reason}",
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        (Some(reason), None) => format!("disabled: {reason}"),
        _ => "disabled".into(),
    }
}

pub(super) fn print_endpoints(endpoints: &[EndpointInfo]) {
    let rows: Vec<[String; 9]> = endpoints
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                if e.active { "active" } else { "disabled" }.into(),
                e.url.clone(),
                or_all(&e.events),
                or_all(&e.models),
                e.account_id.clone().unwrap_or_else(|| "*".into()),
                e.secret_fingerprint.clone(),
                rotation(e),
                header_list(e, false),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "STATE",
        "URL",
        "EVENTS",
        "MODELS",
        "ACCOUNT",
        "SECRET",
        "PREVIOUS SECRET",
        "HEADERS",
    ];
    crate::cli::report::print_table(&header, &rows);
}

/// `endpoint show`: every setting of one endpoint, one per line; `secret` is shown instead of
/// the fingerprint only right after it was generated.
pub(super) fn print_endpoint(e: &EndpointInfo, secret: Option<&str>) {
    let lines = [who_and_where(e, secret), what_is_sent(e), how_it_is_sent(e)];
    for (k, v) in lines.into_iter().flatten() {
        println!("{k:>15}: {v}");
    }
}

/// The endpoint's name, address, state, subscription and signing.
fn who_and_where(e: &EndpointInfo, secret: Option<&str>) -> Vec<(&'static str, String)> {
    vec![
        ("name", e.name.clone()),
        ("url", e.url.clone()),
        ("state", state(e)),
        ("events", or_all(&e.events)),
        ("models", or_all(&e.models)),
        (
            "account",
            e.account_id.clone().unwrap_or_else(|| "*".into()),
        ),
        ("scheme", e.signature_scheme.clone()),
        (
            "secret",
            secret.map_or_else(|| e.secret_fingerprint.clone(), str::to_string),
        ),
        ("previous secret", rotation(e)),
        ("headers", header_list(e, true)),
    ]
}

/// How the payload is shaped for it.
fn what_is_sent(e: &EndpointInfo) -> Vec<(&'static str, String)> {
    let shown = |v: &Option<serde_json::Value>, none: &str| {
        v.as_ref().map_or(none.to_string(), |v| v.to_string())
    };
    vec![
        ("include fields", shown(&e.include_fields, "all")),
        ("redact fields", shown(&e.redact_fields, "none")),
        ("filter", e.filter.clone().unwrap_or_else(|| "none".into())),
        ("number format", e.number_format.clone()),
        (
            "empty changes",
            if e.skip_empty_changes {
                "skipped"
            } else {
                "sent"
            }
            .into(),
        ),
        (
            "trace context",
            if e.trace_context { "sent" } else { "not sent" }.into(),
        ),
    ]
}

/// Attempts, order, pace and what a dead delivery writes.
fn how_it_is_sent(e: &EndpointInfo) -> Vec<(&'static str, String)> {
    vec![
        (
            "max attempts",
            e.max_attempts
                .map_or("worker default".into(), |n| n.to_string()),
        ),
        (
            "timeout",
            e.timeout_ms
                .map_or("worker default".into(), |n| format!("{n} ms")),
        ),
        (
            "order",
            if e.ordered {
                format!("one at a time per ordering key; on dead: {}", e.on_dead)
            } else {
                "none (concurrent)".into()
            },
        ),
        (
            "dead events",
            if e.emit_dead {
                "hookrelay.delivery.dead"
            } else {
                "none"
            }
            .into(),
        ),
        ("max in flight", e.max_in_flight.to_string()),
        (
            "rate limit",
            e.rate_limit
                .map_or("none".into(), |r| format!("{r} requests/s")),
        ),
        ("created", e.created_at.to_rfc3339()),
    ]
}
