//! Tracked columns follow the table's columns: a renamed excluded column stays out of events,
//! a renamed account column keeps scoping them, a dropped account column refuses writes with
//! the fix, and what is tracked is listed under the current names.

use serde_json::{json, Value};

use crate::model_events::{bodies, drain, setup, SECRET};
use crate::support::{hookrelay, Receiver, TestDb};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hookrelay track --list`, which must succeed.
fn listed(db: &TestDb) -> String {
    let out = hookrelay(db, &["track", "--list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// The stored events' object and changes, as text, oldest first.
async fn event_texts(db: &TestDb) -> Vec<String> {
    db.client
        .query(
            "SELECT object::text || ' ' || coalesce(changes::text, '') FROM hookrelay.events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_renamed_excluded_column_never_appears_in_object_or_changes() {
    let (db, receiver) = setup().await;
    db.client
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text, internal_note text);
             SELECT hookrelay.track_table('customers', exclude_columns => '{internal_note}');
             ALTER TABLE customers RENAME COLUMN internal_note TO staff_note;
             INSERT INTO customers VALUES (1, 'Ada', 'secret-one');
             UPDATE customers SET staff_note = 'secret-two', name = 'Ada L.';
             UPDATE customers SET staff_note = 'secret-three';",
        )
        .await
        .unwrap();
    let texts = event_texts(&db).await;
    assert_eq!(texts.len(), 2, "created, and the update of name: {texts:?}");
    for text in &texts {
        assert!(
            !text.contains("secret") && !text.contains("staff_note"),
            "{text}"
        );
    }
    drain(&db).await;
    let sent = bodies(&receiver, None);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["object"], json!({"id": 1, "name": "Ada"}));
    assert_eq!(
        sent[1]["changes"],
        json!({"name": {"old": "Ada", "new": "Ada L."}})
    );

    let row = db
        .client
        .query_one(
            "SELECT exclude_columns, problem FROM hookrelay.tracked_tables",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), ["staff_note"]);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    let list = listed(&db);
    assert!(list.contains("; excluding staff_note;"), "{list}");
    assert!(!list.contains("internal_note"), "{list}");
}

#[tokio::test]
async fn a_renamed_account_column_still_scopes_events_to_the_account() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, account_id) VALUES ($1, $2, $3, $4)",
            &[&"acme", &receiver.url("/acme"), &SECRET, &"acme"],
        )
        .await
        .unwrap();
    db.client
        .batch_execute(
            "CREATE TABLE projects (id int PRIMARY KEY, tenant text, title text);
             SELECT hookrelay.track_table('projects', account_column => 'tenant');
             ALTER TABLE projects RENAME COLUMN tenant TO account_ref;
             ALTER TABLE projects RENAME COLUMN id TO project_id;
             INSERT INTO projects VALUES (1, 'acme', 'Rocket'), (2, 'globex', 'Dome');",
        )
        .await
        .unwrap();
    drain(&db).await;
    let sent: Vec<(Value, Value)> = bodies(&receiver, Some("/acme"))
        .iter()
        .map(|b| (b["object_id"].clone(), b["account_id"].clone()))
        .collect();
    assert_eq!(sent, [(json!("1"), json!("acme"))]);

    let list = listed(&db);
    assert!(
        list.contains("account from account_ref; object_id from project_id"),
        "{list}"
    );
}

#[tokio::test]
async fn dropping_the_account_column_refuses_writes_with_the_fix_until_tracked_again() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE projects (id int PRIMARY KEY, tenant text, title text);
             SELECT hookrelay.track_table('projects', account_column => 'tenant');
             INSERT INTO projects VALUES (1, 'acme', 'Rocket');
             ALTER TABLE projects DROP COLUMN tenant CASCADE;",
        )
        .await
        .unwrap();
    let e = db
        .client
        .batch_execute("INSERT INTO projects VALUES (2, 'Dome')")
        .await
        .expect_err("a write whose event has no account");
    let e = e.as_db_error().expect("a server error");
    assert_eq!(e.code().code(), "55000");
    assert_eq!(
        e.message(),
        "hookrelay cannot write the event for this change to projects: its account column \
         (tenant when tracked) was dropped, so the event's account is unknown"
    );
    assert!(
        e.hint()
            .unwrap()
            .contains("SELECT hookrelay.untrack_table('projects')"),
        "{:?}",
        e.hint()
    );
    let list = listed(&db);
    assert!(
        list.contains("account from tenant (dropped)")
            && list.contains("PROBLEM: its account column was dropped"),
        "{list}"
    );
    // Only the event of the first row was written: nothing went out unscoped.
    let events: i64 = db
        .client
        .query_one("SELECT count(*) FROM hookrelay.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);

    let out = hookrelay(&db, &["track", "projects"]);
    assert!(out.status.success());
    db.client
        .batch_execute("INSERT INTO projects VALUES (2, 'Dome')")
        .await
        .unwrap();
    assert!(!listed(&db).contains("PROBLEM"));
}

#[tokio::test]
async fn migration_14_converts_tables_tracked_by_name() {
    let db = TestDb::empty().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA hookrelay;
             CREATE TABLE hookrelay.schema_migrations (version int PRIMARY KEY);",
        )
        .await
        .unwrap();
    let (before, after) = hookrelay::admin::migrate::MIGRATIONS.split_at(13);
    for m in before {
        db.client.batch_execute(m.sql).await.unwrap();
    }
    db.client
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, tenant text, internal_note text);
             SELECT hookrelay.track_table('customers', exclude_columns => '{internal_note}',
                                          account_column => 'tenant');",
        )
        .await
        .unwrap();
    assert_eq!(after[0].name, "0014_tracked_columns.sql");
    db.client.batch_execute(after[0].sql).await.unwrap();
    db.client
        .batch_execute(
            "ALTER TABLE customers RENAME COLUMN internal_note TO staff_note;
             ALTER TABLE customers RENAME COLUMN tenant TO account_ref;
             INSERT INTO customers VALUES (1, 'acme', 'secret');",
        )
        .await
        .unwrap();
    let row = db
        .client
        .query_one("SELECT object::text, account_id FROM hookrelay.events", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        r#"{"id": 1, "account_ref": "acme"}"#
    );
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("acme"));
}
