//! `redeliver` by id and in bulk, and its refusals.

use super::{stdout, two_deliveries};
use crate::support::hookrelay;
use crate::support::TestDb;

/// The dead delivery, made dead again, is sent again in bulk by endpoint, state and age;
/// another endpoint has none to send.
async fn assert_bulk_redelivery(db: &TestDb, dead_id: i64) {
    db.client
        .execute(
            "UPDATE hookrelay.deliveries SET state = 'dead', next_attempt_at = NULL WHERE id = $1",
            &[&dead_id],
        )
        .await
        .unwrap();
    let out = stdout(&hookrelay(
        db,
        &[
            "redeliver",
            "--endpoint",
            "bad",
            "--state",
            "dead",
            "--since",
            "24h",
        ],
    ));
    assert_eq!(
        out.trim(),
        "1 dead deliveries of bad from the last 1 day scheduled"
    );
    let out = stdout(&hookrelay(
        db,
        &["redeliver", "--endpoint", "good", "--since", "1h"],
    ));
    assert!(out.starts_with("0 dead deliveries of good"), "{out}");
}

/// Live deliveries, unknown endpoints and unknown ids are refused; no target is a usage error.
fn assert_redeliver_refusals(db: &TestDb) {
    let refused = [
        (
            &["redeliver", "--endpoint", "bad", "--state", "delivered"][..],
            "only dead deliveries",
        ),
        (
            &["redeliver", "--endpoint", "nope"][..],
            "no endpoint named \"nope\"",
        ),
        (&["redeliver", "424242"][..], "not scheduled: 424242"),
    ];
    for (args, expected) in refused {
        let out = hookrelay(db, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let usage = hookrelay(db, &["redeliver"]);
    assert_eq!(usage.status.code(), Some(2), "clap usage error");
}

#[tokio::test]
async fn redeliver_by_id_and_in_bulk() {
    let db = TestDb::new().await;
    two_deliveries(&db).await;
    let dead_id: i64 = db
        .client
        .query_one(
            "SELECT id FROM hookrelay.deliveries WHERE state = 'dead'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let out = stdout(&hookrelay(&db, &["redeliver", &dead_id.to_string()]));
    assert_eq!(out.trim(), format!("delivery {dead_id} scheduled"));
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending'")
            .await,
        1
    );
    // Back to dead for the bulk path.
    assert_bulk_redelivery(&db, dead_id).await;
    assert_redeliver_refusals(&db);
}
