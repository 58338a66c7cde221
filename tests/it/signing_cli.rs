//! The signing surface from the operator's and the receiver's shell: `hookrelay verify` on real
//! deliveries, and `endpoint rotate-secret`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::hookrelay;
use crate::support::{binary, Receiver, Request, TestDb};

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs `hookrelay verify` with `args`, the body on standard input and no secret in the
/// environment unless given.
fn verify(args: &[&str], body: &[u8], env_secret: Option<&str>) -> Output {
    let mut command = Command::new(binary());
    command
        .arg("verify")
        .args(args)
        .env_remove("HOOKRELAY_VERIFY_SECRET")
        .env_remove("HOOKRELAY_VERIFY_SCHEME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(secret) = env_secret {
        command.env("HOOKRELAY_VERIFY_SECRET", secret);
    }
    let mut child = command.spawn().unwrap();
    // A command that takes its body from --body-file, or fails on its arguments, may exit
    // before reading stdin: a broken pipe here is expected then.
    let _ = child.stdin.take().unwrap().write_all(body);
    child.wait_with_output().unwrap()
}

/// `-H 'Name: value'` arguments for a recorded request's headers.
fn header_args(request: &Request, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| ["-H".to_string(), format!("{n}: {}", request.header(n))])
        .collect()
}

pub async fn one_delivery(db: &TestDb, receiver: &Receiver) -> Request {
    let worker = db.start_worker(db.config());
    db.emit("order.paid", json!({"id": "7", "total": "150.00"}))
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    worker.stop().await;
    got.into_iter().next().expect("a delivery")
}

/// `verify` arguments: each secret, `--at`, then `more`.
fn verify_args(secrets: &[&str], at: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = secrets
        .iter()
        .flat_map(|s| ["--secret", s])
        .map(String::from)
        .collect();
    args.extend(["--at".to_string(), at.to_string()]);
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// [`verify`] with owned arguments.
fn run_verify(args: Vec<String>, body: &[u8], env: Option<&str>) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    verify(&args, body, env)
}

/// The delivery verifies: with its secret, with the body from a file, with the secret from
/// the environment (never printed), and with either of two secrets during a rotation.
fn assert_verifies_every_way(secret: &str, at: &str, headers: &[&str], body: &[u8]) {
    let out = run_verify(verify_args(&[secret], at, headers), body, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with("valid: signed with secret 1 of 1, 2 s ago"),
        "{}",
        text(&out)
    );

    let body_file = std::env::temp_dir().join(format!("hookrelay-body-{}", uuid::Uuid::new_v4()));
    std::fs::write(&body_file, body).unwrap();
    let from_file = [headers, &["--body-file", body_file.to_str().unwrap()]].concat();
    let out = run_verify(verify_args(&[secret], at, &from_file), b"ignored", None);
    std::fs::remove_file(&body_file).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The secret from the environment, never printed.
    let out = run_verify(verify_args(&[], at, headers), body, Some(secret));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(secret));

    // A rotation: either of several secrets.
    let out = run_verify(
        verify_args(&["some-other-secret", secret], at, headers),
        body,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("secret 2 of 2"), "{}", text(&out));
}

/// Each way a check can fail (arguments, body), and what the one line must say.
fn failure_cases(
    secret: &str,
    at: &str,
    headers: &[&str],
    body: &[u8],
) -> Vec<(Vec<String>, Vec<u8>, &'static str)> {
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    let with_scheme = [headers, &["--scheme", "body-hex"]].concat();
    let in_a_minute = [headers, &["--tolerance", "1m"]].concat();
    vec![
        (
            verify_args(&[secret], at, headers),
            tampered,
            "invalid: bad signature",
        ),
        (
            verify_args(&["not-the-secret"], at, headers),
            body.to_vec(),
            "invalid: bad signature",
        ),
        (
            verify_args(&[secret], "99999999999", headers),
            body.to_vec(),
            "invalid: stale timestamp",
        ),
        (
            verify_args(&[secret], "1000", &in_a_minute),
            body.to_vec(),
            "in the future",
        ),
        (
            verify_args(&[secret], at, &headers[..2]),
            body.to_vec(),
            "invalid: missing header X-Webhook-Signature",
        ),
        (
            verify_args(&[secret], at, &headers[2..]),
            body.to_vec(),
            "invalid: missing header X-Webhook-Timestamp",
        ),
        (
            verify_args(&[secret], at, &with_scheme),
            body.to_vec(),
            "try --scheme hookrelay",
        ),
    ]
}

#[tokio::test]
async fn verify_command_accepts_real_deliveries_and_names_each_failure() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let secret = "verify-me-secret-1";
    db.endpoint("crm", &receiver.url("/crm"), secret).await;
    let request = one_delivery(&db, &receiver).await;
    let ts = request.header("x-webhook-timestamp").to_string();
    let at = (ts.parse::<i64>().unwrap() + 2).to_string();
    // Header names in any case.
    let stamp = format!("x-webhook-TIMESTAMP: {ts}");
    let signature = format!(
        "X-Webhook-Signature: {}",
        request.header("x-webhook-signature")
    );
    let headers = ["-H", &stamp, "-H", &signature];
    let body = request.body.to_vec();
    assert_verifies_every_way(secret, &at, &headers, &body);
    for (args, body, reason) in failure_cases(secret, &at, &headers, &body) {
        let shown = args.join(" ");
        let out = run_verify(args, &body, None);
        assert_eq!(out.status.code(), Some(1), "{shown}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains(reason), "{shown}: {said}");
        assert_eq!(said.trim_end().lines().count(), 1, "one line: {said}");
        assert!(!said.contains(secret));
    }
}

/// A malformed signature, a missing webhook-id and the scheme left at its default are each
/// named. `args` is the passing command line: six flags, then the three headers.
fn assert_standard_failures_named(args: &[&str], request: &Request, at: &str) {
    let mut malformed = args[..6].to_vec();
    let id = format!("webhook-id: {}", request.header("webhook-id"));
    let ts = format!("webhook-timestamp: {at}");
    malformed.extend([
        "-H",
        &id,
        "-H",
        &ts,
        "-H",
        "webhook-signature: v1,not*base64!",
    ]);
    let out = verify(&malformed, &request.body, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not valid base64"), "{}", text(&out));

    let mut no_id = args[..6].to_vec();
    no_id.extend(&args[8..]);
    let out = verify(&no_id, &request.body, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("missing header webhook-id"),
        "{}",
        text(&out)
    );

    // The scheme left at its default: pointed to the right one.
    let out = verify(&args[2..], &request.body, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("try --scheme standard"),
        "{}",
        text(&out)
    );
}

/// The check cannot run: exit status 2, with what to fix, and no secret repeated.
fn assert_unusable_checks_exit_2() {
    let unusable: [(&[&str], &str); 3] = [
        (
            &["--scheme", "standard", "--secret", "plain-secret-1"],
            "whsec_",
        ),
        (
            &["--secret", "s3cret-value", "-H", "no colon here"],
            "no colon",
        ),
        (
            &["--secret", "s3cret-value", "--scheme", "sha1"],
            "unknown signature scheme",
        ),
    ];
    for (args, reason) in unusable {
        let out = verify(args, b"{}", None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(reason), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("plain-secret-1"));
    }
    let out = verify(&["-H", "X-Webhook-Timestamp: 1"], b"{}", None);
    assert_eq!(out.status.code(), Some(2), "no secret: {}", text(&out));
}

#[tokio::test]
async fn verify_command_checks_standard_webhooks_and_refuses_bad_input() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let secret = hookrelay::sign::generate_secret(hookrelay::sign::Scheme::Standard);
    db.client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) \
             VALUES ('std', $1, $2, 'standard')",
            &[&receiver.url("/std"), &secret],
        )
        .await
        .unwrap();
    let request = one_delivery(&db, &receiver).await;
    let names = ["webhook-id", "webhook-timestamp", "webhook-signature"];
    let headers = header_args(&request, &names);
    let at = request.header("webhook-timestamp").to_string();
    let mut args: Vec<String> = ["--scheme", "standard", "--at", &at, "--secret", &secret]
        .map(String::from)
        .to_vec();
    args.extend(headers.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = verify(&args, &request.body, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(&secret));

    assert_standard_failures_named(&args, &request, &at);
    assert_unusable_checks_exit_2();
}

/// "secret previous expires-in-two-hours" of endpoint crm, `-` for NULL.
async fn secret(db: &TestDb) -> String {
    let sql = "SELECT secret || ' ' || coalesce(previous_secret, '-') || ' ' || \
               coalesce((previous_secret_expires_at > now() + interval '119 minutes' \
               AND previous_secret_expires_at < now() + interval '121 minutes')::text, '-') \
               FROM hookrelay.endpoints WHERE name = 'crm'";
    db.client.query_one(sql, &[]).await.unwrap().get(0)
}

/// During the grace period `endpoint show` says the previous secret signs too, and neither
/// `show` nor `list --json` prints either secret.
fn assert_rotation_shown_without_secrets(db: &TestDb, current: &str, first: &str) {
    let shown = hookrelay(db, &["endpoint", "show", "crm"]);
    assert!(text(&shown).contains("signs too until"), "{}", text(&shown));
    assert!(!text(&shown).contains(current) && !text(&shown).contains(first));
    let listed = hookrelay(db, &["endpoint", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed[0]["previous_secret_expires_at"].is_string(),
        "{listed}"
    );
    assert!(!listed.to_string().contains(first));
}

/// Unknown endpoints, long grace periods and short secrets are refused; giving the current
/// secret again says so without printing it.
async fn assert_rotate_refusals(db: &TestDb) {
    let refusals: [(&[&str], &str); 3] = [
        (&["endpoint", "rotate-secret", "nope"], "no endpoint named"),
        (
            &["endpoint", "rotate-secret", "crm", "--grace", "45days"],
            "at most 30 days",
        ),
        (
            &["endpoint", "rotate-secret", "crm", "--secret", "short"],
            "8 to 1000",
        ),
    ];
    for (args, reason) in refusals {
        let out = hookrelay(db, args);
        assert!(!out.status.success());
        assert!(text(&out).contains(reason), "{args:?}: {}", text(&out));
    }
    let current = secret(db).await.split(' ').next().unwrap().to_string();
    let out = hookrelay(
        db,
        &["endpoint", "rotate-secret", "crm", "--secret", &current],
    );
    assert!(text(&out).contains("current secret"), "{}", text(&out));
    assert!(!text(&out).contains(&current));
}

#[tokio::test]
async fn rotate_secret_generates_without_printing_and_retires_the_older_secret() {
    let db = TestDb::new().await;
    let out = hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "crm",
            "--url",
            "https://crm.example.com/h",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = secret(&db).await;
    let first = first.split(' ').next().unwrap().to_string();

    let out = hookrelay(&db, &["endpoint", "rotate-secret", "crm", "--grace", "2h"]);
    assert!(out.status.success(), "{}", text(&out));
    let row = secret(&db).await;
    let parts: Vec<&str> = row.split(' ').collect();
    assert_eq!(
        parts[1], first,
        "the old secret is kept as the previous one"
    );
    assert_eq!(parts[2], "true", "it expires in two hours");
    assert_eq!(
        parts[0].len(),
        64,
        "a generated secret: 32 random bytes as hex"
    );
    assert!(!text(&out).contains(parts[0]) && !text(&out).contains(&first));
    assert!(text(&out).contains("--reveal-secret"), "{}", text(&out));

    assert_rotation_shown_without_secrets(&db, parts[0], &first);

    // Rotating again during the grace period retires the older secret at once.
    let out = hookrelay(&db, &["endpoint", "rotate-secret", "crm", "--grace", "0s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no longer signs"), "{}", text(&out));
    assert!(secret(&db).await.ends_with(" - -"));

    assert_rotate_refusals(&db).await;
}
