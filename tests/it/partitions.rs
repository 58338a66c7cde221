//! History partitioned by day (migration 0029): an upgrade keeps every row of a populated
//! database, retention drops whole days and keeps the work it always kept, and maintenance
//! keeps partitions ready ahead without ever failing.

use std::time::Duration;

use hookrelay::admin::migrate::{self, MIGRATIONS};
use hookrelay::metrics::Metrics;
use hookrelay::pipeline::sweep::{self, partitions, Retention};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{connect, Receiver, TestDb};

const SECRET: &str = "partition-test-secret";

/// A unique event id of the instant `at` (SQL): the instant's first id, random bits after it.
fn id_at(at: &str) -> String {
    format!(
        "overlay(gen_random_uuid()::text PLACING left(hookrelay.id_floor({at})::text, 13) \
         FROM 1 FOR 13)::uuid"
    )
}

/// Events labelled by `object.id`, each `age` old, with one delivery per endpoint in `state`
/// (none for an event not fanned out yet) and one attempt per delivery (with its event id from
/// migration 0029 on, `partitioned`).
fn history(rows: &[(&str, &str, Option<&str>)], partitioned: bool) -> String {
    let values: Vec<String> = rows
        .iter()
        .map(|(label, age, state)| {
            let state = state.map_or("NULL".into(), |s| format!("'{s}'"));
            format!("('{label}', interval '{age}', {state})")
        })
        .collect();
    let at = "now() - h.age";
    format!(
        "CREATE TEMP TABLE h (label text, age interval, state text);
         INSERT INTO h VALUES {values};
         INSERT INTO hookrelay.events (id, event, object, created_at, fanned_out_at)
         SELECT {id}, 'order.paid', jsonb_build_object('id', h.label), {at},
                CASE WHEN h.state IS NOT NULL THEN {at} END
         FROM h;
         INSERT INTO hookrelay.deliveries
             (event_id, endpoint_id, state, attempts, next_attempt_at, last_status, delivered_at,
              created_at)
         SELECT e.id, ep.id, h.state, 1, CASE WHEN h.state = 'pending' THEN now() END,
                CASE WHEN h.state = 'delivered' THEN 200 ELSE 500 END,
                CASE WHEN h.state = 'delivered' THEN e.created_at END, e.created_at
         FROM hookrelay.events e
         JOIN h ON h.label = e.object ->> 'id' AND h.state IS NOT NULL
         CROSS JOIN hookrelay.endpoints ep;
         INSERT INTO hookrelay.attempts
             (delivery_id, attempt, started_at, duration_ms, status{event_column})
         SELECT d.id, 1, d.created_at, 12, d.last_status{event_value}
         FROM hookrelay.deliveries d;
         DROP TABLE h;",
        values = values.join(", "),
        id = id_at(at),
        event_column = if partitioned { ", event_id" } else { "" },
        event_value = if partitioned { ", d.event_id" } else { "" },
    )
}

/// Every row of the three history tables with every value (attempts without their new
/// event_id column), as JSON.
async fn every_row(db: &TestDb) -> Value {
    db.client
        .query_one(
            "SELECT jsonb_build_array(
                 (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id) FROM hookrelay.events e),
                 (SELECT jsonb_agg(to_jsonb(d) ORDER BY d.id) FROM hookrelay.deliveries d),
                 (SELECT jsonb_agg(to_jsonb(a) - 'event_id' ORDER BY a.id)
                  FROM hookrelay.attempts a))",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The partition each labelled event is in.
async fn placement(db: &TestDb, label: &str) -> String {
    db.client
        .query_one(
            "SELECT tableoid::regclass::text FROM hookrelay.events WHERE object ->> 'id' = $1",
            &[&label],
        )
        .await
        .unwrap_or_else(|e| panic!("event {label}: {e}"))
        .get(0)
}

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
    let before = MIGRATIONS.iter().take_while(|m| m.version <= 28);
    for m in before {
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

#[tokio::test]
async fn upgrading_a_populated_database_keeps_every_row_and_its_work_goes_on() {
    let db = database_at_0028().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/hooks"), SECRET).await;
    db.client
        .batch_execute(&history(
            &[
                ("unfanned", "1 minute", None),
                ("pending", "1 hour", Some("pending")),
                ("dead_young", "2 days", Some("dead")),
                ("dead_old", "40 days", Some("dead")),
                ("delivered_old", "100 days", Some("delivered")),
                ("delivered_recent", "1 hour", Some("delivered")),
            ],
            false,
        ))
        .await
        .unwrap();
    let before = every_row(&db).await;

    let mut client = connect(&db.url).await;
    migrate::migrate(&mut client).await.expect("migrate");

    assert_eq!(every_row(&db).await, before, "every row keeps every value");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.attempts a
             JOIN hookrelay.deliveries d ON d.id = a.delivery_id AND d.event_id = a.event_id"
        )
        .await,
        5,
        "each attempt carries its delivery's event"
    );
    assert!(placement(&db, "delivered_old")
        .await
        .starts_with("hookrelay.events_before_"));
    for label in [
        "unfanned",
        "pending",
        "dead_young",
        "dead_old",
        "delivered_recent",
    ] {
        let partition = placement(&db, label).await;
        assert!(
            partition.starts_with("hookrelay.events_p"),
            "{label}: {partition}"
        );
    }

    let worker = db.start_worker(db.config());
    let received = receiver.wait_for(2, Duration::from_secs(20)).await;
    worker.stop().await;
    let mut sent: Vec<String> = received
        .iter()
        .map(|r| r.json()["object"]["id"].as_str().unwrap_or("?").to_string())
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        ["pending", "unfanned"],
        "the pending work is delivered"
    );
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
    assert!(
        db.count(
            "SELECT (min(d.id) FILTER (WHERE e.object ->> 'id' = 'unfanned')
                     > max(d.id) FILTER (WHERE e.object ->> 'id' <> 'unfanned'))::int::bigint
             FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id"
        )
        .await
            == 1,
        "delivery ids continue after the copied ones"
    );
}

/// The partitions' suffix of the day `days_ago` days before today (UTC).
async fn day_suffix(db: &TestDb, days_ago: i32) -> String {
    db.client
        .query_one(
            "SELECT 'p' || to_char((now() AT TIME ZONE 'UTC')::date - $1::int, 'YYYYMMDD')",
            &[&days_ago],
        )
        .await
        .unwrap()
        .get(0)
}

/// Gives the day `days_ago` days before today its partitions, as migration 0029 does for the
/// days that hold history.
async fn past_day(db: &TestDb, days_ago: i32) -> String {
    let suffix = day_suffix(db, days_ago).await;
    let outcome: String = db
        .client
        .query_one(
            "SELECT hookrelay.attach_history_range(d::timestamp AT TIME ZONE 'UTC',
                                                   (d + 1)::timestamp AT TIME ZONE 'UTC', $2)
             FROM (SELECT (now() AT TIME ZONE 'UTC')::date - $1::int AS d) x",
            &[&days_ago, &suffix],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "attached");
    suffix
}

async fn exists(db: &TestDb, table: &str) -> bool {
    db.count(&format!(
        "SELECT (to_regclass('hookrelay.{table}') IS NOT NULL)::int::bigint"
    ))
    .await
        == 1
}

#[tokio::test]
async fn retention_drops_past_days_whole_and_the_work_it_keeps_still_goes_out() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/hooks"), SECRET).await;
    let ten = past_day(&db, 10).await;
    let forty = past_day(&db, 40).await;
    db.client
        .batch_execute(&history(
            &[
                ("delivered_a", "10 days", Some("delivered")),
                ("delivered_b", "10 days", Some("delivered")),
                ("pending", "10 days", Some("pending")),
                ("dead_young", "10 days", Some("dead")),
                ("unfanned", "10 days", None),
                ("dead_old", "40 days", Some("dead")),
            ],
            true,
        ))
        .await
        .unwrap();
    let kept_before = every_row_of(&db, "('pending', 'dead_young', 'unfanned')").await;
    assert!(placement(&db, "pending").await.ends_with(&ten));

    let pool = hookrelay::db::pool(&db.url, 2).expect("pool").pool;
    let retention = Retention {
        keep: Duration::from_secs(7 * 86_400),
        keep_dead: Duration::from_secs(30 * 86_400),
        interval: Duration::from_secs(60),
    };
    let metrics = Metrics::default();
    sweep::pass(&pool, &retention, &metrics, &CancellationToken::new())
        .await
        .expect("a retention pass");

    for table in ["events", "deliveries", "attempts"] {
        for day in [&ten, &forty] {
            let partition = format!("{table}_{day}");
            assert!(!exists(&db, &partition).await, "{partition} was dropped");
        }
    }
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
        assert_eq!(placement(&db, label).await, "hookrelay.events_default");
    }
    assert_eq!(
        every_row_of(&db, "('pending', 'dead_young', 'unfanned')").await,
        kept_before,
        "kept work is moved with every value, its deliveries and attempts too"
    );

    // Kept work still goes out: the pending delivery, the event not fanned out, and the dead
    // one once redelivered.
    db.client
        .batch_execute(
            "SELECT hookrelay.redeliver(d.id) FROM hookrelay.deliveries d WHERE d.state = 'dead'",
        )
        .await
        .unwrap();
    let worker = db.start_worker(db.config());
    let received = receiver.wait_for(3, Duration::from_secs(20)).await;
    worker.stop().await;
    let mut sent: Vec<String> = received
        .iter()
        .map(|r| r.json()["object"]["id"].as_str().unwrap_or("?").to_string())
        .collect();
    sent.sort();
    assert_eq!(sent, ["dead_young", "pending", "unfanned"]);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.deliveries
             WHERE state = 'delivered' AND tableoid = 'hookrelay.deliveries_default'::regclass"
        )
        .await,
        3
    );
}

/// Rows of the labelled events, their deliveries and attempts, as JSON.
async fn every_row_of(db: &TestDb, labels: &str) -> Value {
    db.client
        .query_one(
            &format!(
                "WITH e AS (SELECT * FROM hookrelay.events WHERE object ->> 'id' IN {labels})
                 SELECT jsonb_build_array(
                     (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id) FROM e),
                     (SELECT jsonb_agg(to_jsonb(d) ORDER BY d.id) FROM hookrelay.deliveries d
                      WHERE d.event_id IN (SELECT id FROM e)),
                     (SELECT jsonb_agg(to_jsonb(a) ORDER BY a.id) FROM hookrelay.attempts a
                      WHERE a.event_id IN (SELECT id FROM e)))"
            ),
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
    db.client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (id, event, object)
             VALUES ({}, 'order.paid', '{{\"id\": \"ahead\"}}')",
            id_at("now() + interval '2 days'")
        ))
        .await
        .unwrap();
    assert_eq!(placement(&db, "ahead").await, "hookrelay.events_default");

    let pool = hookrelay::db::pool(&db.url, 1).expect("pool").pool;
    let done = partitions::maintain(&pool, &Retention::default(), &Metrics::default())
        .await
        .expect("maintenance never fails");
    assert_eq!(done.added.len(), 1, "{done:?}");
    assert!(done.retired.is_empty());
    assert!(!exists(&db, &format!("events_{in_two}")).await);
    for (table, fillfactor) in [("events", "85"), ("deliveries", "80")] {
        let options: Vec<String> = db
            .client
            .query_one(
                &format!(
                    "SELECT reloptions FROM pg_class
                     WHERE oid = 'hookrelay.{table}_{in_three}'::regclass"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            options.contains(&format!("fillfactor={fillfactor}")),
            "{table}: {options:?}"
        );
    }
    assert_eq!(placement(&db, "ahead").await, "hookrelay.events_default");
    // Events of the new day land in its partition.
    db.client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.events (id, event, object)
             VALUES ({}, 'order.paid', '{{\"id\": \"later\"}}')",
            id_at("now() + interval '3 days'")
        ))
        .await
        .unwrap();
    assert_eq!(
        placement(&db, "later").await,
        format!("hookrelay.events_{in_three}")
    );
}

#[tokio::test]
async fn a_day_keeping_too_much_stays_whole_and_younger_days_still_go() {
    let db = TestDb::new().await;
    db.endpoint("crm", "http://127.0.0.1:9/hooks", SECRET).await;
    let older = past_day(&db, 12).await;
    let younger = past_day(&db, 10).await;
    db.client
        .batch_execute(&history(
            &[
                ("pending", "12 days", Some("pending")),
                ("delivered", "10 days", Some("delivered")),
            ],
            true,
        ))
        .await
        .unwrap();
    let rows = db
        .client
        .query(
            "SELECT suffix, outcome, kept
             FROM hookrelay.retire_history_day('7 days', '30 days', 0)",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, i64)> = rows
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
    assert!(!exists(&db, &format!("deliveries_{younger}")).await);
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
    db.client
        .batch_execute(&history(
            &[
                ("in_a_day", "10 days", Some("delivered")),
                ("in_default", "20 days", Some("delivered")),
            ],
            true,
        ))
        .await
        .unwrap();
    assert_eq!(
        placement(&db, "in_default").await,
        "hookrelay.events_default"
    );
    let worker = crate::roles::login(&db, "hookrelay_worker", "sweeper", "sweeper-password").await;
    let pool = hookrelay::db::pool(&worker.url, 1).expect("pool").pool;
    let removed = sweep::pass(
        &pool,
        &Retention::default(),
        &Metrics::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("the worker role runs retention");
    assert_eq!(
        removed, 1,
        "the sweep deleted the event in the DEFAULT partition"
    );
    assert!(!exists(&db, &format!("events_{day}")).await);
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 0);
}
