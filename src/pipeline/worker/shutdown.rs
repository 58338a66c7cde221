//! Stopping: no more claims, requests in flight finish within the shutdown timeout, results
//! are recorded, and claimed deliveries that were never sent are given back.

use std::time::Duration;

use tokio::time::Instant;

use super::flight::{Ended, TaskEnd};
use super::{Summary, Worker, WorkerError};

const WORKER_UNREGISTER: &str = include_str!("../../../sql/queries/worker_unregister.sql");
use crate::db::pooler;
use crate::pipeline::record;

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
        let mut unsent = Vec::new();
        while !self.flight.is_empty() {
            match tokio::time::timeout_at(deadline, self.flight.join_next()).await {
                Ok(Ended::Done(TaskEnd::Unsent(claim))) => unsent.push(claim),
                Ok(ended) => {
                    self.ended(ended);
                }
                Err(_) => {
                    tracing::warn!(
                        requests = self.flight.len(),
                        "requests still running at the shutdown timeout; abandoning them"
                    );
                    unsent.extend(self.flight.abort_all());
                    break;
                }
            }
        }
        drop(self.stages.recorder);
        if tokio::time::timeout_at(deadline + Duration::from_secs(5), recorder_task)
            .await
            .is_err()
        {
            tracing::warn!("could not record every result before stopping; those deliveries will be retried when their lease expires");
        }
        // Both are courtesies (leases expire, the row's wait ends by itself): a database that
        // does not answer promptly must not hold the stop up to the statement deadline.
        if !unsent.is_empty() {
            let release = record::release(&self.stages.db.pool, &unsent, &self.config.worker_id);
            match tokio::time::timeout(COURTESY, release).await {
                Ok(Ok(n)) => self.summary.released = n,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not give back leases; they will expire")
                }
                Err(_) => tracing::warn!("could not give back leases in time; they will expire"),
            }
        }
        if self.orphans {
            let pool = &self.stages.db.pool;
            let release = async {
                let client = pool.get().await?;
                record::release_orphans(&client, &self.config.worker_id, self.flight.held()).await
            };
            if let Ok(Ok(n)) = tokio::time::timeout(COURTESY, release).await {
                self.summary.released += n;
            }
        }
        let unregister = async {
            let client = self.stages.db.pool.get().await.ok()?;
            pooler::execute(&client, WORKER_UNREGISTER, &[&self.config.worker_id])
                .await
                .ok()
        };
        let _ = tokio::time::timeout(COURTESY, unregister).await;
        self.stages.listener.join().await;
        tracing::info!(
            attempts = self.summary.attempts,
            released = self.summary.released,
            "worker stopped"
        );
        Ok(self.summary)
    }
}
