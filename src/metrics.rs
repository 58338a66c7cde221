//! Metrics and health over HTTP: `/metrics` (Prometheus text 0.0.4, or OpenMetrics when the
//! scraper asks for it), `/healthz` (the process is alive) and `/readyz` (the database answers
//! and takes writes, and the listener is connected).
//!
//! Counters are updated by the pipeline as it works; the backlog figures are read from the
//! `hookrelay.backlog` view when scraped (see [`scraped`]), so they are exact and cost nothing
//! between scrapes.

pub mod format;
pub mod per_endpoint;
pub mod scraped;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use deadpool_postgres::Pool;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use format::Format;
use per_endpoint::PerEndpoint;
use scraped::Scraped;

/// Labels for counters split by kind or outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// Labels for delivery outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// Every metric hookrelay exports.
pub struct Metrics {
    registry: Registry,
    /// Finished attempts by outcome: delivered, retry, dead.
    pub deliveries: Family<Outcome, Counter>,
    /// Attempt duration, seconds.
    pub attempt_duration: Histogram,
    /// Claim statements run, by kind: new (fan-out) or due.
    pub claims: Family<Kind, Counter>,
    /// Deliveries claimed, by kind.
    pub claimed: Family<Kind, Counter>,
    /// Notifications received on the LISTEN connection.
    pub notifications: Counter,
    /// Database errors met by the worker loop, recorder, listener and sweeper (counted by
    /// their [`Health`](crate::db::Health), which reports them).
    pub db_errors: Counter,
    /// Requests in flight or waiting for a slot.
    pub in_flight: Gauge,
    /// 1 while the LISTEN connection is up.
    pub listener_connected: Gauge,
    /// Rows removed by retention, by kind.
    pub pruned: Family<Kind, Counter>,
    /// Series by endpoint name, with `--metrics-per-endpoint`.
    pub per_endpoint: Option<PerEndpoint>,
    scraped: Arc<Scraped>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// Every metric; with `per_endpoint`, also the series labelled by endpoint name.
    pub fn new(per_endpoint: bool) -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("hookrelay"),
            deliveries: Family::default(),
            attempt_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            claims: Family::default(),
            claimed: Family::default(),
            notifications: Counter::default(),
            db_errors: Counter::default(),
            in_flight: Gauge::default(),
            listener_connected: Gauge::default(),
            pruned: Family::default(),
            per_endpoint: None,
            scraped: Arc::new(Scraped::new(per_endpoint)),
        };
        m.register(per_endpoint);
        m
    }

    /// Puts every metric in the registry `/metrics` encodes, under its exported name.
    fn register(&mut self, per_endpoint: bool) {
        let m = self;
        let r = &mut m.registry;
        r.register(
            "deliveries",
            "Delivery attempts finished (one per HTTP try), by outcome: delivered, retry \
             (failed, will be retried) or dead (failed, no retry left)",
            m.deliveries.clone(),
        );
        r.register(
            "attempt_duration_seconds",
            "Duration of delivery attempts, seconds",
            m.attempt_duration.clone(),
        );
        r.register("claims", "Claim statements run, by kind", m.claims.clone());
        r.register(
            "claimed_deliveries",
            "Deliveries claimed, by kind",
            m.claimed.clone(),
        );
        r.register(
            "notifications",
            "Wake-up notifications received",
            m.notifications.clone(),
        );
        r.register(
            "database_errors",
            "Database errors met by the worker and by /metrics reads",
            m.db_errors.clone(),
        );
        r.register(
            "in_flight_requests",
            "Requests running or waiting for a slot",
            m.in_flight.clone(),
        );
        r.register(
            "listener_connected",
            "1 while the LISTEN connection is up",
            m.listener_connected.clone(),
        );
        r.register(
            "pruned_rows",
            "Rows removed by retention, by kind",
            m.pruned.clone(),
        );
        r.register_collector(Box::new(m.scraped.clone()));
        if per_endpoint {
            m.per_endpoint = Some(PerEndpoint::register(r));
        }
    }

    /// Counts a finished attempt to the endpoint named `endpoint`.
    pub fn attempt(&self, endpoint: &str, outcome: &'static str, duration: Duration) {
        self.deliveries.get_or_create(&Outcome { outcome }).inc();
        self.attempt_duration.observe(duration.as_secs_f64());
        if let Some(per) = &self.per_endpoint {
            per.attempt(endpoint, outcome, duration.as_secs_f64());
        }
    }

    /// Counts a claim statement and what it took.
    pub fn claim(&self, kind: &'static str, deliveries: usize) {
        let label = Kind { kind };
        self.claims.get_or_create(&label).inc();
        self.claimed.get_or_create(&label).inc_by(deliveries as u64);
    }

    /// The Prometheus text (0.0.4) exposition, with the backlog read fresh from the database.
    pub async fn render(&self, pool: &Pool) -> String {
        self.render_as(pool, Format::Prometheus).await
    }

    /// The exposition in `format`, with the backlog read fresh from the database (or left out,
    /// and `hookrelay_database_up` 0, when it cannot be read within [`scraped::READ_TIMEOUT`]).
    pub async fn render_as(&self, pool: &Pool, format: Format) -> String {
        if let Err(e) = self.scraped.refresh(pool).await {
            tracing::debug!(error = %e, "could not read the backlog for /metrics");
            self.db_errors.inc();
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => format::openmetrics_to_prometheus(&out),
        }
    }
}

/// What the HTTP endpoints need.
pub struct Probe {
    pub metrics: Arc<Metrics>,
    pub pool: Pool,
    /// Whether the worker listens (it polls instead behind a transaction pooler without a
    /// direct LISTEN URL): readiness then does not wait for a LISTEN connection.
    pub listens: bool,
}

async fn metrics(State(probe): State<Arc<Probe>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = format::negotiate(accept);
    let body = probe.metrics.render_as(&probe.pool, format).await;
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            // The body depends on Accept: caches must not hand one scraper's format to another.
            (header::VARY, "Accept"),
        ],
        body,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(probe): State<Arc<Probe>>) -> (StatusCode, String) {
    // A read-only database answers, but the worker can neither claim nor record: not ready.
    let database = async {
        // Worded as the operator's problem, never the pool's internals.
        let said = |e: crate::db::DbError| e.to_string();
        let client = probe.pool.get().await.map_err(|e| said(e.into()))?;
        let rows = client
            .simple_query("SHOW transaction_read_only")
            .await
            .map_err(|e| said(e.into()))?;
        let read_only = rows.iter().any(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0) == Some("on"),
            _ => false,
        });
        Ok::<bool, String>(read_only)
    };
    let database = match tokio::time::timeout(Duration::from_secs(2), database).await {
        Ok(result) => result,
        Err(_) => Err("the database did not answer a check within 2 s".to_string()),
    };
    let listening = !probe.listens || probe.metrics.listener_connected.get() == 1;
    match (database, listening) {
        (Ok(false), true) => (StatusCode::OK, "ready\n".into()),
        (Err(e), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: database unreachable: {e}\n"),
        ),
        (Ok(true), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database is read-only (default_transaction_read_only is on, or \
             the server is a standby): nothing can be claimed or recorded\n"
                .into(),
        ),
        (Ok(false), false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the LISTEN connection is down\n".into(),
        ),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `token` is cancelled.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    probe: Arc<Probe>,
    token: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probe);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(bound)
}
