//! Fault tests: the promise "never lost" under a killed worker, a restarted PostgreSQL, several
//! workers racing, receivers that misbehave, and a database under pressure or read-only.
//!
//! The CI sizes are small; `scripts/chaos.sh` runs the same tests longer and larger through
//! the `HOOKRELAY_CHAOS_*` variables read here.

mod database;
mod kill;
mod late_claims;
mod partition;
mod receivers;
mod relay;
mod restart;
mod startup;
mod workers;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookrelay::db::embedded::{self, Cluster, Durability};

use crate::support::{binary, Request, TestDb, LOOPBACK};

/// A cluster of its own under `name` (restarting the shared one would break every other test),
/// with PostgreSQL's default durability: an acknowledged commit survives an immediate shutdown.
pub async fn own_cluster(name: &str) -> (Cluster, PathBuf) {
    let dir = std::env::temp_dir()
        .join(format!("hookrelay-test-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let at = dir.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        embedded::start_ephemeral_with(&at, Durability::Default)
    })
    .await
    .unwrap()
    .expect("start a PostgreSQL cluster of the test's own");
    (cluster, dir)
}

/// Database `name` on `cluster`, created and migrated, reached as [`TestDb`].
pub async fn migrated_db(cluster: &Cluster, name: &str) -> TestDb {
    cluster.ensure_database(name).await.unwrap();
    let url = cluster.url(name);
    let mut client = crate::support::connect(&url).await;
    hookrelay::admin::migrate::migrate(&mut client)
        .await
        .unwrap();
    TestDb { url, client }
}

/// Runs `f` (stopping or starting `cluster`) off the async threads.
pub async fn blocking(
    cluster: &Cluster,
    f: impl FnOnce(&Cluster) -> Result<(), embedded::EmbeddedError> + Send + 'static,
) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || f(&cluster))
        .await
        .unwrap()
        .expect("stop or start the cluster");
}

/// A size or count for a fault test: `HOOKRELAY_CHAOS_<NAME>` when set, else `default`.
pub fn chaos(name: &str, default: u64) -> u64 {
    std::env::var(format!("HOOKRELAY_CHAOS_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small seeded generator (xorshift64*), so a failing run can be repeated with
/// `HOOKRELAY_CHAOS_SEED`.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `HOOKRELAY_CHAOS_SEED`, or the clock; the seed is printed.
    pub fn from_env(test: &str) -> Rng {
        let seed = chaos(
            "SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        println!("{test}: HOOKRELAY_CHAOS_SEED={seed}");
        Rng(seed | 1)
    }

    /// A number in `low..high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        low + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (high - low)
    }
}

/// A `hookrelay run` process whose log (stderr) goes to a file.
pub struct WorkerProcess {
    child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Starts `hookrelay run` on `url` as worker `name`, receivers on loopback allowed, metrics
    /// off unless `extra` says otherwise, logging at `HOOKRELAY_LOG=info`.
    pub fn spawn(url: &str, name: &str, extra: &[&str]) -> WorkerProcess {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "hookrelay-faults-{}-{}-{name}.log",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(binary());
        command.args(["run", "--database-url", url, "--worker-id", name]);
        if !extra.contains(&"--metrics-addr") {
            command.args(["--metrics-addr", "off"]);
        }
        let child = command
            .args(extra)
            .env("HOOKRELAY_LOG", "info")
            .env("HOOKRELAY_ALLOW_NETWORKS", LOOPBACK)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start hookrelay run");
        WorkerProcess { child, log }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
        let _ = std::fs::remove_file(&self.log);
    }

    /// SIGTERM; the worker must exit 0 within 15 s. Returns its log.
    pub fn terminate(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log_text();
                assert!(
                    status.success(),
                    "a clean stop exits 0, got {status}:\n{log}"
                );
                let _ = std::fs::remove_file(&self.log);
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!(
            "worker did not stop within 15 s of SIGTERM:\n{}",
            self.log_text()
        );
    }

    /// Whether the process is still running (it has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A test that fails before stopping its worker must not leave it running: one outlived its
/// test run by an hour, retrying a database that was gone.
impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Receipts of (path, event id), from a receiver's requests.
pub fn receipts(requests: &[Request]) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for r in requests {
        let key = (r.path.clone(), r.header("x-webhook-event-id").to_string());
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

/// Deliveries (endpoint URL path, event id) that have a `lease_expired` attempt: their first
/// request may have reached the receiver before its worker died.
pub async fn expired_leases(db: &TestDb) -> HashSet<(String, String)> {
    db.client
        .query(
            "SELECT DISTINCT substring(ep.url from '^https?://[^/]+(/.*)$'),
                    'evt_' || d.event_id::text
             FROM hookrelay.attempts a
             JOIN hookrelay.deliveries d ON d.id = a.delivery_id
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             WHERE a.error_code = 'lease_expired'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The requests received more than once, each checked against the deliveries whose lease
/// expired (only a request in flight when its worker died may be sent again). Returns the
/// number of extra receipts.
pub async fn duplicates_only_after_expired_leases(
    db: &TestDb,
    seen: &HashMap<(String, String), usize>,
) -> usize {
    let expired = expired_leases(db).await;
    let mut extra = 0;
    for (key, n) in seen {
        if *n > 1 {
            assert!(
                expired.contains(key),
                "{key:?} was received {n} times, but no lease of it expired: \
                 a request was sent twice while its worker lived"
            );
            extra += n - 1;
        }
    }
    extra
}

/// GET `url`: the status and body, or status 0 when nothing answers.
pub async fn get(url: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `url` until it answers `status`, for at most `limit`; returns the last answer and
/// how long it took.
pub async fn wait_status(url: &str, status: u16, limit: Duration) -> ((u16, String), Duration) {
    let started = std::time::Instant::now();
    loop {
        let got = get(url).await;
        if got.0 == status || started.elapsed() > limit {
            return (got, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
