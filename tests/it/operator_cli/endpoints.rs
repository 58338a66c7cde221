//! Endpoints are disabled, enabled and removed from the command line.

use std::time::Duration;

use serde_json::json;

use super::{json_of, stdout};
use crate::support::hookrelay;
use crate::support::{Receiver, TestDb};

/// `endpoint remove` removes the endpoint with its deliveries and attempts; a second remove
/// fails.
async fn assert_remove_takes_its_history(db: &TestDb) {
    let out = stdout(&hookrelay(db, &["endpoint", "remove", "crm"]));
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
    let again = hookrelay(db, &["endpoint", "remove", "crm"]);
    assert_eq!(again.status.code(), Some(1));
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

    assert_remove_takes_its_history(&db).await;
}
