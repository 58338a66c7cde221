//! The worker loop: claim, send, record, retry, until told to stop.
//!
//! The loop reads as the pipeline: **wait** for something to happen (a notification, the poll
//! deadline or the earliest retry, a request ending, a batch of results recorded), which the
//! `Pacer` turns into a reason to claim or not; **claim** new events and due
//! deliveries (one round trip, the two statements pipelined, resumed where the
//! `ClaimCursor` says) and keep claiming while claims come back full;
//! **dispatch** each claimed delivery to a request task in the `InFlight`
//! set; the tasks hand their results to the `record` stage, which writes them
//! in batches. Nothing here decides from the metrics: they only count.
//!
//! At most `concurrency` requests send at once (a semaphore) while as many wait for a slot.
//! The claims never lease an endpoint more than its `max_in_flight` or its rate limit allows
//! (across every worker), so a hanging endpoint holds at most that many of the slots; while
//! some endpoint is at its cap, each request that ends (its slot is free before its result is
//! written) and each recorded batch wakes the loop to claim again. No database lock is held while a request is in flight: claims and results
//! are separate short statements around it. Database failures are reported once per outage
//! and waited out with backoff (see [`DbTask`]), the claimed work kept. Stopping (one
//! `CancellationToken`) stops claiming, lets requests in flight finish within
//! `shutdown_timeout`, and gives back the leases of claimed deliveries that were never sent.

use std::sync::Arc;
use std::time::SystemTime;

use deadpool_postgres::Client;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod alerts;
mod clock;
mod cursor;
mod flight;
mod floor;
mod idle;
mod outage;
mod pacer;
mod pump;
mod replan;
mod shutdown;
mod startup;
mod task;

pub use startup::Schema;

use crate::config::WorkerConfig;
use crate::db::pooler::{self, Param};
use crate::db::task::{Heartbeat, Session};
use crate::db::{Db, DbError, DbTask, Flow, Health, Proof, Step};
use crate::metrics::{Metrics, Probe};
use crate::pipeline::deliver::{Sender, SenderConfig};
use crate::pipeline::listen::{self, Listener};
use crate::pipeline::policy::{self, AutoDisable};
use crate::pipeline::record::{self, Finished};
use crate::pipeline::sweep;
use crate::trace::Telemetry;
use cursor::ClaimCursor;
use flight::{Ended, InFlight, TaskEnd};
use pacer::{Event, Pacer, Wake};
use sd_notify::NotifyState;

const WORKER_REGISTER: &str = include_str!("../../sql/queries/worker_register.sql");

/// Errors that stop the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Http(#[from] crate::pipeline::deliver::DeliverError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Schema(#[from] crate::admin::migrate::MigrateError),
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
    })?
    .with_telemetry(Telemetry::start(config.otlp_endpoint.as_deref())?);
    announce_networks(&config);
    let metrics = Arc::new(Metrics::new(config.metrics_per_endpoint));
    let health = Health::counting(metrics.db_errors.clone());
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
    if !startup::prepare(&schema, &db, &health, &token).await? {
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
    let parts = Parts {
        db,
        sender,
        metrics,
        health,
    };
    parts.run(config, &token).await
}

/// Logs which non-public networks receivers may be on, warning when the guard is off.
fn announce_networks(config: &WorkerConfig) {
    let networks = config.allow_networks.networks();
    if networks.is_empty() {
        return;
    }
    let listed: Vec<String> = networks.iter().map(ToString::to_string).collect();
    let networks_text = listed.join(",");
    if crate::pipeline::guard::check_breadth(networks, false).is_err() {
        tracing::warn!(networks = %networks_text, "the address guard is off for networks this \
            wide (--allow-any-network): receivers may be on internal services of this host and \
            its network");
    } else {
        tracing::info!(networks = %networks_text,
            "receivers may be on these non-public networks (--allow-network)");
    }
}

/// What the stages are made from, before they start.
struct Parts {
    db: Db,
    sender: Sender,
    metrics: Arc<Metrics>,
    health: Health,
}

impl Parts {
    /// Starts the stages, runs the loop until `token` is cancelled, and stops them all.
    async fn run(
        self,
        config: WorkerConfig,
        token: &CancellationToken,
    ) -> Result<Summary, WorkerError> {
        let mut outage = DbTask::new("worker", &self.health)
            .forgetting(&self.db.pool)
            .beating(watchdog());
        let (stages, held, background) = self.start(&config, token);
        let mut worker = Worker::new(config, stages, held);
        tracing::info!(worker = %worker.config.worker_id, concurrency = worker.config.concurrency,
            "worker started");
        let mut serving = Serving {
            worker: &mut worker,
            token,
        };
        outage.run(token, &mut serving).await;
        notify(&[NotifyState::Stopping]);
        let [recorder, sweeper, disabler] = background;
        let _ = sweeper.await;
        let _ = disabler.await;
        let telemetry = worker.stages.sender.telemetry().clone();
        let summary = worker.shut_down(recorder).await;
        // After the last attempt ended: its span is among those sent.
        telemetry.shutdown().await;
        summary
    }

    /// Starts the listener, recorder, retention and policy tasks; returns the stages, the
    /// deliveries held, and the recorder, retention and policy tasks' handles.
    fn start(
        self,
        config: &WorkerConfig,
        token: &CancellationToken,
    ) -> (Stages, Arc<record::Held>, [JoinHandle<()>; 3]) {
        let Parts {
            db,
            sender,
            metrics,
            health,
        } = self;
        let pool = &db.pool;
        let listener = listen::spawn(db.listen.clone(), metrics.clone(), &health, token.clone());
        let held = Arc::new(record::Held::default());
        let recorder = record::spawn(
            pool.clone(),
            config.worker_id.clone(),
            config.concurrency * 2,
            &health,
            held.clone(),
        );
        let sweeper = tokio::spawn(sweep::run(
            pool.clone(),
            config.retention.clone(),
            metrics.clone(),
            health.clone(),
            token.child_token(),
        ));
        let policy = (!config.disable_after.is_zero()).then_some(AutoDisable {
            after: config.disable_after,
            min_failures: config.disable_after_failures,
        });
        let disabler = tokio::spawn(policy::run(
            pool.clone(),
            policy,
            health,
            token.child_token(),
        ));
        let stages = Stages {
            host: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            db,
            sender,
            recorder: recorder.tx,
            recorded: recorder.written,
            listener,
            metrics,
            alerts: Arc::default(),
        };
        (stages, held, [recorder.task, sweeper, disabler])
    }
}

/// The running stages and what the loop hands work to.
struct Stages {
    db: Db,
    host: String,
    sender: Sender,
    recorder: mpsc::Sender<Finished>,
    /// Signalled by the recorder after each batch it writes.
    recorded: Arc<Notify>,
    listener: Listener,
    metrics: Arc<Metrics>,
    /// Warnings about dead deliveries, limited per endpoint.
    alerts: Arc<alerts::Alerts>,
}

struct Worker {
    config: WorkerConfig,
    stages: Stages,
    pacer: Pacer,
    cursor: ClaimCursor,
    flight: InFlight,
    summary: Summary,
    /// Whether a statement failed since leases were last checked: a lost claim's leases may
    /// be waiting to be given back.
    orphans: bool,
    /// Whether systemd was told we are ready.
    ready: bool,
    /// The database's clock, for the time each claim must start by.
    clock: clock::DbClock,
}

/// The loop as a database task: one session per step, until stopped.
struct Serving<'a> {
    worker: &'a mut Worker,
    token: &'a CancellationToken,
}

impl Step for Serving<'_> {
    type Error = WorkerError;

    async fn step(&mut self, session: &mut Session<'_>) -> Result<Flow, WorkerError> {
        let served = self.worker.serve(self.token, session).await;
        if served.is_err() {
            // The failed statement may have been a claim that ran but whose answer was lost:
            // its leases are given back once the database answers again.
            self.worker.orphans = true;
            self.worker.pacer.lost_session();
        }
        served.map(|()| Flow::Done)
    }
}

/// Tells systemd about our state, when running under it; otherwise does nothing.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "could not notify systemd");
    }
}

/// Feeds systemd's watchdog every half period, when it is enabled.
fn watchdog() -> Option<Heartbeat> {
    sd_notify::watchdog_enabled()
        .map(|period| Heartbeat::every(period / 2, || notify(&[NotifyState::Watchdog])))
}

impl Worker {
    fn new(config: WorkerConfig, stages: Stages, held: Arc<record::Held>) -> Worker {
        let now = Instant::now();
        Worker {
            pacer: Pacer::new(config.concurrency, config.poll_interval, now),
            cursor: ClaimCursor::new(now),
            flight: InFlight::new(config.concurrency, held),
            config,
            stages,
            summary: Summary::default(),
            orphans: false,
            ready: false,
            clock: clock::DbClock::default(),
        }
    }

    /// The loop on one session: wait, claim, dispatch (the tasks send and hand their results
    /// to the recorder). Returns `Ok` on shutdown and `Err` on a database error.
    async fn serve(
        &mut self,
        token: &CancellationToken,
        session: &mut Session<'_>,
    ) -> Result<(), WorkerError> {
        let client = self.open(session).await?;
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
            session.proved(Proof::Wrote);
            match self.wait(token, session).await {
                Some(next) => wake = next,
                None => return Ok(()),
            }
        }
    }

    /// Takes a session, registers this worker, and gives back the leases of a claim whose
    /// answer was lost.
    async fn open(&mut self, session: &mut Session<'_>) -> Result<Client, WorkerError> {
        let client = self.stages.db.pool.get().await.map_err(DbError::from)?;
        session.opened(deadpool_postgres::Object::metrics(&client).created);
        let pid = std::process::id() as i32;
        let registering = [&self.config.worker_id as Param, &self.stages.host, &pid];
        let sent = SystemTime::now();
        let row = pooler::query_one(&client, WORKER_REGISTER, &registering).await?;
        let server: SystemTime = row.try_get(0).map_err(DbError::from)?;
        self.clock.measured(sent, SystemTime::now(), server);
        if self.orphans {
            let held = self.flight.held();
            let released = record::release_orphans(&client, &self.config.worker_id, held).await?;
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
        Ok(client)
    }

    /// Waits until the pacer says to claim (`None`: stopped).
    async fn wait(&mut self, token: &CancellationToken, session: &mut Session<'_>) -> Option<Wake> {
        loop {
            let awaits_results = self.pacer.awaits_results();
            let deadline = self.pacer.next_wake();
            let event = tokio::select! {
                _ = token.cancelled() => return None,
                ended = self.flight.join_next(), if !self.flight.is_empty() => self.ended(ended),
                heard = self.stages.listener.notified() => Event::Heard(heard),
                _ = self.stages.recorded.notified(), if awaits_results => Event::Recorded,
                _ = tokio::time::sleep_until(deadline) => Event::Deadline,
                _ = session.heartbeat() => continue,
            };
            // Tasks that ended together are one reason to claim, not one each.
            let wake = self.pacer.on(event);
            let later = self.reap();
            if let Some(wake) = wake.or(later) {
                return Some(wake);
            }
        }
    }

    /// Takes in the request tasks that have already ended, so the queue the pacer sizes
    /// claims by counts only requests still running or waiting for a slot. (Unreaped while a
    /// pump claimed again and again, ended tasks once kept the queue looking full.)
    /// Returns the pacer's answer to them, if any was to claim.
    fn reap(&mut self) -> Option<Wake> {
        let mut wake = None;
        while let Some(ended) = self.flight.try_join_next() {
            let event = self.ended(ended);
            wake = self.pacer.on(event).or(wake);
        }
        wake
    }

    /// Counts a request task's end; returns it as the pacer's event.
    fn ended(&mut self, ended: Ended) -> Event {
        self.stages.metrics.in_flight.set(self.flight.len() as i64);
        let retry_at = match ended {
            Ended::Done(TaskEnd::Sent { retry_at }) => {
                self.summary.attempts += 1;
                retry_at
            }
            Ended::Done(TaskEnd::Unsent(_)) => None,
            Ended::Failed(e) => {
                tracing::error!(error = %e, "a delivery task failed; its lease will expire");
                None
            }
        };
        Event::Ended {
            running: self.flight.len(),
            retry_at,
            at: Instant::now(),
        }
    }
}
