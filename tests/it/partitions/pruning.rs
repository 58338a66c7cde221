//! The fan-out claim sets up only the days from its resume point on: its lower bound is a
//! parameter, so the executor leaves the days before it out before setting up their scans, and
//! the claim's cost does not grow with the days of history kept (a generic plan otherwise sets
//! up every partition it could read).

use serde_json::Value;

use super::past_day;
use crate::plans::{with_job_columns, worker_session_with_notices, CLAIM_NEW};
use crate::support::TestDb;

/// For each Append or MergeAppend over `events` partitions in `plan`: how many partitions it
/// left out when the statement started.
fn events_appends(plan: &Value, out: &mut Vec<u64>) {
    let node = plan["Node Type"].as_str().unwrap_or_default();
    let children = plan["Plans"].as_array().cloned().unwrap_or_default();
    let over_events = children.iter().any(|c| {
        c["Relation Name"]
            .as_str()
            .is_some_and(|r| r.starts_with("events_"))
    });
    if (node == "Append" || node == "Merge Append") && over_events {
        out.push(plan["Subplans Removed"].as_u64().unwrap_or(0));
    }
    for child in &children {
        events_appends(child, out);
    }
}

/// The fan-out claim's reads of `events`, planned generically in a worker session and started
/// with the resume point `from` (SQL for a uuid).
async fn claim_from(db: &TestDb, from: &str) -> Vec<u64> {
    let (session, _) = worker_session_with_notices(&db.url).await;
    session
        .batch_execute(&format!(
            "PREPARE claim_new AS {}",
            with_job_columns(CLAIM_NEW)
        ))
        .await
        .unwrap();
    session.batch_execute("BEGIN").await.unwrap();
    let row = session
        .query_one(
            &format!(
                "EXPLAIN (FORMAT JSON) EXECUTE claim_new(64, 60000, 'w', {from}, '{{}}', '{{}}')"
            ),
            &[],
        )
        .await
        .unwrap();
    session.batch_execute("ROLLBACK").await.unwrap();
    let plan: Value = row.get(0);
    let mut out = Vec::new();
    events_appends(&plan[0]["Plan"], &mut out);
    out
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
    let today =
        "hookrelay.id_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
    let resumed = claim_from(&db, today).await;
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
