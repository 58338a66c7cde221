//! Every common column type has its documented JSON form, exact numbers and TOASTed values
//! included.

use serde_json::json;
use sha2::Digest;

use super::{drain_with, setup};
use crate::support::{Request, TestDb};

/// A tracked table with a column of each common type, in a session whose time zone is not
/// UTC (so timestamptz shows its offset).
async fn create_everything_table(db: &TestDb) {
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
}

/// Inserts one row of every type, with a 640 kB text value, then changes only its enum;
/// returns the large value.
async fn insert_and_update_everything(db: &TestDb) -> String {
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
    large
}

/// Numbers keep their digits as stored, in the raw body.
fn assert_exact_numbers(created: &Request) {
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
}

/// Every other column's JSON form, as documented.
fn assert_documented_forms(created: &Request, large: &str) {
    let object = &created.json()["object"];
    assert_eq!(object["body"], large);
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
}

#[tokio::test]
async fn every_common_column_type_has_its_documented_json_form() {
    let (db, receiver) = setup().await;
    create_everything_table(&db).await;
    let large = insert_and_update_everything(&db).await;
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
    assert_exact_numbers(created);
    assert_documented_forms(created, &large);
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
