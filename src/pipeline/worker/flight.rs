//! The requests this worker has in flight: each request task by id with the delivery and
//! attempt it carries (to give its lease back if it never ran), the slots that bound how many
//! send at once, and the deliveries held (claimed and not yet recorded, shared with the
//! recorder).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::pipeline::record::Held;

/// A claimed delivery's attempt: `(delivery id, attempt)`.
pub(super) type Claim = (i64, u32);

/// How a request task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskEnd {
    /// The attempt was made and handed to the recorder; `retry_at`: when it is due again, if
    /// it will be retried.
    Sent { retry_at: Option<Instant> },
    /// Shutdown came before the request started: the lease should be given back.
    Unsent(Claim),
}

/// What the loop learns when a task is joined.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The task ran to its end.
    Done(TaskEnd),
    /// The task panicked or was aborted: its lease will expire.
    Failed(String),
}

/// The in-flight set.
pub(super) struct InFlight {
    tasks: JoinSet<TaskEnd>,
    claims: HashMap<Id, Claim>,
    slots: Arc<Semaphore>,
    held: Arc<Held>,
}

impl InFlight {
    /// At most `concurrency` requests send at once; the rest wait for a slot.
    pub(super) fn new(concurrency: usize, held: Arc<Held>) -> InFlight {
        InFlight {
            tasks: JoinSet::new(),
            claims: HashMap::new(),
            slots: Arc::new(Semaphore::new(concurrency)),
            held,
        }
    }

    /// The slots request tasks take before sending.
    pub(super) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// The deliveries held by this process.
    pub(super) fn held(&self) -> &Arc<Held> {
        &self.held
    }

    /// Requests running or waiting for a slot.
    pub(super) fn len(&self) -> usize {
        self.tasks.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts the request task `run` for `claim` (`keyed`: of an ordered key).
    pub(super) fn spawn(
        &mut self,
        (claim, keyed): (Claim, bool),
        run: impl Future<Output = TaskEnd> + Send + 'static,
    ) {
        self.held.insert(claim.0, keyed);
        let handle = self.tasks.spawn(run);
        self.claims.insert(handle.id(), claim);
    }

    /// The next task to end (pending while there is none).
    pub(super) async fn join_next(&mut self) -> Ended {
        let Some(done) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        self.forget(done)
    }

    /// A task that has already ended, if any: the queue counts only tasks still at work.
    pub(super) fn try_join_next(&mut self) -> Option<Ended> {
        let done = self.tasks.try_join_next_with_id()?;
        Some(self.forget(done))
    }

    fn forget(&mut self, done: Result<(Id, TaskEnd), tokio::task::JoinError>) -> Ended {
        match done {
            Ok((id, end)) => {
                self.claims.remove(&id);
                Ended::Done(end)
            }
            Err(e) => {
                self.claims.remove(&e.id());
                Ended::Failed(e.to_string())
            }
        }
    }

    /// Stops sending: tasks still waiting for a slot end at once as [`TaskEnd::Unsent`].
    pub(super) fn close(&self) {
        self.slots.close();
    }

    /// Aborts every task; returns the claims they carried (none of them will be recorded).
    pub(super) fn abort_all(&mut self) -> Vec<Claim> {
        self.tasks.abort_all();
        self.claims.drain().map(|(_, claim)| claim).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_tasks_leave_the_set_and_aborted_ones_give_their_claims() {
        let mut flight = InFlight::new(1, Arc::default());
        let sent = TaskEnd::Sent { retry_at: None };
        flight.spawn(((1, 1), false), async move { sent });
        flight.spawn(((2, 3), true), std::future::pending());
        assert_eq!(flight.len(), 2);
        assert_eq!(flight.held().snapshot().len(), 2);
        assert_eq!(flight.join_next().await, Ended::Done(sent));
        assert_eq!(flight.len(), 1);
        assert_eq!(flight.abort_all(), vec![(2, 3)]);
        assert!(matches!(flight.join_next().await, Ended::Failed(_)));
        assert!(flight.is_empty());
        // Held until recorded (or given back), not until the task ends.
        assert_eq!(flight.held().snapshot().len(), 2);
        assert!(flight.held().holds_keyed());
        flight.held().remove([2]);
        assert!(
            !flight.held().holds_keyed(),
            "only the unordered one is left"
        );
    }
}
