//! `stats` shows the backlog, success rates and when the last error was.

use std::time::Duration;

use serde_json::json;

use super::{json_of, stdout, two_deliveries};
use crate::support::hookrelay;
use crate::support::{Receiver, Reply, TestDb};

#[tokio::test]
async fn stats_show_backlog_and_success_rates() {
    let db = TestDb::new().await;
    two_deliveries(&db).await;
    let text = stdout(&hookrelay(&db, &["stats"]));
    assert!(text.starts_with("backlog: 0 events to fan out"), "{text}");
    assert!(text.contains("oldest pending delivery: none"));
    let good = text.lines().find(|l| l.starts_with("good")).unwrap();
    assert!(good.contains("100.0%"), "{good}");
    let bad = text.lines().find(|l| l.starts_with("bad")).unwrap();
    assert!(
        bad.contains("0.0%") && bad.contains("1x since") && bad.contains("HTTP 500"),
        "{bad}"
    );

    let stats = json_of(&hookrelay(&db, &["stats", "--json"]));
    assert_eq!(stats["backlog"]["due"], 0);
    let endpoints = stats["endpoints"].as_array().unwrap();
    let bad = endpoints.iter().find(|e| e["name"] == "bad").unwrap();
    assert_eq!(bad["dead"], 1);
    assert_eq!(bad["failed_last_hour"], 1);
    assert_eq!(bad["success_rate_last_hour"], 0.0);
    assert_eq!(bad["consecutive_failures"], 1);
}

/// `flaky` fails its first request and then succeeds; `bad` always fails. Both are finished.
async fn flaky_and_bad(db: &TestDb) -> (Receiver, Receiver) {
    let flaky = Receiver::with(|_, n| Reply::status(if n == 0 { 502 } else { 200 })).await;
    let bad = Receiver::with(|_, _| Reply::status(500)).await;
    db.endpoint("flaky", &flaky.url("/"), "secret-secret-secret")
        .await;
    db.endpoint("bad", &bad.url("/"), "secret-secret-secret")
        .await;
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoints SET max_attempts = 2, max_in_flight = 1;
             UPDATE hookrelay.endpoints SET max_attempts = 1 WHERE name = 'bad';",
        )
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    db.wait_count(
        "SELECT count(*) FROM hookrelay.deliveries WHERE state IN ('delivered', 'dead')",
        2,
        Duration::from_secs(15),
    )
    .await;
    worker.stop().await;

    (flaky, bad)
}

/// endpoint_health's last error, its time, and whether a success came after it.
async fn assert_last_errors_in_sql(db: &TestDb) {
    let rows = db
        .client
        .query(
            "SELECT name, last_error, last_error_at IS NOT NULL,
                    last_error_at < last_success_at, last_success_at IS NULL
             FROM hookrelay.endpoint_health ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    // name, last_error, last_error_at set, error before the last success, never succeeded
    type LastError = (String, Option<String>, bool, Option<bool>, bool);
    let got: Vec<LastError> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "bad".into(),
                Some("HTTP 500 Internal Server Error".into()),
                true,
                None,
                true
            ),
            (
                "flaky".into(),
                Some("HTTP 502 Bad Gateway".into()),
                true,
                Some(true),
                false
            ),
        ]
    );
}

/// With the stored times moved back as if this had happened hours ago, `stats` says how long
/// ago and whether a success came since, as text and as JSON.
async fn assert_last_errors_shown(db: &TestDb) {
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoint_state
             SET last_failure_at = now() - interval '3 hours 5 minutes',
                 last_success_at = now() - interval '2 hours'
             WHERE endpoint_id = (SELECT id FROM hookrelay.endpoints WHERE name = 'flaky')",
        )
        .await
        .unwrap();
    let text = stdout(&hookrelay(db, &["stats"]));
    let flaky = text.lines().find(|l| l.starts_with("flaky")).unwrap();
    assert!(
        flaky.contains("3h05m ago, succeeded since: HTTP 502 Bad Gateway"),
        "{text}"
    );
    let bad = text.lines().find(|l| l.starts_with("bad")).unwrap();
    assert!(
        bad.contains("s ago: HTTP 500 Internal Server Error"),
        "{text}"
    );
    assert!(!bad.contains("succeeded since"), "{text}");

    let stats = json_of(&hookrelay(db, &["stats", "--json"]));
    let flaky = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "flaky")
        .unwrap();
    assert!(flaky["last_error_at"].is_string(), "{flaky}");
    let age = flaky["last_error_age_seconds"].as_f64().unwrap();
    assert!((11_100.0..11_160.0).contains(&age), "{flaky}");
}

#[tokio::test]
async fn the_last_error_says_when_and_whether_a_success_came_after_it() {
    let db = TestDb::new().await;
    let _receivers = flaky_and_bad(&db).await;
    assert_last_errors_in_sql(&db).await;
    assert_last_errors_shown(&db).await;
}
