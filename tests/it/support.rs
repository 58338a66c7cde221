//! Shared test fixtures: one throwaway PostgreSQL cluster per test run (or `DATABASE_URL`),
//! a fresh migrated database per test, real HTTP receivers on 127.0.0.1, and workers run
//! in-process or as `hookrelay` processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hookrelay::admin::migrate;
use hookrelay::config::WorkerConfig;
use hookrelay::db::{self, embedded};
use hookrelay::pipeline::guard::AllowList;
use hookrelay::pipeline::retry::RetrySchedule;
use hookrelay::pipeline::worker;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// Test receivers run on this machine: every worker the tests start opens loopback
/// explicitly (`HOOKRELAY_ALLOW_NETWORKS` for processes), since hookrelay refuses it by default.
pub const LOOPBACK: &str = "127.0.0.0/8,::1/128";

/// The server every test database lives on: `DATABASE_URL`, or a throwaway cluster.
struct Server {
    /// URL of a database to run `CREATE DATABASE` from.
    admin_url: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Server { admin_url: url };
        }
        embedded::remove_stale_ephemeral("hookrelay-test-");
        let dir = std::env::temp_dir().join(format!("hookrelay-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cluster = embedded::start_ephemeral(&dir).expect("start the test PostgreSQL cluster");
        Server {
            admin_url: cluster.url("postgres"),
        }
    })
}

/// The URL of the test server's administrative database (for commands that create their own
/// databases, such as `hookrelay demo`).
pub fn admin_url() -> String {
    server().admin_url.clone()
}

/// Replaces the database name at the end of a URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    if base.ends_with('/') || base.ends_with(':') {
        return format!("{url}/{database}");
    }
    // Keep query parameters such as ?sslmode=… after the database name.
    match url.rsplit_once('?') {
        Some((_, query)) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Opens one connection, driven in the background.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub url: String,
    pub client: Client,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let db = TestDb::empty().await;
        let mut client = connect(&db.url).await;
        migrate::migrate(&mut client).await.expect("migrate");
        db
    }

    /// A fresh database without the hookrelay schema.
    pub async fn empty() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let server = server();
        let name = format!(
            "hookrelay_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = connect(&server.admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = with_database(&server.admin_url, &name);
        let client = connect(&url).await;
        TestDb { url, client }
    }

    /// Adds an endpoint with SQL and returns its id.
    pub async fn endpoint(&self, name: &str, url: &str, secret: &str) -> i64 {
        self.client
            .query_one(
                "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ($1, $2, $3) RETURNING id",
                &[&name, &url, &secret],
            )
            .await
            .expect("insert endpoint")
            .get(0)
    }

    /// Emits an event in its own transaction and returns its id.
    pub async fn emit(&self, event: &str, object: serde_json::Value) -> uuid::Uuid {
        self.client
            .query_one("SELECT hookrelay.emit($1, $2)", &[&event, &object])
            .await
            .expect("emit")
            .get(0)
    }

    /// Writes `n` `order.paid` events (objects `{"id": 1…n}`) in one statement.
    pub async fn emit_many(&self, n: i64) {
        self.client
            .execute(
                "INSERT INTO hookrelay.events (event, object)
                 SELECT 'order.paid', jsonb_build_object('id', i)
                 FROM generate_series(1, $1::bigint) i",
                &[&n],
            )
            .await
            .expect("emit many");
    }

    /// A number from one query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// Polls `sql` (a count) until it equals `want`, for at most `limit`.
    pub async fn wait_count(&self, sql: &str, want: i64, limit: Duration) -> i64 {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.count(sql).await;
            if got == want || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The worker settings tests use: fast retries, short poll, loopback receivers allowed, no
    /// metrics server.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            allow_networks: AllowList::loopback(),
            concurrency: 16,
            poll_interval: Duration::from_millis(200),
            retry_schedule: RetrySchedule::parse("100ms,100ms,100ms").unwrap(),
            request_timeout: Duration::from_secs(2),
            lease: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            // Tests run many workers at once; the ones that read metrics pick a free port.
            metrics_addr: None,
            ..WorkerConfig::default()
        }
    }

    /// Starts a worker in this process.
    pub fn start_worker(&self, config: WorkerConfig) -> RunningWorker {
        start_worker_at(&self.url, config)
    }
}

/// Starts a worker in this process that connects through `url` (a proxy, or another role).
pub fn start_worker_at(url: &str, config: WorkerConfig) -> RunningWorker {
    let token = CancellationToken::new();
    let pool = db::pool(url, 4).expect("pool");
    let handle = tokio::spawn(worker::run(config, pool, token.clone()));
    RunningWorker { token, handle }
}

/// A worker task, stopped cleanly by [`RunningWorker::stop`].
pub struct RunningWorker {
    token: CancellationToken,
    handle: JoinHandle<Result<worker::Summary, worker::WorkerError>>,
}

impl RunningWorker {
    pub async fn stop(self) -> worker::Summary {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the worker stops within 30 s")
            .expect("the worker task does not panic")
            .expect("the worker ends without error")
    }
}

/// One request as a test receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("header {name} missing"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What a receiver answers: status, and optionally a delay before answering.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
        }
    }
}

type Behaviour = Arc<dyn Fn(&Request, usize) -> Reply + Send + Sync>;

struct ReceiverState {
    requests: Mutex<Vec<Request>>,
    behaviour: Behaviour,
}

/// A real HTTP receiver on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn handle(
    State(state): State<Arc<ReceiverState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        path: uri.path().to_string(),
        headers,
        body,
    };
    let reply = {
        let mut all = state.requests.lock().unwrap();
        let n = all.len();
        all.push(request.clone());
        (state.behaviour)(&request, n)
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), "ok").into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    response
}

impl Receiver {
    /// A receiver that answers 200 to everything.
    pub async fn ok() -> Receiver {
        Receiver::with(|_, _| Reply::status(200)).await
    }

    /// A receiver whose answer `f` chooses from the request and its index (0-based, across
    /// all requests this receiver got).
    pub async fn with(f: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            behaviour: Arc::new(f),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived, for at most `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `hookrelay` binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookrelay"))
}

/// Runs `hookrelay ARGS` against `db` as an operator would: the database from
/// HOOKRELAY_DATABASE_URL, routine logs off, and nothing inherited from the test run's
/// environment that could change what a command does (secrets, a configuration file, a log
/// filter). A panic would print its backtrace, which tests look for.
pub fn hookrelay<S: AsRef<std::ffi::OsStr>>(db: &TestDb, args: &[S]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("HOOKRELAY_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .env_remove("HOOKRELAY_ENDPOINT_SECRET")
        .env_remove("HOOKRELAY_NEW_SECRET")
        .env_remove("HOOKRELAY_VERIFY_SECRET")
        .env_remove("HOOKRELAY_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hookrelay")
}

/// HMAC-SHA256 computed here, not by the library under test.
pub fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// A TCP proxy on 127.0.0.1 in front of another address, that can cut every connection and
/// refuse new ones: a database outage the test controls.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let serving = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !serving.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let mut cuts = cuts.clone();
                // Only cuts after this connection was made close it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, up, cut }
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let config: tokio_postgres::Config = url.parse().unwrap();
        let db = config.get_dbname().unwrap();
        let user = config.get_user().unwrap();
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!("postgres://{user}{password}@{}/{db}", self.addr)
    }
}

/// The host and port a database URL points at.
pub fn socket_of(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("not a TCP host: {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    use std::net::ToSocketAddrs;
    (host.as_str(), port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("the database host resolves")
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `hookrelay run` against `db` as a worker named `name`, not started yet: polling every
/// 200 ms, loopback receivers allowed, no metrics server, warnings and errors on the test's
/// stderr, then the `extra` flags.
pub fn worker_command(db: &TestDb, name: &str, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(binary());
    command
        .args(["run", "--database-url", &db.url, "--worker-id", name])
        .args(["--poll-interval", "200ms", "--metrics-addr", "off"])
        .args(extra)
        .env("HOOKRELAY_LOG", "warn")
        .env("HOOKRELAY_ALLOW_NETWORKS", LOOPBACK)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    command
}

/// Starts [`worker_command`].
pub fn spawn_worker(db: &TestDb, name: &str, extra: &[&str]) -> std::process::Child {
    worker_command(db, name, extra)
        .spawn()
        .expect("start hookrelay run")
}

/// The value of the first sample whose line starts with `name` (a metric name, or a series
/// with its labels as printed) in a `/metrics` body.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

/// Writes `text` to a new file in the temporary directory whose name ends in `name`.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "hookrelay-test-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).expect("write a temporary file");
    path
}

/// Sends SIGTERM to a `hookrelay` process and waits (off the runtime's threads) for it to exit.
pub async fn sigterm_and_wait(mut child: std::process::Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join the waiting task")
        .expect("wait for the process")
}
