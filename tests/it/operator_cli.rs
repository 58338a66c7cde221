//! The operator commands as an operator runs them: deliveries, delivery show, redeliver, stats,
//! and a graceful stop of `hookrelay run`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::hookrelay;
use crate::support::{binary, Receiver, Reply, TestDb};

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).expect("valid JSON")
}

/// `good` answers 200 with a body, `bad` answers 500 with one, one attempt each allowed.
async fn two_deliveries(db: &TestDb) -> Receiver {
    let receiver =
        Receiver::with(|req, _| Reply::status(if req.path == "/bad" { 500 } else { 200 })).await;
    db.endpoint("good", &receiver.url("/good"), "secret-secret-secret")
        .await;
    db.endpoint("bad", &receiver.url("/bad"), "secret-secret-secret")
        .await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_attempts = 1", &[])
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    db.wait_count(
        "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
        2,
        Duration::from_secs(10),
    )
    .await;
    worker.stop().await;
    receiver
}

#[tokio::test]
async fn deliveries_and_delivery_show_answer_what_happened() {
    let db = TestDb::new().await;
    two_deliveries(&db).await;

    let table = stdout(&hookrelay(&db, &["deliveries"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("LAST ERROR"));
    assert!(table.contains("good") && table.contains("delivered"));
    assert!(table.contains("bad") && table.contains("dead") && table.contains("HTTP 500"));

    let dead = json_of(&hookrelay(
        &db,
        &["deliveries", "--state", "dead", "--json"],
    ));
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["endpoint"], "bad");
    assert_eq!(dead[0]["last_status"], 500);
    assert!(dead[0]["event_id"].as_str().unwrap().starts_with("evt_"));
    let filtered = json_of(&hookrelay(
        &db,
        &[
            "deliveries",
            "--endpoint",
            "good",
            "--event",
            "order.paid",
            "--since",
            "1h",
            "--json",
        ],
    ));
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    let none = json_of(&hookrelay(
        &db,
        &["deliveries", "--event", "nope", "--json"],
    ));
    assert_eq!(none, json!([]));

    let id = dead[0]["id"].as_i64().unwrap().to_string();
    let shown = stdout(&hookrelay(&db, &["delivery", "show", &id]));
    for expected in [
        "state: dead",
        "bad (http://",
        "order.paid",
        "http_status",
        "HTTP 500",
        "response to attempt 1:",
        "ok",
    ] {
        assert!(
            shown.contains(expected),
            "{expected:?} missing in:\n{shown}"
        );
    }
    let detail = json_of(&hookrelay(&db, &["delivery", "show", &id, "--json"]));
    let attempts = detail["attempts_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["error_code"], "http_status");
    assert_eq!(attempts[0]["response_excerpt"], "ok");
    assert!(attempts[0]["duration_ms"].as_i64().is_some());

    let missing = hookrelay(&db, &["delivery", "show", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        err.trim(),
        "error: no delivery with id 999999: `hookrelay deliveries` lists them"
    );
    let bad_state = hookrelay(&db, &["deliveries", "--state", "lost"]);
    assert_eq!(bad_state.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_state.stderr)
        .contains("use pending, delivered, dead or cancelled"));
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
    db.client
        .execute(
            "UPDATE hookrelay.deliveries SET state = 'dead', next_attempt_at = NULL WHERE id = $1",
            &[&dead_id],
        )
        .await
        .unwrap();
    let out = stdout(&hookrelay(
        &db,
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
        &db,
        &["redeliver", "--endpoint", "good", "--since", "1h"],
    ));
    assert!(out.starts_with("0 dead deliveries of good"), "{out}");

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
        let out = hookrelay(&db, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let usage = hookrelay(&db, &["redeliver"]);
    assert_eq!(usage.status.code(), Some(2), "clap usage error");
}

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

#[tokio::test]
async fn the_last_error_says_when_and_whether_a_success_came_after_it() {
    let db = TestDb::new().await;
    // `flaky` fails its first request and then succeeds; `bad` always fails.
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

    // The stored times, moved back as if this had happened hours ago.
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoint_state
             SET last_failure_at = now() - interval '3 hours 5 minutes',
                 last_success_at = now() - interval '2 hours'
             WHERE endpoint_id = (SELECT id FROM hookrelay.endpoints WHERE name = 'flaky')",
        )
        .await
        .unwrap();
    let text = stdout(&hookrelay(&db, &["stats"]));
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

    let stats = json_of(&hookrelay(&db, &["stats", "--json"]));
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
async fn sigterm_finishes_requests_in_flight_and_gives_back_the_rest() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(800),
    })
    .await;
    db.endpoint("a", &receiver.url("/a"), "secret-secret-secret")
        .await;
    db.endpoint("b", &receiver.url("/b"), "secret-secret-secret")
        .await;
    for i in 0..4 {
        db.emit("order.paid", json!({ "id": i })).await;
    }
    // Two slots: each claim fans two events out to two endpoints, so two requests run and two
    // claimed deliveries wait for a slot.
    let mut child = Command::new(binary())
        .args([
            "run",
            "--database-url",
            &db.url,
            "--concurrency",
            "2",
            "--batch-size",
            "2",
        ])
        .args(["--metrics-addr", "off", "--shutdown-timeout", "10s"])
        .env("HOOKRELAY_LOG", "warn")
        .env("HOOKRELAY_ALLOW_NETWORKS", crate::support::LOOPBACK)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(started.len(), 2);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit {status}");

    assert_eq!(
        receiver.requests().len(),
        2,
        "nothing new started after SIGTERM"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE locked_until IS NOT NULL")
            .await,
        0,
        "no lease left held"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'")
            .await,
        2,
        "the requests in flight finished and were recorded"
    );
    let given_back = db
        .count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending' AND attempts = 0 AND next_attempt_at <= now()")
        .await;
    assert_eq!(
        given_back, 2,
        "claimed but unsent deliveries are due again, attempt uncounted"
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.workers").await, 0);
}

#[tokio::test]
async fn endpoints_are_disabled_enabled_and_removed_from_the_cli() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    let out = stdout(&hookrelay(&db, &["endpoint", "disable", "crm"]));
    assert_eq!(
        out.trim(),
        "endpoint crm disabled: it has no pending deliveries; events written while it is \
         disabled skip it, and are not sent to it after enabling either"
    );
    let out = stdout(&hookrelay(&db, &["endpoint", "disable", "crm"]));
    assert_eq!(
        out.trim(),
        "endpoint crm was already disabled (disabled by an operator); nothing changed"
    );
    let listed = json_of(&hookrelay(&db, &["endpoint", "list", "--json"]));
    assert_eq!(listed[0]["active"], false);
    db.emit("order.paid", json!({"id": 1})).await;
    let worker = db.start_worker(db.config());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        receiver.requests().is_empty(),
        "a disabled endpoint gets nothing"
    );
    let out = stdout(&hookrelay(&db, &["endpoint", "enable", "crm"]));
    assert!(
        out.starts_with("endpoint crm enabled (it was disabled: disabled by an operator)"),
        "{out}"
    );
    let out = stdout(&hookrelay(&db, &["endpoint", "enable", "crm"]));
    assert_eq!(out.trim(), "endpoint crm was already enabled");
    db.emit("order.paid", json!({"id": 2})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    worker.stop().await;
    assert_eq!(got.len(), 1, "only the event written while enabled");
    assert_eq!(got[0].json()["object"]["id"], 2);

    let out = stdout(&hookrelay(&db, &["endpoint", "remove", "crm"]));
    assert_eq!(out.trim(), "endpoint crm removed");
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries").await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 0);
    let again = hookrelay(&db, &["endpoint", "remove", "crm"]);
    assert_eq!(again.status.code(), Some(1));
}
