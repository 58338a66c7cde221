//! The operator commands as an operator runs them: deliveries, delivery show, redeliver, stats,
//! and a graceful stop of `hookrelay run`.

mod deliveries;
mod endpoints;
mod redeliver;
mod stats;
mod stopping;

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Receiver, Reply, TestDb};

/// What a successful command printed.
fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a successful `--json` command printed, parsed.
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
