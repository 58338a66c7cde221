//! Quoted, Unicode and hostile identifiers are handled as names.

use serde_json::json;

use super::{bodies, drain, only, setup};

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
