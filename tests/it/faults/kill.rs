//! A worker killed with SIGKILL at random moments during a burn-down, again and again, loses
//! nothing; only requests in flight at a kill are sent twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{chaos, duplicates_only_after_expired_leases, receipts, Rng, WorkerProcess};
use crate::support::{Receiver, Reply, TestDb};

const SECRET: &str = "kill-test-secret-0123456789";

/// Short leases so deliveries of a killed worker come back quickly; more attempts than kills
/// can use up; a short shutdown for the final clean stop.
const FLAGS: [&str; 16] = [
    "--lease",
    "2s",
    "--request-timeout",
    "1s",
    "--retry-schedule",
    "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
    "--poll-interval",
    "200ms",
    "--concurrency",
    "64",
    "--batch-size",
    "100",
    "--shutdown-timeout",
    "2s",
    "--retention-interval",
    "1h",
];

async fn delivered(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'")
        .await
}

/// `all` takes every event, `paid` only order.paid; `events` events, half of them paid. A
/// little time per request, so requests are in flight at every kill.
async fn two_endpoints_and_events(db: &TestDb, events: i64) -> Receiver {
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(10),
    })
    .await;
    db.endpoint("all", &receiver.url("/all"), SECRET).await;
    db.endpoint("paid", &receiver.url("/paid"), SECRET).await;
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoints SET max_in_flight = 64;
             UPDATE hookrelay.endpoints SET events = '{order.paid}' WHERE name = 'paid'",
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO hookrelay.events (event, object)
             SELECT CASE WHEN i % 2 = 0 THEN 'order.paid' ELSE 'order.created' END,
                    jsonb_build_object('id', i)
             FROM generate_series(1, $1::bigint) i",
            &[&events],
        )
        .await
        .unwrap();
    receiver
}

/// Starts a worker and SIGKILLs it at a random moment, `kills` times; returns how many kills
/// hit a worker with work left.
async fn kill_again_and_again(db: &TestDb, kills: u64, rng: &mut Rng, total: i64) -> u64 {
    let mut survived = 0;
    for round in 0..kills {
        let worker = WorkerProcess::spawn(&db.url, &format!("victim-{round}"), &FLAGS);
        tokio::time::sleep(Duration::from_millis(rng.between(100, 800))).await;
        let before = delivered(db).await;
        worker.kill();
        if before < total {
            survived += 1;
        }
    }
    survived
}

/// Every event reached the endpoint for all events, every order.paid reached its own, and
/// only real event ids were sent.
async fn assert_every_event_reached_its_endpoints(
    db: &TestDb,
    seen: &HashMap<(String, String), usize>,
    events: i64,
    paid: i64,
) {
    let all = seen.keys().filter(|(path, _)| path == "/all").count() as i64;
    let paid_seen = seen.keys().filter(|(path, _)| path == "/paid").count() as i64;
    assert_eq!(
        all, events,
        "every event reached the endpoint for all events"
    );
    assert_eq!(paid_seen, paid, "every order.paid reached its endpoint");
    let ids: std::collections::HashSet<String> = db
        .client
        .query("SELECT 'evt_' || id::text FROM hookrelay.events", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        seen.keys().all(|(_, id)| ids.contains(id)),
        "only real event ids were sent"
    );
}

#[tokio::test]
async fn a_worker_killed_again_and_again_during_a_burn_down_loses_nothing() {
    let events = chaos("EVENTS", 10_000) as i64;
    let kills = chaos("KILLS", 5);
    let mut rng = Rng::from_env("kill");
    let db = TestDb::new().await;
    let receiver = two_endpoints_and_events(&db, events).await;
    let paid = events / 2;
    let total = events + paid;

    let started = Instant::now();
    let survived = kill_again_and_again(&db, kills, &mut rng, total).await;
    let at_last_kill = delivered(&db).await;
    let rescuer = WorkerProcess::spawn(&db.url, "rescuer", &FLAGS);
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            total,
            Duration::from_secs(60 + events as u64 / 200),
        )
        .await;
    let log = rescuer.terminate();
    assert_eq!(done, total, "every delivery ends delivered:\n{log}");
    assert_eq!(
        survived, kills,
        "every kill hit a worker with work left (delivered {at_last_kill} of {total} at the \
         last kill): slow the receiver down if this fails"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries").await,
        total,
        "one delivery per event and matching endpoint"
    );

    let seen = receipts(&receiver.requests());
    assert_every_event_reached_its_endpoints(&db, &seen, events, paid).await;
    let expired = db
        .count("SELECT count(*) FROM hookrelay.attempts WHERE error_code = 'lease_expired'")
        .await;
    let duplicates = duplicates_only_after_expired_leases(&db, &seen).await;
    println!(
        "kill: {survived} kills survived, {events} events and {total} deliveries checked, \
         {duplicates} duplicates (of {expired} leases expired at a kill), {at_last_kill} delivered \
         before the rescuer started, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
