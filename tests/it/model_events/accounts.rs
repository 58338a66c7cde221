//! The acting user and the account column: recorded on the event, and routing it.

use serde_json::{json, Value};

use super::{bodies, drain, setup, SECRET};
use crate::support::{connect, Receiver, TestDb};

#[tokio::test]
async fn the_actor_is_recorded_as_json_bare_id_or_raw_and_never_fails_the_write() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE notes (id int PRIMARY KEY, body text);
               SELECT hookrelay.track_table('notes');"#,
        )
        .await
        .unwrap();
    let mut client = connect(&db.url).await;
    let actors = [
        (1, Some(r#"{"id": "1", "username": "admin"}"#)),
        (2, Some("42")),
        (3, Some(r#"{"id": "1", oops"#)),
        (4, None),
    ];
    for (id, actor) in actors {
        let tx = client.transaction().await.unwrap();
        if let Some(actor) = actor {
            tx.execute("SELECT set_config('hookrelay.actor', $1, true)", &[&actor])
                .await
                .unwrap();
        }
        tx.execute("INSERT INTO notes VALUES ($1, 'x')", &[&id])
            .await
            .expect("a malformed actor never fails the application's write");
        tx.commit().await.unwrap();
    }
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 4);
    let user = |id: &str| {
        all.iter()
            .find(|b| b["object_id"] == id)
            .map(|b| b["user"].clone())
            .unwrap()
    };
    assert_eq!(user("1"), json!({"id": "1", "username": "admin"}));
    assert_eq!(user("2"), json!({"id": "42"}));
    assert_eq!(user("3"), json!({"raw": r#"{"id": "1", oops"#}));
    assert_eq!(user("4"), Value::Null);
}

#[tokio::test]
async fn the_account_column_routes_events_to_that_accounts_endpoints() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    for (name, account) in [
        ("acme", Some("acme")),
        ("globex", Some("globex")),
        ("all", None),
    ] {
        db.client
            .execute(
                "INSERT INTO hookrelay.endpoints (name, url, secret, account_id) VALUES ($1, $2, $3, $4)",
                &[&name, &receiver.url(&format!("/{name}")), &SECRET, &account],
            )
            .await
            .unwrap();
    }
    db.client
        .batch_execute(
            r#"CREATE TABLE projects (id int PRIMARY KEY, tenant text, title text);
               SELECT hookrelay.track_table('projects', account_column => 'tenant');
               INSERT INTO projects VALUES (1, 'acme', 'Rocket'), (2, 'globex', 'Dome'),
                                           (3, NULL, 'Orphan');"#,
        )
        .await
        .unwrap();
    drain(&db).await;
    let ids = |path: &str| {
        let mut ids: Vec<(String, Value)> = bodies(&receiver, Some(path))
            .iter()
            .map(|b| {
                (
                    b["object_id"].as_str().unwrap().to_string(),
                    b["account_id"].clone(),
                )
            })
            .collect();
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        ids
    };
    assert_eq!(ids("/acme"), [("1".to_string(), json!("acme"))]);
    assert_eq!(ids("/globex"), [("2".to_string(), json!("globex"))]);
    assert_eq!(
        ids("/all"),
        [
            ("1".to_string(), json!("acme")),
            ("2".to_string(), json!("globex")),
            ("3".to_string(), Value::Null)
        ]
    );
}
