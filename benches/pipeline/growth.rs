//! Cost growth: how long claims take with no history, and with millions of delivered rows
//! (events, deliveries and attempts) in the tables. Only pending work is indexed for claims,
//! so the two should be close.

use std::time::{Duration, Instant};

use hookrelay::pipeline::claim::{self, Lease};

use crate::{Bench, Figure};

const SCENARIO: &str = "cost-growth";
const BATCH: usize = 100;

pub struct ClaimCost {
    /// Median time of a fan-out claim of BATCH events, ms.
    pub fan_out_ms: f64,
    /// Median time of a due-deliveries claim that finds nothing due, ms.
    pub due_ms: f64,
}

async fn add_history(client: &tokio_postgres::Client, endpoint: i64, rows: i64) {
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object_id, object, created_at, fanned_out_at)
             SELECT 'order.paid', 'store.Order', i::text,
                    jsonb_build_object('id', i::text, 'total', '150.00', 'status', 'PAID'),
                    now() - interval '1 day', now() - interval '1 day'
             FROM generate_series(1, {rows}) i;
             INSERT INTO hookrelay.deliveries
                 (event_id, endpoint_id, state, attempts, next_attempt_at, delivered_at, last_status, created_at)
             SELECT id, {endpoint}, 'delivered', 1, NULL, created_at, 200, created_at FROM hookrelay.events;
             INSERT INTO hookrelay.attempts (delivery_id, event_id, attempt, started_at, duration_ms, status)
             SELECT id, event_id, 1, created_at, 3, 200 FROM hookrelay.deliveries"
        ))
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE hookrelay.events, hookrelay.deliveries, hookrelay.attempts")
        .await
        .unwrap();
    eprintln!(
        "  {rows} rows of history written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// A fresh database with the sink as its endpoint, `history` finished deliveries and
/// `events` new events, analysed and checkpointed; returns its URL.
async fn loaded_database(b: &Bench, history: i64, events: i64) -> String {
    let (url, client) = b.database().await;
    let endpoint: i64 = client
        .query_one(
            "INSERT INTO hookrelay.endpoints (name, url, secret, max_in_flight)
             VALUES ('sink', $1, 'bench-secret-0123456789', 10000) RETURNING id",
            &[&b.sink.url()],
        )
        .await
        .unwrap()
        .get(0);
    if history > 0 {
        add_history(&client, endpoint, history).await;
    }
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object)
             SELECT 'order.paid', 'store.Order', jsonb_build_object('id', i::text) FROM generate_series(1, {events}) i;
             ANALYZE hookrelay.events;"
        ))
        .await
        .unwrap();
    // Measure the claims, not the writing-back of what was just loaded.
    client.batch_execute("CHECKPOINT").await.unwrap();
    url
}

async fn claim_cost(b: &Bench, history: i64, events: i64) -> ClaimCost {
    let url = loaded_database(b, history, events).await;
    claims_at(&url).await
}

/// The median cost of a claim while the worker's claims drain the events not fanned out yet
/// of the database at `url`. The median, not the mean: on a shared machine a few claims that
/// meet a checkpoint or autovacuum (of history just written) moved the mean of 200 claims by a
/// third from run to run.
pub async fn claims_at(url: &str) -> ClaimCost {
    let db = hookrelay::db::pool(url, 2).unwrap();
    let pooled = db.pool.get().await.unwrap();
    let lease = Lease::new(Duration::from_secs(60), "bench");
    let (mut fan_out, mut due) = (Vec::new(), Vec::new());
    // As the worker does: resume a little before the last event claimed, and settle what was
    // claimed before the next claim (untimed), so leases do not pile up.
    let mut from = claim::Scan::FromStart;
    // From the work floor, which the worker reads now and then (not timed).
    let floor = claim::work_floor(&pooled).await.unwrap();
    let settle = pooled
        .prepare(
            "UPDATE hookrelay.deliveries SET state = 'delivered', locked_until = NULL, \
             next_attempt_at = NULL, delivered_at = now() WHERE id = ANY($1)",
        )
        .await
        .unwrap();
    loop {
        let started = Instant::now();
        let claimed = claim::claim_new(&pooled, BATCH, from, &lease)
            .await
            .unwrap();
        if claimed.taken == 0 {
            break;
        }
        fan_out.push(started.elapsed());
        if let Some(last) = claimed.last_event {
            from = claim::Scan::After(claim::resume_point(last, claim::RESUME_SLACK));
        }
        let started = Instant::now();
        claim::claim_due(&pooled, BATCH, &lease, floor)
            .await
            .unwrap();
        due.push(started.elapsed());
        let ids: Vec<i64> = claimed.jobs.iter().map(|j| j.delivery_id).collect();
        pooled.execute(&settle, &[&ids]).await.unwrap();
    }
    ClaimCost {
        fan_out_ms: median_ms(fan_out),
        due_ms: median_ms(due),
    }
}

/// The median of `times`, in milliseconds (0 for none).
fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(0.0, |t| t.as_secs_f64() * 1000.0)
}

/// Events the claims are measured on.
pub fn claimed_events(b: &Bench) -> i64 {
    if b.quick {
        10_000
    } else {
        20_000
    }
}

/// Claim costs with no history at all.
pub async fn empty_claim_cost(b: &Bench) -> ClaimCost {
    claim_cost(b, 0, claimed_events(b)).await
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let history = if b.quick { 500_000 } else { 5_000_000 };
    let events = claimed_events(b);
    eprintln!("cost growth: claims with an empty history");
    let empty = empty_claim_cost(b).await;
    eprintln!("cost growth: claims with {history} delivered rows of history");
    let full = claim_cost(b, history, events).await;
    let label = format!("{}M rows", history as f64 / 1e6);
    vec![
        Figure::new(
            SCENARIO,
            "fan-out claim of 100, no history",
            empty.fan_out_ms,
            "ms",
        ),
        Figure::new(
            SCENARIO,
            format!("fan-out claim of 100, {label}"),
            full.fan_out_ms,
            "ms",
        ),
        Figure::new(
            SCENARIO,
            "fan-out claim, history / none",
            full.fan_out_ms / empty.fan_out_ms,
            "x",
        )
        .at_most(1.5),
        Figure::new(SCENARIO, "due claim, no history", empty.due_ms, "ms"),
        Figure::new(SCENARIO, format!("due claim, {label}"), full.due_ms, "ms"),
        Figure::new(
            SCENARIO,
            "due claim, history / none",
            full.due_ms / empty.due_ms,
            "x",
        )
        .at_most(1.5),
    ]
}
