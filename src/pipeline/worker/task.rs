//! One delivery attempt, run as its own task: wait for a slot, send, decide what follows, and
//! hand the result to the recorder.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::alerts::Alerts;
use super::flight::TaskEnd;
use crate::metrics::Metrics;
use crate::pipeline::claim::Job;
use crate::pipeline::deliver::{Attempt, AttemptError, ErrorCode, Sender};
use crate::pipeline::record::{Finished, Held};
use crate::pipeline::retry::{self, Outcome, RetrySchedule};

/// One delivery attempt, run as its own task.
pub(super) struct Task {
    pub(super) sender: Sender,
    pub(super) recorder: mpsc::Sender<Finished>,
    pub(super) semaphore: Arc<Semaphore>,
    /// Where the end of the request is noted: from then on it holds no endpoint slot.
    pub(super) held: Arc<Held>,
    pub(super) schedule: RetrySchedule,
    pub(super) metrics: Arc<Metrics>,
    pub(super) alerts: Arc<Alerts>,
    pub(super) max_attempts: u32,
    pub(super) timeout: Duration,
}

impl Task {
    pub(super) async fn run(self, mut job: Job) -> TaskEnd {
        let Ok(permit) = self.semaphore.clone().acquire_owned().await else {
            return TaskEnd::Unsent((job.delivery_id, job.attempt));
        };
        let (result, outcome) = self.attempt(&mut job).await;
        // The slot is free as soon as the request is: recording is bounded by its channel.
        drop(permit);
        // So is the endpoint's, except after a 410: that endpoint gets nothing more until the
        // result that disables it is written.
        if !result.is_gone() {
            self.held.ended(job.delivery_id, job.target.id);
        }
        self.metrics
            .attempt(&job.target.name, outcome.as_str(), result.duration);
        if outcome == Outcome::Dead {
            self.alerts.dead(&job, &result);
        }
        // The loop wakes for the retry (it may come before the next poll).
        let retry_at = match outcome {
            Outcome::Retry { after } => Some(Instant::now() + after),
            _ => None,
        };
        let finished = Finished {
            delivery_id: job.delivery_id,
            event_id: job.event.id,
            endpoint_id: job.target.id,
            attempt: job.attempt,
            outcome,
            result,
        };
        // The recorder outlives every task; if it is gone the lease simply expires.
        let _ = self.recorder.send(finished).await;
        TaskEnd::Sent { retry_at }
    }

    /// Sends the job, unless it cannot or may not be sent (then it is dead, unsent), and
    /// decides what follows.
    async fn attempt(&self, job: &mut Job) -> (Attempt, Outcome) {
        if let Some(problem) = job.unreadable.take() {
            return (unsent(ErrorCode::PayloadInvalid, problem), Outcome::Dead);
        }
        if job.budget_attempt > self.max_attempts {
            // Only after a worker died mid-attempt: the attempts were used up by claims.
            let message = format!(
                "not sent: attempt {} exceeds the {} allowed, the earlier ones ended with their \
                 worker stopping",
                job.budget_attempt, self.max_attempts
            );
            return (unsent(ErrorCode::LeaseExpired, message), Outcome::Dead);
        }
        job.target.timeout = Some(self.timeout);
        // The attempt's span: its id is the parent id the receiver gets in traceparent.
        let span = self.sender.telemetry().start_attempt(job);
        job.trace_headers = span.headers();
        let result = self.sender.send(job).await;
        let outcome = decide(
            &result,
            job.budget_attempt,
            self.max_attempts,
            &self.schedule,
        );
        span.end(&result, outcome.as_str());
        (result, outcome)
    }
}

/// An attempt that was not sent, and why.
fn unsent(code: ErrorCode, message: String) -> Attempt {
    Attempt {
        error: Some(AttemptError { code, message }),
        ..Attempt::none()
    }
}

/// What follows an attempt: success, another try, or the end.
fn decide(result: &Attempt, attempt: u32, max_attempts: u32, schedule: &RetrySchedule) -> Outcome {
    match &result.error {
        None => Outcome::Delivered,
        Some(e) if e.code.is_permanent() => Outcome::Dead,
        Some(_) => schedule.after_failure(
            attempt,
            max_attempts,
            result.retry_after,
            retry::random_jitter(),
        ),
    }
}
