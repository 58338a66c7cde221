//! Endpoint commands, a worker that delivers, rotates, fails, meets a 401 and a signing
//! error, then the operator commands over that history and the receiver's check.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    standard_secret, traced, Reaper, Scenario, APPLIED_HEADER, APPLIED_SECRET, ENDPOINT_SECRET,
    FAILING_SECRET, HEADER_TOKEN, ROTATED_SECRET, UNSIGNABLE,
};
use crate::support::{binary, free_addr, LOOPBACK};

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
