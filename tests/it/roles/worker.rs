//! A worker role does its whole job (claims, delivers, retries, disables on 410, reports
//! metrics, prunes) and may not change endpoints or write events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookrelay::config::WorkerConfig;
use serde_json::json;

use super::{login, refused};
use crate::support::{connect, Receiver, Reply, TestDb};

/// What a worker may not do: change endpoints and secrets, write events, read tracking or
/// redeliver.
const REFUSED: &[&str] = &[
        "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('evil', 'https://evil.example/', 'evil-secret')",
        "UPDATE hookrelay.endpoints SET secret = 'evil-secret'",
        "UPDATE hookrelay.endpoints SET url = 'https://evil.example/'",
        "DELETE FROM hookrelay.endpoints",
        "INSERT INTO hookrelay.events (event) VALUES ('x.y')",
        "SELECT * FROM hookrelay.tracked_tables",
        "SELECT hookrelay.redeliver(1)",
];

/// `flaky` (order.paid only) fails its first request, so its delivery is retried by a due
/// claim; `gone` answers 410.
async fn flaky_and_gone(db: &TestDb) -> Receiver {
    let flaky_calls = AtomicUsize::new(0);
    let receiver = Receiver::with(move |req, _| match req.path.as_str() {
        "/gone" => Reply::status(410),
        // The first request to /flaky fails, so the delivery is retried by a due claim. Counted
        // per path: the two endpoints' first requests go out together, in either order.
        "/flaky" if flaky_calls.fetch_add(1, Ordering::SeqCst) == 0 => Reply::status(500),
        _ => Reply::status(200),
    })
    .await;
    db.endpoint("flaky", &receiver.url("/flaky"), "worker-secret-1")
        .await;
    db.endpoint("gone", &receiver.url("/gone"), "worker-secret-2")
        .await;
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET events = '{order.paid}' WHERE name = 'flaky'",
            &[],
        )
        .await
        .unwrap();
    receiver
}

/// The backlog gauges, read from hookrelay.backlog as the worker: a failed read would leave
/// no samples.
async fn assert_backlog_metrics(metrics_addr: std::net::SocketAddr) {
    // reqwest is built without a default TLS provider; the worker installs one, a test may not.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hookrelay_backlog{kind=\"due\"}"),
        "{metrics}"
    );
}

/// Retention removes both events once every delivery is finished (delivered, cancelled).
async fn assert_retention_pruned(db: &TestDb) {
    let left = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.events",
            0,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(
        left, 0,
        "retention pruned the finished events as the worker"
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.attempts").await, 0);
}

/// The test's worker settings with a metrics server and retention that prunes within a
/// second; returns them and the metrics address.
fn metrics_and_quick_retention(db: &TestDb) -> (WorkerConfig, std::net::SocketAddr) {
    let metrics_addr = crate::support::free_addr();
    let mut config = db.config();
    config.metrics_addr = Some(metrics_addr);
    config.retention = hookrelay::pipeline::sweep::Retention {
        keep: Duration::from_secs(1),
        keep_dead: Duration::from_secs(1),
        interval: Duration::from_millis(200),
    };
    (config, metrics_addr)
}

/// The worker role is refused every statement of REFUSED, and may run its periodic policy
/// functions.
async fn refused_all_but_its_own_work(client: &tokio_postgres::Client) {
    for sql in REFUSED {
        refused(client, sql).await;
    }
    // The periodic policy functions run as the worker.
    client
        .batch_execute(
            "SELECT * FROM hookrelay.disable_failing_endpoints('5 days', 10);
             SELECT hookrelay.flag_waiting_endpoints();",
        )
        .await
        .expect("the worker runs its policy functions");
}

#[tokio::test]
async fn a_worker_role_delivers_retries_disables_on_410_and_prunes() {
    let db = TestDb::new().await;
    let receiver = flaky_and_gone(&db).await;
    let worker_login = login(&db, "hookrelay_worker", "worker", "worker-password").await;
    let client = connect(&worker_login.url).await;
    refused_all_but_its_own_work(&client).await;

    db.emit("order.paid", json!({"id": 1})).await;
    db.emit("order.created", json!({"id": 2})).await;
    let (config, metrics_addr) = metrics_and_quick_retention(&db);
    let token = tokio_util::sync::CancellationToken::new();
    let pool = hookrelay::db::pool(&worker_login.url, 4).expect("pool");
    let running = tokio::spawn(hookrelay::pipeline::worker::run(
        config,
        pool,
        token.clone(),
    ));

    // flaky: 500 then 200 (a retry); gone: 410 for both events, disabling it.
    let got = receiver.wait_for(3, Duration::from_secs(15)).await;
    assert!(got.len() >= 3, "{} requests", got.len());
    let disabled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.endpoints WHERE name = 'gone' AND NOT active
               AND disabled_reason LIKE '%410 Gone%'",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        disabled, 1,
        "the worker disabled the endpoint that answered 410"
    );
    assert_backlog_metrics(metrics_addr).await;
    assert_retention_pruned(&db).await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .expect("the worker ran without error as hookrelay_worker");
    let flaky: Vec<_> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.path == "/flaky")
        .collect();
    assert_eq!(flaky.len(), 2, "one failure, one retry");
    assert_eq!(
        flaky[0].header("X-Webhook-Event-Id"),
        flaky[1].header("X-Webhook-Event-Id")
    );
}
