//! Secrets never show: scenarios at trace level (endpoint commands, a worker that delivers,
//! rotates, fails, meets a 401 and a signing error; the operator commands over that history
//! and verify; mistakes that end in error messages), with everything printed and every
//! history row scanned for the distinctive secret values they used.

mod delivering;
mod errors;

use std::process::{Command, Output};

use base64::Engine;

use crate::support::{binary, free_addr, temp_file, Receiver, Reply, TestDb};

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
