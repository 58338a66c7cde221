//! Producer cost: 16 clients committing one-row transactions into an application table as
//! fast as they can: plain, with an outbox event from `hookrelay.emit` in the same
//! transaction, and into a table tracked by `hookrelay.track_table` (its trigger writes the
//! event), while the worker runs (idle-waiting, so inserts take the notification path whenever
//! it is idle); and, as the floor any outbox table starts from, with a bare second row instead
//! of the event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{connect, wait_count, Bench, Figure, Worker};

const SCENARIO: &str = "producer";
const CLIENTS: usize = 16;

/// Transactions per second of `sql` run by CLIENTS connections for `seconds`.
async fn throughput(url: &str, sql: &'static str, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = connect(url).await;
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let statement = client.prepare(sql).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                client.execute(&statement, &[]).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let counted = done.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    counted as f64 / elapsed
}

/// Counts notifications on the worker channel from a connection of our own.
async fn count_notifications(url: &str) -> (tokio_postgres::Client, Arc<AtomicU64>) {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(_) = message {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    client
        .batch_execute("LISTEN hookrelay_events")
        .await
        .unwrap();
    (client, count)
}

const PLAIN: &str = "INSERT INTO app_orders (status, total) VALUES ('PAID', 150.00)";
const WITH_EMIT: &str = "WITH o AS (INSERT INTO app_orders (status, total) VALUES ('PAID', 150.00) RETURNING id, status, total)
     SELECT hookrelay.emit('order.paid', jsonb_build_object('id', o.id, 'status', o.status, 'total', o.total), 'store.Order')
     FROM o";
const TRACKED: &str = "INSERT INTO app_orders_tracked (status, total) VALUES ('PAID', 150.00)";
/// The floor of any outbox kept in a table: the same order plus a bare second row (a bigint
/// key and the JSON body), no hookrelay involved.
const SECOND_ROW: &str = "WITH o AS (INSERT INTO app_orders (status, total) VALUES ('PAID', 150.00) RETURNING id, status, total)
     INSERT INTO bare_outbox (body) SELECT jsonb_build_object('id', o.id, 'status', o.status, 'total', o.total) FROM o";

/// A fresh database with the application's tables (plain, tracked, a bare outbox) and a
/// worker with no endpoints, idle: it claims and fans out, and goes idle when it can.
async fn tables_and_idle_worker(b: &Bench) -> (String, Worker) {
    let (url, client) = b.database().await;
    client
        .batch_execute(
            "CREATE TABLE app_orders (id bigserial PRIMARY KEY, status text NOT NULL, total numeric NOT NULL,
                                      created_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE app_orders_tracked (LIKE app_orders INCLUDING ALL);
             SELECT hookrelay.track_table('app_orders_tracked', model => 'store.Order');
             CREATE TABLE bare_outbox (id bigserial PRIMARY KEY, body jsonb NOT NULL);",
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

pub async fn run(b: &Bench) -> Vec<Figure> {
    let seconds = if b.quick { 4 } else { 10 };
    let (url, worker) = tables_and_idle_worker(b).await;
    eprintln!("producer: {CLIENTS} clients, plain inserts, {seconds} s");
    let plain = throughput(&url, PLAIN, seconds).await;
    // Right after the plain run, before any event exists: the worker has nothing to fan out
    // and autovacuum nothing of hookrelay's to clean, as for the plain run.
    eprintln!("producer: {CLIENTS} clients, insert + a bare second row, {seconds} s");
    let second_row = throughput(&url, SECOND_ROW, seconds).await;
    eprintln!("producer: {CLIENTS} clients, insert + hookrelay.emit, {seconds} s");
    let (_listening, notifications) = count_notifications(&url).await;
    let with_emit = throughput(&url, WITH_EMIT, seconds).await;
    let notified = notifications.load(Ordering::Relaxed);
    eprintln!("producer: {CLIENTS} clients, inserts into a tracked table, {seconds} s");
    let tracked = throughput(&url, TRACKED, seconds).await;
    worker.stop();
    vec![
        Figure::new(SCENARIO, "plain insert, 16 clients", plain, "tx/s"),
        Figure::new(SCENARIO, "insert + emit, 16 clients", with_emit, "tx/s"),
        Figure::new(SCENARIO, "plain / with emit", plain / with_emit, "x").at_most(1.2),
        Figure::new(
            SCENARIO,
            "insert into tracked table, 16 clients",
            tracked,
            "tx/s",
        ),
        Figure::new(SCENARIO, "plain / tracked", plain / tracked, "x"),
        Figure::new(
            SCENARIO,
            "insert + bare second row (floor), 16 clients",
            second_row,
            "tx/s",
        ),
        Figure::new(SCENARIO, "plain / bare second row", plain / second_row, "x"),
        Figure::new(
            SCENARIO,
            "notifying commits per 1000 (with emit)",
            notified as f64 * 1000.0 / (with_emit * (seconds + 1) as f64),
            "per 1000",
        ),
    ]
}
