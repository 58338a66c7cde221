//! Inserts, updates and deletes become events; no-op updates, excluded columns and
//! rolled-back writes send nothing; keys become object ids.

use serde_json::{json, Value};

use super::{bodies, drain, only, parse, setup, SECRET};
use crate::support::{connect, hmac_hex};

#[tokio::test]
async fn inserts_updates_and_deletes_of_a_tracked_table_are_delivered() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE SCHEMA store;
               CREATE TABLE store."Order" (id bigint PRIMARY KEY, reference text,
                                           total numeric(10, 2), status text);
               SELECT hookrelay.track_table('store."Order"');
               BEGIN;
               SET LOCAL hookrelay.actor = '{"id": "1", "username": "admin"}';
               INSERT INTO store."Order" VALUES (42, 'ORD-123', 150.00, 'PENDING');
               UPDATE store."Order" SET status = 'PAID' WHERE id = 42;
               DELETE FROM store."Order" WHERE id = 42;
               COMMIT;"#,
        )
        .await
        .unwrap();
    drain(&db).await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let all: Vec<Value> = requests.iter().map(|r| r.json()).collect();
    // Parsed from text, since numbers keep their written digits (150.00 is not 150.0).
    let object =
        parse(r#"{"id": 42, "reference": "ORD-123", "total": 150.00, "status": "PENDING"}"#);
    let paid = parse(r#"{"id": 42, "reference": "ORD-123", "total": 150.00, "status": "PAID"}"#);
    let created = only(&all, "created");
    assert_eq!(created["model"], json!({"app": "store", "name": "Order"}));
    assert_eq!(created["object_id"], "42");
    assert_eq!(created["object"], object);
    assert_eq!(created["changes"], Value::Null);
    assert_eq!(created["user"], json!({"id": "1", "username": "admin"}));
    let updated = only(&all, "updated");
    assert_eq!(updated["object"], paid);
    assert_eq!(
        updated["changes"],
        json!({"status": {"old": "PENDING", "new": "PAID"}})
    );
    let deleted = only(&all, "deleted");
    assert_eq!(deleted["object"], paid, "a delete carries the old row");
    assert_eq!(deleted["changes"], Value::Null);
    assert_eq!(deleted["object_id"], "42");
    // The bytes are what PostgreSQL stored: numeric keeps its scale.
    let raw = String::from_utf8(requests[0].body.to_vec()).unwrap();
    assert!(raw.contains(r#""total":150.00"#), "{raw}");
    // And they are what was signed.
    let r = &requests[0];
    let message = format!("{}.{raw}", r.header("x-webhook-timestamp"));
    assert_eq!(
        r.header("x-webhook-signature"),
        format!("sha256={}", hmac_hex(SECRET.as_bytes(), message.as_bytes()))
    );
}

#[tokio::test]
async fn updates_that_change_no_tracked_value_emit_nothing() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE items (id int PRIMARY KEY, name text, note text, doc json,
                                  price numeric, touched_at timestamptz);
               INSERT INTO items VALUES (1, 'pen', NULL, '{"a": 1}', 1.5, now());
               SELECT hookrelay.track_table('items', exclude_columns => '{touched_at}');
               UPDATE items SET name = name;                    -- no-op
               UPDATE items SET touched_at = now() + interval '1 day';  -- only excluded
               UPDATE items SET doc = '{ "a" :  1 }';           -- same JSON, other spacing
               UPDATE items SET price = 1.50;                   -- same number, other scale
               UPDATE items SET note = 'first note';            -- NULL -> value
               UPDATE items SET note = NULL;                    -- value -> NULL"#,
        )
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 2);
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 2, "{all:#?}");
    let changes: Vec<&Value> = all.iter().map(|b| &b["changes"]).collect();
    assert!(changes.contains(&&json!({"note": {"old": null, "new": "first note"}})));
    assert!(changes.contains(&&json!({"note": {"old": "first note", "new": null}})));
}

#[tokio::test]
async fn excluded_columns_appear_nowhere_in_the_event() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text,
                                  "API Key" text);
               SELECT hookrelay.track_table('users',
                   exclude_columns => '{password_hash,API Key}');
               INSERT INTO users VALUES (1, 'ada@example.com', 'hash-1', 'key-1');
               UPDATE users SET email = 'ada@new.example', password_hash = 'hash-2',
                                "API Key" = 'key-2';
               DELETE FROM users;"#,
        )
        .await
        .unwrap();
    drain(&db).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        let raw = String::from_utf8(r.body.to_vec()).unwrap();
        for secret in ["password_hash", "hash-", "API Key", "key-"] {
            assert!(!raw.contains(secret), "{secret} leaked in {raw}");
        }
    }
    let updated = only(&bodies(&receiver, None), "updated");
    assert_eq!(
        updated["object"],
        json!({"id": 1, "email": "ada@new.example"})
    );
    assert_eq!(
        updated["changes"],
        json!({"email": {"old": "ada@example.com", "new": "ada@new.example"}})
    );
}

#[tokio::test]
async fn composite_keys_are_a_json_array_and_keyless_tables_have_no_object_id() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE line_items (order_id int, sku text, qty int,
                                       PRIMARY KEY (sku, order_id));
               CREATE TABLE audit_log (message text);
               SELECT hookrelay.track_table('line_items');
               SELECT hookrelay.track_table('audit_log');
               INSERT INTO line_items VALUES (7, 'B-1,"x"', 2);
               INSERT INTO audit_log VALUES ('hello');"#,
        )
        .await
        .unwrap();
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 2);
    let line = all
        .iter()
        .find(|b| b["model"]["name"] == "line_items")
        .unwrap();
    // Key columns in key order (sku, then order_id), as the JSON text of an array.
    let id = line["object_id"].as_str().unwrap();
    assert_eq!(id, r#"["B-1,\"x\"", 7]"#);
    assert_eq!(
        serde_json::from_str::<Value>(id).unwrap(),
        json!(["B-1,\"x\"", 7])
    );
    let log = all
        .iter()
        .find(|b| b["model"]["name"] == "audit_log")
        .unwrap();
    assert_eq!(log["object_id"], Value::Null);
    assert_eq!(log["object"], json!({"message": "hello"}));
    assert_eq!(log["model"], json!({"app": "public", "name": "audit_log"}));
}

#[tokio::test]
async fn a_rolled_back_write_to_a_tracked_table_delivers_nothing() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE orders (id int PRIMARY KEY, status text);
               SELECT hookrelay.track_table('orders');"#,
        )
        .await
        .unwrap();
    let mut client = connect(&db.url).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "INSERT INTO orders VALUES (1, 'NEW'); UPDATE orders SET status = 'PAID'; \
         DELETE FROM orders;",
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    // A savepoint rolled back inside a committed transaction takes its events with it too.
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "INSERT INTO orders VALUES (2, 'NEW'); SAVEPOINT s; INSERT INTO orders VALUES (3, 'NEW'); \
         ROLLBACK TO SAVEPOINT s;",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 1);
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["event"], "created");
    assert_eq!(all[0]["object"], json!({"id": 2, "status": "NEW"}));
}
