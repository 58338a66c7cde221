//! Burn-down (committed events drained to `delivered`), the HTTP ceiling (the same requests
//! with no database), and the worker's footprint (peak RSS, idle CPU).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrelay::pipeline::claim::{Job, Target};
use hookrelay::pipeline::deliver::{Sender, SenderConfig};
use hookrelay::pipeline::payload::Event;
use hookrelay::sign::Scheme;
use serde_json::json;

use crate::{wait_count, Bench, Figure, Worker};

/// Requests in flight, for the worker and the ceiling alike (HOOKRELAY_BENCH_CONCURRENCY).
pub fn concurrency() -> usize {
    std::env::var("HOOKRELAY_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// The sink endpoints' max_in_flight: far above what the worker can claim at once.
pub const SINK_MAX_IN_FLIGHT: usize = 10_000;
const SCENARIO: &str = "burn-down";

pub struct Burn {
    pub per_second: f64,
    peak_rss_mib: f64,
    idle_cpu_percent: Option<f64>,
}

/// A realistic object: an order of a dozen fields.
pub const OBJECT: &str =
    "jsonb_build_object('id', i::text, 'reference', 'ORD-' || i, 'total', '150.00', \
     'currency', 'EUR', 'status', 'PAID', 'customer_id', (i % 1000)::text, 'items', 3, \
     'created_at', now(), 'note', 'benchmark order')";

/// What the tables' statistics say when the worker starts (see the `plans` scenario).
#[derive(Clone, Copy, Debug)]
pub enum Stats {
    /// `VACUUM ANALYZE` of the events once the backlog is written: the usual burn-down.
    Events,
    /// `VACUUM ANALYZE` of the whole database once the backlog is written, `deliveries` still
    /// empty: what autovacuum does while a backlog builds up with no worker running.
    Backlog,
    /// `ANALYZE` of the all-empty tables before the backlog is written (a fresh install).
    Empty,
}

pub async fn burn_down(
    b: &Bench,
    events: i64,
    endpoints: usize,
    measure_idle: bool,
    stats: Stats,
) -> Burn {
    let (url, client) = b.database().await;
    if let Stats::Empty = stats {
        client.batch_execute("ANALYZE").await.unwrap();
    }
    add_sink_endpoints(b, &client, endpoints).await;
    write_backlog(&client, events, stats).await;
    b.sink.reset();
    let total = events * endpoints as i64;
    let started = Instant::now();
    let worker = Worker::start(&url, &["--concurrency", &concurrency().to_string()]);
    let limit = Instant::now() + Duration::from_secs(600);
    while (b.sink.count() as i64) < total && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = wait_count(
        &client,
        "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
        total,
        Duration::from_secs(60),
    )
    .await
    .expect("every delivery delivered");
    let per_second = total as f64 / (done - started).as_secs_f64();
    let peak_rss_mib = worker.peak_rss_kib() as f64 / 1024.0;
    let idle_cpu_percent = if measure_idle {
        Some(idle_cpu(b, &worker).await)
    } else {
        None
    };
    worker.stop();
    Burn {
        per_second,
        peak_rss_mib,
        idle_cpu_percent,
    }
}

/// One sink endpoint per `endpoints`, each on its own path of the sink.
async fn add_sink_endpoints(b: &Bench, client: &tokio_postgres::Client, endpoints: usize) {
    for i in 0..endpoints {
        client
            .execute(
                // The sink takes any number of requests at once. max_in_flight counts claimed
                // deliveries (running, queued in the worker, or waiting for their result to be
                // written), so it is set well above the worker's slots; the default (16)
                // protects ordinary receivers.
                "INSERT INTO hookrelay.endpoints (name, url, secret, max_in_flight)
                 VALUES ($1, $2, 'bench-secret-0123456789', $3)",
                &[
                    &format!("sink-{i}"),
                    &format!("{}/{i}", b.sink.url()),
                    &(SINK_MAX_IN_FLIGHT as i32),
                ],
            )
            .await
            .unwrap();
    }
}

/// Writes `events` committed events and gathers the statistics `stats` names.
async fn write_backlog(client: &tokio_postgres::Client, events: i64, stats: Stats) {
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object)
             SELECT 'order.paid', 'store.Order', {OBJECT} FROM generate_series(1, {events}) i"
        ))
        .await
        .unwrap();
    match stats {
        Stats::Events => {
            client
                .batch_execute("VACUUM ANALYZE hookrelay.events")
                .await
        }
        Stats::Backlog => client.batch_execute("VACUUM ANALYZE").await,
        Stats::Empty => Ok(()),
    }
    .unwrap();
}

/// The idle worker's CPU use, in percent of one core, once the last results settled.
async fn idle_cpu(b: &Bench, worker: &Worker) -> f64 {
    // Let the last results settle, then watch the idle worker.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = Duration::from_secs(if b.quick { 5 } else { 20 });
    let before = worker.cpu_time();
    tokio::time::sleep(window).await;
    let used = worker.cpu_time() - before;
    used.as_secs_f64() / window.as_secs_f64() * 100.0
}

fn sample_job(i: u64, url: &str) -> Job {
    Job {
        delivery_id: i as i64,
        attempt: 1,
        budget_attempt: 1,
        event: Event {
            id: uuid::Uuid::new_v4(),
            event: "order.paid".into(),
            model: Some("store.Order".into()),
            object_id: Some(i.to_string()),
            object: json!({"id": i.to_string(), "reference": format!("ORD-{i}"), "total": "150.00",
                "currency": "EUR", "status": "PAID", "customer_id": (i % 1000).to_string(), "items": 3,
                "created_at": "2026-11-22T10:00:00Z", "note": "benchmark order"}),
            changes: None,
            actor: None,
            account_id: None,
            created_at: chrono::Utc::now(),
        },
        target: Target {
            id: 1,
            name: "sink".into(),
            url: url.into(),
            secret: "bench-secret-0123456789".into(),
            scheme: Scheme::Hookrelay,
            timeout: None,
            max_attempts: None,
            previous_secret: None,
            headers: Default::default(),
            shaping: Default::default(),
            trace_context: true,
        },
        unreadable: None,
        trace: Default::default(),
        trace_headers: None,
        keyed: false,
    }
}

/// The same requests, built, signed and sent by the worker's own client, without a database,
/// from a process of its own as the worker is (this bench binary run again as a client).
async fn ceiling(b: &Bench, requests: u64) -> f64 {
    b.sink.reset();
    let url = format!("{}/0", b.sink.url());
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ceiling-client",
            &url,
            &requests.to_string(),
            &concurrency().to_string(),
        ])
        .output()
        .await
        .expect("run the ceiling client");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "ceiling client said: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The ceiling client: POSTs `requests` signed bodies to `url`, `concurrency` at a time, and
/// returns requests per second.
pub async fn ceiling_client(url: String, requests: u64, concurrency: usize) -> f64 {
    let sender = Sender::new(SenderConfig {
        default_timeout: Duration::from_secs(10),
        excerpt_bytes: 4096,
        idle_per_host: concurrency,
        allow: hookrelay::pipeline::guard::AllowList::loopback(),
        max_payload_bytes: hookrelay::config::WorkerConfig::default().max_payload_bytes,
    })
    .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (sender, next, url) = (sender.clone(), next.clone(), url.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                let attempt = sender.send(&sample_job(i, &url)).await;
                assert!(attempt.error.is_none(), "{:?}", attempt.error);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    requests as f64 / started.elapsed().as_secs_f64()
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let (one, five) = if b.quick {
        (20_000, 4_000)
    } else {
        (100_000, 20_000)
    };
    eprintln!("burn-down: {one} events x 1 endpoint");
    let single = burn_down(b, one, 1, true, Stats::Events).await;
    eprintln!("burn-down: {five} events x 5 endpoints");
    let fanned = burn_down(b, five, 5, false, Stats::Events).await;
    eprintln!("HTTP ceiling: {one} requests");
    let ceiling = ceiling(b, one as u64).await;
    let ratio = single.per_second / ceiling * 100.0;
    let mut figures = vec![
        Figure::new(
            SCENARIO,
            format!("{one} events x 1 endpoint"),
            single.per_second,
            "deliv/s",
        )
        .at_least(10_000.0),
        Figure::new(
            SCENARIO,
            format!("{five} events x 5 endpoints"),
            fanned.per_second,
            "deliv/s",
        ),
        Figure::new(
            "http-ceiling",
            "same requests, no database, own process",
            ceiling,
            "req/s",
        ),
        Figure::new(
            "http-ceiling",
            "pipeline / ceiling (1 endpoint)",
            ratio,
            "%",
        )
        .at_least(60.0),
    ];
    figures.extend(footprint(&single, &fanned));
    figures
}

/// The worker's peak RSS in both burn-downs and its idle CPU after the first.
fn footprint(single: &Burn, fanned: &Burn) -> Vec<Figure> {
    vec![
        Figure::new(
            "footprint",
            "worker peak RSS (1 endpoint burn-down)",
            single.peak_rss_mib,
            "MiB",
        )
        .at_most(64.0),
        Figure::new(
            "footprint",
            "worker peak RSS (5 endpoints burn-down)",
            fanned.peak_rss_mib,
            "MiB",
        )
        .at_most(64.0),
        Figure::new(
            "footprint",
            "worker idle CPU",
            single.idle_cpu_percent.unwrap_or(f64::NAN),
            "%",
        )
        .at_most(1.0),
    ]
}
