//! Partition maintenance: days ahead get their partitions, with the storage settings of the
//! DEFAULT ones, and a day whose rows already went to the DEFAULT partition is left alone
//! without failing.

use hookrelay::metrics::Metrics;
use hookrelay::pipeline::sweep::{partitions, Retention};

use super::{day_suffix, exists, id_at, placement};
use crate::support::TestDb;

/// Writes the event labelled `label` at `at` (SQL).
async fn event_at(db: &TestDb, label: &str, at: &str) {
    db.client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (id, event, object)
             VALUES ({}, 'order.paid', jsonb_build_object('id', '{label}'))",
            id_at(at)
        ))
        .await
        .unwrap();
}

/// The storage settings of the partition `name`.
async fn options(db: &TestDb, name: &str) -> Vec<String> {
    db.client
        .query_one(
            &format!("SELECT reloptions FROM pg_class WHERE oid = 'hookrelay.{name}'::regclass"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn maintenance_keeps_days_ahead_and_leaves_a_day_with_default_rows_alone() {
    let db = TestDb::new().await;
    let in_two = day_suffix(&db, -2).await;
    let in_three = day_suffix(&db, -3).await;
    // As if the worker had been down: no partitions for those days, and an event written for
    // the day after tomorrow (a clock ahead) went to the DEFAULT partition.
    for day in [&in_two, &in_three] {
        db.client
            .batch_execute(&format!(
                "DROP TABLE hookrelay.events_{day}, hookrelay.deliveries_{day},
                            hookrelay.attempts_{day}"
            ))
            .await
            .unwrap();
    }
    event_at(&db, "ahead", "now() + interval '2 days'").await;
    assert_eq!(placement(&db, "ahead").await, "hookrelay.events_default");

    let pool = hookrelay::db::pool(&db.url, 1).expect("pool").pool;
    let done = partitions::maintain(&pool, &Retention::default(), &Metrics::default())
        .await
        .expect("maintenance never fails");

    assert_eq!(done.added.len(), 1, "{done:?}");
    assert!(done.retired.is_empty());
    assert!(!exists(&db, &format!("events_{in_two}")).await);
    assert_eq!(placement(&db, "ahead").await, "hookrelay.events_default");
    for (table, fillfactor) in [("events", "85"), ("deliveries", "80")] {
        let options = options(&db, &format!("{table}_{in_three}")).await;
        assert!(
            options.contains(&format!("fillfactor={fillfactor}")),
            "{table}: {options:?}"
        );
    }
    event_at(&db, "later", "now() + interval '3 days'").await;
    assert_eq!(
        placement(&db, "later").await,
        format!("hookrelay.events_{in_three}"),
        "events of the new day land in its partition"
    );
}
