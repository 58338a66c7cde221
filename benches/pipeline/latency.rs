//! Latency: a steady producer commits events at a fixed rate while the worker runs with its
//! defaults; each event's commit time (taken in the producer when its commit returns) is
//! matched with its arrival time at the sink, by the same clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{wait_count, Bench, Figure, Worker};

const SCENARIO: &str = "latency";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A fresh database with the sink as its endpoint and a worker with its defaults, idle.
async fn idle_worker(b: &Bench) -> (String, Worker) {
    let (url, client) = b.database().await;
    client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, max_in_flight)
             VALUES ('sink', $1, 'bench-secret-0123456789', 10000)",
            &[&b.sink.url()],
        )
        .await
        .unwrap();
    let worker = Worker::start(&url, &[]);
    wait_count(
        &client,
        "SELECT count(*) FROM hookrelay.workers WHERE waiting",
        1,
        Duration::from_secs(30),
    )
    .await
    .expect("the worker goes idle");
    (url, worker)
}

/// Commits `rate` events a second for `seconds` from several connections, each its share of
/// the schedule, so one connection's round trips do not limit the rate. Returns each event's
/// id and when its commit returned.
async fn produce(url: &str, rate: u32, seconds: u32) -> HashMap<String, Instant> {
    const PRODUCERS: u32 = 4;
    let total = rate * seconds;
    let start = tokio::time::Instant::now();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let producer = crate::connect(url).await;
        producers.push(tokio::spawn(async move {
            let emit = producer
                .prepare("SELECT hookrelay.emit('order.paid', $1::jsonb, 'store.Order')")
                .await
                .unwrap();
            let mut committed = Vec::new();
            for i in (p..total).step_by(PRODUCERS as usize) {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate as f64))
                    .await;
                let object = json!({"id": i.to_string(), "total": "150.00", "status": "PAID"});
                let id: uuid::Uuid = producer.query_one(&emit, &[&object]).await.unwrap().get(0);
                committed.push((hookrelay::pipeline::payload::event_id(&id), Instant::now()));
            }
            committed
        }));
    }
    let mut committed = HashMap::with_capacity(total as usize);
    for producer in producers {
        committed.extend(producer.await.unwrap());
    }
    let produced_in = start.elapsed().as_secs_f64();
    if produced_in > seconds as f64 * 1.1 {
        eprintln!(
            "  note: the producer fell behind ({produced_in:.1} s for {seconds} s of events)"
        );
    }
    committed
}

/// Each arrival's time after its commit, in milliseconds, sorted.
fn latencies(b: &Bench, committed: &HashMap<String, Instant>, total: u32) -> Vec<f64> {
    let mut latencies: Vec<f64> = b
        .sink
        .arrivals()
        .iter()
        .filter_map(|(id, at)| {
            committed
                .get(id)
                .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    if latencies.len() < total as usize {
        eprintln!("  note: {} of {total} events arrived", latencies.len());
    }
    latencies
}

/// Returns latencies in milliseconds, sorted.
async fn measure(b: &Bench, rate: u32, seconds: u32) -> Vec<f64> {
    let (url, worker) = idle_worker(b).await;
    b.sink.reset();
    b.sink.record_arrivals(true);
    let total = rate * seconds;
    let committed = produce(&url, rate, seconds).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.sink.count() < total as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.sink.record_arrivals(false);
    worker.stop();
    latencies(b, &committed, total)
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let seconds = if b.quick { 5 } else { 20 };
    let mut figures = Vec::new();
    for rate in [200, 1000] {
        eprintln!("latency: {rate} events/s for {seconds} s");
        let l = measure(b, rate, seconds).await;
        let (p50, p95, p99) = (
            percentile(&l, 50.0),
            percentile(&l, 95.0),
            percentile(&l, 99.0),
        );
        let mut fig50 = Figure::new(SCENARIO, format!("{rate}/s p50"), p50, "ms");
        let mut fig99 = Figure::new(SCENARIO, format!("{rate}/s p99"), p99, "ms");
        if rate == 200 {
            fig50 = fig50.at_most(5.0);
            fig99 = fig99.at_most(25.0);
        }
        figures.push(fig50);
        figures.push(Figure::new(SCENARIO, format!("{rate}/s p95"), p95, "ms"));
        figures.push(fig99);
    }
    figures
}
