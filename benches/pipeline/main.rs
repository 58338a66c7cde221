//! `cargo bench --bench pipeline [-- --quick]`: measures hookrelay end to end and prints one
//! table plus one JSON line per scenario. Every figure is measured in this run.
//!
//! It starts its own PostgreSQL (PostgreSQL's default durability: fsync and synchronous
//! commit on) or uses `DATABASE_URL`, a hyper sink on 127.0.0.1, and the worker as its own
//! process (the `hookrelay` binary built with the bench). Scenarios:
//! burn-down, defaults (one endpoint, every setting at its default), HTTP ceiling, plan
//! stability, latency, producer cost (and graphile-worker's `add_job` beside it), scale-out (1, 2
//! and 4 worker processes), ordered delivery per key, cost growth with history, history
//! retention (partition drop against DELETE, not in `--quick`), footprint.

mod burn;
mod defaults;
mod graphile;
mod growth;
mod history;
mod latency;
mod ordered;
mod plans;
mod producer;
mod scale;
mod sink;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookrelay::db::embedded::{self, Durability};
use serde_json::json;
use tokio_postgres::{Client, NoTls};

/// One measured figure.
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// The target, as text, and whether the figure meets it.
    pub target: Option<(String, bool)>,
}

impl Figure {
    pub fn new(
        scenario: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Figure {
        Figure {
            scenario,
            name: name.into(),
            value,
            unit,
            target: None,
        }
    }

    /// The figure must be at least `min`.
    pub fn at_least(mut self, min: f64) -> Figure {
        self.target = Some((format!(">= {min}"), self.value >= min));
        self
    }

    /// The figure must be at most `max`.
    pub fn at_most(mut self, max: f64) -> Figure {
        self.target = Some((format!("<= {max}"), self.value <= max));
        self
    }
}

/// What every scenario needs.
pub struct Bench {
    pub quick: bool,
    admin_url: String,
    pub sink: sink::Sink,
    counter: std::sync::atomic::AtomicUsize,
}

impl Bench {
    /// A fresh, migrated database, and its URL.
    pub async fn database(&self) -> (String, Client) {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("hookrelay_bench_{}_{n}", std::process::id());
        let admin = connect(&self.admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (base, _) = self.admin_url.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        let mut client = connect(&url).await;
        hookrelay::admin::migrate::migrate(&mut client)
            .await
            .unwrap();
        (url, client)
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// The worker, as its own process.
pub struct Worker {
    child: Child,
}

impl Worker {
    pub fn start(url: &str, extra: &[&str]) -> Worker {
        // HOOKRELAY_BENCH_BIN: another build of the worker (a before/after comparison in one
        // run of this bench, on the same server).
        let binary = std::env::var("HOOKRELAY_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookrelay").to_string());
        let mut command = Command::new(binary);
        // HOOKRELAY_BENCH_VIA=HOST:PORT: the worker goes through a pooler there (PgBouncer
        // forwarding to the benchmark's server), its LISTEN straight to the server.
        match std::env::var("HOOKRELAY_BENCH_VIA") {
            Ok(via) => {
                let (head, tail) = url.split_once('@').expect("a URL with a user");
                let (_, database) = tail.split_once('/').expect("a URL with a database");
                let through = format!("{head}@{via}/{database}");
                command.args([
                    "run",
                    "--database-url",
                    &through,
                    "--listen-database-url",
                    url,
                ]);
            }
            Err(_) => {
                command.args(["run", "--database-url", url]);
            }
        }
        let child = command
            .args(["--metrics-addr", "off"])
            .args(extra)
            .env("HOOKRELAY_LOG", "warn")
            .env("HOOKRELAY_ALLOW_NETWORKS", "127.0.0.0/8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the worker");
        Worker { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at index 2 (state).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100);
        Duration::from_secs_f64(ticks as f64 / hz as f64)
    }

    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Polls `sql` (a count) until it reaches `want`; returns when it did.
pub async fn wait_count(client: &Client, sql: &str, want: i64, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let asked = Instant::now();
        let n: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        if n >= want {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            eprintln!("  timed out: {n} of {want} for {sql}");
            return None;
        }
        // A count over a large table takes milliseconds of the server's CPU, which the
        // pipeline measured shares: counting takes at most a tenth of the time.
        tokio::time::sleep(Duration::from_millis(20).max(asked.elapsed() * 10)).await;
    }
}

fn print(figures: &[Figure]) {
    println!(
        "\n{:<14} {:<44} {:>14} {:<10} TARGET",
        "SCENARIO", "FIGURE", "VALUE", "UNIT"
    );
    for f in figures {
        let target = match &f.target {
            Some((text, true)) => format!("{text}  met"),
            Some((text, false)) => format!("{text}  MISSED"),
            None => String::new(),
        };
        println!(
            "{:<14} {:<44} {:>14.3} {:<10} {}",
            f.scenario, f.name, f.value, f.unit, target
        );
    }
    println!();
    let mut scenarios: Vec<&str> = figures.iter().map(|f| f.scenario).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let mut values = serde_json::Map::new();
        let mut units = serde_json::Map::new();
        for f in figures.iter().filter(|f| f.scenario == scenario) {
            values.insert(f.name.clone(), json!(f.value));
            units.insert(f.name.clone(), json!(f.unit));
        }
        println!(
            "{}",
            json!({"scenario": scenario, "figures": values, "units": units})
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--ceiling-client") {
        ceiling_client(&args);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only burn-down,producer` runs just those scenario groups (for profiling one of them).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_string).collect());
    let wanted = move |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let started = Instant::now();
        let bench = Bench {
            quick,
            admin_url: admin_url(),
            sink: sink::Sink::start().await,
            counter: Default::default(),
        };
        eprintln!(
            "hookrelay pipeline benchmark ({})",
            if quick { "quick" } else { "full" }
        );
        let figures = run_scenarios(&bench, &wanted).await;
        print(&figures);
        eprintln!("benchmark took {:.0} s", started.elapsed().as_secs_f64());
    });
}

/// `--ceiling-client URL REQUESTS CONCURRENCY`: the HTTP ceiling's client, in a process of
/// its own; prints requests per second.
fn ceiling_client(args: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rate = runtime.block_on(burn::ceiling_client(
        args[2].clone(),
        args[3].parse().unwrap(),
        args[4].parse().unwrap(),
    ));
    println!("{rate}");
}

/// DATABASE_URL, or a throwaway cluster of the bench's own.
fn admin_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            embedded::remove_stale_ephemeral("hookrelay-bench-");
            let dir = std::env::temp_dir().join(format!("hookrelay-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let cluster = embedded::start_ephemeral_with(&dir, Durability::Default)
                .expect("start PostgreSQL for the benchmark");
            cluster.url("postgres")
        }
    }
}

/// The wanted scenario groups, in their fixed order.
async fn run_scenarios(bench: &Bench, wanted: &dyn Fn(&str) -> bool) -> Vec<Figure> {
    let mut figures = Vec::new();
    if wanted("burn-down") {
        figures.extend(burn::run(bench).await);
    }
    if wanted("defaults") {
        figures.extend(defaults::run(bench).await);
    }
    if wanted("plans") {
        figures.extend(plans::run(bench).await);
    }
    if wanted("latency") {
        figures.extend(latency::run(bench).await);
    }
    if wanted("producer") {
        figures.extend(producer::run(bench).await);
    }
    if wanted("scale-out") {
        figures.extend(scale::run(bench).await);
    }
    if wanted("cost-growth") {
        figures.extend(growth::run(bench).await);
    }
    // Minutes of writing history first: left out of --quick runs.
    if wanted("history") && !bench.quick {
        figures.extend(history::run(bench).await);
    }
    if wanted("ordered") {
        figures.extend(ordered::run(bench).await);
    }
    figures
}
