//! The configuration file: settings by flag name, checked; flags override it; `enabled = false`
//! pauses delivery without losing events; JSON logs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{binary, sigterm_and_wait, Receiver, TestDb};

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("hookrelay-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_bad_configuration_file_is_refused_with_the_key_named() {
    let cases = [
        (
            "unknown",
            "concurency = 8\n",
            "unknown setting `concurency`; did you mean `concurrency`?",
        ),
        (
            "django",
            "max_retries = 5\n",
            "unknown setting `max_retries`: hookrelay counts attempts, the first one included, \
             so use `max_attempts` (max_retries = 5 is max_attempts = 6).",
        ),
        (
            "type",
            "concurrency = \"eight\"\n",
            "`concurrency` must be a whole number",
        ),
        (
            "duration",
            "lease = 60\n",
            "`lease` must be a duration string",
        ),
        ("syntax", "concurrency = \n", "TOML parse error"),
    ];
    for (name, text, expected) in cases {
        let path = write_config(name, text);
        let out = Command::new(binary())
            .args(["--config", path.to_str().unwrap(), "run"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(expected) && err.contains(path.to_str().unwrap()),
            "{name}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        let _ = std::fs::remove_file(path);
    }
    let missing = Command::new(binary())
        .args(["--config", "/nonexistent/hookrelay.toml", "stats"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the configuration file"));
}

/// SIGTERM, a clean exit, and everything the process wrote to its piped stderr.
fn stop_and_read_stderr(mut child: std::process::Child) -> String {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    stderr
}

/// Every line of `stderr` is a JSON log record, and one says delivery is paused.
fn assert_json_log_says_paused(stderr: &str) {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("delivery is paused"))),
        "{stderr}"
    );
}

#[tokio::test]
async fn enabled_false_pauses_delivery_and_keeps_the_events() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    db.emit("order.paid", json!({"id": 1})).await;
    let path = write_config(
        "paused",
        &format!(
            "database_url = \"{}\"\nenabled = false\nmetrics_addr = \"off\"\nlog_format = \"json\"\npoll_interval = \"100ms\"\n",
            db.url
        ),
    );
    let child = Command::new(binary())
        .args(["--config", path.to_str().unwrap(), "run"])
        .env_remove("HOOKRELAY_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receiver.requests().is_empty(),
        "nothing delivered while paused"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL")
            .await,
        1,
        "the event waits in the outbox"
    );
    assert_json_log_says_paused(&stop_and_read_stderr(child));

    // A flag beats the file: the same file with --enabled true delivers.
    let worker = Command::new(binary())
        .args([
            "--config",
            path.to_str().unwrap(),
            "run",
            "--enabled",
            "true",
        ])
        .env_remove("HOOKRELAY_DATABASE_URL")
        .env("HOOKRELAY_ALLOW_NETWORKS", crate::support::LOOPBACK)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let stopped = sigterm_and_wait(worker).await;
    assert!(stopped.success());
    assert_eq!(got.len(), 1);
    let _ = std::fs::remove_file(path);
}

fn apply(db: &TestDb, file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(["endpoint", "apply", file.to_str().unwrap()])
        .args(extra)
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("CRM_WEBHOOK_SECRET", "from-the-environment-123")
        .output()
        .unwrap()
}

fn lines(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Two endpoints with settings alongside: one's secret from the environment, the other's
/// generated, with shaping.
const FIRST_FILE: &str = r#"
        concurrency = 8  # settings may share the file

        [[endpoints]]
        name = "primary_crm"
        url = "https://crm.example.com/webhooks/"
        secret_env = "CRM_WEBHOOK_SECRET"
        events = ["created", "updated"]
        include_models = ["store.Order", "store.Customer"]

        [[endpoints]]
        name = "analytics"
        url = "https://analytics.example.com/events/"
        signature_scheme = "standard"
        timeout = "5s"
        include_fields = { "store.Order" = ["id", "total", "status"] }
        redact_fields = { "store.Customer" = { email = "***@***.com" } }
    "#;

/// [`FIRST_FILE`] with primary_crm's events and URL changed and analytics gone.
fn second_file() -> String {
    let second = FIRST_FILE
        .replace("[\"created\", \"updated\"]", "[\"created\"]")
        .replace("crm.example.com/webhooks/", "crm.example.com/v2/");
    second
        .split("[[endpoints]]\n        name = \"analytics\"")
        .next()
        .unwrap()
        .to_string()
}

/// The first apply stored what the file says; returns analytics' generated secret.
async fn assert_first_file_stored(db: &TestDb) -> String {
    let row = db
        .client
        .query_one(
            "SELECT secret, events, models, timeout_ms FROM hookrelay.endpoints WHERE name = 'primary_crm'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "from-the-environment-123");
    assert_eq!(row.get::<_, Vec<String>>(1), ["created", "updated"]);
    assert_eq!(
        row.get::<_, Vec<String>>(2),
        ["store.Order", "store.Customer"]
    );
    let generated: String = db
        .client
        .query_one(
            "SELECT secret FROM hookrelay.endpoints WHERE name = 'analytics'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(generated.starts_with("whsec_"));
    let shaping = db
        .client
        .query_one(
            "SELECT include_fields, redact_fields, timeout_ms FROM hookrelay.endpoints WHERE name = 'analytics'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        shaping.get::<_, serde_json::Value>(0),
        json!({"store.Order": ["id", "total", "status"]})
    );
    assert_eq!(
        shaping.get::<_, serde_json::Value>(1),
        json!({"store.Customer": {"email": "***@***.com"}})
    );
    assert_eq!(shaping.get::<_, Option<i32>>(2), Some(5000));
    generated
}

/// A dry run says what would change and changes nothing; the real run prunes, and a rerun
/// finds nothing to do.
async fn assert_prune_dry_run_then_prune(db: &TestDb, path: &std::path::Path) {
    assert_eq!(
        lines(&apply(db, path, &["--prune", "--dry-run"])),
        [
            "updated primary_crm: events, url",
            "removed analytics",
            "dry run: nothing was changed"
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        2
    );
    assert_eq!(
        lines(&apply(db, path, &["--prune"])),
        ["updated primary_crm: events, url", "removed analytics"]
    );
    assert_eq!(
        lines(&apply(db, path, &["--prune"])),
        ["unchanged primary_crm"]
    );
    let url: String = db
        .client
        .query_one("SELECT url FROM hookrelay.endpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(url, "https://crm.example.com/v2/");
}

/// One bad endpoint in the file: nothing of the file is applied.
async fn assert_one_bad_endpoint_applies_nothing(
    db: &TestDb,
    path: &std::path::Path,
    second: &str,
) {
    let bad = format!(
        "{second}\n[[endpoints]]\nname = \"new_one\"\nurl = \"https://ok.example.com\"\n\n[[endpoints]]\nname = \"broken\"\nurl = \"gopher://x\"\n"
    );
    std::fs::write(path, &bad).unwrap();
    let out = apply(db, path, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("endpoint \"broken\"") && err.contains("only http"),
        "{err}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        1
    );
}

#[tokio::test]
async fn endpoint_apply_is_idempotent_reports_changes_and_prunes() {
    let db = TestDb::new().await;
    let path = write_config("apply", FIRST_FILE);
    assert_eq!(
        lines(&apply(&db, &path, &[])),
        [
            "created primary_crm",
            "created analytics (secret generated; see `hookrelay endpoint show analytics --reveal-secret`)"
        ]
    );
    let generated = assert_first_file_stored(&db).await;
    let again = apply(&db, &path, &[]);
    assert_eq!(
        lines(&again),
        ["unchanged primary_crm", "unchanged analytics"]
    );
    let printed = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(!printed.contains("from-the-environment") && !printed.contains(&generated));

    let second = second_file();
    std::fs::write(&path, &second).unwrap();
    assert_prune_dry_run_then_prune(&db, &path).await;
    assert_one_bad_endpoint_applies_nothing(&db, &path, &second).await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn endpoint_apply_leaves_a_disabled_endpoint_disabled_unless_the_file_says() {
    let db = TestDb::new().await;
    let path = write_config(
        "active",
        "[[endpoints]]\nname = \"crm\"\nurl = \"https://crm.example.com/hooks\"\n",
    );
    assert!(lines(&apply(&db, &path, &[]))[0].starts_with("created crm"));
    db.client
        .execute("UPDATE hookrelay.endpoints SET active = false", &[])
        .await
        .unwrap();
    assert_eq!(lines(&apply(&db, &path, &[])), ["unchanged crm"]);
    let active: bool = db
        .client
        .query_one("SELECT active FROM hookrelay.endpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!active, "applying did not re-enable it");
    std::fs::write(
        &path,
        "[[endpoints]]\nname = \"crm\"\nurl = \"https://crm.example.com/hooks\"\nactive = true\n",
    )
    .unwrap();
    assert_eq!(lines(&apply(&db, &path, &[])), ["updated crm: active"]);
    let _ = std::fs::remove_file(path);
}
