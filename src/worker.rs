//! The worker loop: claim, send, record, retry, until told to stop.
//!
//! An outer loop reconnects with backoff after database errors; inside it, one `select!`
//! waits for shutdown, a notification, the poll tick (or the earliest retry), or a finished
//! request. Each wake-up *pumps*: it claims new events and due deliveries (one round trip, the
//! two statements pipelined) and keeps claiming while claims come back full, then marks the
//! worker idle so the next insert notifies it.
//!
//! Requests run as tasks in a `JoinSet`, at most `concurrency` at once (a semaphore), and hand
//! their results to the [`record`] task. The claims never lease an endpoint more
//! than its `max_in_flight` or its rate limit allows (across every worker), so a hanging
//! endpoint holds at most that many of the slots; while some endpoint is at its cap, each
//! recorded batch (which frees slots) wakes the loop. No database lock is held while a request
//! is in flight: claims and results are separate short statements around it. Stopping (one `CancellationToken`)
//! stops claiming, lets requests in flight finish within `shutdown_timeout`, and gives back the
//! leases of claimed deliveries that were never sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod alerts;
mod idle;
mod outage;
mod pump;
mod replan;
mod shutdown;
mod startup;
mod task;

pub use startup::Schema;

use crate::config::WorkerConfig;
use crate::db::pooler::{self, Param};
use crate::db::{Db, DbError, Proof};
use crate::deliver::{Sender, SenderConfig};
use crate::listen::{self, Listener};
use crate::metrics::{Metrics, Probe};
use crate::policy::{self, AutoDisable};
use crate::record::{self, Finished};
use crate::retry::Backoff;
use crate::sweep;
use sd_notify::NotifyState;

const WORKER_REGISTER: &str = include_str!("../sql/queries/worker_register.sql");

/// Errors that stop the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Http(#[from] crate::deliver::DeliverError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Schema(#[from] crate::migrate::MigrateError),
    #[error("cannot serve metrics on {addr}: {source}; choose another --metrics-addr")]
    MetricsAddr {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl From<tokio_postgres::Error> for WorkerError {
    fn from(e: tokio_postgres::Error) -> Self {
        WorkerError::Db(DbError::Postgres(e))
    }
}

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Notified,
    Tick,
    Capacity,
}

/// How a request task ended.
enum TaskEnd {
    /// The attempt was made and handed to the recorder.
    Sent,
    /// Shutdown came before the request started: the lease should be given back.
    Unsent { delivery_id: i64, attempt: u32 },
}

/// Counters reported when the worker stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub attempts: u64,
    pub released: u64,
}

/// Runs the worker until `token` is cancelled, on a schema the caller has migrated.
pub async fn run(
    config: WorkerConfig,
    db: Db,
    token: CancellationToken,
) -> Result<Summary, WorkerError> {
    run_with_schema(config, db, Schema::Trust, token).await
}

/// Runs the worker until `token` is cancelled, checking or migrating the schema first (see
/// [`Schema`]) once `/metrics`, `/healthz` and `/readyz` are served.
pub async fn run_with_schema(
    config: WorkerConfig,
    db: Db,
    schema: Schema,
    token: CancellationToken,
) -> Result<Summary, WorkerError> {
    config.validate()?;
    let sender = Sender::new(SenderConfig {
        default_timeout: config.request_timeout,
        excerpt_bytes: config.excerpt_bytes,
        idle_per_host: config.concurrency,
        allow: config.allow_networks.clone(),
        max_payload_bytes: config.max_payload_bytes,
    })?;
    if !config.allow_networks.networks().is_empty() {
        let opened: Vec<String> = config
            .allow_networks
            .networks()
            .iter()
            .map(ToString::to_string)
            .collect();
        let networks = opened.join(",");
        if crate::guard::check_breadth(config.allow_networks.networks(), false).is_err() {
            tracing::warn!(%networks, "the address guard is off for networks this wide \
                (--allow-any-network): receivers may be on internal services of this host and \
                its network");
        } else {
            tracing::info!(%networks,
                "receivers may be on these non-public networks (--allow-network)");
        }
    }
    let metrics = Arc::new(Metrics::default());
    // Served before the schema check, which waits for an unreachable database: health is
    // answered meanwhile. Announced after it, so a schema that needs migrating is the one line
    // a newcomer sees.
    let mut serving = None;
    if let Some(addr) = config.metrics_addr {
        let probe = Arc::new(Probe {
            metrics: metrics.clone(),
            pool: db.pool.clone(),
            listens: db.listen.is_some(),
        });
        let bound = crate::metrics::serve(addr, probe, token.clone())
            .await
            .map_err(|source| WorkerError::MetricsAddr { addr, source })?;
        serving = Some(bound);
    }
    if !startup::prepare(&schema, &db, &metrics, &token).await? {
        return Ok(Summary::default());
    }
    if let Some(addr) = serving {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    if !config.enabled {
        tracing::warn!("delivery is paused (enabled = false): nothing is claimed, events wait");
        notify(&[NotifyState::Ready]);
        token.cancelled().await;
        return Ok(Summary::default());
    }
    let listener = listen::spawn(db.listen.clone(), metrics.clone(), token.clone());
    let held = Arc::new(record::Held::default());
    let recorder = record::spawn(
        db.pool.clone(),
        config.worker_id.clone(),
        config.concurrency * 2,
        metrics.clone(),
        held.clone(),
    );
    let sweeper = tokio::spawn(sweep::run(
        db.pool.clone(),
        config.retention.clone(),
        metrics.clone(),
        token.child_token(),
    ));
    let policy = (!config.disable_after.is_zero()).then_some(AutoDisable {
        after: config.disable_after,
        min_failures: config.disable_after_failures,
    });
    let disabler = tokio::spawn(policy::run(
        db.pool.clone(),
        policy,
        metrics.clone(),
        token.child_token(),
    ));
    let mut worker = Worker {
        host: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        semaphore: Arc::new(Semaphore::new(config.concurrency)),
        config,
        db,
        sender,
        recorder: recorder.tx,
        recorded: recorder.written,
        capped: false,
        listener,
        tasks: JoinSet::new(),
        in_flight: HashMap::new(),
        held,
        orphans: false,
        retry_hint: Arc::new(Mutex::new(None)),
        waiting: false,
        backlog: false,
        fan_out: 1.0,
        polling: None,
        notes_at_idle: 0,
        cursor: None,
        last_full_scan: Instant::now(),
        replan: replan::Replan::new(),
        last_pump: Instant::now(),
        db_due_at: None,
        summary: Summary::default(),
        session_opened: None,
        metrics,
        alerts: Arc::default(),
        watchdog: sd_notify::watchdog_enabled().map(|period| tokio::time::interval(period / 2)),
        ready: false,
    };
    tracing::info!(worker = %worker.config.worker_id, concurrency = worker.config.concurrency,
        "worker started");
    let mut backoff = Backoff::default();
    loop {
        match worker.serve(&token, &mut backoff).await {
            Ok(()) => break,
            Err(e) => {
                // The failed statement may have been a claim that ran but whose answer was
                // lost: its leases are given back once the database answers again.
                worker.orphans = true;
                worker.back_off(e, &mut backoff, &token).await
            }
        }
        if token.is_cancelled() {
            break;
        }
    }
    notify(&[NotifyState::Stopping]);
    let _ = sweeper.await;
    let _ = disabler.await;
    worker.shut_down(recorder.task).await
}

struct Worker {
    config: WorkerConfig,
    host: String,
    db: Db,
    sender: Sender,
    recorder: mpsc::Sender<Finished>,
    /// Signalled by the recorder after each batch it writes.
    recorded: Arc<tokio::sync::Notify>,
    /// Whether some endpoint was at its max_in_flight at the last idle check: a recorded
    /// batch may have freed its slots.
    capped: bool,
    listener: Listener,
    semaphore: Arc<Semaphore>,
    tasks: JoinSet<TaskEnd>,
    /// Delivery and attempt of each running task, to give back the lease if it is aborted.
    in_flight: HashMap<Id, (i64, u32)>,
    /// Deliveries leased to this process and not yet recorded, shared with the recorder.
    held: Arc<record::Held>,
    /// Whether a statement failed since leases were last checked: a lost claim's leases may
    /// be waiting to be given back.
    orphans: bool,
    /// The earliest retry scheduled by a finished request and not claimed yet.
    retry_hint: Arc<Mutex<Option<Instant>>>,
    /// Whether our row in `hookrelay.workers` says we are idle and want notifications.
    waiting: bool,
    /// Whether the last claim came back full (more work is waiting).
    backlog: bool,
    /// Deliveries per claimed event lately, to size fan-out claims in deliveries.
    fan_out: f64,
    /// Polling instead of waiting for notifications, since this instant (the last time a
    /// claim found work); `None`: waiting for notifications when idle.
    polling: Option<Instant>,
    /// The notification count when this worker last marked itself idle.
    notes_at_idle: u64,
    /// The greatest event id this worker has fanned out: claims resume after it.
    cursor: Option<uuid::Uuid>,
    /// When a fan-out claim last looked from the start.
    last_full_scan: Instant,
    /// When to make the sessions' plans again (made against smaller tables).
    replan: replan::Replan,
    last_pump: Instant,
    /// When the earliest pending delivery is due, as of the last idle check.
    db_due_at: Option<Instant>,
    summary: Summary,
    /// When the session the loop is using was opened, to tell an old session's failure from a
    /// new outage (see [`Alarm`](crate::db::Alarm)).
    session_opened: Option<std::time::Instant>,
    metrics: Arc<Metrics>,
    /// Warnings about dead deliveries, limited per endpoint.
    alerts: Arc<alerts::Alerts>,
    /// Feeds systemd's watchdog when it is enabled (every half period).
    watchdog: Option<tokio::time::Interval>,
    /// Whether systemd was told we are ready.
    ready: bool,
}

/// Tells systemd about our state, when running under it; otherwise does nothing.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "could not notify systemd");
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Worker {
    /// The inner loop. Returns `Ok` on shutdown and `Err` on a database error.
    async fn serve(
        &mut self,
        token: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), WorkerError> {
        self.session_opened = None;
        let client = self.db.pool.get().await.map_err(DbError::from)?;
        let opened = deadpool_postgres::Object::metrics(&client).created;
        self.session_opened = Some(opened);
        let pid = std::process::id() as i32;
        let registering = [&self.config.worker_id as Param, &self.host, &pid];
        pooler::execute(&client, WORKER_REGISTER, &registering).await?;
        if self.orphans {
            let released =
                record::release_orphans(&client, &self.config.worker_id, &self.held).await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "gave back the leases of a claim whose answer was lost"
                );
            }
            self.orphans = false;
        }
        if !self.ready {
            notify(&[NotifyState::Ready]);
            self.ready = true;
        }
        let mut wake = Wake::Tick;
        loop {
            // A stop does not wait for a claim on a database that went silent: the claim may
            // still run, so its leases are given back as orphans while stopping.
            tokio::select! {
                pumped = self.pump(&client, wake) => pumped?,
                _ = token.cancelled() => {
                    self.orphans = true;
                    return Ok(());
                }
            }
            backoff.reset(Duration::from_millis(100));
            self.metrics.database.recovered(Proof::Wrote, opened);
            let deadline = self.next_wake();
            wake = loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                        self.finished(done);
                        if self.backlog && self.tasks.len() <= self.config.concurrency {
                            break Wake::Capacity;
                        }
                    }
                    noted = self.listener.notified() => {
                        // A (re)connection: look for work, as a tick would.
                        break if noted { Wake::Notified } else { Wake::Tick };
                    }
                    _ = self.recorded.notified(), if self.capped => break Wake::Capacity,
                    _ = tokio::time::sleep_until(deadline) => break Wake::Tick,
                    _ = tick(&mut self.watchdog) => notify(&[NotifyState::Watchdog]),
                }
            };
        }
    }

    fn finished(&mut self, done: Result<(Id, TaskEnd), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        self.in_flight.remove(&id);
        self.metrics.in_flight.set(self.tasks.len() as i64);
        match done {
            Ok((_, TaskEnd::Sent)) => self.summary.attempts += 1,
            Ok((_, TaskEnd::Unsent { .. })) => {}
            Err(e) => tracing::error!(error = %e, "a delivery task failed; its lease will expire"),
        }
    }
}
