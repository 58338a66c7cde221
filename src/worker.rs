//! The worker loop: claim, send, record, retry, until told to stop.
//!
//! An outer loop reconnects with backoff after database errors; inside it, one `select!`
//! waits for shutdown, a notification, the poll tick (or the earliest retry), or a finished
//! request. Each wake-up *pumps*: it claims new events and due deliveries (one round trip, the
//! two statements pipelined) and keeps claiming while claims come back full, then marks the
//! worker idle so the next insert notifies it.
//!
//! Requests run as tasks in a `JoinSet`, at most `concurrency` at once (a semaphore), and hand
//! their results to the [`record`](crate::record) task. The claims never lease an endpoint more
//! than its `max_in_flight` or its rate limit allows (across every worker), so a hanging
//! endpoint holds at most that many of the slots; while some endpoint is at its cap, each
//! recorded batch (which frees slots) wakes the loop. No database lock is held while a request
//! is in flight: claims and results are separate short statements around it. Stopping (one `CancellationToken`)
//! stops claiming, lets requests in flight finish within `shutdown_timeout`, and gives back the
//! leases of claimed deliveries that were never sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Client;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::claim::{self, Job, Lease, Scan};

mod idle;
mod outage;
mod replan;
mod shutdown;
mod task;

use crate::config::WorkerConfig;
use crate::db::{Db, DbError, Proof};
use crate::deliver::{Sender, SenderConfig};
use crate::listen::{self, Listener};
use crate::metrics::{Metrics, Probe};
use crate::policy::{self, AutoDisable};
use crate::record::{self, Finished};
use crate::retry::Backoff;
use crate::sweep;
use idle::FAST_POLL;
use sd_notify::NotifyState;
pub use task::decide;
use task::Task;

const WORKER_REGISTER: &str = include_str!("../sql/queries/worker_register.sql");

/// While a backlog drains, fan-out claims look from the start only every this many poll
/// intervals.
const FULL_SCAN_BACKLOG_FACTOR: u32 = 10;

/// Shortest pause between two pumps that found nothing, so a due delivery that another worker
/// holds locked cannot make this one spin.
const MIN_REPOLL: Duration = Duration::from_millis(20);

/// Errors that stop the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Http(#[from] crate::deliver::DeliverError),
    #[error(transparent)]
    Db(#[from] DbError),
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

/// Runs the worker until `token` is cancelled.
pub async fn run(
    config: WorkerConfig,
    db: Db,
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
        tracing::info!(networks = %opened.join(","),
            "receivers may be on these non-public networks (--allow-network)");
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics_addr {
        let probe = Arc::new(Probe {
            metrics: metrics.clone(),
            pool: db.pool.clone(),
        });
        let bound = crate::metrics::serve(addr, probe, token.clone())
            .await
            .map_err(|source| WorkerError::MetricsAddr { addr, source })?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    }
    if !config.enabled {
        tracing::warn!("delivery is paused (enabled = false): nothing is claimed, events wait");
        notify(&[NotifyState::Ready]);
        token.cancelled().await;
        return Ok(Summary::default());
    }
    let listener = listen::spawn(db.config.clone(), metrics.clone(), token.clone());
    let recorder = record::spawn(
        db.pool.clone(),
        config.worker_id.clone(),
        config.concurrency * 2,
        metrics.clone(),
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
        watchdog: sd_notify::watchdog_enabled().map(|period| tokio::time::interval(period / 2)),
        ready: false,
    };
    tracing::info!(worker = %worker.config.worker_id, concurrency = worker.config.concurrency,
        "worker started");
    let mut backoff = Backoff::default();
    loop {
        match worker.serve(&token, &mut backoff).await {
            Ok(()) => break,
            Err(e) => worker.back_off(e, &mut backoff, &token).await,
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
        let register = client.prepare_cached(WORKER_REGISTER).await?;
        let pid = std::process::id() as i32;
        client
            .execute(&register, &[&self.config.worker_id, &self.host, &pid])
            .await?;
        if !self.ready {
            notify(&[NotifyState::Ready]);
            self.ready = true;
        }
        let mut wake = Wake::Tick;
        loop {
            self.pump(&client, wake).await?;
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
                    _ = self.listener.notified() => break Wake::Notified,
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

    /// Where the next fan-out claim starts: a little before the last event claimed.
    fn resume(&self) -> Scan {
        self.cursor.map_or(Scan::FromStart, |last| {
            Scan::After(claim::resume_point(last, claim::RESUME_SLACK))
        })
    }

    /// When to look for work next without being woken.
    fn next_wake(&self) -> Instant {
        if self.polling.is_some() {
            return self.last_pump + FAST_POLL;
        }
        let mut at = self.last_pump + self.config.poll_interval;
        if let Some(due) = self.db_due_at {
            at = at.min(due);
        }
        if let Some(hint) = *self.retry_hint.lock().expect("retry hint lock") {
            at = at.min(hint);
        }
        at.max(self.last_pump + MIN_REPOLL)
    }

    /// Claims and dispatches until nothing more is waiting or the queue is full.
    ///
    /// Up to `concurrency` requests run while as many claimed deliveries wait for a slot, so
    /// the next claim overlaps the requests in flight; a claim is made only when that queue
    /// has room for a whole batch, so claims stay large under load.
    async fn pump(&mut self, client: &Client, wake: Wake) -> Result<(), WorkerError> {
        self.last_pump = Instant::now();
        {
            let mut hint = self.retry_hint.lock().expect("retry hint lock");
            if hint.is_some_and(|at| at <= self.last_pump) {
                *hint = None;
            }
        }
        // A notified worker is no longer idle: stop inserts from notifying until it is again.
        // The listener also wakes the worker when it (re)connects, with no notification: then
        // the worker looks for work but stays marked idle, so that a commit meanwhile still
        // notifies it (a stale wake-up right after start had made the first inserts miss it).
        let notified =
            wake == Wake::Notified && self.metrics.notifications.get() > self.notes_at_idle;
        let mut go_busy = notified && self.waiting;
        if go_busy {
            self.watch_notification_burst();
        }
        let worker_id = self.config.worker_id.clone();
        let lease = Lease {
            duration: self.config.lease,
            worker: &worker_id,
        };
        let mut found = false;
        // Now and then from the start, for events that committed late with a lower id: every
        // poll interval, or every ten while a backlog drains (a scan from the start walks the
        // dead index entries of everything claimed since the last vacuum).
        let every = if self.backlog {
            self.config.poll_interval * FULL_SCAN_BACKLOG_FACTOR
        } else {
            self.config.poll_interval
        };
        let mut from = if self.last_full_scan.elapsed() >= every {
            self.last_full_scan = Instant::now();
            Scan::FromStart
        } else {
            self.resume()
        };
        loop {
            let concurrency = self.config.concurrency;
            let room = (2 * concurrency).saturating_sub(self.tasks.len());
            if room < concurrency {
                // The queue is full: busy, whatever woke us.
                self.backlog = true;
                if self.waiting {
                    self.set_busy(client, true).await?;
                    self.waiting = false;
                }
                return Ok(());
            }
            let limit = self.config.batch_size.min(room);
            let events = ((limit as f64 / self.fan_out).floor() as usize).max(1);
            let (busy, fresh, due) = tokio::join!(
                self.set_busy(client, go_busy),
                claim::claim_new(client, events, from, &lease),
                claim::claim_due(client, limit, &lease),
            );
            busy?;
            let (fresh, due) = (fresh?, due?);
            if self.replan.count(fresh.taken + due.taken) {
                self.replan(client).await?;
            }
            self.metrics.claim("new", fresh.jobs.len());
            self.metrics.claim("due", due.jobs.len());
            if go_busy {
                self.waiting = false;
            }
            self.cursor = self.cursor.max(fresh.last_event);
            from = self.resume();
            if fresh.taken > 0 {
                let ratio = fresh.jobs.len() as f64 / fresh.taken as f64;
                self.fan_out = (0.7 * self.fan_out + 0.3 * ratio).max(0.1);
            }
            found |= fresh.taken > 0 || due.taken > 0;
            let full = fresh.taken >= events || due.taken >= limit;
            self.dispatch(fresh.jobs.into_iter().chain(due.jobs));
            if full {
                self.backlog = true;
                go_busy = self.waiting;
                continue;
            }
            self.backlog = false;
            if self.keep_polling(found) || !self.listener.is_connected() {
                return Ok(());
            }
            // Idle: ask to be notified, and in the same round trip look once more for events
            // committed before the flag was visible (their inserts saw no waiting worker).
            if self.waiting {
                (self.db_due_at, self.capped) = self.set_idle(client).await?;
                return Ok(());
            }
            self.notes_at_idle = self.metrics.notifications.get();
            let (idle, recheck) = tokio::join!(
                self.set_idle(client),
                claim::claim_new(client, events, from, &lease),
            );
            (self.db_due_at, self.capped) = idle?;
            self.waiting = true;
            let recheck = recheck?;
            self.cursor = self.cursor.max(recheck.last_event);
            self.metrics.claim("new", recheck.jobs.len());
            let full = recheck.taken >= events;
            self.dispatch(recheck.jobs);
            if !full {
                return Ok(());
            }
            go_busy = true;
        }
    }

    fn dispatch(&mut self, jobs: impl IntoIterator<Item = Job>) {
        for job in jobs {
            let ids = (job.delivery_id, job.attempt);
            let task = Task {
                sender: self.sender.clone(),
                recorder: self.recorder.clone(),
                semaphore: self.semaphore.clone(),
                retry_hint: self.retry_hint.clone(),
                schedule: self.config.retry_schedule.clone(),
                metrics: self.metrics.clone(),
                max_attempts: job
                    .target
                    .max_attempts
                    .unwrap_or(self.config.default_max_attempts()),
                timeout: self.config.request_timeout_for(job.target.timeout),
            };
            let handle = self.tasks.spawn(task.run(job));
            self.in_flight.insert(handle.id(), ids);
        }
        self.metrics.in_flight.set(self.tasks.len() as i64);
    }
}
