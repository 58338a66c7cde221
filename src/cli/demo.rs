//! `hookrelay demo`: the newcomer's tour of the whole path, in a few seconds.
//!
//! It starts (or reuses) the embedded PostgreSQL (or uses the server given), recreates a
//! `hookrelay_demo` database, tracks a shop table, runs a receiver on 127.0.0.1 behind two
//! endpoints, writes rows in transactions (one rolled back), runs the worker, and prints each
//! delivery as the receiver saw it with its signature checked — one of them failing once to
//! show a retry — then the SQL to look at it all. It keeps running until Ctrl-C, so rows
//! written meanwhile with psql show up too.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::endpoint::{self, NewEndpoint};
use crate::admin::migrate;
use crate::config::WorkerConfig;
use crate::db::embedded;
use crate::db::{self, explain};
use crate::pipeline::guard::AllowList;
use crate::pipeline::retry::RetrySchedule;
use crate::pipeline::worker;
use crate::sign::Scheme;
use crate::verify::Verifier;

const DATABASE: &str = "hookrelay_demo";

/// Errors that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error(transparent)]
    Endpoint(#[from] endpoint::EndpointError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Worker(#[from] worker::WorkerError),
    #[error("{}", explain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("could not start the demo receiver: {0}")]
    Receiver(#[from] std::io::Error),
    #[error("the deliveries did not all arrive within 60 s; see `hookrelay deliveries`")]
    Timeout,
    #[error(transparent)]
    Track(#[from] crate::admin::track::TrackError),
    #[error(transparent)]
    Console(#[from] crate::admin::console::ConsoleError),
}

/// One request as the demo receiver saw it.
struct Received {
    endpoint: String,
    event: String,
    event_id: String,
    signature_ok: bool,
    status: StatusCode,
    body: Value,
}

struct Receiver {
    secrets: Mutex<Vec<(String, String, Scheme)>>,
    failed_once: Mutex<HashSet<String>>,
    tx: mpsc::UnboundedSender<Received>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn receive(
    State(state): State<Arc<Receiver>>,
    UrlPath(endpoint): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let event_id = header(&headers, "x-webhook-event-id").to_string();
    let event = header(&headers, "x-webhook-event").to_string();
    let found = state
        .secrets
        .lock()
        .expect("secrets")
        .iter()
        .find(|(n, _, _)| *n == endpoint)
        .cloned();
    // The same check `hookrelay verify` and Rust receivers run.
    let signature_ok = found.is_some_and(|(_, secret, scheme)| {
        Verifier::new(scheme, &[secret]).is_ok_and(|v| {
            v.verify(&headers, &body, chrono::Utc::now().timestamp())
                .is_ok()
        })
    });
    // The first update fails once on crm, to show a retry.
    let status = if event == "updated"
        && endpoint == "crm"
        && state
            .failed_once
            .lock()
            .expect("failed_once")
            .insert(event_id.clone())
    {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let _ = state.tx.send(Received {
        endpoint,
        event,
        event_id,
        signature_ok,
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    status
}

/// Step 2: a receiver on a free loopback port that checks every signature; returns its
/// address, its state (the endpoints' secrets, added in step 3) and what it receives.
async fn start_receiver(
    token: CancellationToken,
) -> Result<(SocketAddr, Arc<Receiver>, mpsc::UnboundedReceiver<Received>), DemoError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver {
        secrets: Mutex::new(Vec::new()),
        failed_once: Mutex::new(HashSet::new()),
        tx,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hooks/{endpoint}", post(receive))
        .with_state(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    });
    println!("[2/6] A receiver on http://{addr}/hooks/…, checking every signature");
    println!(
        "      (loopback is allowed for this demo only: `hookrelay run` refuses non-public \
         addresses unless opened with --allow-network)"
    );
    Ok((addr, state, rx))
}

/// Where the demo's database lives.
#[derive(Debug, Clone)]
pub enum DemoDatabase {
    /// The embedded cluster under this directory.
    Embedded(std::path::PathBuf),
    /// A server of the user's, given by the URL of a database to connect to first.
    Server(String),
}

/// A fresh `hookrelay_demo` database, migrated. Returns a connection to it and its URL.
async fn fresh_database(admin_url: &str) -> Result<(tokio_postgres::Client, String), DemoError> {
    let (admin, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let url = match admin_url.rsplit_once('/') {
        Some((base, rest)) => match rest.split_once('?') {
            Some((_, query)) => format!("{base}/{DATABASE}?{query}"),
            None => format!("{base}/{DATABASE}"),
        },
        None => admin_url.to_string(),
    };
    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    migrate::migrate(&mut client).await?;
    Ok((client, url))
}

const SHOP: &str = "
    CREATE SCHEMA shop;
    CREATE TABLE shop.orders (
        id             integer PRIMARY KEY,
        reference      text NOT NULL,
        customer_email text NOT NULL,
        total          numeric(10, 2) NOT NULL,
        status         text NOT NULL,
        internal_note  text
    );
    SELECT hookrelay.track_table('shop.orders', model => 'store.Order',
                                 exclude_columns => '{internal_note}');";

/// The tour's writes, each in its own transaction, and what each should produce.
const WRITES: [(&str, &str); 5] = [
    (
        "INSERT INTO shop.orders VALUES (42, 'ORD-123', 'ada@example.com', 150.00, 'PENDING', 'vip')",
        "created",
    ),
    (
        "SET LOCAL hookrelay.actor = '{\"id\": \"1\", \"username\": \"admin\"}';
         UPDATE shop.orders SET status = 'PAID' WHERE id = 42",
        "updated, with changes and the acting user",
    ),
    (
        "SELECT hookrelay.emit('order.paid', '{\"id\": \"42\", \"total\": \"150.00\"}', 'store.Order')",
        "a custom event from hookrelay.emit",
    ),
    (
        "INSERT INTO shop.orders VALUES (43, 'ORD-124', 'bob@example.com', 9.99, 'PENDING', NULL)",
        "rolled back: nothing is sent",
    ),
    ("DELETE FROM shop.orders WHERE id = 42", "deleted"),
];

/// Requests the tour expects: crm gets created, updated (twice: it fails once), order.paid and
/// deleted; analytics gets updated and order.paid.
const EXPECTED: usize = 7;

async fn write_rows(client: &mut tokio_postgres::Client) -> Result<(), DemoError> {
    for (sql, result) in WRITES {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        let mut shown = sql.lines().last().unwrap_or(sql).trim().to_string();
        if sql.contains("hookrelay.actor") {
            shown.push_str("   (as admin: SET LOCAL hookrelay.actor)");
        }
        if result.starts_with("rolled back") {
            tx.rollback().await?;
            println!("      {shown}; ROLLBACK\n        -> {result}");
        } else {
            tx.commit().await?;
            println!("      {shown}\n        -> {result}");
        }
    }
    Ok(())
}

async fn add_endpoints(
    client: &tokio_postgres::Client,
    addr: SocketAddr,
    receiver: &Receiver,
) -> Result<(), DemoError> {
    let endpoints = [
        NewEndpoint {
            name: "crm".into(),
            url: format!("http://{addr}/hooks/crm"),
            redact_fields: Some(
                serde_json::json!({"store.Order": {"customer_email": "***@***.com"}}),
            ),
            ..NewEndpoint::default()
        },
        NewEndpoint {
            name: "analytics".into(),
            url: format!("http://{addr}/hooks/analytics"),
            scheme: Scheme::Standard,
            events: vec!["updated".into(), "order.paid".into()],
            include_fields: Some(serde_json::json!(["id", "status", "total"])),
            ..NewEndpoint::default()
        },
    ];
    let described = [
        "every event, `hookrelay` signatures, customer_email redacted",
        "updated and order.paid only, Standard Webhooks signatures, only id, status, total",
    ];
    for (new, about) in endpoints.iter().zip(described) {
        endpoint::add(client, new).await?;
        let secret = endpoint::secret(client, &new.name).await?;
        receiver
            .secrets
            .lock()
            .expect("secrets")
            .push((new.name.clone(), secret, new.scheme));
        println!("      endpoint {:<10} {about}", new.name);
    }
    Ok(())
}

fn print_received(r: &Received, show_body: bool) {
    let check = if r.signature_ok {
        "signature verified"
    } else {
        "SIGNATURE MISMATCH"
    };
    println!(
        "      {:<10} {:<11} {}  {}  -> answered {}",
        r.endpoint,
        r.event,
        r.event_id,
        check,
        r.status.as_u16()
    );
    if show_body {
        let pretty = serde_json::to_string_pretty(&r.body).unwrap_or_default();
        for line in pretty.lines() {
            println!("          {line}");
        }
    }
}

async fn print_summary(client: &tokio_postgres::Client, url: &str) -> Result<(), DemoError> {
    let rows = client
        .query(
            "SELECT d.id, ep.name, e.event, d.state, d.attempts, d.last_status
             FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             ORDER BY d.id",
            &[],
        )
        .await?;
    println!(
        "      {:>3}  {:<10} {:<11} {:<10} {:>8}  LAST STATUS",
        "ID", "ENDPOINT", "EVENT", "STATE", "ATTEMPTS"
    );
    for row in rows {
        let status: Option<i32> = row.get(5);
        println!(
            "      {:>3}  {:<10} {:<11} {:<10} {:>8}  {}",
            row.get::<_, i64>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
            row.get::<_, i32>(4),
            status.map_or("-".into(), |s| s.to_string())
        );
    }
    println!(
        "\n      Look closer:\n\
         \x20       psql {url}\n\
         \x20       SELECT * FROM hookrelay.delivery_log ORDER BY started_at;   -- every attempt\n\
         \x20       SELECT * FROM hookrelay.endpoint_health;                    -- per endpoint\n\
         \x20       SELECT * FROM hookrelay.tracked_tables;                     -- what is tracked\n\
         \x20   or: hookrelay --database-url {url} delivery show 2\n\
         \x20   or in a browser: hookrelay --database-url {url} console\n\
         \x20       (or run the demo with --console to have it served beside the tour)\n\
         \x20   (the demo has a database of its own: other hookrelay commands look at it only\n\
         \x20   when given --database-url {url})"
    );
    Ok(())
}

/// Runs the tour. With `once`, stops after it; otherwise keeps the worker and receiver
/// running until `token` is cancelled (Ctrl-C). With `console`, serves the operator console
/// on that address beside it.
pub async fn run(
    database: DemoDatabase,
    once: bool,
    console: Option<SocketAddr>,
    token: CancellationToken,
) -> Result<(), DemoError> {
    println!("hookrelay demo: from a committed row to a signed webhook\n");
    let (admin_url, stop) = open_cluster(database).await?;
    let (mut client, url) = fresh_database(&admin_url).await?;
    println!("      demo database: {url}");
    if let Some(addr) = console {
        let pool = db::pool(&url, 2)?.pool;
        let bound = crate::admin::console::serve(pool, addr, None, token.clone()).await?;
        println!("      operator console: http://{bound}/ (open it in a browser and watch)");
    }

    let (addr, receiver, mut rx) = start_receiver(token.clone()).await?;

    client.batch_execute(SHOP).await?;
    println!("[3/6] Table shop.orders, tracked: hookrelay.track_table('shop.orders', model => 'store.Order', exclude_columns => '{{internal_note}}')");
    add_endpoints(&client, addr, &receiver).await?;

    println!("[4/6] Writing, each in its own transaction:");
    write_rows(&mut client).await?;

    println!("[5/6] Deliveries as the receiver got them (crm fails the first update once, to show a retry):");
    let worker_token = token.child_token();
    let worker = tokio::spawn(worker::run(
        demo_worker_config(),
        db::pool(&url, 4)?,
        worker_token.clone(),
    ));
    let seen = watch_tour(&mut rx, &token).await;
    // Let the last results be recorded before reading them back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("[6/6] hookrelay.deliveries:");
    print_summary(&client, &url).await?;
    if seen >= EXPECTED && !once && !token.is_cancelled() {
        keep_watching(&mut rx, &token).await;
    }
    worker_token.cancel();
    worker
        .await
        .map_err(|e| DemoError::Receiver(std::io::Error::other(e)))??;
    if let Some(stop) = stop {
        println!(
            "\nThe embedded PostgreSQL keeps running, with the demo's database in it; stop it with:\n\
             \x20   {stop}"
        );
    }
    if seen < EXPECTED {
        return Err(DemoError::Timeout);
    }
    Ok(())
}

/// Step 1: the server given, or the embedded cluster started; returns its admin URL and, for
/// the embedded one, the command that stops it.
async fn open_cluster(database: DemoDatabase) -> Result<(String, Option<String>), DemoError> {
    match database {
        DemoDatabase::Server(url) => {
            println!("[1/6] PostgreSQL: the server given");
            Ok((url, None))
        }
        DemoDatabase::Embedded(dir) => {
            println!(
                "[1/6] PostgreSQL: starting the embedded cluster in {} (the first run initialises it, a few seconds)…",
                dir.display()
            );
            let cluster = tokio::task::spawn_blocking(move || embedded::start_persistent(&dir))
                .await
                .map_err(|e| DemoError::Receiver(std::io::Error::other(e)))??;
            println!(
                "      running; stop it later with: {}",
                cluster.stop_command()
            );
            Ok((cluster.url("postgres"), Some(cluster.stop_command())))
        }
    }
}

/// The demo's worker: every default but a short retry schedule and shutdown, and loopback
/// opened for its receiver, as `hookrelay run --allow-network 127.0.0.0/8` would (`run`
/// refuses it by default).
fn demo_worker_config() -> WorkerConfig {
    WorkerConfig {
        allow_networks: AllowList::loopback(),
        retry_schedule: RetrySchedule::parse("1s,2s,4s").expect("a valid schedule"),
        shutdown_timeout: Duration::from_secs(5),
        // The demo serves no metrics: it may run beside a worker that does.
        metrics_addr: None,
        ..WorkerConfig::default()
    }
}

/// Prints the tour's deliveries as they arrive (one body per endpoint: the update, with
/// changes and shaping applied); returns how many arrived within a minute.
async fn watch_tour(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    token: &CancellationToken,
) -> usize {
    let mut seen = 0;
    let mut shown = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen < EXPECTED {
        tokio::select! {
            got = rx.recv() => match got {
                Some(r) => {
                    let show = r.event == "updated" && shown.insert(r.endpoint.clone());
                    print_received(&r, show);
                    seen += 1;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = token.cancelled() => break,
        }
    }
    seen
}

/// After the tour: keeps printing what arrives until Ctrl-C.
async fn keep_watching(rx: &mut mpsc::UnboundedReceiver<Received>, token: &CancellationToken) {
    println!(
        "\nThe worker and receiver keep running: write to shop.orders with psql and watch the\n\
         deliveries arrive here. Ctrl-C to stop."
    );
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(r) => print_received(&r, false),
                None => break,
            },
            _ = token.cancelled() => break,
        }
    }
}
