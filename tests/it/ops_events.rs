//! Operational events (issue 19): hookrelay writes `hookrelay.*` events into its own outbox
//! when an endpoint is disabled, recovers, or (when asked) loses a delivery; an ops endpoint
//! subscribes to them by name, and they never loop.

use std::time::Duration;

use crate::support::{Receiver, Reply, Request, TestDb};

const SECRET: &str = "whsec-ops-events-secret";
const OPS_EVENTS: &str =
    "{hookrelay.endpoint.disabled,hookrelay.endpoint.recovered,hookrelay.delivery.dead}";

/// Adds an endpoint and sets `set` (an SQL assignment list) on it.
async fn endpoint(db: &TestDb, name: &str, receiver: &Receiver, set: &str) {
    let id = db.endpoint(name, &receiver.url("/"), SECRET).await;
    if !set.is_empty() {
        db.client
            .execute(
                &format!("UPDATE hookrelay.endpoints SET {set} WHERE id = $1"),
                &[&id],
            )
            .await
            .unwrap();
    }
}

/// (event, object.endpoint) of each request.
fn seen(requests: &[Request]) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let body = r.json();
            let about = body["object"]["endpoint"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (r.header("x-webhook-event").to_string(), about)
        })
        .collect();
    seen.sort();
    seen
}

#[tokio::test]
async fn disabled_recovered_and_dead_reach_the_ops_endpoint_and_only_it() {
    let db = TestDb::new().await;
    let gone = Receiver::with(|_, _| Reply::status(410)).await;
    let failing = Receiver::with(|_, _| Reply::status(500)).await;
    let recovering = Receiver::with(|_, n| Reply::status(if n < 3 { 500 } else { 200 })).await;
    let everything = Receiver::ok().await;
    let ops = Receiver::ok().await;
    endpoint(&db, "gone", &gone, "").await;
    endpoint(
        &db,
        "failing",
        &failing,
        "emit_dead = true, max_attempts = 1",
    )
    .await;
    endpoint(&db, "recovering", &recovering, "").await;
    endpoint(&db, "everything", &everything, "").await;
    endpoint(&db, "ops", &ops, &format!("events = '{OPS_EVENTS}'")).await;
    db.emit("order.paid", serde_json::json!({"id": 1})).await;
    let worker = db.start_worker(db.config());
    let got = ops.wait_for(3, Duration::from_secs(20)).await;
    // Time for anything that should not come.
    tokio::time::sleep(Duration::from_millis(800)).await;
    worker.stop().await;
    assert_eq!(
        seen(&ops.requests()),
        [
            ("hookrelay.delivery.dead".into(), "failing".into()),
            ("hookrelay.endpoint.disabled".into(), "gone".into()),
            ("hookrelay.endpoint.recovered".into(), "recovering".into()),
        ],
        "{got:?}"
    );
    let dead = got
        .iter()
        .map(Request::json)
        .find(|b| b["event"] == "hookrelay.delivery.dead")
        .unwrap();
    assert_eq!(dead["object"]["event"], "order.paid");
    assert_eq!(dead["object"]["last_error_code"], "http_status");
    assert_eq!(dead["object"]["last_status"], 500);
    let disabled = got
        .iter()
        .map(Request::json)
        .find(|b| b["event"] == "hookrelay.endpoint.disabled")
        .unwrap();
    assert!(
        disabled["object"]["reason"]
            .as_str()
            .unwrap()
            .contains("410 Gone"),
        "{disabled}"
    );
    // An endpoint for all events still gets the application's events only.
    assert_eq!(
        seen(&everything.requests()),
        [("order.paid".into(), String::new())]
    );
}

#[tokio::test]
async fn failing_ops_endpoints_cannot_feed_each_other() {
    let db = TestDb::new().await;
    let app = Receiver::with(|_, _| Reply::status(500)).await;
    // One ops endpoint is gone (410: disabled), the other loses every delivery.
    let ops_gone = Receiver::with(|_, _| Reply::status(410)).await;
    let ops_failing = Receiver::with(|_, _| Reply::status(500)).await;
    endpoint(&db, "app", &app, "emit_dead = true, max_attempts = 1").await;
    let ops = format!("events = '{OPS_EVENTS}', emit_dead = true, max_attempts = 1");
    endpoint(&db, "ops-gone", &ops_gone, &ops).await;
    endpoint(&db, "ops-failing", &ops_failing, &ops).await;
    db.emit("order.paid", serde_json::json!({"id": 1})).await;
    let worker = db.start_worker(db.config());
    ops_failing.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.stop().await;
    // The app's delivery died: one event. ops-gone was disabled by its 410: one event, about
    // it, so sent to ops-failing only. ops-failing's own dead deliveries write nothing.
    let events: Vec<String> = db
        .client
        .query(
            "SELECT event FROM hookrelay.events ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        events,
        [
            "order.paid",
            "hookrelay.delivery.dead",
            "hookrelay.endpoint.disabled"
        ]
    );
    assert_eq!(
        seen(&ops_gone.requests()),
        [("hookrelay.delivery.dead".into(), "app".into())]
    );
    assert_eq!(
        seen(&ops_failing.requests()),
        [
            ("hookrelay.delivery.dead".into(), "app".into()),
            ("hookrelay.endpoint.disabled".into(), "ops-gone".into()),
        ]
    );
}

#[tokio::test]
async fn trace_context_and_dead_events_are_set_from_the_cli_and_apply_files() {
    let db = TestDb::new().await;
    let out = crate::support::hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "ops",
            "--url",
            "https://ops.example.com/hooks",
            "--events",
            "hookrelay.delivery.dead",
            "--no-trace-context",
            "--emit-dead",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let shown = crate::support::hookrelay(&db, &["endpoint", "show", "ops"]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    let line = |label: &str| {
        shown
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {shown}"))
            .to_string()
    };
    assert!(line("trace context").ends_with("not sent"), "{shown}");
    assert!(
        line("dead events").ends_with("hookrelay.delivery.dead"),
        "{shown}"
    );
    let file = crate::support::temp_file(
        "ops.toml",
        "[[endpoints]]\nname = \"ops\"\nurl = \"https://ops.example.com/hooks\"\n\
         secret = \"whsec-ops-events-secret\"\nevents = [\"hookrelay.delivery.dead\"]\n\
         trace_context = true\nemit_dead = false\n",
    );
    let out = crate::support::hookrelay(&db, &["endpoint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let row = db
        .client
        .query_one(
            "SELECT trace_context, emit_dead FROM hookrelay.endpoints WHERE name = 'ops'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (true, false)
    );
}

/// Replay routes operational events as fan-out does: a catch-all endpoint's replay leaves them
/// out, an ops endpoint's replay has them except those about itself.
#[tokio::test]
async fn replay_sends_operational_events_only_where_fan_out_would() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    endpoint(&db, "all", &receiver, "").await;
    endpoint(&db, "ops", &receiver, &format!("events = '{OPS_EVENTS}'")).await;
    db.client
        .batch_execute(
            "INSERT INTO hookrelay.events (event, object, fanned_out_at) VALUES
               ('order.paid', '{\"id\": \"1\"}', now()),
               ('hookrelay.endpoint.disabled', '{\"endpoint\": \"all\"}', now()),
               ('hookrelay.endpoint.disabled', '{\"endpoint\": \"ops\"}', now())",
        )
        .await
        .unwrap();
    let replayed = |name: &'static str| {
        let db = &db;
        async move {
            let rows = db
                .client
                .query(
                    "SELECT e.event, coalesce(e.object ->> 'endpoint', '')
                     FROM hookrelay.endpoints ep,
                          hookrelay.replay_events(ep, now() - interval '1 hour',
                                                  now() + interval '1 hour', '{}') r
                     JOIN hookrelay.events e ON e.id = r.event_id
                     WHERE ep.name = $1 ORDER BY r.rank",
                    &[&name],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        replayed("all").await,
        [("order.paid".into(), String::new())]
    );
    assert_eq!(
        replayed("ops").await,
        [("hookrelay.endpoint.disabled".into(), "all".into())]
    );
}
