//! Ordered delivery (0022): an ordered endpoint drains committed events whose ordering keys
//! spread over 1,000 keys (throughput, up to one request per key at a time) and over a single
//! key (the worst case: one request at a time, each waiting for the previous one's result).

use std::time::{Duration, Instant};

use crate::burn::SINK_MAX_IN_FLIGHT;
use crate::{wait_count, Bench, Figure, Worker};

const SCENARIO: &str = "ordered";

/// Deliveries per second for `events` events over `keys` keys to one ordered endpoint.
async fn drain(b: &Bench, events: i64, keys: i64) -> f64 {
    let (url, client) = b.database().await;
    client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, max_in_flight, ordered)
             VALUES ('ordered-sink', $1, 'bench-secret-0123456789', $2, true)",
            &[
                &format!("{}/ordered", b.sink.url()),
                &(SINK_MAX_IN_FLIGHT as i32),
            ],
        )
        .await
        .unwrap();
    // One writer, so each key's events are in write order without emit's key lock.
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object, ordering_key)
             SELECT 'order.paid', 'store.Order', jsonb_build_object('id', i::text),
                    'customer:' || (i % {keys})
             FROM generate_series(1, {events}) i"
        ))
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE hookrelay.events")
        .await
        .unwrap();
    b.sink.reset();
    let started = Instant::now();
    let worker = Worker::start(&url, &["--concurrency", "64"]);
    let limit = Duration::from_secs(if b.quick { 120 } else { 1200 });
    let done = wait_count(
        &client,
        "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
        events,
        limit,
    )
    .await;
    worker.stop();
    done.map_or(0.0, |at| events as f64 / (at - started).as_secs_f64())
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let (spread, single) = if b.quick {
        (10_000, 2_000)
    } else {
        (100_000, 100_000)
    };
    eprintln!("ordered: {spread} events over 1,000 keys, {single} over one key");
    let over_keys = drain(b, spread, 1_000).await;
    let one_key = drain(b, single, 1).await;
    vec![
        Figure::new(
            SCENARIO,
            format!("{spread} events over 1,000 keys"),
            over_keys,
            "deliv/s",
        ),
        Figure::new(
            SCENARIO,
            format!("{single} events over one key"),
            one_key,
            "deliv/s",
        ),
    ]
}
