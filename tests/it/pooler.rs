//! The worker behind a real PgBouncer (Debian's `pgbouncer`, started here on 127.0.0.1, one
//! per pool mode per test run), in transaction and session pooling: deliveries complete and
//! verify, nothing is logged as an error, notifications arrive as fast as without a pooler
//! when they can, and the worker says when they cannot.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::faults::{get, WorkerProcess};
use crate::support::{free_addr, hmac_hex, metric, socket_of, Receiver, TestDb};

const SECRET: &str = "pooler-test-secret-0123456789";

/// A running PgBouncer in front of the test server.
struct Bouncer {
    addr: SocketAddr,
}

impl Bouncer {
    /// `url` (a test database) through this PgBouncer.
    fn url(&self, url: &str) -> String {
        url.replacen(&socket_of(url).to_string(), &self.addr.to_string(), 1)
    }
}

fn transaction_pooler() -> &'static Bouncer {
    static BOUNCER: OnceLock<Bouncer> = OnceLock::new();
    BOUNCER.get_or_init(|| start("transaction"))
}

fn session_pooler() -> &'static Bouncer {
    static BOUNCER: OnceLock<Bouncer> = OnceLock::new();
    BOUNCER.get_or_init(|| start("session"))
}

/// Writes PgBouncer's user list and configuration for `mode`, listening on `addr` and
/// forwarding to `server`, into `dir`; returns the configuration's path.
fn write_config(dir: &Path, mode: &str, addr: SocketAddr, server: SocketAddr) -> PathBuf {
    let users = dir.join("userlist.txt");
    std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
             pool_mode = {mode}\ndefault_pool_size = 10\nmax_client_conn = 200\n\
             logfile = {}\nadmin_users = postgres\n",
            server.ip(),
            server.port(),
            addr.port(),
            users.display(),
            dir.join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    ini
}

/// Starts PgBouncer in `mode` on a free port, forwarding every database to the test server,
/// with trust authentication. It runs as a child that gets SIGTERM when this process exits
/// (forked on a thread that lives as long as the process: the parent-death signal follows the
/// forking thread), as the `postgres` user when the tests run as root (PgBouncer refuses root).
fn start(mode: &str) -> Bouncer {
    let server = socket_of(&crate::support::admin_url());
    let addr = free_addr();
    let dir =
        std::env::temp_dir().join(format!("hookrelay-pgbouncer-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ini = write_config(&dir, mode, addr, server);
    let mut command = Command::new(pgbouncer());
    command
        .arg("-q")
        .arg(&ini)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if nix::unistd::Uid::effective().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres user to run PgBouncer as");
        nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).unwrap();
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    std::thread::Builder::new()
        .name(format!("pgbouncer-{mode}"))
        .spawn(move || {
            let mut child = command.spawn().expect("start pgbouncer");
            let _ = child.wait();
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "pgbouncer did not listen on {addr} within 10 s: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Bouncer { addr }
}

/// The pgbouncer binary (Debian installs it in /usr/sbin).
fn pgbouncer() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/pgbouncer");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("pgbouncer")
    }
}

/// Emits `n` events, waits for their deliveries and checks each body and signature.
async fn delivered(db: &TestDb, receiver: &Receiver, n: usize, worker: &WorkerProcess) {
    for i in 0..n {
        db.emit("order.paid", serde_json::json!({"id": i})).await;
    }
    let got = receiver.wait_for(n, Duration::from_secs(20)).await;
    assert_eq!(got.len(), n, "deliveries:\n{}", worker.log_text());
    for request in &got {
        let ts = request.header("x-webhook-timestamp");
        let mut message = format!("{ts}.").into_bytes();
        message.extend_from_slice(&request.body);
        let expected = format!("sha256={}", hmac_hex(SECRET.as_bytes(), &message));
        assert_eq!(request.header("x-webhook-signature"), expected);
        assert_eq!(
            request.json()["event"],
            "order.paid",
            "{:?}",
            request.json()
        );
    }
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            n as i64,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done, n as i64, "results recorded:\n{}", worker.log_text());
}

/// How long one event takes from commit to its receiver, for an idle worker that polls only
/// every 30 s: a notification must wake it.
async fn wake_latency(db: &TestDb, receiver: &Receiver, worker: &WorkerProcess) -> Duration {
    let before = receiver.requests().len();
    // Let the worker go idle (and mark itself so) after the last batch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    db.emit("order.paid", serde_json::json!({"id": "wake"}))
        .await;
    let got = receiver.wait_for(before + 1, Duration::from_secs(10)).await;
    assert_eq!(
        got.len(),
        before + 1,
        "no notification woke the worker:\n{}",
        worker.log_text()
    );
    sent.elapsed()
}

fn clean(log: &str) {
    assert!(!log.contains("ERROR"), "{log}");
    assert!(!log.contains("prepared statement"), "{log}");
    assert!(!log.contains("unsupported startup parameter"), "{log}");
}

async fn setup() -> (TestDb, Receiver) {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/crm"), SECRET).await;
    (db, receiver)
}

#[tokio::test]
async fn through_transaction_pooling_deliveries_complete_and_a_direct_listen_wakes_as_fast() {
    let (db, receiver) = setup().await;
    let bouncer = transaction_pooler();
    let worker = WorkerProcess::spawn(
        &bouncer.url(&db.url),
        "bounced-tx",
        &[
            "--pooler",
            "detect",
            "--listen-database-url",
            &db.url,
            "--poll-interval",
            "30s",
        ],
    );
    delivered(&db, &receiver, 30, &worker).await;
    let through = wake_latency(&db, &receiver, &worker).await;

    let (direct_db, direct_receiver) = setup().await;
    let direct = WorkerProcess::spawn(&direct_db.url, "direct", &["--poll-interval", "30s"]);
    delivered(&direct_db, &direct_receiver, 1, &direct).await;
    let without = wake_latency(&direct_db, &direct_receiver, &direct).await;
    println!("notification latency: {through:?} through PgBouncer (transaction pooling, direct LISTEN), {without:?} without a pooler");
    assert!(
        through < Duration::from_secs(2),
        "{through:?}:\n{}",
        worker.log_text()
    );
    direct.terminate();
    let log = worker.terminate();
    assert!(log.contains("pooler=\"transaction\""), "detected:\n{log}");
    assert!(!log.contains("polling for new events"), "{log}");
    clean(&log);
}

#[tokio::test]
async fn through_transaction_pooling_without_a_listen_url_the_worker_says_once_that_it_polls() {
    let (db, receiver) = setup().await;
    let bouncer = transaction_pooler();
    let metrics = free_addr();
    let worker = WorkerProcess::spawn(
        &bouncer.url(&db.url),
        "bounced-poll",
        &[
            "--pooler",
            "transaction",
            "--poll-interval",
            "200ms",
            "--metrics-addr",
            &metrics.to_string(),
        ],
    );
    delivered(&db, &receiver, 10, &worker).await;
    let (status, body) = get(&format!("http://{metrics}/readyz")).await;
    assert_eq!(status, 200, "ready without a LISTEN: {body}");
    let (_, text) = get(&format!("http://{metrics}/metrics")).await;
    assert_eq!(metric(&text, "hookrelay_notifications_total"), 0.0);
    let log = worker.terminate();
    let warned = log.matches("polling for new events").count();
    assert_eq!(warned, 1, "{log}");
    assert!(log.contains("--listen-database-url"), "{log}");
    assert!(log.contains("WARN"), "{log}");
    clean(&log);
}

#[tokio::test]
async fn through_session_pooling_deliveries_complete_and_notifications_arrive() {
    let (db, receiver) = setup().await;
    let bouncer = session_pooler();
    let worker = WorkerProcess::spawn(
        &bouncer.url(&db.url),
        "bounced-session",
        &["--pooler", "detect", "--poll-interval", "30s"],
    );
    delivered(&db, &receiver, 30, &worker).await;
    let latency = wake_latency(&db, &receiver, &worker).await;
    println!("notification latency: {latency:?} through PgBouncer (session pooling)");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    let log = worker.terminate();
    assert!(log.contains("pooler=\"session\""), "detected:\n{log}");
    clean(&log);
}

#[tokio::test]
async fn through_transaction_pooling_the_workers_lock_timeout_still_applies() {
    let (mut db, receiver) = setup().await;
    let bouncer = transaction_pooler();
    // The worker registers in hookrelay.workers first: a lock held there makes it wait, and
    // only its lock_timeout (5 s, a session setting) ends the wait.
    let blocker = db.client.transaction().await.unwrap();
    blocker
        .batch_execute("LOCK TABLE hookrelay.workers IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let worker = WorkerProcess::spawn(
        &bouncer.url(&db.url),
        "bounced-locked",
        &["--pooler", "transaction", "--poll-interval", "200ms"],
    );
    let deadline = started + Duration::from_secs(15);
    while !worker.log_text().contains("lock timeout") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = started.elapsed();
    blocker.rollback().await.unwrap();
    assert!(
        worker.log_text().contains("lock timeout"),
        "the worker's lock_timeout did not end its wait:\n{}",
        worker.log_text()
    );
    println!("lock_timeout through transaction pooling ended the wait after {waited:?}");
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
    db.client = crate::support::connect(&db.url).await;
    delivered(&db, &receiver, 1, &worker).await;
    let log = worker.terminate();
    assert!(!log.contains("prepared statement"), "{log}");
}
