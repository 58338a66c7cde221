//! Stopping: no more claims, requests in flight finish within the shutdown timeout, results
//! are recorded, and claimed deliveries that were never sent are given back.

use std::time::Duration;

use tokio::time::Instant;

use deadpool_postgres::Pool;

use super::flight::{Claim, Ended, TaskEnd};
use super::{Summary, Worker, WorkerError};

const WORKER_UNREGISTER: &str = include_str!("../../../sql/queries/worker_unregister.sql");
use crate::db::pooler;
use crate::pipeline::record::{self, Held};

/// How long a stopping worker waits for the database to take back its leases and its row.
const COURTESY: Duration = Duration::from_secs(3);

impl Worker {
    pub(super) async fn shut_down(
        mut self,
        recorder_task: tokio::task::JoinHandle<()>,
    ) -> Result<Summary, WorkerError> {
        // Deliveries still waiting for a slot never started: close the semaphore so their tasks
        // return at once and their leases are given back below.
        self.flight.close();
        let deadline = Instant::now() + self.config.shutdown_timeout;
        let unsent = self.drain(deadline).await;
        // Dropping the last sender is what lets the recorder write what it has and stop.
        drop(self.stages.recorder);
        finish_recording(recorder_task, deadline + Duration::from_secs(5)).await;
        // Both are courtesies (leases expire, the row's wait ends by itself): a database that
        // does not answer promptly must not hold the stop up to the statement deadline.
        let pool = &self.stages.db.pool;
        let worker_id = &self.config.worker_id;
        if !unsent.is_empty() {
            if let Some(n) = release(pool, &unsent, worker_id).await {
                self.summary.released = n;
            }
        }
        if self.orphans {
            self.summary.released += release_orphans(pool, worker_id, self.flight.held()).await;
        }
        unregister(pool, worker_id).await;
        self.stages.listener.join().await;
        tracing::info!(
            attempts = self.summary.attempts,
            released = self.summary.released,
            "worker stopped"
        );
        Ok(self.summary)
    }

    /// Waits for the requests in flight until `deadline`, then abandons the rest, leases kept;
    /// returns the claims that were never sent.
    async fn drain(&mut self, deadline: Instant) -> Vec<Claim> {
        let mut unsent = Vec::new();
        while !self.flight.is_empty() {
            match tokio::time::timeout_at(deadline, self.flight.join_next()).await {
                Ok(Ended::Done(TaskEnd::Unsent(claim))) => unsent.push(claim),
                Ok(ended) => {
                    self.ended(ended);
                }
                Err(_) => {
                    // Sent, and perhaps received: given back as never sent, they went out
                    // again with no attempt on record to explain the duplicate. Their leases
                    // stay; once one expires, the due claim records a lease_expired attempt
                    // (the request may or may not have been received) and sends it again.
                    let abandoned = self.flight.abort_all();
                    tracing::warn!(
                        requests = abandoned.len(),
                        "requests still running at the shutdown timeout; abandoning them: \
                         the receivers may have them, so they keep their leases and go out \
                         again when the leases expire, each with a lease_expired attempt"
                    );
                    break;
                }
            }
        }
        unsent
    }
}

/// Waits until `deadline` for the recorder to write the results it was handed.
async fn finish_recording(recorder_task: tokio::task::JoinHandle<()>, deadline: Instant) {
    if tokio::time::timeout_at(deadline, recorder_task)
        .await
        .is_err()
    {
        tracing::warn!("could not record every result before stopping; those deliveries will be retried when their lease expires");
    }
}

/// Gives back the leases of claims never sent; how many, if the database answered in time.
async fn release(pool: &Pool, unsent: &[Claim], worker_id: &str) -> Option<u64> {
    match tokio::time::timeout(COURTESY, record::release(pool, unsent, worker_id)).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not give back leases; they will expire");
            None
        }
        Err(_) => {
            tracing::warn!("could not give back leases in time; they will expire");
            None
        }
    }
}

/// Gives back leases no task of this worker holds (a claim that failed or was cut off may
/// still have taken them); how many, 0 if the database did not answer in time.
async fn release_orphans(pool: &Pool, worker_id: &str, held: &Held) -> u64 {
    let release = async {
        let client = pool.get().await?;
        record::release_orphans(&client, worker_id, held).await
    };
    match tokio::time::timeout(COURTESY, release).await {
        Ok(Ok(n)) => n,
        _ => 0,
    }
}

/// Removes this worker's row, if the database answers in time.
async fn unregister(pool: &Pool, worker_id: &str) {
    let unregister = async {
        let client = pool.get().await.ok()?;
        pooler::execute(&client, WORKER_UNREGISTER, &[&worker_id])
            .await
            .ok()
    };
    let _ = tokio::time::timeout(COURTESY, unregister).await;
}
