//! Retention by partition: a day past the retention is dropped whole, the work retention keeps
//! is moved to the DEFAULT partitions with every value and still goes out, a day keeping too
//! much waits whole, and the worker role can do all of it.

use std::time::Duration;

use hookrelay::metrics::Metrics;
use hookrelay::pipeline::sweep::{self, Retention};
use tokio_util::sync::CancellationToken;

use super::{every_row_of, exists, history, labels, past_day, placement, receiving, SECRET};
use crate::support::TestDb;

/// The labels of the events retention keeps in `retention_drops_…`.
const KEPT: &str = "('pending', 'dead_young', 'unfanned')";

/// One retention pass with the default retention (7 days, dead work 30), as the worker at
/// `url` runs it; returns the events the sweep deleted.
async fn one_pass(url: &str) -> i64 {
    let pool = hookrelay::db::pool(url, 2).expect("pool").pool;
    sweep::pass(
        &pool,
        &Retention::default(),
        &Metrics::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("a retention pass")
}

/// The days' three partitions are gone: dropped, not emptied by DELETE.
async fn assert_dropped(db: &TestDb, days: &[&str]) {
    for table in ["events", "deliveries", "attempts"] {
        for day in days {
            let partition = format!("{table}_{day}");
            assert!(!exists(db, &partition).await, "{partition} was dropped");
        }
    }
}

/// Only the kept events are left, in the DEFAULT partition, with their one attempt each.
async fn assert_only_kept_left(db: &TestDb) {
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.events
             WHERE object ->> 'id' IN ('delivered_a', 'delivered_b', 'dead_old')"
        )
        .await,
        0,
        "finished and old dead history is gone"
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 2);
    for label in ["pending", "dead_young", "unfanned"] {
        assert_eq!(placement(db, label).await, "hookrelay.events_default");
    }
}

/// The pending delivery, the event not fanned out and the dead one, once redelivered, go out
/// from the DEFAULT partitions.
async fn assert_kept_work_goes_out(db: &TestDb, receiver: &crate::support::Receiver) {
    db.client
        .batch_execute(
            "SELECT hookrelay.redeliver(d.id) FROM hookrelay.deliveries d WHERE d.state = 'dead'",
        )
        .await
        .unwrap();
    let worker = db.start_worker(db.config());
    let received = receiver.wait_for(3, Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!(labels(&received), ["dead_young", "pending", "unfanned"]);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.deliveries
             WHERE state = 'delivered' AND tableoid = 'hookrelay.deliveries_default'::regclass"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn retention_drops_past_days_whole_and_the_work_it_keeps_still_goes_out() {
    let db = TestDb::new().await;
    let receiver = receiving(&db).await;
    let ten = past_day(&db, 10).await;
    let forty = past_day(&db, 40).await;
    let rows = [
        ("delivered_a", "10 days", Some("delivered")),
        ("delivered_b", "10 days", Some("delivered")),
        ("pending", "10 days", Some("pending")),
        ("dead_young", "10 days", Some("dead")),
        ("unfanned", "10 days", None),
        ("dead_old", "40 days", Some("dead")),
    ];
    db.client
        .batch_execute(&history(&rows, true))
        .await
        .unwrap();
    let kept_before = every_row_of(&db, KEPT).await;
    assert!(placement(&db, "pending").await.ends_with(&ten));

    assert_eq!(one_pass(&db.url).await, 0, "the sweep deleted nothing");

    assert_dropped(&db, &[&ten, &forty]).await;
    assert_only_kept_left(&db).await;
    assert_eq!(
        every_row_of(&db, KEPT).await,
        kept_before,
        "kept work is moved with every value, its deliveries and attempts too"
    );
    assert_kept_work_goes_out(&db, &receiver).await;
}

#[tokio::test]
async fn a_day_keeping_too_much_stays_whole_and_younger_days_still_go() {
    let db = TestDb::new().await;
    db.endpoint("crm", "http://127.0.0.1:9/hooks", SECRET).await;
    let older = past_day(&db, 12).await;
    let younger = past_day(&db, 10).await;
    let rows = [
        ("pending", "12 days", Some("pending")),
        ("delivered", "10 days", Some("delivered")),
    ];
    db.client
        .batch_execute(&history(&rows, true))
        .await
        .unwrap();
    // At most 0 kept events a day: the older day, keeping one, must wait.
    let got: Vec<(String, String, i64)> = db
        .client
        .query(
            "SELECT suffix, outcome, kept
             FROM hookrelay.retire_history_day('7 days', '30 days', 0)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (older.clone(), "too many kept".to_string(), 1),
            (younger.clone(), "dropped".to_string(), 0)
        ]
    );
    assert!(exists(&db, &format!("deliveries_{older}")).await);
    assert_dropped(&db, &[&younger]).await;
    assert_eq!(
        placement(&db, "pending").await,
        format!("hookrelay.events_{older}")
    );
}

#[tokio::test]
async fn the_worker_role_drops_days_and_sweeps_the_default_partition() {
    let db = TestDb::new().await;
    db.endpoint("crm", "http://127.0.0.1:9/hooks", SECRET).await;
    let day = past_day(&db, 10).await;
    // 20 days ago has no partition: that event is in the DEFAULT one, swept row by row.
    let rows = [
        ("in_a_day", "10 days", Some("delivered")),
        ("in_default", "20 days", Some("delivered")),
    ];
    db.client
        .batch_execute(&history(&rows, true))
        .await
        .unwrap();
    assert_eq!(
        placement(&db, "in_default").await,
        "hookrelay.events_default"
    );
    let worker = crate::roles::login(&db, "hookrelay_worker", "sweeper", "sweeper-password").await;
    assert_eq!(
        one_pass(&worker.url).await,
        1,
        "the sweep deleted the event in the DEFAULT partition"
    );
    assert_dropped(&db, &[&day]).await;
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 0);
}
