//! Hostile identifiers that name real tables and columns: tracked, quoted, never executed.

use serde_json::json;

use crate::support::{hookrelay, TestDb};

/// Creates `orders` beside tables and columns whose names are SQL injections and Unicode,
/// tracks the hostile one by SQL and writes a row to it.
async fn track_hostile_table(db: &TestDb) {
    db.client
        .batch_execute(
            r#"CREATE TABLE orders (id int PRIMARY KEY);
               CREATE TABLE "we""ird; DROP TABLE orders; --" (
                   id int PRIMARY KEY, "note'); DROP TABLE orders; --" text, "ünï cödé" text);
               CREATE TABLE "Ünïcödé Tåble" (id int PRIMARY KEY, "Prïcé" numeric);"#,
        )
        .await
        .unwrap();
    db.client
        .batch_execute(
            r#"SELECT hookrelay.track_table('"we""ird; DROP TABLE orders; --"',
                   exclude_columns => '{"note''); DROP TABLE orders; --"}',
                   model => 'x''y;DROP;TABLE;orders;--');
               INSERT INTO "we""ird; DROP TABLE orders; --" VALUES (1, 'hidden', 'ü');"#,
        )
        .await
        .expect("a hostile but real table name is tracked");
}

/// Every event's model and object, by model.
async fn events_by_model(db: &TestDb) -> Vec<(String, serde_json::Value)> {
    db.client
        .query(
            "SELECT model, object FROM hookrelay.events ORDER BY model",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn hostile_identifiers_that_name_real_tables_are_quoted_never_run() {
    let db = TestDb::new().await;
    track_hostile_table(&db).await;
    let out = hookrelay(
        &db,
        &[
            "track",
            r#"public."Ünïcödé Tåble""#,
            "--model",
            "shop.Tåble'--",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("as model shop.Tåble'--"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    db.client
        .batch_execute(r#"INSERT INTO "Ünïcödé Tåble" VALUES (7, 9.50)"#)
        .await
        .unwrap();
    let events = events_by_model(&db).await;
    assert_eq!(
        events,
        [
            (
                "shop.Tåble'--".to_string(),
                // The stored digits, as PostgreSQL keeps them.
                serde_json::from_str(r#"{"id": 7, "Prïcé": 9.50}"#).unwrap()
            ),
            (
                "x'y;DROP;TABLE;orders;--".to_string(),
                json!({"id": 1, "ünï cödé": "ü"})
            ),
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 'orders'")
            .await,
        1,
        "no identifier was executed"
    );
}
