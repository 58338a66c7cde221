//! Charts drawn on the server as SVG: no script, no inline styles (colours are SVG
//! presentation attributes, which the CSP allows), nothing fetched.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

const OK: &str = "#1f8f4e";
const BAD: &str = "#c2372b";

/// Delivered and failed attempts in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    pub delivered: i64,
    pub failed: i64,
}

/// The `points` attribute of a polyline through `values`, scaled into `w`×`h` from `(x0, y0)`.
fn points(values: &[i64], max: i64, (x0, y0): (f64, f64), (w, h): (f64, f64)) -> String {
    let n = values.len().max(2) - 1;
    let max = max.max(1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = x0 + w * i as f64 / n as f64;
            let y = y0 + h - h * (*v as f64) / max;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Attempts per minute, delivered and failed, over the minutes given (oldest first).
pub fn per_minute(minutes: &[(DateTime<Utc>, Minute)]) -> Markup {
    const W: f64 = 900.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 48.0;
    const TOP: f64 = 12.0;
    const PLOT_W: f64 = W - LEFT - 12.0;
    const PLOT_H: f64 = H - TOP - 28.0;
    let delivered: Vec<i64> = minutes.iter().map(|(_, m)| m.delivered).collect();
    let failed: Vec<i64> = minutes.iter().map(|(_, m)| m.failed).collect();
    let max = delivered.iter().chain(&failed).copied().max().unwrap_or(0);
    let label = |i: usize| minutes.get(i).map(|(t, _)| t.format("%H:%M").to_string());
    let last = minutes.len().saturating_sub(1);
    let ticks = [
        (0, LEFT, "start"),
        (last / 2, LEFT + PLOT_W / 2.0, "middle"),
        (last, LEFT + PLOT_W, "end"),
    ];
    let total_ok: i64 = delivered.iter().sum();
    let total_bad: i64 = failed.iter().sum();
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img"
            aria-label=(format!("attempts per minute: {total_ok} delivered, {total_bad} failed")) {
            title { "Attempts per minute (UTC): " (total_ok) " delivered, " (total_bad) " failed" }
            line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + PLOT_H) stroke="#9aa5b1" {}
            line x1=(LEFT) y1=(TOP + PLOT_H) x2=(LEFT + PLOT_W) y2=(TOP + PLOT_H) stroke="#9aa5b1" {}
            text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" font-size="11" fill="#5f6b7a" { (max) }
            text x=(LEFT - 6.0) y=(TOP + PLOT_H) text-anchor="end" font-size="11" fill="#5f6b7a" { "0" }
            @for (i, x, anchor) in ticks {
                @if let Some(l) = label(i) {
                    text x=(x) y=(H - 8.0) text-anchor=(anchor) font-size="11" fill="#5f6b7a" { (l) }
                }
            }
            polyline fill="none" stroke=(OK) stroke-width="1.6"
                points=(points(&delivered, max, (LEFT, TOP), (PLOT_W, PLOT_H))) {}
            polyline fill="none" stroke=(BAD) stroke-width="1.6"
                points=(points(&failed, max, (LEFT, TOP), (PLOT_W, PLOT_H))) {}
        }
        p.legend.muted {
            span.ok { "delivered" } span.bad { "failed" }
            " attempts per minute, UTC; highest minute " (max)
        }
    }
}

/// A small per-minute line for one endpoint (oldest first).
pub fn sparkline(minutes: &[Minute]) -> Markup {
    let delivered: Vec<i64> = minutes.iter().map(|m| m.delivered).collect();
    let failed: Vec<i64> = minutes.iter().map(|m| m.failed).collect();
    let max = delivered.iter().chain(&failed).copied().max().unwrap_or(0);
    let ok: i64 = delivered.iter().sum();
    let bad: i64 = failed.iter().sum();
    html! {
        svg.spark viewBox="0 0 120 24" role="img"
            aria-label=(format!("last hour: {ok} delivered, {bad} failed")) {
            title { "last hour: " (ok) " delivered, " (bad) " failed" }
            polyline fill="none" stroke=(OK) stroke-width="1.2"
                points=(points(&delivered, max, (1.0, 1.0), (118.0, 22.0))) {}
            polyline fill="none" stroke=(BAD) stroke-width="1.2"
                points=(points(&failed, max, (1.0, 1.0), (118.0, 22.0))) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_span_the_plot_and_the_highest_value_reaches_the_top() {
        assert_eq!(
            points(&[0, 5, 10], 10, (0.0, 0.0), (100.0, 50.0)),
            "0.0,50.0 50.0,25.0 100.0,0.0"
        );
        // No traffic: a flat line on the axis, not a division by zero.
        assert_eq!(
            points(&[0, 0], 0, (0.0, 0.0), (10.0, 10.0)),
            "0.0,10.0 10.0,10.0"
        );
        let svg = sparkline(&[Minute {
            delivered: 3,
            failed: 1,
        }])
        .into_string();
        assert!(svg.contains("3 delivered, 1 failed"), "{svg}");
        assert!(
            !svg.contains("style="),
            "the CSP forbids inline styles: {svg}"
        );
    }
}
