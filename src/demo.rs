//! `hookrelay demo`: the whole path on a private database, in a few seconds.
//!
//! It starts (or reuses) the embedded PostgreSQL, recreates a `hookrelay_demo` database, runs a
//! receiver on 127.0.0.1, adds two endpoints, writes sample events in transactions (one of them
//! rolled back), runs the worker, and prints each delivery as the receiver saw it, with its
//! signature checked.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::db::{self, explain};
use crate::endpoint::{self, NewEndpoint};
use crate::guard::AllowList;
use crate::retry::RetrySchedule;
use crate::sign::Scheme;
use crate::verify::Verifier;
use crate::{embedded, migrate, worker};

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
    // The first order.paid fails once, to show a retry.
    let status = if event == "order.paid"
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

async fn start_receiver(
    state: Arc<Receiver>,
    token: CancellationToken,
) -> Result<SocketAddr, DemoError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hooks/{endpoint}", post(receive))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    });
    Ok(addr)
}

async fn fresh_database(cluster: &embedded::Cluster) -> Result<tokio_postgres::Client, DemoError> {
    let (admin, conn) =
        tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    cluster.ensure_database(DATABASE).await?;
    let (mut client, conn) =
        tokio_postgres::connect(&cluster.url(DATABASE), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    migrate::migrate(&mut client).await?;
    Ok(client)
}

/// The sample events: three committed transactions and one rolled back.
async fn write_events(client: &mut tokio_postgres::Client) -> Result<(), DemoError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        r#"SET LOCAL hookrelay.actor = '{"id": "1", "username": "admin"}';
           SELECT hookrelay.emit('order.created', '{"id": "42", "reference": "ORD-123", "total": "150.00", "status": "PENDING"}', 'store.Order');"#,
    )
    .await?;
    tx.commit().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(
        r#"SET LOCAL hookrelay.actor = '{"id": "1", "username": "admin"}';
           SELECT hookrelay.emit('order.paid', '{"id": "42", "reference": "ORD-123", "total": "150.00", "status": "PAID"}',
                                 'store.Order', changes => '{"status": {"old": "PENDING", "new": "PAID"}}');"#,
    )
    .await?;
    tx.commit().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(r#"SELECT hookrelay.emit('order.refunded', '{"id": "42"}', 'store.Order');"#)
        .await?;
    tx.rollback().await?;
    client
        .batch_execute(
            r#"SELECT hookrelay.emit('customer.created', '{"id": "7", "email": "ada@example.com"}',
                                     'store.Customer', account_id => 'acme');"#,
        )
        .await?;
    Ok(())
}

fn print_received(r: &Received, first: bool) {
    let check = if r.signature_ok {
        "signature verified"
    } else {
        "SIGNATURE MISMATCH"
    };
    println!(
        "  {:<10} {:<17} {}  {}  -> answered {}",
        r.endpoint,
        r.event,
        r.event_id,
        check,
        r.status.as_u16()
    );
    if first {
        let pretty = serde_json::to_string_pretty(&r.body).unwrap_or_default();
        for line in pretty.lines() {
            println!("      {line}");
        }
    }
}

async fn print_summary(client: &tokio_postgres::Client) -> Result<(), DemoError> {
    let rows = client
        .query(
            "SELECT ep.name, e.event, d.state, d.attempts, d.last_status
             FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             ORDER BY d.id",
            &[],
        )
        .await?;
    println!("\nhookrelay.deliveries:");
    println!(
        "  {:<10} {:<17} {:<10} {:>8}  LAST STATUS",
        "ENDPOINT", "EVENT", "STATE", "ATTEMPTS"
    );
    for row in rows {
        let status: Option<i32> = row.get(4);
        println!(
            "  {:<10} {:<17} {:<10} {:>8}  {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, i32>(3),
            status.map_or("-".into(), |s| s.to_string())
        );
    }
    let refunded: i64 = client
        .query_one(
            "SELECT count(*) FROM hookrelay.events WHERE event = 'order.refunded'",
            &[],
        )
        .await?
        .get(0);
    println!("\nThe rolled-back order.refunded left {refunded} events and was never sent.");
    Ok(())
}

/// Runs the demo.
pub async fn run(
    data_dir: &Path,
    keep_running: bool,
    token: CancellationToken,
) -> Result<(), DemoError> {
    let dir = data_dir.to_path_buf();
    let cluster = tokio::task::spawn_blocking(move || embedded::start_persistent(&dir))
        .await
        .map_err(|e| DemoError::Receiver(std::io::Error::other(e)))??;
    let mut client = fresh_database(&cluster).await?;
    let url = cluster.url(DATABASE);
    println!("PostgreSQL (embedded): {url}");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver = Arc::new(Receiver {
        secrets: Mutex::new(Vec::new()),
        failed_once: Mutex::new(HashSet::new()),
        tx,
    });
    let addr = start_receiver(receiver.clone(), token.clone()).await?;
    println!("Receiver: http://{addr}/hooks/…");
    println!(
        "(loopback is allowed for this demo only: `hookrelay run` refuses non-public addresses \
         unless opened with --allow-network)\n"
    );

    let endpoints = [
        ("crm", Scheme::Hookrelay, vec![]),
        (
            "analytics",
            Scheme::Standard,
            vec!["order.paid".to_string()],
        ),
    ];
    for (name, scheme, events) in endpoints {
        let new = NewEndpoint {
            name: name.into(),
            url: format!("http://{addr}/hooks/{name}"),
            events: events.clone(),
            scheme,
            ..NewEndpoint::default()
        };
        endpoint::add(&client, &new).await?;
        let secret = endpoint::secret(&client, name).await?;
        receiver
            .secrets
            .lock()
            .expect("secrets")
            .push((name.into(), secret, scheme));
        let filter = if events.is_empty() {
            "every event".to_string()
        } else {
            events.join(",")
        };
        println!("endpoint {name:<10} scheme {scheme:<10} receives {filter}");
    }

    write_events(&mut client).await?;
    println!(
        "\nwrote order.created, order.paid and customer.created; rolled back order.refunded\n"
    );
    println!("Deliveries as the receiver got them:");

    let worker_token = token.child_token();
    // The demo's receiver is on this machine: loopback is opened for it explicitly, as
    // `hookrelay run --allow-network 127.0.0.0/8` would; `run` refuses it by default.
    let config = WorkerConfig {
        allow_networks: AllowList::loopback(),
        retry_schedule: RetrySchedule::parse("1s,2s,4s").expect("a valid schedule"),
        shutdown_timeout: Duration::from_secs(5),
        ..WorkerConfig::default()
    };
    let db = db::pool(&url, 4)?;
    let worker = tokio::spawn(worker::run(config, db, worker_token.clone()));

    // crm gets all three events (order.paid twice: it fails once), analytics only order.paid.
    let expected = 5;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen < expected || keep_running {
        tokio::select! {
            got = rx.recv() => match got {
                Some(r) => {
                    print_received(&r, seen == 0);
                    seen += 1;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline), if !keep_running => break,
            _ = token.cancelled() => break,
        }
    }
    worker_token.cancel();
    worker
        .await
        .map_err(|e| DemoError::Receiver(std::io::Error::other(e)))??;
    print_summary(&client).await?;
    println!(
        "\nExplore: psql {url} -c 'SELECT * FROM hookrelay.attempts'\n\
         Stop the embedded PostgreSQL: pg_ctl stop -D {}",
        cluster.data_dir.display()
    );
    if seen < expected {
        return Err(DemoError::Timeout);
    }
    Ok(())
}
