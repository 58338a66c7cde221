//! What writing an event costs the application's transaction (issue 15, item 4), counted by
//! the server rather than timed: PostgreSQL's function statistics show which functions a
//! statement really calls. A SQL function the planner inlines into the statement's cached plan
//! is not called, and so not counted; one it cannot inline is parsed and planned again at every
//! call (its body is kept for one statement only), which made emit's lock of the ordering key
//! a third of its own cost.

use std::time::Duration;

use crate::support::TestDb;

const EVENTS: i64 = 20;

/// Calls of each function in schema hookrelay made by `work`, run on a connection of its own.
async fn calls_during(db: &TestDb, work: &str) -> Vec<(String, i64)> {
    let session = crate::support::connect(&db.url).await;
    session
        .batch_execute("SET track_functions = 'all'")
        .await
        .unwrap();
    session.batch_execute(work).await.unwrap();
    // Statistics reach the shared view when a session goes idle, at most once a second unless
    // told otherwise.
    session
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    session.batch_execute("SELECT 1").await.unwrap();
    drop(session);
    let mut rows = Vec::new();
    for _ in 0..40 {
        rows = db
            .client
            .query(
                "SELECT funcname::text, calls FROM pg_stat_user_functions
                 WHERE schemaname = 'hookrelay' ORDER BY funcname",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows
}

/// `EVENTS` statements of `statement`, each in its own transaction.
fn each_in_its_own_transaction(statement: &str) -> String {
    (0..EVENTS)
        .map(|i| statement.replace("$i", &i.to_string()))
        .collect::<Vec<_>>()
        .join(";\n")
}

#[tokio::test]
async fn emit_calls_no_other_function_with_or_without_an_ordering_key() {
    let db = TestDb::new().await;
    let work = each_in_its_own_transaction(
        "SELECT hookrelay.emit('order.paid', jsonb_build_object('id', $i), 'store.Order');
         SELECT hookrelay.emit('order.paid', jsonb_build_object('id', $i), 'store.Order',
                               ordering_key => 'customer:$i')",
    );
    let calls = calls_during(&db, &work).await;
    // Before 0031: lock_ordering_key was called (and planned) on every emit, key or not.
    assert_eq!(calls, vec![("emit".to_string(), 2 * EVENTS)]);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE ordering_key IS NOT NULL")
            .await,
        EVENTS,
        "the keyed events were written"
    );
}

#[tokio::test]
async fn an_insert_into_the_outbox_calls_no_function_while_no_worker_waits() {
    let db = TestDb::new().await;
    let work = each_in_its_own_transaction(
        "INSERT INTO hookrelay.events (event, object) VALUES ('order.paid', '{\"id\": $i}')",
    );
    let calls = calls_during(&db, &work).await;
    assert_eq!(
        calls,
        vec![],
        "defaults, check and wake-up test are all inline"
    );
    let fresh = db
        .count(
            "SELECT count(*) FROM hookrelay.events
             WHERE created_at > now() - interval '1 minute' AND id IS NOT NULL",
        )
        .await;
    assert_eq!(fresh, EVENTS, "each event has its id and time");
}

#[tokio::test]
async fn a_bad_event_is_explained_by_the_check_function_and_nothing_is_written() {
    let db = TestDb::new().await;
    let err = db
        .client
        .batch_execute("INSERT INTO hookrelay.events (event, object) VALUES ('order paid', '{}')")
        .await
        .unwrap_err();
    let db_err = err.as_db_error().expect("a database error");
    assert_eq!(
        db_err.message(),
        "new row for relation \"events\" violates check constraint \
         \"event_name_must_be_1_to_200_characters_without_spaces\""
    );
    assert_eq!(
        db_err.hint(),
        Some("Name events like order.paid: 1 to 200 of A-Z a-z 0-9 . _ - : /")
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 0);
}
