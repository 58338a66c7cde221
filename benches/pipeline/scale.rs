//! Scale-out: the same 100k burn-down (one endpoint) drained by 1, 2 and 4 worker processes on
//! one database, with PostgreSQL's CPU per delivery, so a deployment can be sized.
//!
//! PostgreSQL's CPU is read from /proc: the postmaster's own time, the time of its children
//! that ended (which the postmaster collected), and the time of those still running, so
//! backends, autovacuum and the WAL writer all count. It needs the server on this machine;
//! with a `DATABASE_URL` elsewhere the CPU figures are NaN.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::burn::{concurrency, OBJECT, SINK_MAX_IN_FLIGHT};
use crate::{wait_count, Bench, Figure, Worker};

const SCENARIO: &str = "scale-out";

/// Ticks of CPU (user and system) in fields 14-17 of /proc/PID/stat: own, then children's
/// that ended. `with_children`: add the ended children's.
fn ticks(pid: u32, with_children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with the state (field 3).
    let fields: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let own = fields.get(11)? + fields.get(12)?;
    Some(if with_children {
        own + fields.get(13)? + fields.get(14)?
    } else {
        own
    })
}

/// The postmaster: the parent of this session's backend.
async fn postmaster(client: &Client) -> Option<u32> {
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?
        .get(0);
    let stat = std::fs::read_to_string(format!("/proc/{backend}/stat")).ok()?;
    // Field 4, the parent's pid, is the second after the command name.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Seconds of CPU PostgreSQL has used so far (see the module's note).
fn postgres_cpu(postmaster: u32) -> Option<f64> {
    let children = std::fs::read_dir(format!("/proc/{postmaster}/task"))
        .ok()?
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|pid| ticks(pid, false))
        .sum::<u64>();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some((ticks(postmaster, true)? + children) as f64 / hz as f64)
}

struct Drained {
    per_second: f64,
    /// PostgreSQL CPU per delivery, µs.
    cpu_us: f64,
}

async fn drain(b: &Bench, events: i64, workers: usize) -> Drained {
    let (url, client) = b.database().await;
    client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, max_in_flight)
             VALUES ('sink', $1, 'bench-secret-0123456789', $2)",
            &[&format!("{}/0", b.sink.url()), &(SINK_MAX_IN_FLIGHT as i32)],
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object)
             SELECT 'order.paid', 'store.Order', {OBJECT} FROM generate_series(1, {events}) i"
        ))
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE hookrelay.events")
        .await
        .unwrap();
    let pm = postmaster(&client).await;
    // Let the checkpoint and autovacuum the backlog set off settle before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.sink.reset();
    let cpu_before = pm.and_then(postgres_cpu);
    let started = Instant::now();
    let concurrency = concurrency().to_string();
    let running: Vec<Worker> = (0..workers)
        .map(|_| Worker::start(&url, &["--concurrency", &concurrency]))
        .collect();
    let done = wait_count(
        &client,
        "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
        events,
        Duration::from_secs(600),
    )
    .await
    .expect("every delivery delivered");
    let cpu_after = pm.and_then(postgres_cpu);
    for worker in running {
        worker.stop();
    }
    let cpu_us = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => (after - before) * 1e6 / events as f64,
        _ => f64::NAN,
    };
    Drained {
        per_second: events as f64 / (done - started).as_secs_f64(),
        cpu_us,
    }
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let events = if b.quick { 20_000 } else { 100_000 };
    let mut figures = Vec::new();
    for workers in [1, 2, 4] {
        eprintln!("scale-out: {events} events x 1 endpoint, {workers} worker processes");
        let drained = drain(b, events, workers).await;
        figures.push(Figure::new(
            SCENARIO,
            format!("{events} events, {workers} workers"),
            drained.per_second,
            "deliv/s",
        ));
        figures.push(Figure::new(
            SCENARIO,
            format!("PostgreSQL CPU per delivery, {workers} workers"),
            drained.cpu_us,
            "µs",
        ));
    }
    figures
}
