//! What a new user meets first, run as they would run it: an empty `DATABASE_URL`, a server
//! that accepts connections and never answers, a misspelt log level, the embedded cluster
//! started by a one-off command, and the server's own warnings during `migrate`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{blocking, get, own_cluster, WorkerProcess};
use crate::support::{binary, connect, free_addr};

/// `hookrelay ARGS` with `env`, nothing inherited that would choose a database or a log filter.
fn hookrelay_with(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("HOOKRELAY_DATABASE_URL")
        .env_remove("HOOKRELAY_LOG")
        .env_remove("HOOKRELAY_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run hookrelay")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("hookrelay-test-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_empty_database_url_is_an_error_not_a_private_cluster() {
    let dir = scratch("empty-url");
    for (name, value) in [
        ("DATABASE_URL", ""),
        ("DATABASE_URL", "  "),
        ("HOOKRELAY_DATABASE_URL", " "),
    ] {
        let out = hookrelay_with(&["stats"], &[(name, value)], &dir);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}={value:?}: {err}");
        assert!(err.contains("is set but empty"), "{name}: {err}");
        assert!(err.contains("postgres://"), "the fix is named: {err}");
        assert!(
            !dir.join(".hookrelay").exists(),
            "{name}={value:?} started the embedded cluster"
        );
    }
    let out = hookrelay_with(&["--database-url", "", "stats"], &[], &dir);
    assert!(stderr(&out).contains("--database-url"), "{}", stderr(&out));
}

#[test]
fn misspelt_log_levels_are_refused_naming_the_levels() {
    let dir = scratch("log-levels");
    let url = [("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")];
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (&["stats"], &[("HOOKRELAY_LOG", "warning")]),
        (&["--log", "verbose!!", "stats"], &[]),
        (&["--log", "nonexistent_level", "stats"], &[]),
        (&["stats"], &[("RUST_LOG", "loud")]),
    ];
    for (args, env) in cases {
        let env: Vec<(&str, &str)> = env.iter().chain(&url).copied().collect();
        let out = hookrelay_with(args, &env, &dir);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains("is not a log level"), "{args:?}: {err}");
        assert!(err.contains("error, warn, info, debug, trace"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let out = hookrelay_with(&["stats"], &[("HOOKRELAY_LOG", "warning")], &dir);
    assert!(stderr(&out).contains("did you mean warn?"));
}

/// A TCP listener on loopback that accepts connections and never says a word.
fn silent_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            held.push(stream);
        }
    });
    addr
}

#[test]
fn a_server_that_never_answers_ends_a_command_in_its_connect_timeout_with_one_line() {
    let dir = scratch("silent-server");
    let addr = silent_server();
    let url = format!("postgres://app@{addr}/app");
    let with_url_timeout = format!("{url}?connect_timeout=2");
    let cases: [(Vec<&str>, &str, u64); 3] = [
        (vec!["--database-url", &url, "stats"], "5 s", 5),
        (vec!["--database-url", &with_url_timeout, "stats"], "2 s", 2),
        (
            vec!["--connect-timeout", "1s", "--database-url", &url, "stats"],
            "1 s",
            1,
        ),
    ];
    for (args, said, seconds) in cases {
        let started = Instant::now();
        let out = hookrelay_with(&args, &[], &dir);
        let took = started.elapsed();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            took >= Duration::from_secs(seconds) && took < Duration::from_secs(seconds + 5),
            "{args:?} took {took:?}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(&format!("within {said}")), "{err}");
        assert!(err.contains("--connect-timeout"), "{err}");
        println!("{args:?}: exited after {took:?}");
    }
}

#[tokio::test]
async fn a_worker_whose_server_never_answers_serves_health_and_says_why_it_is_not_ready() {
    let addr = silent_server();
    let metrics = free_addr();
    let worker = WorkerProcess::spawn(
        &format!("postgres://app@{addr}/app?connect_timeout=1"),
        "silent",
        &["--metrics-addr", &metrics.to_string()],
    );
    let started = Instant::now();
    let mut ready = (0, String::new());
    while started.elapsed() < Duration::from_secs(10) {
        ready = get(&format!("http://{metrics}/readyz")).await;
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 503, "{ready:?}\n{}", worker.log_text());
    assert!(ready.1.contains("database"), "{ready:?}");
    assert_eq!(get(&format!("http://{metrics}/healthz")).await.0, 200);
    // The cause is logged once, not once per retry.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = worker.terminate();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("did not answer in time"), "{log}");
}

#[tokio::test]
async fn server_warnings_reach_the_user_at_the_default_level_once_with_their_hint() {
    // A cluster where hookrelay's roles do not exist yet, migrated by an owner without
    // CREATEROLE: the migration warns that it could not create them, with a hint.
    let (cluster, dir) = own_cluster("warnings-cluster").await;
    cluster.ensure_database("app").await.unwrap();
    let admin = connect(&cluster.url("app")).await;
    admin
        .batch_execute("CREATE ROLE app_owner LOGIN; GRANT CREATE ON DATABASE app TO app_owner;")
        .await
        .unwrap();
    let url = cluster.url("app").replace("postgres@", "app_owner@");
    let out = hookrelay_with(&["migrate"], &[("DATABASE_URL", &url)], &dir);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("could not create role hookrelay_app"))
        .collect();
    assert_eq!(warned.len(), 1, "shown once:\n{err}");
    assert!(warned[0].contains("WARN"), "{err}");
    assert!(
        warned[0].contains("hint: an administrator can run CREATE ROLE hookrelay_app"),
        "{err}"
    );
    blocking(&cluster, |c| {
        c.stop(hookrelay::db::embedded::Shutdown::Fast)
    })
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_command_that_starts_the_embedded_cluster_says_so_and_how_to_stop_it() {
    let dir = scratch("embedded-notice");
    let out = hookrelay_with(&["stats"], &[], &dir);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("using the embedded PostgreSQL"))
        .unwrap_or_else(|| panic!("no notice on stderr:\n{err}"));
    assert!(line.contains("url=postgres://"), "{line}");
    let stop = line
        .split_once("stop=")
        .map(|(_, stop)| stop.trim())
        .unwrap_or_else(|| panic!("no stop command: {line}"));
    assert!(stop.contains("pg_ctl stop -D"), "{stop}");
    let pid_file = dir.join(".hookrelay/pgdata/postmaster.pid");
    assert!(pid_file.exists(), "the cluster runs");
    // The command printed works as printed, as root too.
    let stopped = Command::new("sh").args(["-c", stop]).output().unwrap();
    assert!(
        stopped.status.success(),
        "{stop}: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(!pid_file.exists(), "the cluster stopped");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dead_deliveries_are_warned_in_the_log_by_endpoint_and_event_once_a_minute() {
    // A newcomer's receiver on localhost, with the guard's default (loopback closed): every
    // delivery dies, and the log must say so, naming the fix, without a line per delivery.
    let db = crate::support::TestDb::new().await;
    let receiver = crate::support::Receiver::ok().await;
    db.endpoint(
        "local-crm",
        &receiver.url("/hooks"),
        "first-day-secret-0123456789",
    )
    .await;
    let first = db.emit("order.paid", serde_json::json!({"id": 1})).await;
    let worker = WorkerProcess::spawn(
        &db.url,
        "dead-warnings",
        // Replaces the loopback the test workers are given: only a documentation network.
        &[
            "--allow-network",
            "192.0.2.0/24",
            "--poll-interval",
            "100ms",
        ],
    );
    let mut ids = vec![first];
    for id in 2..=5 {
        ids.push(db.emit("order.paid", serde_json::json!({"id": id})).await);
    }
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            5,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(dead, 5, "{}", worker.log_text());
    let log = worker.terminate();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("a delivery ended dead"))
        .collect();
    assert_eq!(warned.len(), 1, "one line a minute per endpoint:\n{log}");
    let line = warned[0];
    assert!(line.contains("endpoint=local-crm"), "{line}");
    // Whichever delivery died first is the one named, by its event's id.
    assert!(
        ids.iter().any(|id| line.contains(&format!(
            "event={}",
            hookrelay::pipeline::payload::event_id(id)
        ))),
        "{line}"
    );
    assert!(
        line.contains("error_code=\"blocked_address\"")
            || line.contains("error_code=blocked_address"),
        "{line}"
    );
    assert!(line.contains("--allow-network"), "{line}");
    assert!(receiver.requests().is_empty());
}
