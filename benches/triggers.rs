//! Per-row cost of tracking a table: INSERT and UPDATE on an untracked table against the same
//! table tracked by `hookrelay.track_table`, in bulk (one statement over many rows) and as many
//! single-row statements.
//!
//! `cargo bench --bench triggers` starts a throwaway PostgreSQL cluster (or uses a fresh
//! database on the server of `DATABASE_URL`) and prints a table of µs per row, best of
//! `HOOKRELAY_BENCH_REPEAT` runs (default 3). `HOOKRELAY_BENCH_ROWS` (default 100000) sets the
//! bulk size, `HOOKRELAY_BENCH_STATEMENTS` (default 20000) the single-row statement count.
//! No worker runs, as when events pile up faster than they are delivered.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

struct Settings {
    rows: i64,
    statements: i64,
    repeat: usize,
}

fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh table `name` holding rows 1..=`rows`, tracked or not, and an empty outbox.
async fn fresh_table(client: &Client, name: &str, tracked: bool, rows: i64) {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id bigint PRIMARY KEY, name text, amount numeric(12, 2),
                                  status text, updated_at timestamptz);
             TRUNCATE hookrelay.events CASCADE;"
        ))
        .await
        .unwrap();
    if rows > 0 {
        client
            .execute(&fill_sql(name), &[&1i64, &rows])
            .await
            .unwrap();
    }
    client
        .batch_execute(&format!("VACUUM ANALYZE {name}"))
        .await
        .unwrap();
    if tracked {
        client
            .execute("SELECT hookrelay.track_table($1::text::regclass)", &[&name])
            .await
            .unwrap();
    }
}

fn fill_sql(name: &str) -> String {
    format!(
        "INSERT INTO {name} SELECT i, 'name ' || i, i * 1.5, 'new', now() \
         FROM generate_series($1::bigint, $2::bigint) AS i"
    )
}

/// One measured operation: how to prepare the table, and the SQL that is timed.
struct Case {
    label: String,
    /// Rows present before the timed statement.
    rows_before: i64,
    /// The timed SQL, with `{t}` for the table.
    sql: String,
    /// Rows the timed SQL writes.
    rows: i64,
}

fn cases(s: &Settings) -> Vec<Case> {
    let (n, m) = (s.rows, s.statements);
    let single = |verb: &str, body: &str| Case {
        label: format!("{m} single-row {verb} statements"),
        rows_before: if verb == "INSERT" { 0 } else { m },
        // Each iteration is its own statement, with its own trigger and outbox INSERT; run
        // server-side so network round trips do not hide the difference.
        sql: format!("DO $$ BEGIN FOR i IN 1..{m} LOOP {body}; END LOOP; END $$"),
        rows: m,
    };
    vec![
        Case {
            label: format!("bulk INSERT, 1 statement of {n} rows"),
            rows_before: 0,
            sql: fill_sql("{t}")
                .replace("$1::bigint", "1")
                .replace("$2::bigint", &n.to_string()),
            rows: n,
        },
        Case {
            label: format!("bulk UPDATE, 1 statement of {n} rows"),
            rows_before: n,
            sql: "UPDATE {t} SET status = 'paid', amount = amount + 1".into(),
            rows: n,
        },
        Case {
            label: format!("bulk no-op UPDATE of {n} rows"),
            rows_before: n,
            sql: "UPDATE {t} SET status = status".into(),
            rows: n,
        },
        single(
            "INSERT",
            "INSERT INTO {t} VALUES (i, 'name ' || i, i * 1.5, 'new', now())",
        ),
        single("UPDATE", "UPDATE {t} SET status = 'paid' WHERE id = i"),
    ]
}

/// Best time of `repeat` runs of `case` on a fresh table.
async fn measure(client: &Client, case: &Case, tracked: bool, repeat: usize) -> Duration {
    let table = if tracked { "tracked" } else { "untracked" };
    let sql = case.sql.replace("{t}", table);
    let mut best = Duration::MAX;
    for _ in 0..repeat {
        fresh_table(client, table, tracked, case.rows_before).await;
        let started = Instant::now();
        client.batch_execute(&sql).await.unwrap();
        best = best.min(started.elapsed());
    }
    best
}

/// Rows per transaction from the client, one round trip and commit each: the usual
/// application write, for scale.
async fn client_inserts(client: &Client, tracked: bool, count: i64) -> Duration {
    let table = if tracked { "tracked" } else { "untracked" };
    fresh_table(client, table, tracked, 0).await;
    let statement = client
        .prepare(&format!(
            "INSERT INTO {table} VALUES ($1, 'name', 1.5, 'new', now())"
        ))
        .await
        .unwrap();
    let started = Instant::now();
    for i in 1..=count {
        client.execute(&statement, &[&i]).await.unwrap();
    }
    started.elapsed()
}

fn per_row(d: Duration, rows: i64) -> f64 {
    d.as_secs_f64() * 1e6 / rows as f64
}

fn print_row(label: &str, plain: f64, tracked: f64) {
    println!(
        "{label:<44} {plain:>10.2} {tracked:>10.2} {:>7.1}x {:>10.2}",
        tracked / plain,
        tracked - plain
    );
}

/// One INSERT per transaction from the client, untracked and tracked, best of the runs.
async fn print_client_inserts(client: &Client, settings: &Settings) {
    let count = (settings.statements / 4).max(1);
    let mut plain = Duration::MAX;
    let mut tracked = Duration::MAX;
    for _ in 0..settings.repeat {
        plain = plain.min(client_inserts(client, false, count).await);
        tracked = tracked.min(client_inserts(client, true, count).await);
    }
    print_row(
        &format!("{count} client INSERTs, 1 per transaction"),
        per_row(plain, count),
        per_row(tracked, count),
    );
}

/// For reference, the outbox row alone, written by the application through INSERT and through
/// emit, best of the runs.
async fn print_outbox_alone(client: &Client, settings: &Settings) {
    let m = settings.statements;
    println!("\nfor reference, the outbox row alone, written {m} times by the application:");
    for (label, call) in [
        (
            "INSERT INTO hookrelay.events, 1 per statement",
            "INSERT INTO hookrelay.events (event, model, object_id, object) VALUES ('created', 'public.t', i::text, {OBJECT})",
        ),
        (
            "SELECT hookrelay.emit(...), 1 per statement",
            "PERFORM hookrelay.emit('created', {OBJECT}, 'public.t', i::text)",
        ),
    ] {
        let object = "jsonb_build_object('id', i, 'name', 'name ' || i, 'amount', i * 1.5, \
                      'status', 'new', 'updated_at', now())";
        let sql = format!(
            "DO $$ BEGIN FOR i IN 1..{m} LOOP {}; END LOOP; END $$",
            call.replace("{OBJECT}", object)
        );
        let mut best = Duration::MAX;
        for _ in 0..settings.repeat {
            client
                .batch_execute("TRUNCATE hookrelay.events CASCADE")
                .await
                .unwrap();
            let started = Instant::now();
            client.batch_execute(&sql).await.unwrap();
            best = best.min(started.elapsed());
        }
        println!("{label:<44} {:>21.2}", per_row(best, m));
    }
}

async fn run(url: &str, settings: &Settings) {
    let mut client = connect(url).await;
    hookrelay::admin::migrate::migrate(&mut client)
        .await
        .expect("migrate");
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "hookrelay trigger cost per row, PostgreSQL {version}, best of {} runs (µs/row)\n",
        settings.repeat
    );
    println!(
        "{:<44} {:>10} {:>10} {:>8} {:>10}",
        "operation", "untracked", "tracked", "ratio", "added"
    );
    for case in cases(settings) {
        let plain = measure(&client, &case, false, settings.repeat).await;
        let tracked = measure(&client, &case, true, settings.repeat).await;
        print_row(
            &case.label,
            per_row(plain, case.rows),
            per_row(tracked, case.rows),
        );
    }
    print_client_inserts(&client, settings).await;
    print_outbox_alone(&client, settings).await;
    println!("\n(the throwaway cluster runs with fsync off; a durable commit adds its flush time to both)");
}

/// `url` with its database replaced by `database`, query parameters kept.
fn with_database(url: &str, database: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (url, String::new()),
    };
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{database}{query}")
}

/// Stops the throwaway cluster (fast shutdown) and removes its files.
fn remove_cluster(cluster: &hookrelay::db::embedded::Cluster, dir: &std::path::Path) {
    let pid_file = cluster.data_dir.join("postmaster.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    // `cargo bench` passes --bench; this harness takes no arguments.
    let settings = Settings {
        rows: env_number("HOOKRELAY_BENCH_ROWS", 100_000),
        statements: env_number("HOOKRELAY_BENCH_STATEMENTS", 20_000),
        repeat: env_number("HOOKRELAY_BENCH_REPEAT", 3) as usize,
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = std::env::temp_dir().join(format!("hookrelay-bench-{}", std::process::id()));
    let (server_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let cluster = hookrelay::db::embedded::start_ephemeral(&dir)
                .expect("start a throwaway PostgreSQL");
            (cluster.url("postgres"), Some(cluster))
        }
    };
    let database = format!("hookrelay_bench_{}", std::process::id());
    runtime.block_on(async {
        let admin = connect(&server_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create the benchmark database");
        run(&with_database(&server_url, &database), &settings).await;
        admin
            .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
            .await
            .expect("drop the benchmark database");
    });
    if let Some(cluster) = cluster {
        remove_cluster(&cluster, &dir);
    }
}
