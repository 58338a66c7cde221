//! Mistakes that end in error messages carry no secret.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{traced, Scenario, DB_PASSWORD, HEADER_TOKEN, UNSIGNABLE};
use crate::support::binary;

/// Mistakes that end in error messages: an unreachable database, broken configuration files,
/// a bad apply file, a URL with credentials (from the command line and from SQL), a secret
/// that cannot verify. No message carries a secret.
#[tokio::test]
async fn no_secret_appears_in_error_messages() {
    let mut s = Scenario::new().await;
    let mut bad_port = s.url.clone();
    bad_port.set_port(Some(s.closed.port())).unwrap();
    let out = traced(bad_port.as_str(), &["stats"], &[], false);
    s.seen
        .output("hookrelay stats (unreachable database)", &out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":****@"),
        "the URL is shown with its password masked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The other places a password can ride in a connection string: the key-value form, the
    // URL's query, and an unescaped @ inside the password.
    let (host, port) = (bad_port.host_str().unwrap().to_owned(), s.closed.port());
    for url in [
        format!("host={host} port={port} user=app password={DB_PASSWORD} dbname=x"),
        format!("postgres://app@{host}:{port}/x?password={DB_PASSWORD}"),
        format!("postgres://app:tail@{DB_PASSWORD}@{host}:{port}/x"),
    ] {
        let out = traced(&url, &["stats"], &[], false);
        s.seen
            .output("hookrelay stats (password in the connection string)", &out);
        assert_eq!(out.status.code(), Some(1));
    }
    let url = s.url.to_string();
    for (name, text) in [
        (
            "broken.toml",
            format!("concurrency = 4\ndatabase_url = \"{url}\n"),
        ),
        ("wrong.toml", format!("database_url = [\"{url}\"]\n")),
    ] {
        let file = s.file(name, &text);
        let out = traced(&url, &["--config", &file, "stats"], &[], false);
        s.seen.output(&format!("hookrelay --config {name}"), &out);
        assert_eq!(out.status.code(), Some(1));
    }
    let bad_apply = s.file(
        "bad-apply.toml",
        &format!(
            "[[endpoints]]\nname = \"x\"\nurl = \"https://x.example/\"\nheaders = \"Bearer {HEADER_TOKEN}\"\n"
        ),
    );
    let out = s.cli(&["endpoint", "apply", &bad_apply], &[]);
    assert_eq!(out.status.code(), Some(1));
    let with_credentials = format!("ftp://user:{DB_PASSWORD}@example.com/");
    let out = s.cli(
        &[
            "endpoint",
            "add",
            "--name",
            "creds",
            "--url",
            &with_credentials,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    credentials_in_sql(&mut s, &with_credentials).await;
    verify_with_a_bad_secret(&mut s);
    s.finish();
}

/// The endpoints trigger's error for a URL with credentials.
async fn credentials_in_sql(s: &mut Scenario, with_credentials: &str) {
    let sql_error = s
        .db
        .client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('creds', '{with_credentials}', 'secret-secret')"
        ))
        .await
        .unwrap_err();
    let db_error = sql_error.as_db_error().unwrap();
    s.seen.add(
        "SQL error for a URL with credentials",
        format!(
            "{} {:?} {:?}",
            db_error.message(),
            db_error.detail(),
            db_error.hint()
        ),
    );
}

/// `verify` with a secret that cannot verify, the body on standard input.
fn verify_with_a_bad_secret(s: &mut Scenario) {
    let mut verify_stdin = Command::new(binary())
        .args(["verify", "--scheme", "standard", "--secret", UNSIGNABLE])
        .env("HOOKRELAY_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = verify_stdin.stdin.take().unwrap().write_all(b"{}");
    s.seen.output(
        "hookrelay verify (bad secret)",
        &verify_stdin.wait_with_output().unwrap(),
    );
}
