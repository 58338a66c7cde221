//! The operator role reads everything but secrets and header values, may redeliver, and its
//! commands never print a secret.

use std::time::Duration;

use serde_json::json;
use tokio_postgres::Client;

use super::{hookrelay_as, login, refused};
use crate::support::{connect, Receiver, Reply, TestDb};

/// What operators read: every view and table of delivery state, and the fingerprints.
const READS: &[&str] = &[
    "SELECT * FROM hookrelay.endpoint_health",
    "SELECT * FROM hookrelay.delivery_log",
    "SELECT * FROM hookrelay.deliveries",
    "SELECT * FROM hookrelay.attempts",
    "SELECT * FROM hookrelay.backlog",
    "SELECT * FROM hookrelay.events",
    "SELECT * FROM hookrelay.endpoint_fingerprints",
];

/// What operators may not do: read secrets or header values (also through a whole row), or
/// change state other than by redelivering.
const REFUSED: &[&str] = &[
    "SELECT secret FROM hookrelay.endpoints",
    "SELECT previous_secret FROM hookrelay.endpoints",
    "SELECT headers FROM hookrelay.endpoints",
    "SELECT * FROM hookrelay.endpoints",
    "SELECT to_jsonb(e) FROM hookrelay.endpoints e",
    "UPDATE hookrelay.deliveries SET state = 'pending'",
    "UPDATE hookrelay.endpoints SET active = false",
    "INSERT INTO hookrelay.events (event) VALUES ('x.y')",
    "DELETE FROM hookrelay.attempts",
];

/// An endpoint with a secret and a static header whose only delivery died on a 500.
async fn dead_delivery_behind_secrets(db: &TestDb) -> Receiver {
    let receiver = Receiver::with(|_, _| Reply::status(500)).await;
    db.endpoint("crm", &receiver.url("/"), "operator-test-secret")
        .await;
    db.client
        .batch_execute(
            "UPDATE hookrelay.endpoints SET max_attempts = 1,
                 headers = '{\"Authorization\": \"Bearer op-test-token\"}'",
        )
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": 1})).await;
    let worker = db.start_worker(db.config());
    db.wait_count(
        "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
        1,
        Duration::from_secs(10),
    )
    .await;
    worker.stop().await;
    receiver
}

/// The one write operators get: a dead delivery is scheduled again. Returns its id.
async fn assert_operator_redelivers(db: &TestDb, client: &Client) -> i64 {
    let id: i64 = db
        .client
        .query_one("SELECT id FROM hookrelay.deliveries", &[])
        .await
        .unwrap()
        .get(0);
    let scheduled: bool = client
        .query_one("SELECT hookrelay.redeliver($1)", &[&id])
        .await
        .expect("operators may redeliver")
        .get(0);
    assert!(scheduled);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending'")
            .await,
        1
    );
    id
}

/// The operator commands work as the operator and never print a secret; endpoints show the
/// fingerprints SQL computes.
fn assert_commands_show_no_secret(url: &str, id: i64) {
    let secret_fp = hookrelay::sign::fingerprint("operator-test-secret");
    let header_fp = hookrelay::sign::fingerprint("Bearer op-test-token");
    for args in [
        &["endpoint", "list"][..],
        &["endpoint", "show", "crm"],
        &["endpoint", "list", "--json"],
        &["stats"],
        &["deliveries"],
        &["delivery", "show", &id.to_string()],
    ] {
        let out = hookrelay_as(url, args);
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {shown}");
        assert!(
            !shown.contains("operator-test-secret") && !shown.contains("op-test-token"),
            "{args:?}: {shown}"
        );
        if args[0] == "endpoint" {
            assert!(
                shown.contains(&secret_fp),
                "the fingerprint from SQL matches sign::fingerprint: {shown}"
            );
        }
        if args.starts_with(&["endpoint", "show"]) {
            assert!(shown.contains(&header_fp), "{shown}");
        }
    }
}

/// `--reveal-secret` is refused with a line naming what the operator role may read.
fn assert_reveal_secret_refused(url: &str) {
    let out = hookrelay_as(url, &["endpoint", "show", "crm", "--reveal-secret"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: permission denied for table endpoints")
            && err.contains("hookrelay_operator may read (never secrets)"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[tokio::test]
async fn the_operator_role_reads_everything_but_secrets_and_may_redeliver() {
    let db = TestDb::new().await;
    let _receiver = dead_delivery_behind_secrets(&db).await;
    let operator = login(&db, "hookrelay_operator", "operator", "operator-password").await;
    let client = connect(&operator.url).await;
    for sql in READS {
        let rows = client.query(*sql, &[]).await.expect(sql);
        assert!(!rows.is_empty(), "{sql}");
    }
    let row = client
        .query_one("SELECT name, url FROM hookrelay.endpoints", &[])
        .await
        .expect("names and URLs are readable");
    assert_eq!(row.get::<_, String>(0), "crm");
    for sql in REFUSED {
        let message = refused(&client, sql).await;
        assert!(message.contains("permission denied"), "{message}");
    }
    let id = assert_operator_redelivers(&db, &client).await;
    assert_commands_show_no_secret(&operator.url, id);
    assert_reveal_secret_refused(&operator.url);
}
