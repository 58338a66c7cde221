//! History that scales: 20 M rows of finished history (events, deliveries, attempts in equal
//! parts) spread over ten past days, written with SQL, then retention of those days: five by
//! partition drop (hookrelay.retire_history_day, what the worker does since 0030) and five the
//! old way (the DELETE-based sweep, prune_events.sql windows over every partition), each with
//! its time and the WAL it wrote. Before that, the claims' cost with that history beside an
//! empty database (the cost-growth scenario's measurement).
//!
//! Not run by `--quick` (writing the history takes minutes); `HOOKRELAY_BENCH_HISTORY_ROWS`
//! sets another size.

use std::time::Instant;

use tokio_postgres::Client;

use crate::growth::{claims_at, empty_claim_cost, ClaimCost};
use crate::{Bench, Figure};

const SCENARIO: &str = "history";
const PRUNE_EVENTS: &str = include_str!("../../sql/queries/prune_events.sql");
/// Past days holding the history: the oldest DAYS / 2 are dropped, the others deleted.
const DAYS: i32 = 10;
/// The first of them, in days before today.
const NEWEST: i32 = 11;

fn rows_wanted() -> i64 {
    std::env::var("HOOKRELAY_BENCH_HISTORY_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000)
}

/// Writes `events` finished events of the day `ago` days before today (UTC), spread over the
/// day, with a delivered delivery and an attempt each, into the day's own partitions.
async fn write_day(client: &Client, endpoint: i64, ago: i32, events: i64) {
    let suffix: String = client
        .query_one(
            "SELECT 'p' || to_char((now() AT TIME ZONE 'UTC')::date - $1::int, 'YYYYMMDD')",
            &[&ago],
        )
        .await
        .unwrap()
        .get(0);
    let day = format!("((now() AT TIME ZONE 'UTC')::date - {ago})");
    client
        .batch_execute(&format!(
            "SELECT hookrelay.attach_history_range({day}::timestamp AT TIME ZONE 'UTC',
                                                   ({day} + 1)::timestamp AT TIME ZONE 'UTC',
                                                   '{suffix}');
             INSERT INTO hookrelay.events
                 (id, event, model, object_id, object, created_at, fanned_out_at)
             SELECT overlay(gen_random_uuid()::text
                            PLACING left(hookrelay.id_floor(g.t)::text, 13) FROM 1 FOR 13)::uuid,
                    'order.paid', 'store.Order', g.i::text,
                    jsonb_build_object('id', g.i::text, 'total', '150.00', 'status', 'PAID'),
                    g.t, g.t
             FROM (SELECT i, {day}::timestamp AT TIME ZONE 'UTC'
                             + (i * 86399.0 / {events}) * interval '1 second' AS t
                   FROM generate_series(1, {events}) i) g;
             INSERT INTO hookrelay.deliveries
                 (event_id, endpoint_id, state, attempts, next_attempt_at, delivered_at,
                  last_status, created_at)
             SELECT id, {endpoint}, 'delivered', 1, NULL, created_at, 200, created_at
             FROM hookrelay.events_{suffix};
             INSERT INTO hookrelay.attempts
                 (delivery_id, event_id, attempt, started_at, duration_ms, status)
             SELECT id, event_id, 1, created_at, 3, 200 FROM hookrelay.deliveries_{suffix};"
        ))
        .await
        .unwrap();
}

/// A database with `rows` rows of history over DAYS past days; returns its URL and client.
async fn database_with_history(b: &Bench, rows: i64) -> (String, Client) {
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
    let started = Instant::now();
    let per_day = rows / 3 / DAYS as i64;
    for ago in NEWEST..NEWEST + DAYS {
        write_day(&client, endpoint, ago, per_day).await;
    }
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    eprintln!(
        "  {} rows of history over {DAYS} days written in {:.0} s",
        per_day * 3 * DAYS as i64,
        started.elapsed().as_secs_f64()
    );
    (url, client)
}

/// What one way of retention cost.
struct Retired {
    seconds: f64,
    wal_bytes: f64,
    events: i64,
}

/// Runs `retire` after a checkpoint (so both ways start with clean pages) and measures it.
async fn measured<F: std::future::Future<Output = i64>>(client: &Client, retire: F) -> Retired {
    client.batch_execute("CHECKPOINT").await.unwrap();
    let before: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let started = Instant::now();
    let events = retire.await;
    let seconds = started.elapsed().as_secs_f64();
    let wal_bytes: f64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
            &[&before],
        )
        .await
        .unwrap()
        .get(0);
    Retired {
        seconds,
        wal_bytes,
        events,
    }
}

/// Partition drop of every day older than `keep_days`; returns the events they held. A day
/// found busy (its locks not had within the function's lock_timeout: autovacuum on a day just
/// written) is tried again shortly, as the worker's retention tries again at its next round.
async fn drop_days(client: &Client, keep_days: i32) -> i64 {
    let (mut events, mut busy) = (0, 0);
    loop {
        let rows = client
            .query(
                "SELECT outcome, rows_estimate FROM hookrelay.retire_history_day(
                     make_interval(days => $1), make_interval(days => $1), 10000)",
                &[&keep_days],
            )
            .await
            .unwrap();
        let outcome = rows.last().map(|row| row.get::<_, String>(0));
        match outcome.as_deref() {
            Some("dropped") => events += rows.last().unwrap().get::<_, Option<i64>>(1).unwrap_or(0),
            Some("busy") if busy < 600 => {
                busy += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => {
                if busy > 0 || other.is_some() {
                    eprintln!("  partition drop: {busy} busy tries, stopped at {other:?}");
                }
                return events;
            }
        }
    }
}

/// The DELETE-based sweep (before 0030, over every partition) of events older than
/// `keep_days`, window after window as the worker ran it; returns the events deleted.
async fn delete_days(client: &Client, keep_days: i32) -> i64 {
    let sql = PRUNE_EVENTS.replace("FROM hookrelay.events_default e", "FROM hookrelay.events e");
    let statement = client.prepare(&sql).await.unwrap();
    let keep = keep_days as f64 * 86_400.0;
    let (mut cursor, mut deleted) = (uuid::Uuid::nil(), 0);
    loop {
        let row = client
            .query_one(&statement, &[&cursor, &1000i64, &keep, &keep])
            .await
            .unwrap();
        deleted += row.get::<_, i64>(3);
        let last: Option<uuid::Uuid> = row.get(0);
        match last {
            Some(last) if row.get::<_, i64>(1) == 1000 && !row.get::<_, bool>(2) => cursor = last,
            _ => return deleted,
        }
    }
}

pub async fn run(b: &Bench) -> Vec<Figure> {
    let rows = rows_wanted();
    let events = crate::growth::claimed_events(b);
    eprintln!("history: claims with an empty history");
    let empty = empty_claim_cost(b).await;
    eprintln!("history: {rows} rows of history over {DAYS} days");
    let (url, client) = database_with_history(b, rows).await;
    client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (event, model, object)
             SELECT 'order.paid', 'store.Order', jsonb_build_object('id', i::text)
             FROM generate_series(1, {events}) i;
             ANALYZE hookrelay.events;
             CHECKPOINT;"
        ))
        .await
        .unwrap();
    eprintln!("history: claims with that history");
    let full = claims_at(&url).await;
    // Retention runs in a worker session (its planner settings), as the worker runs it.
    let pool = hookrelay::db::pool(&url, 1).unwrap().pool;
    let worker = pool.get().await.unwrap();
    // The oldest half of the days by partition drop, then the other half the old way.
    eprintln!("history: retention of {} days by partition drop", DAYS / 2);
    let dropped = measured(&client, drop_days(&worker, NEWEST + DAYS / 2 - 1)).await;
    eprintln!("history: retention of {} days by DELETE", DAYS / 2);
    let deleted = measured(&client, delete_days(&worker, NEWEST - 1)).await;
    eprintln!(
        "  dropped {} events in {:.2} s, deleted {} in {:.1} s",
        dropped.events, dropped.seconds, deleted.events, deleted.seconds
    );
    figures(
        rows,
        &Measured {
            dropped,
            deleted,
            empty,
            full,
        },
    )
}

/// What the scenario measured.
struct Measured {
    dropped: Retired,
    deleted: Retired,
    empty: ClaimCost,
    full: ClaimCost,
}

fn figures(rows: i64, m: &Measured) -> Vec<Figure> {
    let (dropped, deleted, empty, full) = (&m.dropped, &m.deleted, &m.empty, &m.full);
    let label = format!("{:.0} M rows", rows as f64 / 1e6);
    let half = format!("{} days, {:.1} M rows", DAYS / 2, rows as f64 / 2e6);
    vec![
        Figure::new(
            SCENARIO,
            format!("retention of {half}: DELETE sweep"),
            deleted.seconds,
            "s",
        ),
        Figure::new(
            SCENARIO,
            format!("retention of {half}: partition drop"),
            dropped.seconds,
            "s",
        ),
        Figure::new(
            SCENARIO,
            "WAL written: DELETE sweep",
            deleted.wal_bytes / 1e6,
            "MB",
        ),
        Figure::new(
            SCENARIO,
            "WAL written: partition drop",
            dropped.wal_bytes / 1e6,
            "MB",
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
        .at_most(1.2),
        Figure::new(SCENARIO, format!("due claim, {label}"), full.due_ms, "ms"),
        Figure::new(
            SCENARIO,
            "due claim, history / none",
            full.due_ms / empty.due_ms,
            "x",
        )
        .at_most(1.2),
    ]
}
