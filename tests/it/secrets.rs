//! Secrets never show: a whole scenario at trace level (endpoint commands, a worker that
//! delivers, rotates, fails, meets a 401 and a signing error, the operator commands, verify,
//! and mistakes that end in error messages), with everything printed and every history row
//! scanned for the distinctive secret values it used.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::support::{binary, free_addr, Receiver, Reply, TestDb, LOOPBACK};

const ENDPOINT_SECRET: &str = "zz-endpoint-secret-AAA111";
const ROTATED_SECRET: &str = "zz-rotated-secret-BBB222";
const HEADER_TOKEN: &str = "zz-static-token-CCC333";
const DB_PASSWORD: &str = "zz-db-password-DDD444";
/// The password of the role the worker runs as (a hookrelay_worker).
const WORKER_PASSWORD: &str = "zz-worker-password-JJJ000";
/// The raw key of the standard-webhooks endpoint (its secret is whsec_ + base64 of it).
const STANDARD_KEY: &str = "zz-standard-key-EEE555-24-bytes";
const FAILING_SECRET: &str = "zz-failing-secret-FFF666";
const APPLIED_SECRET: &str = "zz-applied-secret-GGG777";
const APPLIED_HEADER: &str = "zz-applied-header-HHH888";
const UNSIGNABLE: &str = "whsec_zz-unsignable-III999!!";

/// Everything printed and stored during the scenario, by where it came from.
#[derive(Default)]
struct Capture {
    sources: Vec<(String, String)>,
}

impl Capture {
    fn add(&mut self, source: impl Into<String>, text: impl Into<String>) {
        self.sources.push((source.into(), text.into()));
    }

    fn output(&mut self, source: &str, out: &Output) {
        self.add(
            format!("{source} (stdout)"),
            String::from_utf8_lossy(&out.stdout),
        );
        self.add(
            format!("{source} (stderr)"),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    fn lines(&self) -> usize {
        self.sources.iter().map(|(_, t)| t.lines().count()).sum()
    }
}

/// Runs `hookrelay` at trace level (as `HOOKRELAY_LOG`, or as `RUST_LOG` every other time).
fn traced(url: &str, args: &[&str], env: &[(&str, &str)], rust_log: bool) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("HOOKRELAY_DATABASE_URL", url)
        .env_remove("HOOKRELAY_ENDPOINT_SECRET")
        .env_remove("HOOKRELAY_NEW_SECRET");
    if rust_log {
        command.env("RUST_LOG", "trace");
    } else {
        command.env("HOOKRELAY_LOG", "trace").env_remove("RUST_LOG");
    }
    command.envs(env.iter().copied());
    command.output().expect("run hookrelay")
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("hookrelay-secrets-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Kills a worker process if the test fails before stopping it.
struct Reaper(i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn standard_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(STANDARD_KEY)
    )
}

#[tokio::test]
async fn no_secret_appears_in_logs_output_errors_or_history_at_trace_level() {
    let db = TestDb::new().await;
    let admin = format!("{}_pw", db.url.rsplit('/').next().unwrap());
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {admin} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'"
        ))
        .await
        .unwrap();
    let mut parsed = url::Url::parse(&db.url).unwrap();
    parsed.set_username(&admin).unwrap();
    parsed.set_password(Some(DB_PASSWORD)).unwrap();
    let url = parsed.to_string();
    let worker_role = format!("{admin}_worker");
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {worker_role} LOGIN PASSWORD '{WORKER_PASSWORD}' IN ROLE hookrelay_worker"
        ))
        .await
        .unwrap();
    let mut worker_url = parsed.clone();
    worker_url.set_username(&worker_role).unwrap();
    worker_url.set_password(Some(WORKER_PASSWORD)).unwrap();

    let receiver = Receiver::with(|req, _| match req.path.as_str() {
        "/auth" => Reply::status(401),
        "/fail" => Reply::status(500),
        _ => Reply::status(200),
    })
    .await;
    let closed = free_addr();
    let mut seen = Capture::default();
    let mut step = 0;
    let mut cli = |seen: &mut Capture, args: &[&str], env: &[(&str, &str)]| -> Output {
        step += 1;
        let out = traced(&url, args, env, step % 2 == 0);
        seen.output(&format!("hookrelay {}", args.join(" ")), &out);
        out
    };

    // Endpoint commands.
    let crm = receiver.url("/crm");
    let header = format!("Authorization: Bearer {HEADER_TOKEN}");
    let out = cli(
        &mut seen,
        &[
            "endpoint", "add", "--name", "crm", "--url", &crm, "--header", &header,
        ],
        &[("HOOKRELAY_ENDPOINT_SECRET", ENDPOINT_SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let standard = standard_secret();
    let std_url = receiver.url("/std");
    let out = cli(
        &mut seen,
        &[
            "endpoint", "add", "--name", "std", "--url", &std_url, "--scheme", "standard",
            "--secret", &standard,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, path) in [("auth", "/auth"), ("fail", "/fail")] {
        let target = receiver.url(path);
        let out = cli(
            &mut seen,
            &[
                "endpoint",
                "add",
                "--name",
                name,
                "--url",
                &target,
                "--secret",
                FAILING_SECRET,
                "--max-attempts",
                "2",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused_url = format!("http://{closed}/nobody");
    let out = cli(
        &mut seen,
        &[
            "endpoint",
            "add",
            "--name",
            "refused",
            "--url",
            &refused_url,
            "--secret",
            FAILING_SECRET,
            "--max-attempts",
            "1",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &mut seen,
        &["endpoint", "rotate-secret", "crm", "--grace", "1h"],
        &[("HOOKRELAY_NEW_SECRET", ROTATED_SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apply_file = temp_file(
        "apply.toml",
        &format!(
            "[[endpoints]]\nname = \"applied\"\nurl = \"{}\"\nsecret = \"{APPLIED_SECRET}\"\nheaders = {{ \"X-Api-Key\" = \"{APPLIED_HEADER}\" }}\n",
            receiver.url("/applied")
        ),
    );
    let out = cli(
        &mut seen,
        &["endpoint", "apply", apply_file.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A secret that cannot sign, written past the checks (as a hand-edited row might be).
    db.client
        .batch_execute(&format!(
            "ALTER TABLE hookrelay.endpoints DISABLE TRIGGER endpoints_validate;
             INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme, max_attempts)
             VALUES ('unsignable', '{}', '{UNSIGNABLE}', 'standard', 1);
             ALTER TABLE hookrelay.endpoints ENABLE TRIGGER endpoints_validate;",
            receiver.url("/unsignable")
        ))
        .await
        .unwrap();
    for args in [
        &["endpoint", "list"][..],
        &["endpoint", "list", "--json"],
        &["endpoint", "show", "crm"],
        &["endpoint", "show", "crm", "--json"],
        &["endpoint", "show", "applied"],
        &[
            "emit",
            "order.paid",
            "--object",
            r#"{"id": "42"}"#,
            "--actor",
            "7",
        ],
    ] {
        let out = cli(&mut seen, args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The worker, at trace level and as a hookrelay_worker role, until every delivery is
    // finished. Its output is read as it comes, so a full pipe never stalls it.
    let metrics = free_addr().to_string();
    let mut worker = Command::new(binary())
        .args([
            "run",
            "--retry-schedule",
            "100ms",
            "--poll-interval",
            "100ms",
            "--metrics-addr",
            &metrics,
        ])
        .env("HOOKRELAY_DATABASE_URL", worker_url.as_str())
        .env("HOOKRELAY_ALLOW_NETWORKS", LOOPBACK)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let reaper = Reaper(worker.id() as i32);
    let worker_stdout = drain(Box::new(worker.stdout.take().unwrap()));
    let worker_stderr = drain(Box::new(worker.stderr.take().unwrap()));
    let finished = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
            7,
            Duration::from_secs(30),
        )
        .await;
    // reqwest is built without a default TLS provider; the worker installs one, a test may not.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let page = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    seen.add("/metrics", page.text().await.unwrap());
    let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            if let Some(status) = worker.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = worker.kill();
        panic!("the worker did not stop within 15 s of SIGTERM");
    })
    .await
    .unwrap();
    std::mem::forget(reaper);
    let worker_log = worker_stderr.join().unwrap();
    seen.add("hookrelay run (stdout)", worker_stdout.join().unwrap());
    seen.add("hookrelay run (stderr)", worker_log.clone());
    assert!(status.success(), "{worker_log}");
    assert_eq!(finished, 7, "every delivery finished");
    assert!(
        worker_log.lines().count() > 50 && worker_log.contains("TRACE"),
        "the worker really logged at trace level: {} lines",
        worker_log.lines().count()
    );

    // What the receivers got: the secrets did travel, signed and sent.
    let got = receiver.requests();
    let to_crm = got
        .iter()
        .find(|r| r.path == "/crm")
        .expect("a request to crm");
    assert_eq!(
        to_crm.header("authorization"),
        format!("Bearer {HEADER_TOKEN}")
    );
    let signatures = to_crm.header("x-webhook-signature");
    assert_eq!(
        signatures.split(',').count(),
        2,
        "the new and the rotated-out secret sign"
    );
    let states: Vec<(String, String, Option<String>)> = db
        .client
        .query(
            "SELECT ep.name, d.state, d.last_error_code FROM hookrelay.deliveries d
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id ORDER BY ep.name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expect = |name: &str, state: &str, code: Option<&str>| {
        (name.to_string(), state.to_string(), code.map(String::from))
    };
    assert_eq!(
        states,
        [
            expect("applied", "delivered", None),
            expect("auth", "dead", Some("http_status")),
            expect("crm", "delivered", None),
            expect("fail", "dead", Some("http_status")),
            expect("refused", "dead", Some("connect")),
            expect("std", "delivered", None),
            expect("unsignable", "dead", Some("signing")),
        ]
    );

    // The operator commands over that history, and the receiver's check.
    let ids: Vec<i64> = db
        .client
        .query("SELECT id FROM hookrelay.deliveries ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut operator_args: Vec<Vec<String>> = vec![
        vec!["deliveries".into()],
        vec!["deliveries".into(), "--json".into()],
        vec!["stats".into()],
        vec!["stats".into(), "--json".into()],
    ];
    for id in &ids {
        operator_args.push(vec!["delivery".into(), "show".into(), id.to_string()]);
        operator_args.push(vec![
            "delivery".into(),
            "show".into(),
            id.to_string(),
            "--json".into(),
        ]);
    }
    for args in &operator_args {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&mut seen, &args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let body_file = temp_file("body.json", &String::from_utf8_lossy(&to_crm.body));
    for secret in [ROTATED_SECRET, "zz-a-wrong-secret"] {
        let stamp = format!(
            "X-Webhook-Timestamp: {}",
            to_crm.header("x-webhook-timestamp")
        );
        let signature = format!("X-Webhook-Signature: {signatures}");
        let out = traced(
            &url,
            &[
                "verify",
                "--secret",
                secret,
                "-H",
                &stamp,
                "-H",
                &signature,
                "--body-file",
                body_file.to_str().unwrap(),
            ],
            &[],
            false,
        );
        seen.output("hookrelay verify", &out);
    }

    // Mistakes: their error messages must not carry secrets either.
    let mut bad_port = parsed.clone();
    bad_port.set_port(Some(closed.port())).unwrap();
    let out = traced(bad_port.as_str(), &["stats"], &[], false);
    seen.output("hookrelay stats (unreachable database)", &out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":****@"),
        "the URL is shown with its password masked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let broken_config = temp_file(
        "broken.toml",
        &format!("concurrency = 4\ndatabase_url = \"{url}\n"),
    );
    let out = traced(
        &url,
        &["--config", broken_config.to_str().unwrap(), "stats"],
        &[],
        false,
    );
    seen.output("hookrelay --config broken.toml", &out);
    assert_eq!(out.status.code(), Some(1));
    let wrong_types = temp_file("wrong.toml", &format!("database_url = [\"{url}\"]\n"));
    let out = traced(
        &url,
        &["--config", wrong_types.to_str().unwrap(), "stats"],
        &[],
        false,
    );
    seen.output("hookrelay --config wrong.toml", &out);
    assert_eq!(out.status.code(), Some(1));
    let bad_apply = temp_file(
        "bad-apply.toml",
        &format!(
            "[[endpoints]]\nname = \"x\"\nurl = \"https://x.example/\"\nheaders = \"Bearer {HEADER_TOKEN}\"\n"
        ),
    );
    let out = cli(
        &mut seen,
        &["endpoint", "apply", bad_apply.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let with_credentials = format!("ftp://user:{DB_PASSWORD}@example.com/");
    let out = cli(
        &mut seen,
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
    let sql_error = db
        .client
        .batch_execute(&format!(
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('creds', '{with_credentials}', 'secret-secret')"
        ))
        .await
        .unwrap_err();
    let db_error = sql_error.as_db_error().unwrap();
    seen.add(
        "SQL error for a URL with credentials",
        format!(
            "{} {:?} {:?}",
            db_error.message(),
            db_error.detail(),
            db_error.hint()
        ),
    );
    let mut verify_stdin = Command::new(binary())
        .args(["verify", "--scheme", "standard", "--secret", UNSIGNABLE])
        .env("HOOKRELAY_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = verify_stdin.stdin.take().unwrap().write_all(b"{}");
    seen.output(
        "hookrelay verify (bad secret)",
        &verify_stdin.wait_with_output().unwrap(),
    );

    // History rows, as operators query them.
    for table in [
        "hookrelay.delivery_log",
        "hookrelay.attempts",
        "hookrelay.deliveries",
        "hookrelay.endpoint_state",
        "hookrelay.endpoint_health",
        "hookrelay.endpoint_fingerprints",
        "hookrelay.events",
    ] {
        let rows = db
            .client
            .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
            .await
            .unwrap();
        let text: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(!text.is_empty(), "{table} has rows to scan");
        seen.add(table, text.join("\n"));
    }

    let secrets = [
        ENDPOINT_SECRET,
        ROTATED_SECRET,
        HEADER_TOKEN,
        DB_PASSWORD,
        WORKER_PASSWORD,
        STANDARD_KEY,
        &standard,
        FAILING_SECRET,
        APPLIED_SECRET,
        APPLIED_HEADER,
        "zz-unsignable-III999",
    ];
    let mut leaks = Vec::new();
    for (source, text) in &seen.sources {
        for secret in secrets {
            if text.contains(secret) {
                let line = text
                    .lines()
                    .find(|l| l.contains(secret))
                    .unwrap_or_default();
                leaks.push(format!(
                    "{secret} in {source}: {}",
                    &line[..line.len().min(300)]
                ));
            }
        }
    }
    println!(
        "secrets scan: {} sources, {} lines scanned, {} secret values looked for",
        seen.sources.len(),
        seen.lines(),
        secrets.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    for path in [apply_file, body_file, broken_config, wrong_types, bad_apply] {
        let _ = std::fs::remove_file(path);
    }
}

/// The value every header mistake below carries; no message may repeat it.
const HEADER_SECRET: &str = "zz-header-secret-KKK111";

/// Every way a static header can be refused, from the command line, from an apply file and
/// from SQL: each error names the header only when its name is a valid one, says what to fix,
/// and never repeats the value (or an invalid name, which is often a value typed before the
/// colon).
#[tokio::test]
async fn no_header_error_repeats_a_header_value() {
    let db = TestDb::new().await;
    let t = HEADER_SECRET;
    let long = format!("{t}{}", "x".repeat(4100));
    let many: Vec<String> = (0..21).map(|i| format!("X-H{i}: {t}")).collect();
    // (--header arguments, what the message must say)
    let cli_cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!("Authorization Bearer {t}")],
            "the header has no colon",
        ),
        (vec![t.to_string()], "the header has no colon"),
        (
            vec![format!("Authorization Bearer {t}: x")],
            "a header name is longer than 100",
        ),
        (
            vec![format!("Authorization Bearer a:{t}")],
            "has characters a header name cannot have",
        ),
        (
            vec![format!(": {t}")],
            "a header has no name before its colon",
        ),
        (
            vec![format!("X-Token: a\u{1}{t}")],
            "header \"X-Token\" has a value with a line break",
        ),
        (
            vec![format!("X-Token: {t}\u{7f}")],
            "header \"X-Token\" has a value with a line break",
        ),
        (
            vec![format!("{}: {t}", "X".repeat(101))],
            "a header name is longer than 100",
        ),
        (
            vec![format!("X-Token: {long}")],
            "header \"X-Token\" has a value of 4123 characters",
        ),
        (
            vec![format!("X-Webhook-Signature: {t}")],
            "header \"X-Webhook-Signature\" is set by hookrelay itself",
        ),
        (
            vec![format!("Content-Type: {t}")],
            "header \"Content-Type\" is set by hookrelay itself",
        ),
        (
            vec![format!("X-Token: {t}"), format!("x-token: {t}")],
            "header \"X-Token\" is given more than once (names ignore case)",
        ),
        (
            many,
            "21 static headers are given; an endpoint may have at most 20",
        ),
    ];
    let mut wrong = Vec::new();
    let mut judge = |what: String, code: Option<i32>, stderr: &str, expected: &str| {
        let first = stderr.lines().next().unwrap_or_default();
        if code != Some(1) || !first.starts_with("error: ") || !first.contains(expected) {
            wrong.push(format!(
                "{what}: exit {code:?}, {first:?} does not say {expected:?}"
            ));
        }
        if stderr.contains("zz-header-secret") {
            wrong.push(format!("{what}: the value is repeated: {stderr}"));
        }
    };
    for (headers, expected) in &cli_cases {
        let mut args = vec![
            "endpoint",
            "add",
            "--name",
            "h",
            "--url",
            "https://example.com/",
        ];
        for h in headers {
            args.extend(["--header", h]);
        }
        let out = crate::support::hookrelay(&db, &args);
        judge(
            format!("--header {headers:?}"),
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
            expected,
        );
    }

    // The `headers` table of an apply file.
    let toml_string = |s: &str| serde_json::to_string(s).unwrap();
    let apply_cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{} = \"x\"",
                toml_string(&format!("Authorization Bearer {t}"))
            ),
            "a header name is longer than 100 characters or has characters",
        ),
        (
            format!("\"\" = {}", toml_string(t)),
            "a header name is empty",
        ),
        (
            format!("X-Token = {}", toml_string(&format!("a\n{t}"))),
            "header \"X-Token\" has a value with a line break",
        ),
        (
            format!("X-Token = {}", toml_string(&long)),
            "header \"X-Token\" has a value of 4123 characters",
        ),
        (
            format!("webhook-id = {}", toml_string(t)),
            "header \"webhook-id\" is set by hookrelay itself",
        ),
        (
            format!("X-Token = {0}\nx-token = {0}", toml_string(t)),
            "header \"X-Token\" is given more than once (names ignore case)",
        ),
    ];
    for (i, (table, expected)) in apply_cases.iter().enumerate() {
        let file = temp_file(
            &format!("headers-{i}.toml"),
            &format!("[[endpoints]]\nname = \"h\"\nurl = \"https://example.com/\"\n[endpoints.headers]\n{table}\n"),
        );
        let out = crate::support::hookrelay(&db, &["endpoint", "apply", file.to_str().unwrap()]);
        judge(
            format!("apply headers {table:?}"),
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
            &format!("endpoint \"h\": {expected}"),
        );
        let _ = std::fs::remove_file(file);
    }

    // The same written with SQL: the endpoints trigger's messages.
    let json_cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({ format!("Authorization Bearer {t}"): "x" }),
            "an endpoint header name is empty, longer than 100 characters, or has characters",
        ),
        (
            serde_json::json!({ "": t }),
            "an endpoint header name is empty",
        ),
        (
            serde_json::json!({ "X-Token": format!("a\r\n{t}") }),
            "endpoint header \"X-Token\" has a value with control characters",
        ),
        (
            serde_json::json!({ "X-Token": long }),
            "endpoint header \"X-Token\" has a value longer than 4096 characters",
        ),
        (
            serde_json::json!({ "X-Webhook-Event": t }),
            "endpoint header \"X-Webhook-Event\" is set by hookrelay itself",
        ),
        (
            serde_json::json!({ "X-Token": t, "x-token": t }),
            "is given more than once (names ignore case)",
        ),
        (
            serde_json::json!({ "X-Token": 42 }),
            "endpoint header \"X-Token\" must have a string value",
        ),
    ];
    for (headers, expected) in &json_cases {
        let err = db
            .client
            .execute(
                "INSERT INTO hookrelay.endpoints (name, url, secret, headers)
                 VALUES ('h', 'https://example.com/', 'secret-secret', $1)",
                &[headers],
            )
            .await
            .unwrap_err();
        let db_err = err.as_db_error().expect("a database error");
        let text = format!(
            "error: {} {:?} {:?}",
            db_err.message(),
            db_err.detail(),
            db_err.hint()
        );
        judge(format!("SQL headers {headers}"), Some(1), &text, expected);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0,
        "nothing was written"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
