//! `--metrics-per-endpoint` (issue 19): series labelled by endpoint name, checked by promtool,
//! and the Grafana dashboard in docs/ uses only metrics that are exported.

use std::collections::BTreeSet;

use crate::metrics::{promtool_check, sample, scrape_until};
use crate::support::{free_addr, Receiver, Reply, TestDb};

const SECRET: &str = "metrics-per-endpoint-secret";
const DASHBOARD: &str = include_str!("../../docs/grafana-dashboard.json");

/// The metric names of the sample lines of an exposition.
fn sample_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Every PromQL expression in the dashboard: panel targets and template queries.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("each panel has targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            found.push(target["expr"].as_str().expect("an expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            found.push(query.to_string());
        }
    }
    found
}

/// The hookrelay metric names an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("hookrelay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The per-endpoint samples match what each receiver answered, and promtool accepts them.
fn the_counts_are_right_and_promtool_passes(body: &str, delivered: &str, dead: &str) {
    assert_eq!(sample(body, delivered), Some(3.0), "{body}");
    assert_eq!(sample(body, dead), Some(3.0), "{body}");
    assert_eq!(
        sample(body, "hookrelay_endpoint_pending{endpoint=\"held\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(body, "hookrelay_endpoint_pending{endpoint=\"crm\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            body,
            "hookrelay_endpoint_oldest_pending_age_seconds{endpoint=\"crm\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            body,
            "hookrelay_endpoint_attempt_duration_seconds_count{endpoint=\"crm\"}"
        ),
        Some(3.0)
    );
    let (passed, problems) = promtool_check(body, &[]);
    assert!(passed, "promtool: {problems}\n{body}");
}

/// Each of the dashboard's expressions reads a hookrelay metric that /metrics exports.
fn the_dashboard_reads_only_exported_metrics(body: &str) {
    let exported = sample_names(body);
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 8, "{expressions:?}");
    for expr in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} reads no hookrelay metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "the dashboard reads {name}, which /metrics does not export: {expr}"
            );
        }
    }
}

#[tokio::test]
async fn per_endpoint_series_are_exported_and_the_dashboard_reads_only_those() {
    let db = TestDb::new().await;
    let ok = Receiver::ok().await;
    let failing = Receiver::with(|_, _| Reply::status(500)).await;
    let held = Receiver::with(|_, _| Reply::status(503)).await;
    db.endpoint("crm", &ok.url("/"), SECRET).await;
    db.endpoint("billing", &failing.url("/"), SECRET).await;
    db.endpoint("held", &held.url("/"), SECRET).await;
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoints SET max_attempts = 1 WHERE name = 'billing';
             UPDATE hookrelay.endpoints SET max_attempts = 100 WHERE name = 'held';",
        )
        .await
        .unwrap();
    for i in 0..3 {
        db.emit("order.paid", serde_json::json!({ "id": i })).await;
    }
    let addr = free_addr();
    let mut config = db.config();
    config.metrics_addr = Some(addr);
    config.metrics_per_endpoint = true;
    let worker = db.start_worker(config);
    let delivered = "hookrelay_endpoint_deliveries_total{endpoint=\"crm\",outcome=\"delivered\"}";
    let dead = "hookrelay_endpoint_deliveries_total{endpoint=\"billing\",outcome=\"dead\"}";
    let retried = "hookrelay_endpoint_deliveries_total{endpoint=\"held\",outcome=\"retry\"}";
    let body = scrape_until(addr, |b| {
        sample(b, delivered) == Some(3.0)
            && sample(b, dead) == Some(3.0)
            && sample(b, retried).is_some_and(|n| n >= 3.0)
            // Counted when each attempt ends; pending is read from the database, where the
            // results are written a moment later.
            && sample(b, "hookrelay_endpoint_pending{endpoint=\"crm\"}") == Some(0.0)
            && sample(
                b,
                "hookrelay_endpoint_oldest_pending_age_seconds{endpoint=\"held\"}",
            )
            .is_some_and(|age| age > 0.0)
    })
    .await;
    worker.stop().await;
    the_counts_are_right_and_promtool_passes(&body, delivered, dead);
    the_dashboard_reads_only_exported_metrics(&body);

    // Off by default: no series by endpoint.
    let pool = hookrelay::db::pool(&db.url, 1).unwrap().pool;
    let plain = hookrelay::metrics::Metrics::default().render(&pool).await;
    assert!(plain.contains("hookrelay_backlog"), "{plain}");
    assert!(!plain.contains("hookrelay_endpoint_"), "{plain}");
}
