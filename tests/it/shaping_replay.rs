//! `hookrelay replay` and `hookrelay.replay(…)`: past events sent again to one endpoint, in
//! event order, including ones it already received, without touching other endpoints.

use crate::model_events::{drain, SECRET};
use crate::support::{hookrelay, Receiver, TestDb};

/// The `id`s of the objects delivered to `path`, sorted (requests in flight at once may
/// arrive in any order).
fn arrived(receiver: &Receiver, path: &str) -> Vec<String> {
    let mut ids: Vec<String> = receiver
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.json()["object"]["id"].as_str().unwrap_or("?").to_string())
        .collect();
    ids.sort();
    ids
}

/// The `id`s of the events of `endpoint`'s pending deliveries, in the order claims take them.
async fn scheduled(db: &TestDb, endpoint: &str) -> Vec<String> {
    db.client
        .query(
            "SELECT e.object ->> 'id' FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             WHERE ep.name = $1 AND d.state = 'pending' ORDER BY d.next_attempt_at, d.id",
            &[&endpoint],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A database with endpoints `old` (which received every event) and `other`, five delivered
/// events, and a receiver behind both.
async fn history() -> (TestDb, Receiver) {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("old", &receiver.url("/old"), SECRET).await;
    db.endpoint("other", &receiver.url("/other"), SECRET).await;
    for (i, event) in [
        "order.paid",
        "order.shipped",
        "order.paid",
        "order.paid",
        "order.shipped",
    ]
    .iter()
    .enumerate()
    {
        db.emit(event, serde_json::json!({ "id": (i + 1).to_string() }))
            .await;
    }
    drain(&db).await;
    (db, receiver)
}

fn run(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = hookrelay(db, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Attempts made for endpoint `other`, which no replay names.
async fn other_attempts(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM hookrelay.attempts a JOIN hookrelay.deliveries d ON d.id = a.delivery_id JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id WHERE ep.name = 'other'")
        .await
}

/// The same from SQL, for operators: a dry run counts one event name's replays.
async fn assert_sql_replay_counts(db: &TestDb) {
    let n: i64 = db
        .client
        .query_one(
            "SELECT hookrelay.replay('other', now() - interval '1 hour', only_events => '{order.shipped}', dry_run => true)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn replay_sends_past_events_again_in_order_to_one_endpoint_only() {
    let (db, receiver) = history().await;
    // A new endpoint that wants history.
    db.endpoint("new", &receiver.url("/new"), SECRET).await;
    let (ok, stdout, stderr) = run(
        &db,
        &["replay", "--endpoint", "new", "--since", "1h", "--dry-run"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("dry run: 5 events would be sent again to new"),
        "{stdout}"
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id WHERE ep.name = 'new'").await, 0);

    let (ok, stdout, stderr) = run(&db, &["replay", "--endpoint", "new", "--since", "1h"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("replaying 5 events to new in event order"),
        "{stdout}"
    );
    // An endpoint that already received them, for one event name.
    let (ok, stdout, stderr) = run(
        &db,
        &[
            "replay",
            "--endpoint",
            "old",
            "--since",
            "1h",
            "--event",
            "order.paid",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("replaying 3 events to old"), "{stdout}");
    assert_eq!(scheduled(&db, "new").await, ["1", "2", "3", "4", "5"]);
    assert_eq!(scheduled(&db, "old").await, ["1", "3", "4"]);
    let other_before = other_attempts(&db).await;
    drain(&db).await;
    assert_eq!(arrived(&receiver, "/new"), ["1", "2", "3", "4", "5"]);
    assert_eq!(
        arrived(&receiver, "/old"),
        ["1", "1", "2", "3", "3", "4", "4", "5"]
    );
    assert_eq!(arrived(&receiver, "/other"), ["1", "2", "3", "4", "5"]);
    let other_after = other_attempts(&db).await;
    assert_eq!(other_before, other_after, "other endpoints are not touched");
    assert_sql_replay_counts(&db).await;
}

#[tokio::test]
async fn bad_replays_are_refused_and_write_nothing() {
    let (db, _receiver) = history().await;
    let deliveries = "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'delivered'";
    for (args, wanted) in [
        (
            vec!["replay", "--endpoint", "nope", "--since", "1h"],
            r#"no endpoint named "nope"; hint: `hookrelay endpoint list`"#,
        ),
        (
            vec!["replay", "--endpoint", "old", "--since", "30d"],
            "events older than the retention (7 days) are not kept: replay from ",
        ),
        (
            vec![
                "replay",
                "--endpoint",
                "old",
                "--since",
                "1h",
                "--until",
                "2h",
            ],
            "must be before --until",
        ),
        (
            vec!["replay", "--endpoint", "old", "--since", "yesterday"],
            "is neither a duration (24h, 7d) nor a time",
        ),
    ] {
        let (ok, _, stderr) = run(&db, &args);
        assert!(!ok, "{args:?} accepted");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(db.count(deliveries).await, 0);
    // A shorter retention refuses a shorter window.
    let (ok, _, stderr) = run(
        &db,
        &[
            "replay",
            "--endpoint",
            "old",
            "--since",
            "2h",
            "--retention",
            "1h",
        ],
    );
    assert!(!ok && stderr.contains("retention (01:00:00)"), "{stderr}");
}

#[tokio::test]
async fn the_operator_role_lists_endpoints_with_their_options_and_may_replay() {
    let (db, _receiver) = history().await;
    let operator = crate::roles::login(&db, "hookrelay_operator", "shaping", "op-password").await;
    let client = crate::support::connect(&operator.url).await;
    let row = client
        .query_one(
            "SELECT filter::text, number_format, skip_empty_changes FROM hookrelay.endpoints
             WHERE name = 'old'",
            &[],
        )
        .await
        .expect("the new endpoint columns are readable");
    assert_eq!(row.get::<_, String>(1), "json");
    let n: i64 = client
        .query_one(
            "SELECT hookrelay.replay('old', now() - interval '1 hour', dry_run => true)",
            &[],
        )
        .await
        .expect("operators may replay")
        .get(0);
    assert_eq!(n, 5);
    client
        .query("SELECT * FROM hookrelay.backfills", &[])
        .await
        .expect("backfill progress is readable");
    let out = std::process::Command::new(crate::support::binary())
        .args(["endpoint", "list"])
        .env("HOOKRELAY_DATABASE_URL", &operator.url)
        .env("HOOKRELAY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
