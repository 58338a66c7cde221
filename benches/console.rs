//! How fast the operator console's pages render with a million deliveries in the tables.
//!
//! `cargo bench --bench console` starts a throwaway PostgreSQL cluster (or uses a fresh
//! database on the server of `DATABASE_URL`), writes `HOOKRELAY_BENCH_DELIVERIES` deliveries
//! (default 1,000,000; one event and one attempt each, over 20 endpoints and 7 days, 5% dead,
//! 4% pending) and two days of per-minute figures, then serves the console and prints, for
//! each page, the median and slowest of 7 requests (after one to warm up), in ms. Figures to
//! read, not a pass/fail threshold.

use std::time::{Duration, Instant};

use hookrelay::db::embedded::{self, Durability};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

const FILL: &str = "
INSERT INTO hookrelay.endpoints (name, url, secret)
SELECT format('ep-%s', lpad(g::text, 2, '0')), format('https://ep%s.example/hooks', g), 'bench-secret-value'
FROM generate_series(1, 20) g;
INSERT INTO hookrelay.events (event, object, object_id, created_at, fanned_out_at)
SELECT CASE WHEN g % 1000 = 0 THEN 'refund.issued' WHEN g % 3 = 0 THEN 'order.paid'
            WHEN g % 3 = 1 THEN 'order.created' ELSE 'customer.updated' END,
       jsonb_build_object('id', g::text, 'total', (g % 500)::text || '.00', 'note', 'row ' || g),
       g::text, now() - interval '7 days' * (1 - g::float8 / $1), now()
FROM generate_series(1, $1::int) g;
INSERT INTO hookrelay.deliveries (event_id, endpoint_id, state, attempts, next_attempt_at,
                                  last_status, delivered_at, created_at)
SELECT e.id, (SELECT min(id) FROM hookrelay.endpoints) + (e.object_id::int % 20),
       s.state, 1, CASE WHEN s.state = 'pending' THEN now() + interval '1 hour' END,
       CASE WHEN s.state = 'delivered' THEN 200 ELSE 500 END,
       CASE WHEN s.state = 'delivered' THEN e.created_at END, e.created_at
FROM hookrelay.events e,
     LATERAL (SELECT CASE WHEN e.object_id::int % 100 < 5 THEN 'dead'
                          WHEN e.object_id::int % 100 < 9 THEN 'pending'
                          WHEN e.object_id::int % 100 = 9 THEN 'cancelled'
                          ELSE 'delivered' END AS state) s;
INSERT INTO hookrelay.attempts (delivery_id, event_id, attempt, started_at, duration_ms, status, error, response_excerpt)
SELECT id, event_id, 1, created_at, 20 + id % 80, last_status,
       CASE WHEN last_status = 500 THEN 'HTTP 500 Internal Server Error' END, 'ok'
FROM hookrelay.deliveries;
INSERT INTO hookrelay.endpoint_stats (endpoint_id, minute, delivered, failed)
SELECT ep.id, date_trunc('minute', now()) - m * interval '1 minute', 50 + (m % 30), m % 7
FROM hookrelay.endpoints ep, generate_series(0, 2 * 24 * 60 - 1) m;
";

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

fn admin_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return url;
    }
    embedded::remove_stale_ephemeral("hookrelay-bench-");
    let dir = std::env::temp_dir().join(format!("hookrelay-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    embedded::start_ephemeral_with(&dir, Durability::Default)
        .expect("start PostgreSQL for the benchmark")
        .url("postgres")
}

/// A fresh database filled with `n` deliveries; returns its URL.
async fn filled(n: i32) -> String {
    let admin_url = admin_url();
    let name = format!("hookrelay_console_bench_{}", std::process::id());
    connect(&admin_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let mut client = connect(&url).await;
    hookrelay::admin::migrate::migrate(&mut client)
        .await
        .unwrap();
    let started = Instant::now();
    for statement in FILL.split(";\n").filter(|s| !s.trim().is_empty()) {
        let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] =
            if statement.contains("$1") { &[&n] } else { &[] };
        client.execute(statement, params).await.unwrap();
    }
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    eprintln!("filled {n} deliveries in {:.0?}", started.elapsed());
    url
}

async fn timed(http: &reqwest::Client, url: &str) -> (Duration, Duration, String) {
    let mut times = Vec::new();
    let mut body = String::new();
    for i in 0..8 {
        let started = Instant::now();
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        body = response.text().await.unwrap();
        if i > 0 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    (times[times.len() / 2], times[times.len() - 1], body)
}

fn next_link(body: &str) -> Option<String> {
    let rest = body.split("<a rel=\"next\" href=\"").nth(1)?;
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

async fn pages(base: &str, client: &tokio_postgres::Client) -> Vec<(String, String)> {
    let row = client
        .query_one(
            "SELECT d.id, d.event_id, to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI')
             FROM hookrelay.deliveries d ORDER BY d.id OFFSET (SELECT count(*) / 2 FROM hookrelay.deliveries) LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (id, event, at): (i64, uuid::Uuid, String) = (row.get(0), row.get(1), row.get(2));
    let evt = hookrelay::pipeline::payload::event_id(&event);
    [
        ("overview", "/".to_string()),
        ("overview, 48 hours", "/?hours=48".into()),
        ("endpoints", "/endpoints".into()),
        ("one endpoint", "/endpoints/ep-07".into()),
        ("deliveries, newest", "/deliveries".into()),
        ("by endpoint", "/deliveries?endpoint=ep-07".into()),
        ("dead", "/deliveries?state=dead".into()),
        (
            "dead of one endpoint",
            "/deliveries?endpoint=ep-07&state=dead".into(),
        ),
        (
            "rare event name (0.1%)",
            "/deliveries?event=refund.issued".into(),
        ),
        ("by event id", format!("/deliveries?event_id={evt}")),
        (
            "a time range mid-history",
            format!("/deliveries?until={at}"),
        ),
        ("one delivery", format!("/deliveries/{id}")),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_string(), format!("{base}{path}")))
    .collect()
}

fn main() {
    let n: i32 = std::env::var("HOOKRELAY_BENCH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let url = filled(n).await;
        let pool = hookrelay::db::pool(&url, 4).unwrap().pool;
        let cancel = CancellationToken::new();
        let addr = hookrelay::admin::console::serve(
            pool,
            "127.0.0.1:0".parse().unwrap(),
            None,
            cancel.clone(),
        )
        .await
        .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let client = connect(&url).await;
        let base = format!("http://{addr}");
        println!("console page render times with {n} deliveries (median / slowest of 7, ms)");
        for (name, url) in pages(&base, &client).await {
            let (median, slowest, _) = timed(&http, &url).await;
            println!("{name:<28} {:>8.1} {:>8.1}", ms(median), ms(slowest));
        }
        // Deep in history: the 40th page of all deliveries, reached by following "Older".
        let mut url = format!("{base}/deliveries");
        for _ in 0..39 {
            let body = http.get(&url).send().await.unwrap().text().await.unwrap();
            url = format!("{base}{}", next_link(&body).expect("an older page"));
        }
        let (median, slowest, _) = timed(&http, &url).await;
        println!(
            "{:<28} {:>8.1} {:>8.1}",
            "page 40 by key",
            ms(median),
            ms(slowest)
        );
        cancel.cancel();
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
