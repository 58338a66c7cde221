//! `/metrics`: the format a scraper asks for (checked by `promtool`), and scrape-time figures
//! that are left out, not frozen, while the database cannot be read.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{free_addr, socket_of, Proxy, Receiver, Reply, TestDb};

const SECRET: &str = "metrics-test-secret";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The Accept header Prometheus 3 sends.
const PROMETHEUS_3_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
    application/openmetrics-text;version=0.0.1;q=0.5,\
    text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// GET `/metrics` with this Accept header (none if `None`): status, content type and body.
pub(crate) async fn scrape(
    addr: std::net::SocketAddr,
    accept: Option<&str>,
) -> (u16, String, String) {
    try_scrape(addr, accept)
        .await
        .unwrap_or_else(|e| panic!("/metrics does not answer: {e}"))
}

async fn try_scrape(
    addr: std::net::SocketAddr,
    accept: Option<&str>,
) -> Result<(u16, String, String), reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut request = client.get(format!("http://{addr}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Ok((status, content_type, response.text().await?))
}

/// The value of the first sample line starting with `series`, if any.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `/metrics` until `ok` holds, for at most 20 s; returns the last body.
pub(crate) async fn scrape_until(addr: std::net::SocketAddr, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = match try_scrape(addr, None).await {
            Ok((_, _, body)) => body,
            Err(e) => e.to_string(),
        };
        if ok(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// promtool, or a failure that says how to install it (`.ci/run` does).
fn promtool() -> String {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    assert!(
        found,
        "promtool is not installed, and the metrics tests need it: `bash .ci/run` installs it, \
         or by hand: apt-get download prometheus && dpkg -x prometheus_*.deb /tmp/prom && \
         cp /tmp/prom/usr/bin/promtool /usr/local/bin/"
    );
    "promtool".to_string()
}

/// `promtool check metrics [extra]` on `body`: exit status and everything it printed.
pub(crate) fn promtool_check(body: &str, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed)
}

/// The names on `# TYPE <name> counter` lines.
fn counters(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .map(str::to_string)
        .collect()
}

/// Every counter has a non-empty HELP line under the same name.
fn assert_counters_have_help(body: &str) {
    for counter in counters(body) {
        let help = format!("# HELP {counter} ");
        assert!(
            body.lines()
                .any(|l| l.starts_with(&help) && l.len() > help.len()),
            "{counter} has no HELP line:\n{body}"
        );
    }
}

fn database_up(body: &str) -> Option<f64> {
    sample(body, "hookrelay_database_up")
}

#[tokio::test]
async fn backlog_figures_are_left_out_while_the_database_is_unreachable() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(socket_of(&db.url)).await;
    let addr = free_addr();
    let mut config = db.config();
    config.metrics_addr = Some(addr);
    let pool = hookrelay::db::pool(&proxy.url(&db.url), 4).unwrap();
    let token = CancellationToken::new();
    let worker = tokio::spawn(hookrelay::pipeline::worker::run(
        config,
        pool,
        token.clone(),
    ));

    let up = scrape_until(addr, |b| database_up(b) == Some(1.0)).await;
    assert_eq!(database_up(&up), Some(1.0), "{up}");
    assert_eq!(
        sample(&up, r#"hookrelay_backlog{kind="due"}"#),
        Some(0.0),
        "{up}"
    );
    assert!(
        sample(&up, "hookrelay_oldest_pending_age_seconds").is_some(),
        "{up}"
    );

    proxy.cut();
    let started = Instant::now();
    let (status, _, down) = scrape(addr, None).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a scrape during an outage took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{down}");
    assert_eq!(database_up(&down), Some(0.0), "{down}");
    for gone in ["hookrelay_backlog", "hookrelay_oldest_pending_age_seconds"] {
        assert!(
            !down.lines().any(|l| l.contains(gone)),
            "{gone} is reported while the database cannot be read:\n{down}"
        );
    }
    assert!(sample(&down, "hookrelay_database_errors_total").is_some_and(|n| n >= 1.0));

    proxy.restore();
    let back = scrape_until(addr, |b| database_up(b) == Some(1.0)).await;
    assert_eq!(database_up(&back), Some(1.0), "{back}");
    assert_eq!(
        sample(&back, r#"hookrelay_backlog{kind="due"}"#),
        Some(0.0),
        "{back}"
    );
    token.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_scrape_does_not_wait_for_a_database_that_never_answers() {
    // Accepts connections and never says a word: connecting hangs, as with a dead host.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "postgres://hookrelay@{}/hookrelay",
        silent.local_addr().unwrap()
    );
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let pool = hookrelay::db::pool(&url, 1).unwrap().pool;
    let metrics = hookrelay::metrics::Metrics::default();
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(10), metrics.render(&pool))
        .await
        .expect("a scrape answers within 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the scrape waited {:?} for the database",
        started.elapsed()
    );
    assert_eq!(database_up(&body), Some(0.0), "{body}");
    assert!(!body.contains("hookrelay_backlog"), "{body}");
    held.abort();
}

/// The text format passes promtool, has every counter with its help text and the retry
/// counted, and promtool names each counter by its series.
async fn assert_text_format_passes_promtool(addr: SocketAddr) {
    let (_, _, text) = scrape(addr, None).await;
    let (passed, problems) = promtool_check(&text, &[]);
    assert!(
        passed && problems.is_empty(),
        "promtool check metrics found problems:\n{problems}\nin:\n{text}"
    );
    let text_counters = counters(&text);
    for counter in [
        "hookrelay_deliveries_total",
        "hookrelay_claims_total",
        "hookrelay_notifications_total",
        "hookrelay_database_errors_total",
    ] {
        assert!(text_counters.iter().any(|c| c == counter), "{text}");
    }
    assert_counters_have_help(&text);
    assert!(
        text.contains("# HELP hookrelay_deliveries_total Delivery attempts finished"),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"hookrelay_deliveries_total{outcome="retry"}"#),
        Some(1.0)
    );
    // promtool's own parse names the counters by their series.
    let (_, listed) = promtool_check(&text, &["--extended"]);
    for counter in &text_counters {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(counter.as_str())),
            "promtool did not see {counter}:\n{listed}"
        );
    }
}

#[tokio::test]
async fn metrics_come_in_the_format_asked_for_and_pass_promtool() {
    promtool();
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, n| Reply::status(if n == 0 { 503 } else { 200 })).await;
    db.endpoint("crm", &receiver.url("/"), SECRET).await;
    let addr = free_addr();
    let mut config = db.config();
    config.metrics_addr = Some(addr);
    let worker = db.start_worker(config);
    for i in 0..2 {
        db.emit("order.paid", json!({ "id": i })).await;
    }
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            2,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(delivered, 2);

    // No Accept header, or one asking for text: Prometheus text 0.0.4.
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let (status, content_type, body) = scrape(addr, accept).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, PROMETHEUS),
            "{accept:?}"
        );
        assert!(
            !body.contains("# EOF") && !body.contains("_created"),
            "{body}"
        );
    }
    assert_text_format_passes_promtool(addr).await;

    // Prometheus asks for OpenMetrics first: it gets it, ended by # EOF.
    let (status, content_type, openmetrics) = scrape(addr, Some(PROMETHEUS_3_ACCEPT)).await;
    assert_eq!((status, content_type.as_str()), (200, OPENMETRICS));
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("# TYPE hookrelay_deliveries counter\n"),
        "{openmetrics}"
    );
    assert_counters_have_help(&openmetrics);
    worker.stop().await;
}
