//! History partitioned by day (migration 0030): an upgrade keeps every row of a populated
//! database, retention drops whole days and keeps the work it always kept, and maintenance
//! keeps partitions ready ahead without ever failing, the claims set up no day before their
//! resume point or the work floor, and work below the floor still goes out.

use serde_json::Value;

use crate::support::{Receiver, TestDb};

mod floor;
mod maintenance;
mod pruning;
mod retention;
mod upgrade;

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
/// migration 0030 on, `partitioned`).
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

/// Gives the day `days_ago` days before today its partitions, as migration 0030 does for the
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

/// The labels (`object.id`) of the events `received` carried, sorted.
fn labels(received: &[crate::support::Request]) -> Vec<String> {
    let mut sent: Vec<String> = received
        .iter()
        .map(|r| r.json()["object"]["id"].as_str().unwrap_or("?").to_string())
        .collect();
    sent.sort();
    sent
}

/// A receiver on 127.0.0.1 and the endpoint `crm` sending to it.
async fn receiving(db: &TestDb) -> Receiver {
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/hooks"), SECRET).await;
    receiver
}
