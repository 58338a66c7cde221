//! Defaults: a backlog drained to one endpoint with every setting at its default (the
//! endpoint's `max_in_flight` too, and the worker started with no flags), as a user's first
//! deployment runs. The other burn-downs raise `max_in_flight` out of the way; this one shows
//! what the per-endpoint cap costs a fast receiver.

use std::time::{Duration, Instant};

use crate::{wait_count, Bench, Figure, Worker};

const SCENARIO: &str = "defaults";

/// Events in the backlog.
const EVENTS: i64 = 20_000;

pub async fn run(b: &Bench) -> Vec<Figure> {
    eprintln!("defaults: {EVENTS} events x 1 endpoint, every setting at its default");
    let (url, client) = b.database().await;
    client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret)
             VALUES ('sink', $1, 'bench-secret-0123456789')",
            &[&format!("{}/0", b.sink.url())],
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object)
             SELECT 'order.paid', 'store.Order', jsonb_build_object('id', i::text)
             FROM generate_series(1, {EVENTS}) i"
        ))
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE hookrelay.events")
        .await
        .unwrap();
    b.sink.reset();
    let started = Instant::now();
    let worker = Worker::start(&url, &[]);
    let done = wait_count(
        &client,
        "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
        EVENTS,
        Duration::from_secs(300),
    )
    .await
    .expect("every delivery delivered");
    worker.stop();
    let per_second = EVENTS as f64 / (done - started).as_secs_f64();
    vec![Figure::new(
        SCENARIO,
        format!("{EVENTS} events x 1 endpoint, defaults"),
        per_second,
        "deliv/s",
    )
    .at_least(5_000.0)]
}
