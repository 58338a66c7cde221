//! Secrets never show: scenarios at trace level (endpoint commands, a worker that delivers,
//! rotates, fails, meets a 401 and a signing error; the operator commands over that history
//! and verify; mistakes that end in error messages), with everything printed and every
//! history row scanned for the distinctive secret values they used.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::support::{binary, free_addr, temp_file, Receiver, Reply, TestDb, LOOPBACK};

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

/// Everything printed and stored during a scenario, by where it came from.
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

    /// Fails naming every secret value found in what was captured, with its source and line.
    fn assert_no_secrets(&self) {
        let standard = standard_secret();
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
        for (source, text) in &self.sources {
            for secret in secrets {
                if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                    leaks.push(format!(
                        "{secret} in {source}: {}",
                        &line[..line.len().min(300)]
                    ));
                }
            }
        }
        println!(
            "secrets scan: {} sources, {} lines scanned, {} secret values looked for",
            self.sources.len(),
            self.lines(),
            secrets.len()
        );
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
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

/// A database reached with a password (a superuser's, and a hookrelay_worker's), receivers,
/// a closed port, and everything printed so far.
struct Scenario {
    db: TestDb,
    /// The superuser's URL, with its password.
    url: url::Url,
    /// The worker role's URL, with its password.
    worker_url: url::Url,
    receiver: Receiver,
    closed: std::net::SocketAddr,
    seen: Capture,
    step: usize,
    files: Vec<std::path::PathBuf>,
}

impl Scenario {
    async fn new() -> Scenario {
        let db = TestDb::new().await;
        let admin = format!("{}_pw", db.url.rsplit('/').next().unwrap());
        let worker_role = format!("{admin}_worker");
        db.client
            .batch_execute(&format!(
                "CREATE ROLE {admin} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}';
                 CREATE ROLE {worker_role} LOGIN PASSWORD '{WORKER_PASSWORD}' IN ROLE hookrelay_worker"
            ))
            .await
            .unwrap();
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_username(&admin).unwrap();
        url.set_password(Some(DB_PASSWORD)).unwrap();
        let mut worker_url = url.clone();
        worker_url.set_username(&worker_role).unwrap();
        worker_url.set_password(Some(WORKER_PASSWORD)).unwrap();
        let receiver = Receiver::with(|req, _| match req.path.as_str() {
            "/auth" => Reply::status(401),
            "/fail" => Reply::status(500),
            _ => Reply::status(200),
        })
        .await;
        Scenario {
            db,
            url,
            worker_url,
            receiver,
            closed: free_addr(),
            seen: Capture::default(),
            step: 0,
            files: Vec::new(),
        }
    }

    /// Runs `hookrelay` at trace level with the superuser's URL, keeping what it printed.
    fn cli(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.step += 1;
        let out = traced(self.url.as_str(), args, env, self.step % 2 == 0);
        self.seen
            .output(&format!("hookrelay {}", args.join(" ")), &out);
        out
    }

    /// Like [`Scenario::cli`], and the command succeeded.
    fn cli_ok(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let out = self.cli(args, env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A temporary file, removed when the scenario ends well.
    fn file(&mut self, name: &str, text: &str) -> String {
        let path = temp_file(name, text);
        self.files.push(path.clone());
        path.to_string_lossy().into_owned()
    }

    /// Scans everything captured, then removes the scenario's files.
    fn finish(self) {
        self.seen.assert_no_secrets();
        for path in self.files {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Adds every kind of endpoint with secrets and a static header, rotates one, applies a file,
/// writes one whose secret cannot sign, and emits an event.
fn add_endpoints(s: &mut Scenario) {
    let crm = s.receiver.url("/crm");
    let header = format!("Authorization: Bearer {HEADER_TOKEN}");
    s.cli_ok(
        &[
            "endpoint", "add", "--name", "crm", "--url", &crm, "--header", &header,
        ],
        &[("HOOKRELAY_ENDPOINT_SECRET", ENDPOINT_SECRET)],
    );
    let (standard, std_url) = (standard_secret(), s.receiver.url("/std"));
    s.cli_ok(
        &[
            "endpoint", "add", "--name", "std", "--url", &std_url, "--scheme", "standard",
            "--secret", &standard,
        ],
        &[],
    );
    let refused_url = format!("http://{}/nobody", s.closed);
    for (name, target, attempts) in [
        ("auth", s.receiver.url("/auth"), "2"),
        ("fail", s.receiver.url("/fail"), "2"),
        ("refused", refused_url, "1"),
    ] {
        s.cli_ok(
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
                attempts,
            ],
            &[],
        );
    }
    s.cli_ok(
        &["endpoint", "rotate-secret", "crm", "--grace", "1h"],
        &[("HOOKRELAY_NEW_SECRET", ROTATED_SECRET)],
    );
    let apply_file = s.file(
        "apply.toml",
        &format!(
            "[[endpoints]]\nname = \"applied\"\nurl = \"{}\"\nsecret = \"{APPLIED_SECRET}\"\nheaders = {{ \"X-Api-Key\" = \"{APPLIED_HEADER}\" }}\n",
            s.receiver.url("/applied")
        ),
    );
    s.cli_ok(&["endpoint", "apply", &apply_file], &[]);
}

/// A secret that cannot sign, written past the checks (as a hand-edited row might be); then
/// the endpoint commands that show endpoints, and an event.
async fn add_unsignable_and_emit(s: &mut Scenario) {
    s.db.client
        .batch_execute(&format!(
            "ALTER TABLE hookrelay.endpoints DISABLE TRIGGER endpoints_validate;
             INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme, max_attempts)
             VALUES ('unsignable', '{}', '{UNSIGNABLE}', 'standard', 1);
             ALTER TABLE hookrelay.endpoints ENABLE TRIGGER endpoints_validate;",
            s.receiver.url("/unsignable")
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
        s.cli_ok(args, &[]);
    }
}

/// The worker, at trace level and as a hookrelay_worker role, until every delivery is
/// finished, with a scrape of `/metrics`. Its output is read as it comes, so a full pipe
/// never stalls it.
async fn run_worker(s: &mut Scenario) {
    let metrics = free_addr().to_string();
    let mut worker = Command::new(binary())
        .args([
            "run",
            "--retry-schedule",
            "100ms",
            "--poll-interval",
            "100ms",
        ])
        .args(["--metrics-addr", &metrics])
        .env("HOOKRELAY_DATABASE_URL", s.worker_url.as_str())
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
    let finished =
        s.db.wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
            7,
            Duration::from_secs(30),
        )
        .await;
    s.seen.add("/metrics", scrape(&metrics).await);
    let status = stop(worker).await;
    std::mem::forget(reaper);
    let worker_log = worker_stderr.join().unwrap();
    s.seen
        .add("hookrelay run (stdout)", worker_stdout.join().unwrap());
    s.seen.add("hookrelay run (stderr)", worker_log.clone());
    assert!(status.success(), "{worker_log}");
    assert_eq!(finished, 7, "every delivery finished");
    assert!(
        worker_log.lines().count() > 50 && worker_log.contains("TRACE"),
        "the worker really logged at trace level: {} lines",
        worker_log.lines().count()
    );
}

async fn scrape(addr: &str) -> String {
    // reqwest is built without a default TLS provider; the worker installs one, a test may not.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let page = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    page.text().await.unwrap()
}

/// SIGTERM, and the exit status within 15 s.
async fn stop(mut worker: std::process::Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::task::spawn_blocking(move || {
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
    .unwrap()
}

/// What the receivers got: the secrets did travel, signed and sent, and each delivery ended
/// as its receiver made it. Returns the request to crm.
async fn check_deliveries(s: &Scenario) -> crate::support::Request {
    let got = s.receiver.requests();
    let to_crm = got
        .into_iter()
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
    let states: Vec<(String, String, Option<String>)> =
        s.db.client
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
    to_crm
}

/// The operator commands over the history, every delivery shown.
async fn operator_commands(s: &mut Scenario) {
    let ids: Vec<i64> =
        s.db.client
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
        let show = ["delivery", "show", &id.to_string()]
            .map(String::from)
            .to_vec();
        operator_args.push(show.clone());
        operator_args.push([show, vec!["--json".into()]].concat());
    }
    for args in &operator_args {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s.cli_ok(&args, &[]);
    }
}

/// The receiver's check of the request crm got, with the right and a wrong secret.
fn verify_received(s: &mut Scenario, to_crm: &crate::support::Request) {
    let body_file = s.file("body.json", &String::from_utf8_lossy(&to_crm.body));
    let stamp = format!(
        "X-Webhook-Timestamp: {}",
        to_crm.header("x-webhook-timestamp")
    );
    let signature = format!(
        "X-Webhook-Signature: {}",
        to_crm.header("x-webhook-signature")
    );
    for secret in [ROTATED_SECRET, "zz-a-wrong-secret"] {
        let out = traced(
            s.url.as_str(),
            &[
                "verify",
                "--secret",
                secret,
                "-H",
                &stamp,
                "-H",
                &signature,
                "--body-file",
                &body_file,
            ],
            &[],
            false,
        );
        s.seen.output("hookrelay verify", &out);
    }
}

/// History rows, as operators query them.
async fn history_rows(s: &mut Scenario) {
    for table in [
        "hookrelay.delivery_log",
        "hookrelay.attempts",
        "hookrelay.deliveries",
        "hookrelay.endpoint_state",
        "hookrelay.endpoint_health",
        "hookrelay.endpoint_fingerprints",
        "hookrelay.events",
    ] {
        let rows =
            s.db.client
                .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
                .await
                .unwrap();
        let text: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(!text.is_empty(), "{table} has rows to scan");
        s.seen.add(table, text.join("\n"));
    }
}

/// Endpoint commands, a worker that delivers, rotates, fails, meets a 401 and a signing error,
/// then the operator commands over that history and the receiver's check, all at trace level:
/// nothing printed, logged, scraped or stored in history rows carries a secret.
#[tokio::test]
async fn no_secret_appears_while_delivering_or_in_what_operators_read() {
    let mut s = Scenario::new().await;
    add_endpoints(&mut s);
    add_unsignable_and_emit(&mut s).await;
    run_worker(&mut s).await;
    let to_crm = check_deliveries(&s).await;
    operator_commands(&mut s).await;
    verify_received(&mut s, &to_crm);
    history_rows(&mut s).await;
    s.finish();
}

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
