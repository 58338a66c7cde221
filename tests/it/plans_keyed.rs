//! Plan stability inside the functions an ordered endpoint's claims and results call: every
//! statement of `hookrelay.key_turn` (is it this delivery's turn?) and `hookrelay.release_key`
//! (make the key's next delivery due) reads `deliveries` and `events` through an index meant for
//! it, with a condition, in a worker session whose plans were made on analyzed empty tables.
//!
//! These statements run once per ordered delivery and are invisible to `EXPLAIN` of the claim,
//! so their plans are read with auto_explain, its output sent to this session as notices.

use tokio_postgres::Client;

use crate::plans::{
    nested_plans, partition_parents, scans, worker_session_with_notices, NESTED_PLANS,
};
use crate::support::TestDb;

/// The turn of key `k1`'s first delivery, whose key has only delivered ones before it, looked
/// up with an event not fanned out yet older than it (so that every lookup of key_turn runs
/// and finds nothing); then the key's release (which makes it due). Called with constants, so
/// that the only plans that read tables are the functions' own. Returns the turn's verdict.
async fn turn_and_release(db: &TestDb, session: &Client, endpoint: i64) -> String {
    let row = db
        .client
        .query_one(
            "SELECT d.id, d.ordering_at::text, d.event_id::text FROM hookrelay.deliveries d
             WHERE d.ordering_key = 'k1' ORDER BY d.ordering_at DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (id, at, event): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    session.batch_execute("BEGIN").await.unwrap();
    let verdict: String = session
        .query_one(
            &format!(
                "SELECT hookrelay.key_turn({id}, {endpoint}, 'k1', '{at}', '{event}', true,
                                           '00000000-0000-7000-8000-000000000000')"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let released: bool = session
        .query_one(
            &format!("SELECT hookrelay.release_key({endpoint}, 'k1')"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    session.batch_execute("ROLLBACK").await.unwrap();
    assert!(released, "k1's first delivery was not released");
    verdict
}

/// One key's first delivery, pending: enough for every statement to run once.
const FIRST: &str = "
    INSERT INTO hookrelay.events (event, ordering_key, fanned_out_at)
    VALUES ('order.paid', 'k1', now());
    INSERT INTO hookrelay.deliveries (event_id, endpoint_id, ordering_key, ordering_at)
    SELECT id, $EP, ordering_key, created_at FROM hookrelay.events;";

/// History written after the plans were made: 3,000 delivered deliveries over 30 keys, all
/// older than `k1`'s first, and a newer pending or dead one for each other key.
const FILL: &str = "
    INSERT INTO hookrelay.events (event, ordering_key, fanned_out_at, created_at)
    SELECT 'order.paid', 'k' || (i % 30), now(), now() - interval '1 hour' + i * interval '1 ms'
    FROM generate_series(1, 3058) i;
    INSERT INTO hookrelay.deliveries
        (event_id, endpoint_id, ordering_key, ordering_at, state, next_attempt_at)
    SELECT id, $EP, ordering_key, created_at,
           CASE WHEN n <= 3000 THEN 'delivered' WHEN n % 2 = 0 THEN 'dead' ELSE 'pending' END,
           CASE WHEN n > 3000 AND n % 2 = 1 THEN now() END
    FROM (SELECT id, ordering_key, created_at, row_number() OVER (ORDER BY id) AS n
          FROM hookrelay.events
          WHERE created_at < now() - interval '10 minutes') e
    WHERE n <= 3000 OR ordering_key <> 'k1';";

/// The indexes the functions may read each large table through.
fn allowed(table: &str) -> &'static [&'static str] {
    match table {
        "deliveries" => &[
            "deliveries_by_key",
            "deliveries_key_leased",
            "deliveries_pkey",
            "deliveries_event_id_endpoint_id_key",
        ],
        "events" => &["events_to_fan_out"],
        _ => &[],
    }
}

#[tokio::test]
async fn the_statements_of_an_ordered_keys_turn_and_release_read_the_keys_index() {
    let db = TestDb::new().await;
    let endpoint = db
        .endpoint("ordered", "http://127.0.0.1:9/", "plans-test-secret-0123")
        .await;
    db.client
        .batch_execute(&format!(
            "UPDATE hookrelay.endpoints SET ordered = true, on_dead = 'block' WHERE id = {endpoint};
             ANALYZE;"
        ))
        .await
        .unwrap();
    let with_endpoint = |sql: &str| sql.replace("$EP", &endpoint.to_string());
    let (session, notices) = worker_session_with_notices(&db.url).await;
    db.client
        .batch_execute(&with_endpoint(FIRST))
        .await
        .unwrap();
    assert_eq!(turn_and_release(&db, &session, endpoint).await, "send");
    db.client.batch_execute(&with_endpoint(FILL)).await.unwrap();

    session.batch_execute(NESTED_PLANS).await.unwrap();
    notices.lock().unwrap().clear();
    assert_eq!(turn_and_release(&db, &session, endpoint).await, "send");
    let parents = partition_parents(&db.client).await;
    let plans = nested_plans(&notices);
    let mut wrong = Vec::new();
    let mut reading = 0;
    for plan in &plans {
        let text = plan["Query Text"].as_str().unwrap_or_default();
        let mut found = Vec::new();
        scans(&plan["Plan"], &parents, &mut found);
        reading += usize::from(!found.is_empty());
        for (table, index, with_condition) in found {
            if !(allowed(&table).contains(&index.as_str()) && with_condition) {
                wrong.push(format!(
                    "{text}\n  reads {table} through {index} (index condition: {with_condition})"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The unfanned events, the pending, dead and leased lookups twice each, the release's head
    // and its update: nine statements read a large table.
    assert_eq!(reading, 9, "statements seen: {plans:#?}");
}
