//! Human-readable output of the operator commands: tables and detail views. `--json` output
//! is the serialized structures from [`operator`](crate::admin::operator) instead.

use chrono::{DateTime, Utc};

use crate::admin::operator::{AttemptRow, Backlog, DeliveryDetail, DeliveryRow, Health, Held};

/// Prints rows under a header, columns padded to their widest cell.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `2h05m`, `3m12s`, `850ms`: an age or duration at a glance.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        return format!("{}ms", (s * 1000.0).round() as u64);
    }
    let whole = s.round() as u64;
    let (d, h, m, sec) = (
        whole / 86400,
        whole / 3600 % 24,
        whole / 60 % 60,
        whole % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m{sec:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Keeps table cells on one line and short.
fn cell(text: Option<&str>, max: usize) -> String {
    let Some(text) = text else { return "-".into() };
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The `hookrelay deliveries` table.
pub fn print_deliveries(rows: &[DeliveryRow]) {
    let header = [
        "ID",
        "ENDPOINT",
        "EVENT",
        "STATE",
        "ATTEMPTS",
        "STATUS",
        "CREATED",
        "NEXT",
        "LAST ERROR",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|d| {
            [
                d.id.to_string(),
                d.endpoint.clone(),
                d.event.clone(),
                d.state.clone(),
                d.attempts.to_string(),
                opt(d.last_status),
                when(Some(d.created_at)),
                when(d.next_attempt_at.filter(|_| d.state == "pending")),
                cell(d.last_error.as_deref(), 60),
            ]
        })
        .collect();
    print_table(&header, &cells);
}

/// The `hookrelay delivery show` view.
pub fn print_delivery(d: &DeliveryDetail) {
    let r = &d.delivery;
    let lines = [
        ("delivery", r.id.to_string()),
        ("state", r.state.clone()),
        ("endpoint", format!("{} ({})", r.endpoint, d.url)),
        ("event", format!("{} {}", r.event, r.event_id)),
        (
            "model",
            format!(
                "{} {}",
                opt(d.model.as_deref()),
                opt(d.object_id.as_deref())
            ),
        ),
        ("account", opt(d.account_id.as_deref())),
        ("attempts", r.attempts.to_string()),
        ("created", when(Some(r.created_at))),
        (
            "next attempt",
            when(r.next_attempt_at.filter(|_| r.state == "pending")),
        ),
        ("delivered", when(r.delivered_at)),
    ];
    for (k, v) in lines {
        println!("{k:>12}: {v}");
    }
    println!();
    print_attempts(&d.attempts_log);
}

/// A delivery's attempts as a table, then each response excerpt kept.
fn print_attempts(attempts: &[AttemptRow]) {
    let header = [
        "#",
        "STARTED",
        "DURATION",
        "STATUS",
        "ERROR CODE",
        "ERROR",
        "WORKER",
    ];
    let cells: Vec<[String; 7]> = attempts
        .iter()
        .map(|a| {
            [
                a.attempt.to_string(),
                when(Some(a.started_at)),
                a.duration_ms
                    .map_or_else(|| "-".into(), |ms| age(ms as f64 / 1000.0)),
                opt(a.status),
                opt(a.error_code.as_deref()),
                cell(a.error.as_deref(), 60),
                opt(a.worker.as_deref()),
            ]
        })
        .collect();
    print_table(&header, &cells);
    for a in attempts {
        if let Some(excerpt) = &a.response_excerpt {
            println!(
                "\nresponse to attempt {}:\n{}",
                a.attempt,
                cell(Some(excerpt), 500)
            );
        }
    }
}

/// The `hookrelay stats` view.
pub fn print_stats(b: &Backlog, health: &[Health]) {
    println!(
        "backlog: {} events to fan out (oldest {}), {} deliveries due, {} in flight, {} waiting to retry, {} waiting for a slot, {} paused",
        b.events_to_fan_out,
        b.oldest_event_age_seconds.map_or("-".into(), age),
        b.due,
        b.in_flight,
        b.retrying,
        b.waiting_for_slot,
        b.paused,
    );
    println!(
        "oldest pending delivery: {}\n",
        b.oldest_pending_age_seconds.map_or("none".into(), age)
    );
    let header = [
        "ENDPOINT",
        "STATE",
        "IN FLIGHT",
        "PENDING",
        "DEAD",
        "OK/1H",
        "FAILED/1H",
        "SUCCESS",
        "FAILING",
        "LAST ERROR",
    ];
    let cells: Vec<[String; 10]> = health
        .iter()
        .map(|h| {
            [
                h.name.clone(),
                match (&h.disabled_reason, h.active) {
                    (_, true) => "active".into(),
                    (Some(reason), false) => cell(Some(&format!("disabled: {reason}")), 40),
                    (None, false) => "disabled".into(),
                },
                format!("{}/{}", h.in_flight, h.max_in_flight),
                h.pending.to_string(),
                h.dead.to_string(),
                h.delivered_last_hour.to_string(),
                h.failed_last_hour.to_string(),
                h.success_rate_last_hour
                    .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
                if h.consecutive_failures > 0 {
                    format!(
                        "{}x since {}",
                        h.consecutive_failures,
                        when(h.failing_since)
                    )
                } else {
                    "-".into()
                },
                last_error(h),
            ]
        })
        .collect();
    print_table(&header, &cells);
}

/// Held ordered keys, after the endpoints table; nothing when no key is held.
pub fn print_held(held: &Held) {
    if held.keys.is_empty() && held.waiting_for_key == 0 {
        return;
    }
    println!(
        "\nordered keys: {} held, {} deliveries waiting for their key's turn",
        held.keys.len(),
        held.waiting_for_key
    );
    if held.keys.is_empty() {
        return;
    }
    let header = ["ENDPOINT", "KEY", "HELD BY", "REASON", "SINCE", "WAITING"];
    let cells: Vec<[String; 6]> = held
        .keys
        .iter()
        .take(HELD_SHOWN)
        .map(|k| {
            [
                k.endpoint.clone(),
                cell(Some(&k.ordering_key), 40),
                format!("delivery {}", k.delivery_id),
                match &k.last_error_code {
                    Some(code) => format!("{} after {} attempts ({code})", k.reason, k.attempts),
                    None => format!("{} after {} attempts", k.reason, k.attempts),
                },
                when(Some(k.since)),
                k.waiting.to_string(),
            ]
        })
        .collect();
    print_table(&header, &cells);
    if held.keys.len() > HELD_SHOWN {
        println!(
            "… and {} more: SELECT * FROM hookrelay.held_keys",
            held.keys.len() - HELD_SHOWN
        );
    }
}

/// Held keys listed by `hookrelay stats`; the view has them all.
const HELD_SHOWN: usize = 20;

/// The LAST ERROR cell: how long ago, and whether a success came after it, so an old
/// failure of a healthy endpoint does not read as its current state. Shown rather than hidden
/// once the endpoint recovers: the error of a flapping endpoint is what its operator needs.
fn last_error(h: &Health) -> String {
    let Some(error) = h.last_error.as_deref() else {
        return "-".into();
    };
    let ago = h.last_error_age_seconds.map_or_else(
        || "at an unknown time".into(),
        |s| format!("{} ago", age(s)),
    );
    let recovered = matches!((h.last_error_at, h.last_success_at),
        (Some(failed), Some(succeeded)) if succeeded > failed);
    let when = if recovered {
        format!("{ago}, succeeded since")
    } else {
        ago
    };
    cell(Some(&format!("{when}: {error}")), 70)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(0.85), "850ms");
        assert_eq!(age(42.0), "42s");
        assert_eq!(age(192.0), "3m12s");
        assert_eq!(age(7500.0), "2h05m");
        assert_eq!(age(90000.0), "1d01h");
        assert_eq!(age(-5.0), "0ms");
    }

    #[test]
    fn cells_are_flat_and_short() {
        assert_eq!(cell(None, 5), "-");
        assert_eq!(cell(Some("a\nb"), 5), "a b");
        assert_eq!(cell(Some("abcdefgh"), 5), "abcd…");
    }
}
