//! Isolation: a hanging endpoint holds at most its max_in_flight of the worker's slots, so a
//! healthy endpoint beside it finishes about as fast as alone; max_in_flight and rate_limit
//! hold across worker processes; no transaction stays open while requests are in flight.

use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use hookrelay::config::WorkerConfig;

use crate::protect_policy::serve;
use crate::signing_cli::text;
use crate::support::{self, hookrelay, TestDb};

const SECRET: &str = "test-secret-0123456789";

/// What a tracked receiver saw: when each request arrived, and the most it held at once.
#[derive(Default)]
struct Seen {
    arrivals: Mutex<Vec<Instant>>,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

/// Counts a request as open until dropped (also when the client gives up and the handler is
/// cancelled).
struct Open(Arc<Seen>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A receiver that answers 200 after `delay`, recording what it saw.
async fn tracked(delay: Duration) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let app = axum::Router::new().fallback(post(move || {
        let seen = state.clone();
        async move {
            seen.arrivals.lock().unwrap().push(Instant::now());
            let now = seen.open.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_open.fetch_max(now, Ordering::SeqCst);
            let _open = Open(seen.clone());
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
    }));
    (serve(app).await, seen)
}

const EVENTS: i64 = 240;

/// An endpoint's max_in_flight when it sets none (migration 0033), which the hanging one keeps.
const DEFAULT_CAP: i64 = 16;

/// Sessions of hookrelay's worker that sit inside a transaction without running a statement:
/// what holding a lock across a network wait would look like.
async fn idle_in_transaction(db: &TestDb) -> i64 {
    db.count(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'hookrelay'
           AND state LIKE 'idle in transaction%'",
    )
    .await
}

/// A healthy receiver (50 ms per request) with room for 24 at once, and, if asked, a
/// hanging one (30 s) beside it; returns what the hanging one saw.
async fn healthy_and_maybe_hanging(db: &TestDb, with_hanging: bool) -> Option<Arc<Seen>> {
    let (healthy, _) = tracked(Duration::from_millis(50)).await;
    db.endpoint("healthy", &format!("http://{healthy}/hooks"), SECRET)
        .await;
    // Room for 24 at once: all the slots the hanging endpoint's cap leaves free.
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET max_in_flight = 24 WHERE name = 'healthy'",
            &[],
        )
        .await
        .unwrap();
    if !with_hanging {
        return None;
    }
    let (addr, seen) = tracked(Duration::from_secs(30)).await;
    db.endpoint("hanging", &format!("http://{addr}/hooks"), SECRET)
        .await;
    Some(seen)
}

/// Polls until every healthy delivery is done; when `watch_hanging`, also sums sessions idle
/// in a transaction and tracks the most leases the hanging endpoint held. Returns both.
async fn wait_healthy_done(db: &TestDb, started: Instant, watch_hanging: bool) -> (i64, i64) {
    let mut held_open = 0;
    let mut most_leased = 0;
    loop {
        let done = db
            .count(
                "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep
                 ON ep.id = d.endpoint_id WHERE ep.name = 'healthy' AND d.state = 'delivered'",
            )
            .await;
        if watch_hanging {
            held_open += idle_in_transaction(db).await;
            most_leased = most_leased.max(
                db.count(
                    "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep
                     ON ep.id = d.endpoint_id
                     WHERE ep.name = 'hanging' AND d.locked_until > now()",
                )
                .await,
            );
        }
        if done == EVENTS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "healthy deliveries stalled at {done}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (held_open, most_leased)
}

/// The hanging endpoint held exactly its max_in_flight, its backlog is parked out of the due
/// range, and no transaction stayed open while its requests hung.
async fn assert_hanging_held_to_its_cap(
    db: &TestDb,
    seen: &Seen,
    started: Instant,
    (held_open, most_leased): (i64, i64),
) {
    // No request to it can time out (2 s) within the first 1.5 s: whatever arrived by then
    // was in flight at once.
    let early = seen
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|at| at.duration_since(started) < Duration::from_millis(1500))
        .count();
    assert_eq!(
        early, DEFAULT_CAP as usize,
        "the hanging endpoint got exactly its max_in_flight"
    );
    assert!(
        most_leased <= DEFAULT_CAP,
        "at most {DEFAULT_CAP} leases, saw {most_leased}"
    );
    // The rest of its backlog is parked out of the due range, not walked by every claim.
    let row = db
        .client
        .query_one("SELECT waiting_for_slot, due FROM hookrelay.backlog", &[])
        .await
        .unwrap();
    let (waiting, due): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        waiting >= EVENTS - 2 * DEFAULT_CAP,
        "{waiting} deliveries waiting for a slot"
    );
    assert!(due <= DEFAULT_CAP, "{due} deliveries left due");
    assert_eq!(held_open, 0, "no transaction open while requests hang");
}

/// Time until every delivery to a healthy receiver (50 ms per request) is done, with or
/// without a hanging endpoint receiving the same events.
async fn healthy_finish(with_hanging: bool) -> Duration {
    let db = TestDb::new().await;
    let hanging = healthy_and_maybe_hanging(&db, with_hanging).await;
    db.emit_many(EVENTS).await;
    let config = WorkerConfig {
        concurrency: 24 + DEFAULT_CAP as usize,
        ..db.config()
    };
    let started = Instant::now();
    let worker = db.start_worker(config);
    let watched = wait_healthy_done(&db, started, hanging.is_some()).await;
    let elapsed = started.elapsed();
    if let Some(seen) = hanging {
        assert_hanging_held_to_its_cap(&db, &seen, started, watched).await;
    }
    worker.stop().await;
    elapsed
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_slow_a_healthy_one() {
    let alone = healthy_finish(false).await;
    let beside = healthy_finish(true).await;
    println!("healthy endpoint: {alone:?} alone, {beside:?} beside a hanging one");
    assert!(
        beside < alone * 3,
        "beside a hanging endpoint the healthy one took {beside:?}, alone {alone:?}"
    );
}

/// A `hookrelay run` process with this concurrency.
fn spawn_worker(db: &TestDb, name: &str, concurrency: &str) -> Child {
    support::spawn_worker(db, name, &["--concurrency", concurrency])
}

/// SIGTERM, and a clean exit.
async fn stop(child: Child) {
    let status = support::sigterm_and_wait(child).await;
    assert!(status.success(), "exit {status}");
}

/// Runs two `hookrelay run` processes with these concurrencies until `n` events are delivered.
async fn run_two_workers(db: &TestDb, n: i64, concurrency: [&str; 2]) {
    db.emit_many(n).await;
    let a = spawn_worker(db, "worker-a", concurrency[0]);
    let b = spawn_worker(db, "worker-b", concurrency[1]);
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            n,
            Duration::from_secs(60),
        )
        .await;
    stop(a).await;
    stop(b).await;
    assert_eq!(delivered, n);
    assert_eq!(
        db.count("SELECT count(DISTINCT worker) FROM hookrelay.attempts")
            .await,
        2,
        "both workers sent requests"
    );
}

/// A receiver that holds every request until `open` is set, recording what it saw.
async fn gated(open: tokio::sync::watch::Receiver<bool>) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let app = axum::Router::new().fallback(post(move || {
        let (seen, mut open) = (state.clone(), open.clone());
        async move {
            seen.arrivals.lock().unwrap().push(Instant::now());
            let now = seen.open.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_open.fetch_max(now, Ordering::SeqCst);
            let _open = Open(seen.clone());
            let _ = tokio::time::timeout(Duration::from_secs(10), open.wait_for(|o| *o)).await;
            StatusCode::OK
        }
    }));
    (serve(app).await, seen)
}

#[tokio::test]
async fn max_in_flight_holds_across_two_worker_processes() {
    let db = TestDb::new().await;
    let (gate, open) = tokio::sync::watch::channel(false);
    let (addr, seen) = gated(open).await;
    db.endpoint("slow", &format!("http://{addr}/hooks"), SECRET)
        .await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_in_flight = 3", &[])
        .await
        .unwrap();
    db.emit_many(30).await;
    let a = spawn_worker(&db, "worker-a", "16");
    let b = spawn_worker(&db, "worker-b", "16");
    // Both workers run, each with 16 free slots, and claim every 200 ms at least; the
    // receiver holds whatever arrives.
    db.wait_count(
        "SELECT count(*) FROM hookrelay.workers",
        2,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let held = seen.arrivals.lock().unwrap().len();
    let waiting = db
        .count("SELECT waiting_for_slot FROM hookrelay.backlog")
        .await;
    gate.send(true).unwrap();
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            30,
            Duration::from_secs(60),
        )
        .await;
    stop(a).await;
    stop(b).await;
    assert_eq!(
        held, 3,
        "two workers with 16 free slots each sent only max_in_flight requests"
    );
    assert_eq!(waiting, 27, "the rest waited, parked");
    assert_eq!(delivered, 30);
    assert_eq!(
        seen.most_open.load(Ordering::SeqCst),
        3,
        "never more than max_in_flight at once"
    );
}

#[tokio::test]
async fn a_rate_limit_holds_across_two_worker_processes() {
    const RATE: f64 = 20.0;
    const N: i64 = 60;
    let db = TestDb::new().await;
    let (addr, seen) = tracked(Duration::ZERO).await;
    db.endpoint("limited", &format!("http://{addr}/hooks"), SECRET)
        .await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET rate_limit = $1", &[&RATE])
        .await
        .unwrap();
    run_two_workers(&db, N, ["16", "16"]).await;
    let arrivals = seen.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), N as usize);
    let span = arrivals[arrivals.len() - 1].duration_since(arrivals[0]);
    let rate = (arrivals.len() - 1) as f64 / span.as_secs_f64();
    println!("rate limit {RATE}/s: measured {rate:.2}/s over {span:?}");
    assert!(
        (RATE * 0.8..=RATE * 1.2).contains(&rate),
        "measured {rate:.2} requests/s for a limit of {RATE}"
    );
}

/// `endpoint add` stores and shows max_in_flight and rate_limit.
async fn assert_isolation_settings_stored_and_shown(db: &TestDb) {
    let out = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "crm",
            "--url",
            "https://crm.example.com/hooks",
            "--max-in-flight",
            "4",
            "--rate-limit",
            "2.5",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let row = db
        .client
        .query_one(
            "SELECT max_in_flight, rate_limit FROM hookrelay.endpoints WHERE name = 'crm'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, Option<f64>>(1)),
        (4, Some(2.5))
    );
    let shown = text(&hookrelay(db, &["endpoint", "show", "crm"]));
    assert!(
        shown.contains("max in flight: 4") && shown.contains("rate limit: 2.5 requests/s"),
        "{shown}"
    );
}

/// Out-of-range settings are refused with the range, from the command line and from SQL,
/// with nothing half-written.
async fn assert_bad_settings_refused(db: &TestDb) {
    let out = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "fast",
            "--url",
            "https://fast.example.com/hooks",
            "--rate-limit",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(
        err.contains("rate_limit 0 is out of range") && err.contains("0.001 to 100000"),
        "{err}"
    );
    let out = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "fast",
            "--url",
            "https://fast.example.com/hooks",
            "--max-in-flight",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("1..=10000"), "{}", text(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        1,
        "nothing half-written"
    );

    // SQL writers get the same checks.
    let err = db
        .client
        .execute("UPDATE hookrelay.endpoints SET max_in_flight = 50000", &[])
        .await
        .unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert!(db_err
        .message()
        .contains("max_in_flight 50000 is out of range"));
    assert!(db_err.hint().unwrap().contains("1 to 10000"));
}

/// Disabling records a reason; enabling says it and clears it.
fn assert_disable_records_a_reason_enable_clears_it(db: &TestDb) {
    let out = hookrelay(db, &["endpoint", "disable", "crm"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&hookrelay(db, &["endpoint", "show", "crm"]));
    assert!(
        shown.contains("disabled since") && shown.contains("disabled by an operator"),
        "{shown}"
    );
    let out = hookrelay(db, &["endpoint", "enable", "crm"]);
    assert!(
        text(&out).contains("it was disabled: disabled by an operator"),
        "{}",
        text(&out)
    );
    let out = hookrelay(db, &["endpoint", "enable", "crm"]);
    assert!(text(&out).contains("already enabled"), "{}", text(&out));
}

#[tokio::test]
async fn endpoint_add_takes_isolation_settings_and_refuses_bad_ones_with_the_fix() {
    let db = TestDb::new().await;
    assert_isolation_settings_stored_and_shown(&db).await;
    assert_bad_settings_refused(&db).await;
    assert_disable_records_a_reason_enable_clears_it(&db);
}

/// A finished request frees its endpoint's slot before its result is written: with the
/// results held back (a lock on the table they update), an endpoint with max_in_flight 2
/// still receives every event, never more than two at once. Before, a slot stayed taken
/// until the result's commit and the claim after it.
#[tokio::test]
async fn a_finished_request_frees_its_slot_before_its_result_is_written() {
    const N: i64 = 20;
    let db = TestDb::new().await;
    let (addr, seen) = tracked(Duration::ZERO).await;
    db.endpoint("capped", &format!("http://{addr}/hooks"), SECRET)
        .await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_in_flight = 2", &[])
        .await
        .unwrap();
    let blocker = support::connect(&db.url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE hookrelay.endpoint_stats IN EXCLUSIVE MODE")
        .await
        .unwrap();
    db.emit_many(N).await;
    let worker = support::spawn_worker(&db, "worker-a", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (seen.arrivals.lock().unwrap().len() as i64) < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = seen.arrivals.lock().unwrap().len() as i64;
    let written = db.count("SELECT count(*) FROM hookrelay.attempts").await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            N,
            Duration::from_secs(30),
        )
        .await;
    stop(worker).await;
    assert_eq!(
        arrived, N,
        "every event was sent while no result could be written"
    );
    assert_eq!(written, 0, "the results were held back meanwhile");
    assert_eq!(delivered, N);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.attempts WHERE status = 200")
            .await,
        N
    );
    assert!(
        seen.most_open.load(Ordering::SeqCst) <= 2,
        "never more than max_in_flight at once"
    );
}
