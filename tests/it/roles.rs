//! Least privilege: the group roles of migration 0008, tested by connecting as login roles
//! granted each one. The app may only write events, a worker does its whole job and no more,
//! and an operator reads everything but secrets.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::support::{binary, connect, Receiver, Reply, TestDb};

/// A login role granted one of hookrelay's group roles, and a URL that connects as it.
pub struct Login {
    pub name: String,
    pub url: String,
}

/// The database name of a test database (unique per test and run, so role names built from
/// it do not collide on the shared cluster).
fn database_name(db: &TestDb) -> String {
    let url = url::Url::parse(&db.url).expect("a database URL");
    url.path().trim_start_matches('/').to_string()
}

/// Creates a login role `<database>_<suffix>` with `password`, member of `group`.
pub async fn login(db: &TestDb, group: &str, suffix: &str, password: &str) -> Login {
    let name = format!("{}_{suffix}", database_name(db));
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD '{password}'; GRANT {group} TO {name};"
        ))
        .await
        .expect("create a login role");
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&name).unwrap();
    url.set_password(Some(password)).unwrap();
    Login {
        name,
        url: url.to_string(),
    }
}

/// Runs `sql`, which must fail for lack of a privilege; returns the message.
async fn refused(client: &Client, sql: &str) -> String {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} must be refused"));
    let db_err = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
    assert_eq!(
        db_err.code(),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "{sql}: {}",
        db_err.message()
    );
    db_err.message().to_string()
}

fn hookrelay_as(url: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("HOOKRELAY_DATABASE_URL", url)
        .env("HOOKRELAY_LOG", "warn")
        .output()
        .expect("run hookrelay")
}

#[tokio::test]
async fn the_app_role_writes_events_and_nothing_else() {
    let db = TestDb::new().await;
    db.endpoint("crm", "https://crm.example.com/", "endpoint-secret-1")
        .await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text);
             SELECT hookrelay.track_table('orders');
             -- An idle worker: every insert then reads hookrelay.workers and notifies.
             INSERT INTO hookrelay.workers (id, host, pid, waiting) VALUES ('w', 'h', 1, true);",
        )
        .await
        .unwrap();
    let app = login(&db, "hookrelay_app", "app", "app-password").await;
    db.client
        .batch_execute(&format!("GRANT INSERT, UPDATE ON orders TO {}", app.name))
        .await
        .unwrap();
    let client = connect(&app.url).await;

    let id: uuid::Uuid = client
        .query_one("SELECT hookrelay.emit('order.paid', '{\"id\": 1}')", &[])
        .await
        .expect("the app emits")
        .get(0);
    client
        .batch_execute(
            "BEGIN;
             SET LOCAL hookrelay.actor = '{\"id\": \"7\", \"username\": \"ada\"}';
             INSERT INTO hookrelay.events (event, object, model) VALUES ('order.shipped', '{\"id\": 1}', 'store.Order');
             INSERT INTO orders VALUES (1, 'new');
             UPDATE orders SET status = 'paid';
             COMMIT;",
        )
        .await
        .expect("the app inserts events and writes tracked rows");
    let rows = db
        .client
        .query(
            "SELECT event, actor FROM hookrelay.events ORDER BY event",
            &[],
        )
        .await
        .unwrap();
    let written: Vec<(String, Option<serde_json::Value>)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let ada = Some(json!({"id": "7", "username": "ada"}));
    assert_eq!(
        written,
        [
            ("created".to_string(), ada.clone()),
            ("order.paid".to_string(), None),
            ("order.shipped".to_string(), ada.clone()),
            ("updated".to_string(), ada),
        ]
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM hookrelay.events WHERE id = '{id}'"
        ))
        .await,
        1
    );

    for sql in [
        "SELECT * FROM hookrelay.endpoints",
        "SELECT secret FROM hookrelay.endpoints",
        "SELECT * FROM hookrelay.deliveries",
        "SELECT * FROM hookrelay.attempts",
        "SELECT * FROM hookrelay.delivery_log",
        "SELECT * FROM hookrelay.endpoint_health",
        "SELECT object FROM hookrelay.events",
        "SELECT host FROM hookrelay.workers",
        "UPDATE hookrelay.events SET fanned_out_at = now()",
        "DELETE FROM hookrelay.events",
        "INSERT INTO hookrelay.events (event, fanned_out_at) VALUES ('x.y', now())",
        "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('evil', 'https://evil.example/', 'evil-secret')",
        "SELECT hookrelay.redeliver(1)",
        "SELECT hookrelay.endpoint_gone('{1}')",
        "SELECT hookrelay.grant_roles()",
    ] {
        refused(&client, sql).await;
    }
    // Nothing of the refused statements happened.
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 4);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        1
    );

    // From the command line as the app: emit works, reading endpoints says what is missing.
    let out = hookrelay_as(
        &app.url,
        &["emit", "order.refunded", "--object", "{\"id\": 1}"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hookrelay_as(&app.url, &["endpoint", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: permission denied") && err.contains("hookrelay_operator"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn a_worker_role_delivers_retries_disables_on_410_and_prunes() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|req, n| match req.path.as_str() {
        "/gone" => Reply::status(410),
        // The first request to /flaky fails, so the delivery is retried by a due claim.
        "/flaky" if n == 0 => Reply::status(500),
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
    let worker_login = login(&db, "hookrelay_worker", "worker", "worker-password").await;
    let client = connect(&worker_login.url).await;
    // What the worker may not do.
    for sql in [
        "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('evil', 'https://evil.example/', 'evil-secret')",
        "UPDATE hookrelay.endpoints SET secret = 'evil-secret'",
        "UPDATE hookrelay.endpoints SET url = 'https://evil.example/'",
        "DELETE FROM hookrelay.endpoints",
        "INSERT INTO hookrelay.events (event) VALUES ('x.y')",
        "SELECT * FROM hookrelay.tracked_tables",
        "SELECT hookrelay.redeliver(1)",
    ] {
        refused(&client, sql).await;
    }
    // The periodic policy functions run as the worker.
    client
        .batch_execute(
            "SELECT * FROM hookrelay.disable_failing_endpoints('5 days', 10);
             SELECT hookrelay.flag_waiting_endpoints();",
        )
        .await
        .expect("the worker runs its policy functions");

    db.emit("order.paid", json!({"id": 1})).await;
    db.emit("order.created", json!({"id": 2})).await;
    let metrics_addr = crate::support::free_addr();
    let mut config = db.config();
    config.metrics_addr = Some(metrics_addr);
    config.retention = hookrelay::pipeline::sweep::Retention {
        keep: Duration::from_secs(1),
        keep_dead: Duration::from_secs(1),
        interval: Duration::from_millis(200),
    };
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
    // reqwest is built without a default TLS provider; the worker installs one, a test may not.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    // Read from hookrelay.backlog as the worker; a failed read would leave no samples.
    assert!(
        metrics.contains("hookrelay_backlog{kind=\"due\"}"),
        "{metrics}"
    );
    // Retention removes both events once every delivery is finished (delivered, cancelled).
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

#[tokio::test]
async fn the_operator_role_reads_everything_but_secrets_and_may_redeliver() {
    let db = TestDb::new().await;
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
    let operator = login(&db, "hookrelay_operator", "operator", "operator-password").await;
    let client = connect(&operator.url).await;

    for sql in [
        "SELECT * FROM hookrelay.endpoint_health",
        "SELECT * FROM hookrelay.delivery_log",
        "SELECT * FROM hookrelay.deliveries",
        "SELECT * FROM hookrelay.attempts",
        "SELECT * FROM hookrelay.backlog",
        "SELECT * FROM hookrelay.events",
        "SELECT * FROM hookrelay.endpoint_fingerprints",
    ] {
        let rows = client.query(sql, &[]).await.expect(sql);
        assert!(!rows.is_empty(), "{sql}");
    }
    let row = client
        .query_one("SELECT name, url FROM hookrelay.endpoints", &[])
        .await
        .expect("names and URLs are readable");
    assert_eq!(row.get::<_, String>(0), "crm");
    for sql in [
        "SELECT secret FROM hookrelay.endpoints",
        "SELECT previous_secret FROM hookrelay.endpoints",
        "SELECT headers FROM hookrelay.endpoints",
        "SELECT * FROM hookrelay.endpoints",
        "SELECT to_jsonb(e) FROM hookrelay.endpoints e",
        "UPDATE hookrelay.deliveries SET state = 'pending'",
        "UPDATE hookrelay.endpoints SET active = false",
        "INSERT INTO hookrelay.events (event) VALUES ('x.y')",
        "DELETE FROM hookrelay.attempts",
    ] {
        let message = refused(&client, sql).await;
        assert!(message.contains("permission denied"), "{message}");
    }
    // The one write operators get.
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

    // The operator commands work as the operator and never print a secret.
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
        let out = hookrelay_as(&operator.url, args);
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
    let out = hookrelay_as(
        &operator.url,
        &["endpoint", "show", "crm", "--reveal-secret"],
    );
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
async fn a_non_superuser_owner_migrates_and_grants_and_granting_again_changes_nothing() {
    // The group roles are made by the first migration on the server, run by a superuser here;
    // this owner, without CREATEROLE, only grants them.
    drop(TestDb::new().await);
    let db = TestDb::empty().await;
    let owner = format!("{}_owner", database_name(&db));
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN PASSWORD 'owner-password';
             GRANT CREATE ON DATABASE {db_name} TO {owner};",
            db_name = database_name(&db)
        ))
        .await
        .unwrap();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&owner).unwrap();
    let out = hookrelay_as(url.as_str(), &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner_client = connect(url.as_str()).await;
    let granted: Vec<String> = owner_client
        .query_one("SELECT hookrelay.grant_roles()", &[])
        .await
        .expect("the owner grants again")
        .get(0);
    assert_eq!(
        granted,
        ["hookrelay_app", "hookrelay_worker", "hookrelay_operator"]
    );
    owner_client
        .batch_execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('crm', 'https://crm.example.com/', 'owner-made-secret')",
        )
        .await
        .unwrap();
    let app = login(&db, "hookrelay_app", "app", "app-password").await;
    let operator = login(&db, "hookrelay_operator", "operator", "operator-password").await;
    connect(&app.url)
        .await
        .batch_execute("SELECT hookrelay.emit('order.paid')")
        .await
        .expect("the app emits into a schema owned by another role");
    let operator_client = connect(&operator.url).await;
    refused(&operator_client, "SELECT secret FROM hookrelay.endpoints").await;
    operator_client
        .batch_execute("SELECT name, url FROM hookrelay.endpoints")
        .await
        .unwrap();
}
