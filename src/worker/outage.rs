//! When the database fails under the loop: report the problem (once, see
//! [`Alarm`](crate::db::Alarm)) and wait before serving again, still feeding the watchdog.

use tokio_util::sync::CancellationToken;

use super::{notify, tick, Worker, WorkerError};
use crate::db::{Failure, Problem};
use crate::retry::Backoff;
use sd_notify::NotifyState;

impl WorkerError {
    /// The kind of database trouble behind this error ([`Problem::Other`] when it is not a
    /// database error).
    pub fn problem(&self) -> Problem {
        match self {
            WorkerError::Db(e) => e.problem(),
            WorkerError::Schema(e) => e.problem(),
            _ => Problem::Other,
        }
    }
}

impl Worker {
    /// Reports `error` and waits the next backoff delay (or until stopped). Claimed work is
    /// not dropped: requests in flight go on, and their results wait in the recorder.
    pub(super) async fn back_off(
        &mut self,
        error: WorkerError,
        backoff: &mut Backoff,
        token: &CancellationToken,
    ) {
        self.waiting = false;
        let wait = backoff.next_delay();
        let failure = Failure {
            task: "worker",
            problem: error.problem(),
            error: &error,
            retry_in: Some(wait),
            opened: self.session_opened.take(),
        };
        self.metrics.database_error(failure, Some(&self.db.pool));
        let pause = tokio::time::sleep(wait);
        tokio::pin!(pause);
        loop {
            // Still alive while the database is away: keep the watchdog fed.
            tokio::select! {
                _ = token.cancelled() => break,
                _ = &mut pause => break,
                _ = tick(&mut self.watchdog) => notify(&[NotifyState::Watchdog]),
            }
        }
    }
}
