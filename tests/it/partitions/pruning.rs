//! The claims set up only the days they can find work in: the fan-out claim the days from its
//! resume point on, the due claim the days from the work floor on (migration 0034). Each bound
//! is a parameter, so the executor leaves the days before it out before setting up their
//! scans, and a claim's cost does not grow with the days of history kept (a generic plan
//! otherwise sets up every partition it could read).

use serde_json::Value;

use super::past_day;
use crate::plans::{with_job_columns, worker_session_with_notices, CLAIM_DUE, CLAIM_NEW, TODAY};
use crate::support::TestDb;

/// For each Append or MergeAppend over partitions of `table` in `plan`: how many partitions it
/// left out when the statement started.
fn appends(plan: &Value, table: &str, out: &mut Vec<u64>) {
    let node = plan["Node Type"].as_str().unwrap_or_default();
    let children = plan["Plans"].as_array().cloned().unwrap_or_default();
    let over_events = children.iter().any(|c| {
        c["Relation Name"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{table}_")))
    });
    if (node == "Append" || node == "Merge Append") && over_events {
        out.push(plan["Subplans Removed"].as_u64().unwrap_or(0));
    }
    for child in &children {
        appends(child, table, out);
    }
}

/// The plan of `claim` (a claim's text), planned generically in a worker session and started
/// with `args`.
async fn started(db: &TestDb, claim: &str, args: &str) -> Value {
    let (session, _) = worker_session_with_notices(&db.url).await;
    session
        .batch_execute(&format!("PREPARE claim AS {}", with_job_columns(claim)))
        .await
        .unwrap();
    session.batch_execute("BEGIN").await.unwrap();
    let row = session
        .query_one(&format!("EXPLAIN (FORMAT JSON) EXECUTE claim{args}"), &[])
        .await
        .unwrap();
    session.batch_execute("ROLLBACK").await.unwrap();
    let plan: Value = row.get(0);
    plan[0]["Plan"].clone()
}

/// The fan-out claim's reads of `events`, started with the resume point `from` (SQL for a
/// uuid).
async fn claim_from(db: &TestDb, from: &str) -> Vec<u64> {
    let plan = started(
        db,
        CLAIM_NEW,
        &format!("(64, 60000, 'w', {from}, '{{}}', '{{}}', NULL)"),
    )
    .await;
    let mut out = Vec::new();
    appends(&plan, "events", &mut out);
    out
}

/// The due claim's reads of `deliveries` and of `events`, started with the work floor `floor`
/// (SQL for a uuid).
async fn due_from(db: &TestDb, floor: &str) -> (Vec<u64>, Vec<u64>) {
    let plan = started(
        db,
        CLAIM_DUE,
        &format!("(64, 60000, 'w', '{{}}', '{{}}', {floor}, NULL)"),
    )
    .await;
    let (mut deliveries, mut events) = (Vec::new(), Vec::new());
    appends(&plan, "deliveries", &mut deliveries);
    appends(&plan, "events", &mut events);
    deliveries.sort();
    events.sort();
    (deliveries, events)
}

#[tokio::test]
async fn the_fan_out_claim_sets_up_no_day_before_its_resume_point() {
    let db = TestDb::new().await;
    db.endpoint("sink", "http://127.0.0.1:9/", "pruning-test-secret")
        .await;
    for days_ago in 2..=4 {
        past_day(&db, days_ago).await;
    }
    // Resuming from today: the three past days are left out of the claim's scan of events and
    // of its update marking them.
    let resumed = claim_from(&db, TODAY).await;
    assert!(resumed.len() >= 2, "reads of events: {resumed:?}");
    assert!(
        resumed.iter().all(|&removed| removed >= 3),
        "days before the resume point set up: {resumed:?}"
    );
    // From the start, every day is read.
    let from_start = claim_from(&db, "'00000000-0000-0000-0000-000000000000'::uuid").await;
    assert!(
        from_start.iter().all(|&removed| removed == 0),
        "{from_start:?}"
    );
}

#[tokio::test]
async fn the_due_claim_sets_up_no_day_before_the_work_floor() {
    let db = TestDb::new().await;
    db.endpoint("sink", "http://127.0.0.1:9/", "pruning-test-secret")
        .await;
    for days_ago in 2..=4 {
        past_day(&db, days_ago).await;
    }
    // From today: the three past days are left out of the reads of due and parked deliveries
    // and of the claimed deliveries' events. Not out of the one update, which finds its rows by
    // id (see claim_due.sql), nor of the look for the first event not fanned out, which an
    // ordered key's turn needs whatever its day.
    let (deliveries, events) = due_from(&db, TODAY).await;
    let left_out = |removed: &[u64]| removed.iter().filter(|&&r| r >= 3).count();
    assert_eq!(
        left_out(&deliveries),
        2,
        "reads of deliveries: {deliveries:?}"
    );
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert_eq!(left_out(&events), 1, "reads of events: {events:?}");
    // With the nil floor (before the worker has read one), every day is read.
    let (deliveries, events) = due_from(&db, "'00000000-0000-0000-0000-000000000000'::uuid").await;
    assert_eq!(left_out(&deliveries) + left_out(&events), 0);
}
