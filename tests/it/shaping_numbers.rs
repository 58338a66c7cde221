//! Per-endpoint `number_format` (numbers as JSON numbers or as strings of their exact digits)
//! and `skip_empty_changes` (no update whose changes include_fields leaves empty).

use crate::model_events::{drain, SECRET};
use crate::support::{hookrelay, Receiver, TestDb};

/// `hookrelay endpoint add` with these extra arguments; panics with its output on failure.
fn add(db: &TestDb, name: &str, url: &str, extra: &[&str]) {
    let mut args = vec![
        "endpoint", "add", "--name", name, "--url", url, "--secret", SECRET,
    ];
    args.extend_from_slice(extra);
    let out = hookrelay(db, &args);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The raw bodies sent to `path`.
fn raw_bodies(receiver: &Receiver, path: &str) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[tokio::test]
async fn string_numbers_keep_every_digit_and_json_numbers_stay_as_stored() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    add(
        &db,
        "strings",
        &receiver.url("/strings"),
        &["--number-format", "string"],
    );
    add(&db, "numbers", &receiver.url("/numbers"), &[]);
    db.client
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(10,2), status text);
             SELECT hookrelay.track_table('orders', '{created,updated}');
             INSERT INTO orders VALUES (9007199254740993, 150.00, 'PENDING');
             UPDATE orders SET total = 155.10;",
        )
        .await
        .unwrap();
    drain(&db).await;
    let strings = raw_bodies(&receiver, "/strings");
    let numbers = raw_bodies(&receiver, "/numbers");
    assert_eq!((strings.len(), numbers.len()), (2, 2));
    let created = strings.iter().find(|b| b.contains(r#""event":"created""#));
    let created = created.expect("created");
    assert!(
        created
            .contains(r#""object":{"id":"9007199254740993","status":"PENDING","total":"150.00"}"#),
        "{created}"
    );
    let updated = strings.iter().find(|b| b.contains(r#""event":"updated""#));
    let updated = updated.expect("updated");
    assert!(
        updated.contains(r#""changes":{"total":{"new":"155.10","old":"150.00"}}"#),
        "{updated}"
    );
    let created = numbers.iter().find(|b| b.contains(r#""event":"created""#));
    let created = created.expect("created");
    assert!(
        created.contains(r#""object":{"id":9007199254740993,"status":"PENDING","total":150.00}"#),
        "{created}"
    );
    let out = hookrelay(&db, &["endpoint", "show", "strings"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("number format: string"));
}

#[tokio::test]
async fn an_unknown_number_format_is_refused_and_writes_nothing() {
    let db = TestDb::new().await;
    let out = hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "x",
            "--url",
            "https://example.com/x",
            "--number-format",
            "float",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid value 'float'")
            && stderr.contains("[possible values: json, string]"),
        "{stderr}"
    );
    let err = db
        .client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, number_format)
             VALUES ('x', 'https://example.com/x', 'secret-secret-secret', 'float')",
            &[],
        )
        .await
        .unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert_eq!(
        db_err.message(),
        r#"number_format must be json or string, not "float""#
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0
    );
}

/// Each body sent to `path` as "event changes".
fn summary(receiver: &Receiver, path: &str) -> Vec<String> {
    raw_bodies(receiver, path)
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            format!("{} {}", v["event"].as_str().unwrap(), v["changes"])
        })
        .collect()
}

#[tokio::test]
async fn skip_empty_changes_drops_updates_include_fields_leaves_empty() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let keep = r#"{"orders": ["id", "status"]}"#;
    add(
        &db,
        "skips",
        &receiver.url("/skips"),
        &["--include-fields", keep, "--skip-empty-changes"],
    );
    add(
        &db,
        "sends",
        &receiver.url("/sends"),
        &["--include-fields", keep],
    );
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric, status text);
             SELECT hookrelay.track_table('orders', '{created,updated}', model => 'orders');
             INSERT INTO orders VALUES (1, 10, 'NEW');
             UPDATE orders SET total = 20;
             UPDATE orders SET status = 'PAID', total = 30;",
        )
        .await
        .unwrap();
    drain(&db).await;
    let mut skips = summary(&receiver, "/skips");
    skips.sort();
    assert_eq!(
        skips,
        [
            "created null",
            r#"updated {"status":{"new":"PAID","old":"NEW"}}"#
        ]
    );
    let mut sends = summary(&receiver, "/sends");
    sends.sort();
    assert_eq!(
        sends,
        [
            "created null",
            r#"updated {"status":{"new":"PAID","old":"NEW"}}"#,
            "updated {}"
        ]
    );
    let skipped = db
        .count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep
             ON ep.id = d.endpoint_id WHERE ep.name = 'skips'",
        )
        .await;
    assert_eq!(skipped, 2, "the empty update gets no delivery row");
}
