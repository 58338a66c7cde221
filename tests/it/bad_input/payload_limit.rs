//! A payload above `--max-payload-bytes` ends dead and unsent; the worker goes on.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{binary, sigterm_and_wait, Receiver, TestDb, LOOPBACK};

#[tokio::test]
async fn a_payload_over_the_limit_ends_dead_unsent_and_the_worker_goes_on() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    db.emit("too.big", json!({"id": 1, "blob": "x".repeat(4000)}))
        .await;
    db.emit("small", json!({"id": 2})).await;
    let worker = Command::new(binary())
        .args([
            "run",
            "--database-url",
            &db.url,
            "--max-payload-bytes",
            "1024",
        ])
        .args(["--metrics-addr", "off", "--poll-interval", "100ms"])
        .env("HOOKRELAY_ALLOW_NETWORKS", LOOPBACK)
        .env("HOOKRELAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
            2,
            Duration::from_secs(15),
        )
        .await;
    let status = sigterm_and_wait(worker).await;
    assert!(status.success());
    assert_eq!(finished, 2);
    let row = db
        .client
        .query_one(
            "SELECT d.state, d.last_error_code, d.last_error FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id WHERE e.event = 'too.big'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(row.get::<_, String>(1), "payload_too_large");
    let error: String = row.get(2);
    assert!(
        error.contains("above the 1024 allowed (--max-payload-bytes): not sent"),
        "{error}"
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "only the small event was sent");
    assert_eq!(got[0].json()["event"], "small");
}
