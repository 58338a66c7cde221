//! Three worker processes on one database: no delivery is attempted by two at once, and each
//! is delivered exactly once.

use std::time::{Duration, Instant};

use super::{chaos, receipts, WorkerProcess};
use crate::support::{Receiver, TestDb};

const SECRET: &str = "workers-test-secret-0123456789";
const ENDPOINTS: i64 = 10;

/// Endpoint k takes the events named tenant.k, so each of the `events` events matches
/// exactly one endpoint.
async fn tenants(db: &TestDb, receiver: &Receiver, events: i64) {
    for k in 0..ENDPOINTS {
        let id = db
            .endpoint(&format!("ep{k}"), &receiver.url(&format!("/ep{k}")), SECRET)
            .await;
        db.client
            .execute(
                "UPDATE hookrelay.endpoints SET max_in_flight = 32, events = ARRAY[$2::text]
                 WHERE id = $1",
                &[&id, &format!("tenant.{k}")],
            )
            .await
            .unwrap();
    }
    db.client
        .execute(
            "INSERT INTO hookrelay.events (event, object)
             SELECT 'tenant.' || (i % $2::bigint), jsonb_build_object('id', i)
             FROM generate_series(1, $1::bigint) i",
            &[&events, &ENDPOINTS],
        )
        .await
        .unwrap();
}

/// Each delivery was attempted once, by one worker, and no two attempts of one delivery
/// overlap in time.
async fn assert_one_attempt_each_never_overlapping(db: &TestDb, events: i64) {
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.attempts").await,
        events
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM (SELECT delivery_id FROM hookrelay.attempts
                                   GROUP BY delivery_id HAVING count(*) <> 1) x"
        )
        .await,
        0,
        "exactly one attempt per delivery"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.attempts a
             JOIN hookrelay.attempts b ON b.delivery_id = a.delivery_id AND b.id > a.id
             WHERE tstzrange(a.started_at, a.started_at + a.duration_ms * interval '1 ms', '[]')
                && tstzrange(b.started_at, b.started_at + b.duration_ms * interval '1 ms', '[]')"
        )
        .await,
        0,
        "no delivery attempted by two workers at once"
    );
}

/// Each worker's number of attempts; all three took part.
async fn worker_shares(db: &TestDb) -> Vec<(String, i64)> {
    let shares = db
        .client
        .query(
            "SELECT worker, count(*) FROM hookrelay.attempts GROUP BY worker ORDER BY worker",
            &[],
        )
        .await
        .unwrap();
    let shares: Vec<(String, i64)> = shares.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(shares.len(), 3, "all three workers took part: {shares:?}");

    shares
}

/// The receiver saw each (event, endpoint) once, at the endpoint its name selects.
fn assert_received_once_at_its_endpoint(receiver: &Receiver, events: i64) {
    let requests = receiver.requests();
    let seen = receipts(&requests);
    assert_eq!(seen.len() as i64, events);
    assert!(seen.values().all(|&n| n == 1), "no delivery sent twice");
    for r in &requests {
        let event = r.header("x-webhook-event");
        let k = event.strip_prefix("tenant.").unwrap();
        assert_eq!(
            r.path,
            format!("/ep{k}"),
            "{event} went to its own endpoint"
        );
    }
}

#[tokio::test]
async fn three_workers_share_one_database_and_deliver_each_delivery_once() {
    let events = chaos("WORKER_EVENTS", 20_000) as i64;
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    tenants(&db, &receiver, events).await;
    let started = Instant::now();
    let flags = [
        "--poll-interval",
        "200ms",
        "--batch-size",
        "100",
        "--concurrency",
        "64",
    ];
    let workers: Vec<WorkerProcess> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| WorkerProcess::spawn(&db.url, name, &flags))
        .collect();
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            events,
            Duration::from_secs(60 + events as u64 / 200),
        )
        .await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for worker in workers {
        worker.terminate();
    }
    assert_eq!(delivered, events);

    assert_one_attempt_each_never_overlapping(&db, events).await;
    let shares = worker_shares(&db).await;
    assert_received_once_at_its_endpoint(&receiver, events);
    println!(
        "workers: {events} events across {ENDPOINTS} endpoints delivered once each by 3 \
         workers {shares:?} in {:.1} s, 0 duplicates",
        elapsed.as_secs_f64()
    );
}
