//! Producer cost: 16 clients committing one-row transactions into an application table as
//! fast as they can: plain, with an outbox event from `hookrelay.emit` in the same
//! transaction, and into a table tracked by `hookrelay.track_table` (its trigger writes the
//! event), while the worker runs (idle-waiting, so inserts take the notification path whenever
//! it is idle); and, as the floor any outbox table starts from, with a bare second row instead
//! of the event; and, as the usual alternative, graphile-worker's `add_job` (see `graphile`).
//!
//! The statements take turns in short slices, a few rounds each (order reversed every other
//! round), so load from elsewhere on the machine falls on all of them alike; each figure is
//! the total of its slices, and the rounds' spread of the main ratio is printed as a range.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{connect, wait_count, Bench, Figure, Worker};

const SCENARIO: &str = "producer";
const CLIENTS: usize = 16;

/// Transactions of `sql` run by CLIENTS connections in about `seconds`, and the seconds counted.
async fn throughput(url: &str, sql: &'static str, seconds: u64) -> (u64, f64) {
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
    (counted, elapsed)
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

/// One statement measured in turns: transactions and seconds over all its slices, and the
/// rate of each slice.
#[derive(Default)]
struct Turns {
    done: u64,
    seconds: f64,
    rates: Vec<f64>,
    /// Notifications on the worker's channel during these slices.
    notified: u64,
}

impl Turns {
    fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }
}

/// The application's tables: plain, tracked, and a bare outbox of its own.
async fn create_tables(client: &tokio_postgres::Client) {
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
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let (rounds, seconds) = if b.quick { (2, 2) } else { (3, 4) };
    let (url, client) = b.database().await;
    create_tables(&client).await;
    let mut statements = vec![
        ("plain", PLAIN),
        ("bare second row", SECOND_ROW),
        ("emit", WITH_EMIT),
        ("tracked", TRACKED),
    ];
    match crate::graphile::install(&url) {
        Ok(()) => statements.push(("graphile-worker add_job", crate::graphile::ADD_JOB)),
        Err(why) => eprintln!("producer: graphile-worker's add_job not measured: {why}"),
    }
    // The worker runs with no endpoints: it claims and fans out, and goes idle when it can.
    let worker = Worker::start(&url, &[]);
    wait_count(
        &client,
        "SELECT count(*) FROM hookrelay.workers WHERE waiting",
        1,
        Duration::from_secs(30),
    )
    .await
    .expect("the worker goes idle");
    let (_listening, notifications) = count_notifications(&url).await;
    let mut turns: Vec<Turns> = statements.iter().map(|_| Turns::default()).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..statements.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, sql) = statements[i];
            eprintln!(
                "producer: round {}, {CLIENTS} clients, {name}, {seconds} s",
                round + 1
            );
            let before = notifications.load(Ordering::Relaxed);
            let (done, elapsed) = throughput(&url, sql, seconds).await;
            let t = &mut turns[i];
            t.done += done;
            t.seconds += elapsed;
            t.rates.push(done as f64 / elapsed);
            t.notified += notifications.load(Ordering::Relaxed) - before;
        }
    }
    worker.stop();
    figures(&statements, &turns)
}

fn figures(statements: &[(&'static str, &'static str)], turns: &[Turns]) -> Vec<Figure> {
    let plain = &turns[0];
    let (second_row, emit, tracked) = (&turns[1], &turns[2], &turns[3]);
    let mut out = emit_cost(plain, emit);
    out.extend(beside_emit(plain, tracked, second_row));
    out.push(Figure::new(
        SCENARIO,
        "notifying commits per 1000 (with emit)",
        // Each slice runs a second of warm-up before it counts.
        emit.notified as f64 * 1000.0 / (emit.rate() * (emit.seconds + emit.rates.len() as f64)),
        "per 1000",
    ));
    if let Some(add_job) = turns.get(4).filter(|_| statements.len() > 4) {
        out.push(Figure::new(
            SCENARIO,
            "insert + graphile-worker add_job, 16 clients",
            add_job.rate(),
            "tx/s",
        ));
        out.push(Figure::new(
            SCENARIO,
            "plain / graphile-worker add_job",
            plain.rate() / add_job.rate(),
            "x",
        ));
    }
    out
}

/// What emit costs a plain insert: overall and in the lowest and highest round.
fn emit_cost(plain: &Turns, emit: &Turns) -> Vec<Figure> {
    let per_round: Vec<f64> = (0..plain.rates.len())
        .map(|r| plain.rates[r] / emit.rates[r])
        .collect();
    let lowest = per_round.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = per_round.iter().copied().fold(0.0, f64::max);
    vec![
        Figure::new(SCENARIO, "plain insert, 16 clients", plain.rate(), "tx/s"),
        Figure::new(SCENARIO, "insert + emit, 16 clients", emit.rate(), "tx/s"),
        Figure::new(
            SCENARIO,
            "plain / with emit",
            plain.rate() / emit.rate(),
            "x",
        )
        .at_most(1.5),
        Figure::new(SCENARIO, "plain / with emit, lowest round", lowest, "x"),
        Figure::new(SCENARIO, "plain / with emit, highest round", highest, "x"),
    ]
}

/// The costs to compare emit with: a tracked table, and a bare second row (the floor).
fn beside_emit(plain: &Turns, tracked: &Turns, second_row: &Turns) -> Vec<Figure> {
    vec![
        Figure::new(
            SCENARIO,
            "insert into tracked table, 16 clients",
            tracked.rate(),
            "tx/s",
        ),
        Figure::new(
            SCENARIO,
            "plain / tracked",
            plain.rate() / tracked.rate(),
            "x",
        ),
        Figure::new(
            SCENARIO,
            "insert + bare second row (floor), 16 clients",
            second_row.rate(),
            "tx/s",
        ),
        Figure::new(
            SCENARIO,
            "plain / bare second row",
            plain.rate() / second_row.rate(),
            "x",
        ),
    ]
}
