//! The wake-up path: a dedicated connection that `LISTEN`s for commits of new events.
//!
//! Inserts notify only while some worker is idle (see `hookrelay.wake_idle_workers_now()`, in
//! the default of `events.created_at`), so this is a latency shortcut, not the source of truth:
//! the worker's poll still finds everything. The connection reconnects with backoff and is
//! checked every 10 s, and each (re)connection wakes the worker once in case something was
//! committed while it was down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::db::task::Session;
use crate::db::{
    classify, connect, explain, DbError, DbTask, Fault, Flow, Health, Problem, Proof, Step,
};
use crate::metrics::Metrics;

/// The channel inserts notify on.
pub const CHANNEL: &str = "hookrelay_events";

/// How often the idle LISTEN connection is checked: a connection that went silent is noticed
/// within this plus the check's own 10 s.
const HEALTH_CHECK: Duration = Duration::from_secs(10);

/// Errors that end one listening connection (it is then reopened).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] DbError),
    #[error("the server closed the connection")]
    Closed,
    #[error("the connection did not answer a health check within 10 s")]
    Unresponsive,
}

impl Fault for ListenError {
    fn problem(&self) -> Problem {
        match self {
            ListenError::Db(e) => classify(e),
            ListenError::Connect(e) => e.problem(),
            ListenError::Closed | ListenError::Unresponsive => Problem::Unreachable,
        }
    }
}

/// A handle on the listening task.
pub struct Listener {
    wake: Arc<Notify>,
    /// Notifications heard since the listener started (the worker's notify-or-poll decision
    /// counts them, see `worker::pacer`).
    heard: Arc<AtomicU64>,
    /// `heard` when the last wake-up was taken: a wake-up without a notification since comes
    /// from the connection being (re)established.
    taken: AtomicU64,
    connected: watch::Receiver<bool>,
    handle: JoinHandle<()>,
}

impl Listener {
    /// Completes when a notification arrived (or the connection was re-established) since the
    /// last call; several notifications in between complete it once. Returns the count of
    /// notifications heard so far when a notification was behind it, `None` after a
    /// (re)connection with none: only a reason to look for events that committed while nobody
    /// listened.
    pub async fn notified(&self) -> Option<u64> {
        self.wake.notified().await;
        let heard = self.heard();
        let before = self.taken.swap(heard, Ordering::SeqCst);
        (heard > before).then_some(heard)
    }

    /// Notifications heard since the listener started.
    pub fn heard(&self) -> u64 {
        self.heard.load(Ordering::SeqCst)
    }

    /// Whether the LISTEN is currently in place.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits for the task to finish after the token was cancelled.
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

/// Starts listening on its own connection until `token` is cancelled; connection failures are
/// reported to `health`.
pub fn spawn(
    config: Option<Config>,
    metrics: Arc<Metrics>,
    health: &Health,
    token: CancellationToken,
) -> Listener {
    let wake = Arc::new(Notify::new());
    let heard = Arc::new(AtomicU64::new(0));
    let (connected_tx, connected) = watch::channel(false);
    let task = Task {
        config,
        wake: wake.clone(),
        heard: heard.clone(),
        connected: connected_tx,
        metrics,
        token,
    };
    Listener {
        wake,
        heard,
        taken: AtomicU64::new(0),
        connected,
        handle: tokio::spawn(task.run(DbTask::new("listener", health))),
    }
}

struct Task {
    /// `None`: nothing to listen on (transaction pooling without a direct URL).
    config: Option<Config>,
    wake: Arc<Notify>,
    heard: Arc<AtomicU64>,
    connected: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
}

impl Task {
    fn set_connected(&self, up: bool) {
        self.connected.send_replace(up);
        self.metrics.listener_connected.set(i64::from(up));
    }

    async fn run(self, mut outage: DbTask) {
        let Some(config) = self.config.clone() else {
            tracing::warn!(
                "polling for new events every --poll-interval instead of listening: \
                 --database-url goes through a pooler in transaction mode, which cannot deliver \
                 notifications; give a direct URL with --listen-database-url \
                 (HOOKRELAY_LISTEN_DATABASE_URL) for immediate wake-ups"
            );
            self.token.cancelled().await;
            return;
        };
        let token = self.token.clone();
        let mut listening = Listening {
            task: &self,
            config: &config,
        };
        outage.run(&token, &mut listening).await;
    }
}

/// Listening on one connection after another: ends (`Done`) only when stopped; a lost
/// connection is reported and made again.
struct Listening<'a> {
    task: &'a Task,
    config: &'a Config,
}

impl Step for Listening<'_> {
    type Error = ListenError;

    async fn step(&mut self, session: &mut Session<'_>) -> Result<Flow, ListenError> {
        let result = self.task.listen_once(self.config, session).await;
        self.task.set_connected(false);
        if let Err(e) = &result {
            tracing::debug!(error = %e, "listener connection lost; reconnecting");
        }
        result.map(|()| Flow::Done)
    }
}

impl Task {
    /// Listens on one connection until it fails (or the token is cancelled: `Ok`).
    async fn listen_once(
        &self,
        config: &Config,
        session: &mut Session<'_>,
    ) -> Result<(), ListenError> {
        let (client, connection) = connect::open(config).await?;
        session.opened(Instant::now());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = connect::drive(connection, move |message| {
            tx.send(message.map(drop)).is_ok()
        });
        let result = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            self.set_connected(true);
            session.proved(Proof::Reached);
            tracing::debug!("listening for new events");
            self.wake.notify_one();
            let mut health = tokio::time::interval(HEALTH_CHECK);
            health.tick().await;
            loop {
                tokio::select! {
                    _ = self.token.cancelled() => return Ok(()),
                    message = rx.recv() => match message {
                        Some(Ok(())) => {
                            self.metrics.notifications.inc();
                            self.heard.fetch_add(1, Ordering::SeqCst);
                            self.wake.notify_one();
                        }
                        Some(Err(e)) => return Err(ListenError::Db(e)),
                        None => return Err(ListenError::Closed),
                    },
                    _ = health.tick() => {
                        let check = tokio::time::timeout(Duration::from_secs(10), client.simple_query(""));
                        match check.await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => return Err(ListenError::Db(e)),
                            Err(_) => return Err(ListenError::Unresponsive),
                        }
                    }
                }
            }
        }
        .await;
        drop(client);
        driver.abort();
        result
    }
}
