//! One pump of the worker loop: claim new events and due deliveries in batches, dispatch them
//! to request tasks, and go idle (asking to be notified) when nothing more is waiting.

use std::time::Duration;

use deadpool_postgres::Client;
use tokio::time::Instant;

use super::idle::FAST_POLL;
use super::task::Task;
use super::{Wake, Worker, WorkerError};
use crate::claim::{self, Job, Lease, Scan};

/// While a backlog drains, fan-out claims look from the start only every this many poll
/// intervals.
const FULL_SCAN_BACKLOG_FACTOR: u32 = 10;

/// Shortest pause between two pumps that found nothing, so a due delivery that another worker
/// holds locked cannot make this one spin.
const MIN_REPOLL: Duration = Duration::from_millis(20);

impl Worker {
    /// Where the next fan-out claim starts: a little before the last event claimed.
    pub(super) fn resume(&self) -> Scan {
        self.cursor.map_or(Scan::FromStart, |last| {
            Scan::After(claim::resume_point(last, claim::RESUME_SLACK))
        })
    }

    /// When to look for work next without being woken.
    pub(super) fn next_wake(&self) -> Instant {
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
    pub(super) async fn pump(&mut self, client: &Client, wake: Wake) -> Result<(), WorkerError> {
        self.last_pump = Instant::now();
        {
            let mut hint = self.retry_hint.lock().expect("retry hint lock");
            if hint.is_some_and(|at| at <= self.last_pump) {
                *hint = None;
            }
        }
        // A notified worker is no longer idle: stop inserts from notifying until it is again.
        // (A wake-up from the listener (re)connecting is a tick: the worker stays marked idle,
        // so a commit meanwhile still notifies it; taken as a notification right after start,
        // it had made the first inserts miss the idle worker.)
        let mut go_busy = wake == Wake::Notified && self.waiting;
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
            let claim_started = std::time::SystemTime::now();
            let (busy, fresh, due) = tokio::join!(
                self.set_busy(client, go_busy),
                claim::claim_new(client, events, from, &lease),
                claim::claim_due(client, limit, &lease),
            );
            busy?;
            let (fresh, due) = (fresh?, due?);
            let telemetry = self.sender.telemetry();
            telemetry.claimed(claim_started, fresh.taken, &fresh.jobs);
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
            let claim_started = std::time::SystemTime::now();
            let (idle, recheck) = tokio::join!(
                self.set_idle(client),
                claim::claim_new(client, events, from, &lease),
            );
            (self.db_due_at, self.capped) = idle?;
            self.waiting = true;
            let recheck = recheck?;
            let telemetry = self.sender.telemetry();
            telemetry.claimed(claim_started, recheck.taken, &recheck.jobs);
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

    pub(super) fn dispatch(&mut self, jobs: impl IntoIterator<Item = Job>) {
        for job in jobs {
            let ids = (job.delivery_id, job.attempt);
            let task = Task {
                sender: self.sender.clone(),
                recorder: self.recorder.clone(),
                semaphore: self.semaphore.clone(),
                retry_hint: self.retry_hint.clone(),
                schedule: self.config.retry_schedule.clone(),
                metrics: self.metrics.clone(),
                alerts: self.alerts.clone(),
                max_attempts: job
                    .target
                    .max_attempts
                    .unwrap_or(self.config.default_max_attempts()),
                timeout: self.config.request_timeout_for(job.target.timeout),
            };
            self.held.insert(job.delivery_id);
            let handle = self.tasks.spawn(task.run(job));
            self.in_flight.insert(handle.id(), ids);
        }
        self.metrics.in_flight.set(self.tasks.len() as i64);
    }
}
