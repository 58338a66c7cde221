//! The wake-up path: a dedicated connection that `LISTEN`s for commits of new events.
//!
//! Inserts notify only while some worker is idle (see `hookrelay.wake_workers()`), so this is
//! a latency shortcut, not the source of truth: the worker's poll still finds everything. The
//! connection reconnects with backoff and is checked every 10 s, and each (re)connection wakes
//! the worker once in case something was committed while it was down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::db::{classify, connect, explain, DbError, Failure, Problem, Proof};
use crate::metrics::Metrics;
use crate::retry::Backoff;

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

impl ListenError {
    /// The kind of database trouble behind this error.
    pub fn problem(&self) -> Problem {
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
    /// Whether a notification arrived since the last wake-up was taken (a wake-up without one
    /// comes from the connection being (re)established).
    noted: Arc<AtomicBool>,
    connected: watch::Receiver<bool>,
    handle: JoinHandle<()>,
}

impl Listener {
    /// Completes when a notification arrived (or the connection was re-established) since the
    /// last call; several notifications in between complete it once. Returns whether a
    /// notification was behind it: after a (re)connection there is none, only a reason to look
    /// for events that committed while nobody listened.
    pub async fn notified(&self) -> bool {
        self.wake.notified().await;
        self.noted.swap(false, Ordering::SeqCst)
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

/// Starts listening on its own connection until `token` is cancelled.
pub fn spawn(config: Option<Config>, metrics: Arc<Metrics>, token: CancellationToken) -> Listener {
    let wake = Arc::new(Notify::new());
    let noted = Arc::new(AtomicBool::new(false));
    let (connected_tx, connected) = watch::channel(false);
    let task = Task {
        config,
        wake: wake.clone(),
        noted: noted.clone(),
        connected: connected_tx,
        metrics,
        token,
    };
    Listener {
        wake,
        noted,
        connected,
        handle: tokio::spawn(task.run()),
    }
}

struct Task {
    /// `None`: nothing to listen on (transaction pooling without a direct URL).
    config: Option<Config>,
    wake: Arc<Notify>,
    noted: Arc<AtomicBool>,
    connected: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
}

impl Task {
    fn set_connected(&self, up: bool) {
        self.connected.send_replace(up);
        self.metrics.listener_connected.set(i64::from(up));
    }

    async fn run(self) {
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
        let mut backoff = Backoff::default();
        while !self.token.is_cancelled() {
            let mut opened = None;
            let result = self.listen_once(&config, &mut backoff, &mut opened).await;
            self.set_connected(false);
            let Err(e) = result else { break };
            let wait = backoff.next_delay();
            tracing::debug!(error = %e, "listener connection lost; reconnecting");
            let failure = Failure {
                task: "listener",
                problem: e.problem(),
                error: &e,
                retry_in: Some(wait),
                opened,
            };
            self.metrics.database_error(failure, None);
            tokio::select! {
                _ = self.token.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Listens on one connection until it fails; `opened` is set once it is made.
    async fn listen_once(
        &self,
        config: &Config,
        backoff: &mut Backoff,
        opened: &mut Option<Instant>,
    ) -> Result<(), ListenError> {
        let (client, connection) = connect::open(config).await?;
        let since = Instant::now();
        *opened = Some(since);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = connect::drive(connection, move |message| {
            tx.send(message.map(drop)).is_ok()
        });
        let result = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            self.set_connected(true);
            self.metrics.database.recovered(Proof::Reached, since);
            backoff.reset(Duration::from_millis(100));
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
                            self.noted.store(true, Ordering::SeqCst);
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
