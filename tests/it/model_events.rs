//! Model events: row triggers installed by `hookrelay.track_table` turn inserts, updates and
//! deletes of application tables into events, delivered to real receivers.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;

use crate::support::{connect, hmac_hex, Receiver, TestDb};

pub const SECRET: &str = "model-events-secret";

/// Runs a worker until every event is fanned out and no delivery is pending.
pub async fn drain(db: &TestDb) {
    drain_with(db, db.config()).await;
}

/// [`drain`] with these worker settings.
pub async fn drain_with(db: &TestDb, config: hookrelay::config::WorkerConfig) {
    let worker = db.start_worker(config);
    let limit = Duration::from_secs(20);
    let unclaimed = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL",
            0,
            limit,
        )
        .await;
    let pending = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending'",
            0,
            limit,
        )
        .await;
    worker.stop().await;
    assert_eq!((unclaimed, pending), (0, 0), "the worker finished its work");
}

/// Every body a receiver got (optionally only those sent to `path`), as JSON.
pub fn bodies(receiver: &Receiver, path: Option<&str>) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .filter(|r| path.is_none_or(|p| r.path == p))
        .map(|r| r.json())
        .collect()
}

/// The one body whose event is `event`.
pub fn only(bodies: &[Value], event: &str) -> Value {
    let found: Vec<&Value> = bodies.iter().filter(|b| b["event"] == event).collect();
    assert_eq!(found.len(), 1, "one {event} event in {bodies:#?}");
    found[0].clone()
}

/// JSON from text, keeping numbers' digits as written.
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// A database, a receiver and one endpoint that takes everything.
pub async fn setup() -> (TestDb, Receiver) {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("everything", &receiver.url("/all"), SECRET)
        .await;
    (db, receiver)
}

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
async fn quoted_unicode_and_hostile_identifiers_are_handled_as_names() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE victim (id int);
               CREATE SCHEMA "Shop; DROP TABLE victim;--";
               CREATE TABLE "Shop; DROP TABLE victim;--"."Ördér ""Items"" {x,y}" (
                   "Id'); DROP TABLE victim;--" int PRIMARY KEY,
                   "MixedCase" text,
                   "naïve ✓" text,
                   "sécret;" text);
               SELECT hookrelay.track_table(
                   '"Shop; DROP TABLE victim;--"."Ördér ""Items"" {x,y}"',
                   exclude_columns => ARRAY['sécret;'],
                   account_column => 'MixedCase');
               INSERT INTO "Shop; DROP TABLE victim;--"."Ördér ""Items"" {x,y}"
                   VALUES (1, 'acme', 'ä', 'hidden');
               UPDATE "Shop; DROP TABLE victim;--"."Ördér ""Items"" {x,y}" SET "naïve ✓" = 'ö';"#,
        )
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM victim").await, 0);
    drain(&db).await;
    let all = bodies(&receiver, None);
    assert_eq!(all.len(), 2);
    let created = only(&all, "created");
    assert_eq!(
        created["model"],
        json!({"app": "Shop; DROP TABLE victim;--", "name": "Ördér \"Items\" {x,y}"})
    );
    assert_eq!(created["object_id"], "1");
    assert_eq!(created["account_id"], "acme");
    assert_eq!(
        created["object"],
        json!({"Id'); DROP TABLE victim;--": 1, "MixedCase": "acme", "naïve ✓": "ä"})
    );
    let updated = only(&all, "updated");
    assert_eq!(
        updated["changes"],
        json!({"naïve ✓": {"old": "ä", "new": "ö"}})
    );
    let tracked: String = db
        .client
        .query_one("SELECT tbl::text FROM hookrelay.tracked_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        tracked,
        r#""Shop; DROP TABLE victim;--"."Ördér ""Items"" {x,y}""#
    );
}

#[tokio::test]
async fn every_common_column_type_has_its_documented_json_form() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            r#"SET TimeZone = 'Europe/Paris';
               CREATE TYPE mood AS ENUM ('happy', 'sad');
               CREATE TABLE everything (
                   id       uuid PRIMARY KEY,
                   amount   numeric(12, 2),
                   huge     numeric,
                   ratio    double precision,
                   big      bigint,
                   doc      json,
                   docb     jsonb,
                   tags     text[],
                   grid     int[][],
                   at       timestamptz,
                   local_at timestamp,
                   day      date,
                   raw      bytea,
                   feeling  mood,
                   double_amount numeric GENERATED ALWAYS AS (amount * 2) STORED,
                   body     text,
                   flag     boolean,
                   nothing  text);
               SELECT hookrelay.track_table('everything');"#,
        )
        .await
        .unwrap();
    // 640 kB of hex that does not compress, so PostgreSQL stores it out of line (TOAST).
    let large: String = (0..10_000u32)
        .map(|i| hex::encode(sha2::Sha256::digest(i.to_be_bytes())))
        .collect();
    db.client
        .execute(
            r#"INSERT INTO everything (id, amount, huge, ratio, big, doc, docb, tags, grid, at,
                                      local_at, day, raw, feeling, body, flag)
               VALUES ('0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f', 150.00,
                       123456789012345678901234567890.000000001, 'NaN', 9007199254740993,
                       '{"b": [1, 2], "a": null}', '{"nested": {"x": true}}',
                       ARRAY['a', NULL, 'c "q"'], '{{1,2},{3,4}}',
                       '2026-01-24 10:00:00+00', '2026-01-24 10:00:00.123456', '2026-01-24',
                       '\x00ff10', 'happy', $1, true)"#,
            &[&large],
        )
        .await
        .unwrap();
    db.client
        .batch_execute("UPDATE everything SET feeling = 'sad'")
        .await
        .unwrap();
    let toasted = db
        .count("SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'everything'")
        .await;
    assert!(
        toasted > 600_000,
        "the large value is TOASTed ({toasted} bytes)"
    );
    // The 640 kB body is above the default --max-payload-bytes (256 KiB).
    let config = hookrelay::config::WorkerConfig {
        max_payload_bytes: 4 << 20,
        ..db.config()
    };
    drain_with(&db, config).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let created = requests
        .iter()
        .find(|r| r.json()["event"] == "created")
        .unwrap();
    let raw = String::from_utf8(created.body.to_vec()).unwrap();
    for exact in [
        r#""amount":150.00"#,
        r#""huge":123456789012345678901234567890.000000001"#,
        r#""double_amount":300.00"#,
        r#""big":9007199254740993"#,
    ] {
        assert!(
            raw.contains(exact),
            "{exact} in {}",
            &raw[..400.min(raw.len())]
        );
    }
    let object = &created.json()["object"];
    assert_eq!(object["body"], large.as_str());
    let mut rest = object.clone();
    for key in ["body", "amount", "huge", "double_amount", "big"] {
        rest.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(
        rest,
        json!({
            "id": "0190f0a4-1c2b-7d3e-8f40-5a6b7c8d9e0f",
            "ratio": "NaN",
            "doc": {"a": null, "b": [1, 2]},
            "docb": {"nested": {"x": true}},
            "tags": ["a", null, "c \"q\""],
            "grid": [[1, 2], [3, 4]],
            "at": "2026-01-24T11:00:00+01:00",
            "local_at": "2026-01-24T10:00:00.123456",
            "day": "2026-01-24",
            "raw": "\\x00ff10",
            "feeling": "happy",
            "flag": true,
            "nothing": null
        })
    );
    let updated = requests
        .iter()
        .map(|r| r.json())
        .find(|b| b["event"] == "updated")
        .unwrap();
    assert_eq!(
        updated["changes"],
        json!({"feeling": {"old": "happy", "new": "sad"}}),
        "the unchanged TOASTed value is not a change"
    );
    assert_eq!(updated["object"]["body"], large.as_str());
}

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
