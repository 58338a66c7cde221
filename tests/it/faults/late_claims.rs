//! A claim that reaches the database long after it was sent (its connection held by a stuck
//! proxy, then let through) takes nothing once the time it had to start by has passed: its
//! worker gave up on the connection and gave back its leases before it ran, so what it leased
//! would wait for the lease to run out (see src/pipeline/worker/clock.rs).

use std::time::{Duration, SystemTime};

use hookrelay::db;
use hookrelay::pipeline::claim::{self, Lease, Scan};

use super::relay::Relay;
use crate::support::{socket_of, TestDb};

const EVENTS: i64 = 5;

/// Sends a fan-out claim that must start within `start_within` over a connection the relay
/// holds, lets it through after `held`, and returns what it took and the deliveries leased.
async fn late_claim(start_within: Duration, held: Duration) -> (usize, i64) {
    let db = TestDb::new().await;
    db.endpoint("crm", "http://127.0.0.1:9/crm", "late-claim-secret-0123")
        .await;
    db.emit_many(EVENTS).await;
    let relay = Relay::start(socket_of(&db.url)).await;
    let pool = db::pool(&relay.url(&db.url), 1).unwrap();
    let client = pool.pool.get().await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    relay.partition_existing();
    let mut lease = Lease::new(Duration::from_secs(60), "late-worker");
    // The test's database runs on this machine: one clock.
    lease.start_by = Some(SystemTime::now() + start_within);
    let claim = tokio::spawn(async move {
        claim::claim_new(&client, 100, Scan::FromStart, &lease)
            .await
            .map(|claimed| claimed.taken)
    });
    tokio::time::sleep(held).await;
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries").await,
        0,
        "the claim is held"
    );
    relay.heal();
    let taken = tokio::time::timeout(Duration::from_secs(10), claim)
        .await
        .expect("the claim answers once let through")
        .unwrap()
        .expect("the claim succeeds");
    let leased = db
        .count("SELECT count(*) FROM hookrelay.deliveries WHERE locked_by = 'late-worker'")
        .await;
    (taken, leased)
}

#[tokio::test]
async fn a_claim_that_starts_after_its_time_takes_nothing() {
    let (taken, leased) = late_claim(Duration::from_secs(1), Duration::from_secs(3)).await;
    assert_eq!((taken, leased), (0, 0), "nothing taken, nothing leased");
}

#[tokio::test]
async fn a_claim_held_for_less_than_its_time_takes_its_events() {
    // The same delay, within the time: the claim runs late and takes what is there.
    let (taken, leased) = late_claim(Duration::from_secs(30), Duration::from_secs(3)).await;
    assert_eq!((taken, leased), (EVENTS as usize, EVENTS));
}
