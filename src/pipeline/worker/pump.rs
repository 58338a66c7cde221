//! One pump of the worker loop: claim new events and due deliveries in batches, dispatch them
//! to request tasks, and go idle (asking to be notified) when nothing more is waiting. What
//! comes after each claim is the [`Pacer`](super::pacer::Pacer)'s decision; this file only
//! runs the statements it asks for.

use std::time::SystemTime;

use deadpool_postgres::Client;
use tokio::time::Instant;

use super::pacer::{Next, Wake};
use super::task::Task;
use super::{Worker, WorkerError};
use crate::pipeline::claim::{self, Job, Lease, Scan};

impl Worker {
    /// Claims and dispatches until nothing more is waiting or the queue is full.
    ///
    /// Up to `concurrency` requests run while as many claimed deliveries wait for a slot, so
    /// the next claim overlaps the requests in flight.
    pub(super) async fn pump(&mut self, client: &Client, wake: Wake) -> Result<(), WorkerError> {
        let now = Instant::now();
        // Only freed slots leave the fan-out out (see `FAN_OUT_RECHECK`): a notification or
        // the poll says to look for new events.
        if !matches!(wake, Wake::Capacity) {
            self.cursor.expect_events();
        }
        if !self.flight.held().holds_keyed() {
            self.pacer.no_keyed_held();
        }
        let mut go_busy = self.pacer.begin(wake, self.stages.listener.heard(), now);
        let worker_id = self.config.worker_id.clone();
        let mut lease = Lease::new(self.config.lease, &worker_id);
        let backlog = self.pacer.backlog();
        let mut from = self.cursor.start(backlog, self.config.poll_interval, now);
        let mut events = 1;
        loop {
            // Already claiming: what ended is counted, its wake-up not needed.
            let _ = self.reap();
            let next = match self.pacer.room(self.flight.len()) {
                Err(next) => next,
                Ok(room) => {
                    let limit = self.config.batch_size.min(room);
                    events = self.cursor.events_for(limit);
                    // Left out for a moment after a look that found none (0: not claimed),
                    // but never a scan from the start: `start` counted it as made.
                    let fan_out =
                        matches!(from, Scan::FromStart) || self.cursor.fan_out_due(Instant::now());
                    let new = if fan_out { events } else { 0 };
                    lease.unwritten = self.flight.held().unwritten();
                    lease.start_by = self.clock.start_by(SystemTime::now());
                    let round = self.claim(client, &lease, (new, limit), from, go_busy);
                    let next = round.await?;
                    if fan_out {
                        from = self.cursor.resume();
                    }
                    next
                }
            };
            go_busy = match next {
                Next::Claim { go_busy } => go_busy,
                Next::Wait { go_busy } => return Ok(self.set_busy(client, go_busy).await?),
                Next::Refresh => {
                    let (due, capped) = self.set_idle(client).await?;
                    self.pacer.idle(due, capped, Instant::now());
                    return Ok(());
                }
                Next::GoIdle => {
                    lease.start_by = self.clock.start_by(SystemTime::now());
                    match self.go_idle(client, &lease, events, from).await? {
                        Some(Next::Claim { go_busy }) => go_busy,
                        _ => return Ok(()),
                    }
                }
            };
        }
    }

    /// One round trip: `events` new events (0: no fan-out claim) and `limit` due deliveries
    /// claimed (and, with `go_busy`, the worker marked busy), dispatched, and the pacer's
    /// decision on what next.
    async fn claim(
        &mut self,
        client: &Client,
        lease: &Lease<'_>,
        (events, limit): (usize, usize),
        from: Scan,
        go_busy: bool,
    ) -> Result<Next, WorkerError> {
        let started = std::time::SystemTime::now();
        let now = Instant::now();
        let expected = self.pacer.expects_due(now);
        let floor = self.cursor.floor.bound();
        // Read again in the same round trip, for the next claims: a round trip of its own
        // before the claim kept the worker marked idle for longer, and so notified by more
        // inserts in a burst.
        let reread = self.cursor.floor.due(self.config.poll_interval, now);
        let (busy, fresh, due, reread) = tokio::join!(
            self.set_busy(client, go_busy),
            async {
                match events {
                    0 => Ok(claim::Claimed::default()),
                    _ => claim::claim_new(client, events, from, lease).await,
                }
            },
            claim::claim_due(client, limit, lease, floor),
            async {
                match reread {
                    true => claim::work_floor(client).await.map(Some),
                    false => Ok(None),
                }
            },
        );
        busy?;
        let (fresh, due) = (fresh?, due?);
        // Claimed work is dispatched whatever became of the floor's read: the old floor stays.
        let reread = reread.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "the work floor was not read again");
            None
        });
        if events > 0 {
            self.cursor.looked(fresh.taken, Instant::now());
        }
        let found = fresh.taken > 0 || due.taken > 0;
        self.cursor.floor.claimed(found, expected);
        if let Some(floor) = reread {
            // Read beside this claim: it answers any doubt the claim raised.
            self.cursor.floor.read(floor, now);
        }
        if matches!(from, Scan::FromStart) && fresh.taken > 0 {
            // Late commits, which may be of a day before the floor.
            self.cursor.floor.doubt();
        }
        let telemetry = self.stages.sender.telemetry();
        telemetry.claimed(started, fresh.taken, &fresh.jobs);
        if self.cursor.count(fresh.taken + due.taken) {
            self.replan(client).await?;
        }
        self.stages.metrics.claim("new", fresh.jobs.len());
        self.stages.metrics.claim("due", due.jobs.len());
        self.cursor
            .fanned_out(fresh.taken, fresh.jobs.len(), fresh.last_event);
        let full = (events > 0 && fresh.taken >= events) || due.taken >= limit;
        self.dispatch(fresh.jobs.into_iter().chain(due.jobs));
        let listening = self.stages.listener.is_connected();
        Ok(self
            .pacer
            .claimed(full, found, go_busy, listening, Instant::now()))
    }

    /// Idle: ask to be notified, and in the same round trip look once more for events
    /// committed before the flag was visible (their inserts saw no waiting worker). Returns
    /// what next if that look came back full.
    async fn go_idle(
        &mut self,
        client: &Client,
        lease: &Lease<'_>,
        events: usize,
        from: Scan,
    ) -> Result<Option<Next>, WorkerError> {
        self.pacer.going_idle(self.stages.listener.heard());
        let started = std::time::SystemTime::now();
        let (idle, recheck) = tokio::join!(
            self.set_idle(client),
            claim::claim_new(client, events, from, lease),
        );
        let (due, capped) = idle?;
        self.pacer.idle(due, capped, Instant::now());
        let recheck = recheck?;
        let telemetry = self.stages.sender.telemetry();
        telemetry.claimed(started, recheck.taken, &recheck.jobs);
        self.cursor.fanned_out(0, 0, recheck.last_event);
        if matches!(from, Scan::FromStart) && recheck.taken > 0 {
            self.cursor.floor.doubt();
        }
        self.stages.metrics.claim("new", recheck.jobs.len());
        let full = recheck.taken >= events;
        self.dispatch(recheck.jobs);
        Ok(self.pacer.rechecked(full))
    }

    /// Starts a request task for each job.
    pub(super) fn dispatch(&mut self, jobs: impl IntoIterator<Item = Job>) {
        for job in jobs {
            if job.keyed {
                self.pacer.sent_keyed();
            }
            let task = Task {
                sender: self.stages.sender.clone(),
                recorder: self.stages.recorder.clone(),
                semaphore: self.flight.slots(),
                held: self.flight.held().clone(),
                schedule: self.config.retry_schedule.clone(),
                metrics: self.stages.metrics.clone(),
                alerts: self.stages.alerts.clone(),
                max_attempts: job
                    .target
                    .max_attempts
                    .unwrap_or(self.config.default_max_attempts()),
                timeout: self.config.request_timeout_for(job.target.timeout),
            };
            self.flight
                .spawn(((job.delivery_id, job.attempt), job.keyed), task.run(job));
        }
        self.stages.metrics.in_flight.set(self.flight.len() as i64);
    }
}
