//! The command line: endpoint management and emit, as an operator runs them.

use std::process::Output;

use crate::support::hookrelay;
use crate::support::TestDb;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Adds crm, with its own secret and filters, and std, standard-webhooks with a generated
/// secret the command points to without printing.
fn add_crm_and_std(db: &TestDb, secret: &str) {
    let out = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "crm",
            "--url",
            "https://crm.example.com/hooks",
            "--secret",
            secret,
            "--events",
            "order.paid,order.created",
            "--models",
            "store.Order",
            "--account",
            "acme",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "std",
            "--url",
            "http://127.0.0.1:9/x",
            "--scheme",
            "standard",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--reveal-secret"));
}

/// crm's filters and scheme are stored as given.
async fn assert_crm_stored(db: &TestDb) {
    let row = db
        .client
        .query_one(
            "SELECT events, models, account_id, signature_scheme FROM hookrelay.endpoints WHERE name = 'crm'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Vec<String>>(0),
        ["order.paid", "order.created"]
    );
    assert_eq!(row.get::<_, Vec<String>>(1), ["store.Order"]);
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("acme"));
    assert_eq!(row.get::<_, String>(3), "hookrelay");
}

#[tokio::test]
async fn endpoints_are_added_and_listed_with_secrets_masked() {
    let db = TestDb::new().await;
    let secret = "my-very-own-secret-value";
    add_crm_and_std(&db, secret);
    let generated: String = db
        .client
        .query_one(
            "SELECT secret FROM hookrelay.endpoints WHERE name = 'std'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(generated.starts_with("whsec_"), "{generated}");
    assert_crm_stored(&db).await;

    for args in [
        &["endpoint", "list"][..],
        &["endpoint", "list", "--json"],
        &["endpoint", "show", "std"],
    ] {
        let out = hookrelay(&db, args);
        assert!(out.status.success());
        let shown = text(&out);
        assert!(shown.contains("crm") || shown.contains("std"), "{shown}");
        assert!(!shown.contains(secret), "secret printed by {args:?}");
        assert!(!shown.contains(&generated), "secret printed by {args:?}");
        assert!(shown.contains("sha256:"), "{shown}");
    }
    let out = hookrelay(&db, &["endpoint", "show", "std", "--reveal-secret"]);
    assert!(text(&out).contains(&generated));
}

#[tokio::test]
async fn bad_endpoint_input_gets_one_clear_line_and_changes_nothing() {
    let db = TestDb::new().await;
    let cases: [(&[&str], &str); 5] = [
        (
            &["--name", "a", "--url", "ftp://x"],
            "only http:// and https://",
        ),
        (&["--name", "a", "--url", "not a url"], "malformed"),
        (
            &["--name", "a", "--url", "https://u:p@x.com"],
            "credentials",
        ),
        (
            &["--name", "a b", "--url", "https://x.com"],
            "endpoint name",
        ),
        (
            &["--name", "a", "--url", "https://x.com", "--scheme", "md5"],
            "unknown signature scheme",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["endpoint", "add"];
        full.extend_from_slice(args);
        let out = hookrelay(&db, &full);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let ok = hookrelay(
        &db,
        &["endpoint", "add", "--name", "a", "--url", "https://x.com"],
    );
    assert!(ok.status.success());
    let dup = hookrelay(
        &db,
        &["endpoint", "add", "--name", "a", "--url", "https://y.com"],
    );
    assert!(text(&dup).contains("already exists"), "{}", text(&dup));
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        1
    );
    let missing = hookrelay(&db, &["endpoint", "disable", "nope"]);
    assert!(text(&missing).contains("no endpoint named \"nope\""));
}

#[tokio::test]
async fn emit_writes_an_event_and_prints_its_id() {
    let db = TestDb::new().await;
    let out = hookrelay(
        &db,
        &[
            "emit",
            "order.paid",
            "--object",
            r#"{"id": "42", "total": "9.50"}"#,
            "--model",
            "store.Order",
            "--actor",
            r#"{"id": "7"}"#,
            "--account",
            "acme",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = printed.strip_prefix("evt_").expect("an evt_ id");
    let row = db
        .client
        .query_one(
            "SELECT event, model, object_id, actor, account_id FROM hookrelay.events WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "order.paid");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("store.Order")
    );
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("42"));
    assert_eq!(
        row.get::<_, serde_json::Value>(3),
        serde_json::json!({"id": "7"})
    );
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("acme"));

    let bad = hookrelay(&db, &["emit", "order paid"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("name events like order.paid, with 1 to 200 of"));
    assert!(!text(&bad).contains("Failing row"));
}

#[tokio::test]
async fn a_misspelt_variable_is_named_with_the_one_meant_and_its_value_kept_out() {
    let db = TestDb::new().await;
    let out = std::process::Command::new(crate::support::binary())
        .args(["endpoint", "list"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("HOOKRELAY_CONCURENCY", "zz-value-7741")
        .env("HOOKRELAY_SHUTDOWN_TIMOUT", "zz-value-7742")
        .env_remove("HOOKRELAY_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hookrelay");
    let text = text(&out);
    assert!(out.status.success(), "the command still runs: {text}");
    for (typo, meant) in [
        ("HOOKRELAY_CONCURENCY", "HOOKRELAY_CONCURRENCY"),
        ("HOOKRELAY_SHUTDOWN_TIMOUT", "HOOKRELAY_SHUTDOWN_TIMEOUT"),
    ] {
        assert!(
            text.contains(&format!("{typo} is set, but hookrelay reads no variable of that name; did you mean {meant}?")),
            "{text}"
        );
    }
    assert!(!text.contains("zz-value-77"), "no value shown: {text}");
}
