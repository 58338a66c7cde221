//! Migration 0030 on a database that holds history: every row survives with every value, in the
//! partition of its day, and the work it holds goes on.

use std::time::Duration;

use hookrelay::admin::migrate::{self, MIGRATIONS};

use super::{every_row, history, labels, placement, receiving};
use crate::support::{connect, TestDb};

/// A database at schema 0028, as an installation before partitioning has it.
async fn database_at_0028() -> TestDb {
    let db = TestDb::empty().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA hookrelay;
             CREATE TABLE hookrelay.schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .unwrap();
    for m in MIGRATIONS.iter().take_while(|m| m.version <= 28) {
        db.client.batch_execute(m.sql).await.unwrap();
        db.client
            .execute(
                "INSERT INTO hookrelay.schema_migrations (version, name, checksum)
                 VALUES ($1, $2, 'applied by the test')",
                &[&m.version, &m.name],
            )
            .await
            .unwrap();
    }
    db
}

/// Work of every kind: not fanned out, pending, dead (young and old), delivered (old and
/// recent), each delivery with an attempt.
const HISTORY: &[(&str, &str, Option<&str>)] = &[
    ("unfanned", "1 minute", None),
    ("pending", "1 hour", Some("pending")),
    ("dead_young", "2 days", Some("dead")),
    ("dead_old", "40 days", Some("dead")),
    ("delivered_old", "100 days", Some("delivered")),
    ("delivered_recent", "1 hour", Some("delivered")),
];

/// Each event is in its day's partition (history older than 60 days in the shared one), and
/// each attempt carries its delivery's event.
async fn assert_placed(db: &TestDb) {
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.attempts a
             JOIN hookrelay.deliveries d ON d.id = a.delivery_id AND d.event_id = a.event_id"
        )
        .await,
        5,
        "each attempt carries its delivery's event"
    );
    let oldest = placement(db, "delivered_old").await;
    assert!(oldest.starts_with("hookrelay.events_before_"), "{oldest}");
    for (label, _, _) in HISTORY.iter().filter(|(l, _, _)| *l != "delivered_old") {
        let partition = placement(db, label).await;
        assert!(
            partition.starts_with("hookrelay.events_p"),
            "{label}: {partition}"
        );
    }
}

/// The pending delivery and the event not fanned out were delivered, after the copied
/// attempts and with delivery ids after the copied ones.
async fn assert_work_went_on(db: &TestDb) {
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id
             WHERE e.object ->> 'id' IN ('pending', 'unfanned') AND d.state = 'delivered'"
        )
        .await,
        2
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.attempts a JOIN hookrelay.events e ON e.id = a.event_id
             WHERE e.object ->> 'id' = 'pending'"
        )
        .await,
        2,
        "the pending delivery's old attempt and its new one"
    );
    assert_eq!(
        db.count(
            "SELECT (min(d.id) FILTER (WHERE e.object ->> 'id' = 'unfanned')
                     > max(d.id) FILTER (WHERE e.object ->> 'id' <> 'unfanned'))::int::bigint
             FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id"
        )
        .await,
        1,
        "delivery ids continue after the copied ones"
    );
}

#[tokio::test]
async fn upgrading_a_populated_database_keeps_every_row_and_its_work_goes_on() {
    let db = database_at_0028().await;
    let receiver = receiving(&db).await;
    db.client
        .batch_execute(&history(HISTORY, false))
        .await
        .unwrap();
    let before = every_row(&db).await;

    let mut client = connect(&db.url).await;
    migrate::migrate(&mut client).await.expect("migrate");

    assert_eq!(every_row(&db).await, before, "every row keeps every value");
    assert_placed(&db).await;
    let worker = db.start_worker(db.config());
    let received = receiver.wait_for(2, Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!(
        labels(&received),
        ["pending", "unfanned"],
        "the pending work is delivered"
    );
    assert_work_went_on(&db).await;
}
