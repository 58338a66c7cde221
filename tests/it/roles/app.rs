//! The app role writes events (directly, through `emit` and through tracked tables) and
//! nothing else.

use serde_json::json;
use tokio_postgres::Client;

use super::{hookrelay_as, login, refused, Login};
use crate::support::{connect, TestDb};

/// What the app may not do: read or change delivery state, endpoints or secrets, or call
/// the operators' and owner's functions.
const REFUSED: &[&str] = &[
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
];

/// An endpoint, a tracked `orders` table the app may write, an idle worker (so every insert
/// reads hookrelay.workers and notifies), and the app's login.
async fn app_login(db: &TestDb) -> Login {
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
    let app = login(db, "hookrelay_app", "app", "app-password").await;
    db.client
        .batch_execute(&format!("GRANT INSERT, UPDATE ON orders TO {}", app.name))
        .await
        .unwrap();
    app
}

/// The app emits, inserts events and writes tracked rows; each event carries the acting
/// user set for its transaction.
async fn assert_app_writes_events(db: &TestDb, client: &Client) {
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
}

/// From the command line as the app: emit works, reading endpoints says what is missing.
fn assert_app_commands(app: &Login) {
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
async fn the_app_role_writes_events_and_nothing_else() {
    let db = TestDb::new().await;
    let app = app_login(&db).await;
    let client = connect(&app.url).await;
    assert_app_writes_events(&db, &client).await;
    for sql in REFUSED {
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

    assert_app_commands(&app);
}
