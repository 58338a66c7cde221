//! When the worker claims: pure decisions over what happened, with the clock passed in, so
//! each is unit-tested without PostgreSQL.
//!
//! The loop hands the [`Pacer`] each [`Event`] (a notification, the poll deadline, a request
//! ending, a batch of results recorded) and claims when it answers with a [`Wake`]. A pump then
//! asks [`Pacer::room`] before each claim and [`Pacer::claimed`] after it, which answer with a
//! [`Next`]: claim again, wait, or go idle (ask to be notified) first. Idle workers make inserts
//! notify them, which costs every notifying commit a database-wide lock, so [`Burst`] switches
//! to polling while commits come faster than a worker can go idle and be woken.
//!
//! A freed slot is refilled by the next claim. The slots an endpoint's `max_in_flight` counts
//! are leases, less this worker's leases whose requests have ended (`claim::Unwritten`): so
//! while deliveries are parked waiting for slots (the idle check says some endpoint is at its
//! cap or can take more now), each request that ends wakes the loop to claim, as does each
//! recorded batch (which clears leases, other workers' view of the slots). An idle worker
//! whose pump found work waits for that work to end instead of checking again. Nothing spins:
//! each such wake-up follows one of this worker's own requests or results. (At first a
//! drained endpoint's slots were refilled by the next poll, at least 20 ms later: 756
//! deliveries/s at the default cap of 8; then by each recorded batch: 2,700/s.)

use std::time::Duration;

use tokio::time::Instant;

/// Notifications for a single wake-up that switch the worker from waiting to polling.
pub(super) const BURST_NOTIFICATIONS: u64 = 3;

/// Poll interval while polling instead of waiting for notifications.
pub(super) const FAST_POLL: Duration = Duration::from_millis(5);

/// How long polling goes on after the last claim that found work.
pub(super) const LINGER: Duration = Duration::from_millis(250);

/// How long a request that ended waits for others still running before its freed slot is
/// claimed: requests sent together end together, and one claim for all of them costs the
/// database less than one each.
pub(super) const GATHER: Duration = Duration::from_millis(1);

/// Shortest pause between two pumps that found nothing, so a due delivery that another worker
/// holds locked cannot make this one spin.
const MIN_REPOLL: Duration = Duration::from_millis(20);

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// A notification: some insert saw this worker idle.
    Notified,
    /// The poll deadline, or the listener (re)connecting: look for work.
    Tick,
    /// Slots freed: a request ended while claims were held back, or results were recorded
    /// while an endpoint was at its cap.
    Capacity,
}

/// What happened while the loop waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// The listener woke us: `Some(heard)`, the notifications it has heard so far, or `None`
    /// when it (re)connected without one.
    Heard(Option<u64>),
    /// The deadline of [`Pacer::next_wake`] passed.
    Deadline,
    /// A request task ended, `running` still running or waiting for a slot; `retry_at`: when
    /// its delivery is due again, if it will be retried.
    Ended {
        running: usize,
        retry_at: Option<Instant>,
        at: Instant,
    },
    /// The recorder wrote a batch of results: their leases are cleared.
    Recorded,
}

/// After a claim (or before one), what the pump does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Claim again; `go_busy`: in the same round trip, stop inserts from notifying us.
    Claim { go_busy: bool },
    /// Stop claiming and wait; `go_busy`: tell the database first that we are busy.
    Wait { go_busy: bool },
    /// Already idle: only refresh when work is next due and whether deliveries wait for slots.
    Refresh,
    /// Ask to be notified, and look once more for events committed before that was visible.
    GoIdle,
}

/// Notify or poll: polling starts when one wake-up follows many notifications, and lasts
/// until claims have found nothing for [`LINGER`].
#[derive(Debug, Default)]
pub(super) struct Burst {
    /// Polling since this instant (the last claim that found work); `None`: notified.
    polling: Option<Instant>,
    /// The listener's count of notifications when the worker last went idle.
    heard_at_idle: u64,
}

impl Burst {
    /// The worker goes idle with the listener having heard `heard` notifications.
    pub(super) fn idle(&mut self, heard: u64) {
        self.heard_at_idle = heard;
    }

    /// Woken by a notification while idle, `heard` in all: true when this starts polling.
    pub(super) fn woken(&mut self, heard: u64, now: Instant) -> bool {
        let burst = heard.saturating_sub(self.heard_at_idle);
        if burst < BURST_NOTIFICATIONS || self.polling.is_some() {
            return false;
        }
        self.polling = Some(now);
        true
    }

    /// In polling mode, whether to stay in it after a pump that `found` work or not.
    pub(super) fn keep_polling(&mut self, found: bool, now: Instant) -> bool {
        let Some(quiet_since) = self.polling else {
            return false;
        };
        if found {
            self.polling = Some(now);
            return true;
        }
        if now.duration_since(quiet_since) < LINGER {
            return true;
        }
        self.polling = None;
        false
    }

    /// Whether the worker polls instead of waiting for notifications.
    pub(super) fn polling(&self) -> bool {
        self.polling.is_some()
    }
}

/// The loop's pacing state.
#[derive(Debug)]
pub(super) struct Pacer {
    /// Requests run at once (the queue holds as many again).
    concurrency: usize,
    poll: Duration,
    /// Whether our row in `hookrelay.workers` says we are idle and want notifications.
    waiting: bool,
    /// Whether the last claim came back full (more work is waiting).
    backlog: bool,
    /// Whether deliveries waited for slots at the last idle check: some endpoint with parked
    /// deliveries was at its max_in_flight, or could take more at once.
    refill: bool,
    /// Whether the current pump's claims found work.
    found: bool,
    /// Whether the current pump sent a delivery that holds an ordering key's place.
    keyed: bool,
    /// When the earliest pending delivery is due, as of the last idle check.
    db_due_at: Option<Instant>,
    /// The earliest retry scheduled by a finished request and not claimed yet.
    retry_at: Option<Instant>,
    /// When to claim the slots freed by requests that ended while others still ran.
    gather_until: Option<Instant>,
    last_pump: Instant,
    burst: Burst,
}

impl Pacer {
    pub(super) fn new(concurrency: usize, poll: Duration, now: Instant) -> Pacer {
        Pacer {
            concurrency,
            poll,
            waiting: false,
            backlog: false,
            refill: false,
            found: false,
            keyed: false,
            db_due_at: None,
            retry_at: None,
            gather_until: None,
            last_pump: now,
            burst: Burst::default(),
        }
    }

    /// Whether to claim now, after `event`.
    pub(super) fn on(&mut self, event: Event) -> Option<Wake> {
        match event {
            Event::Heard(Some(_)) => Some(Wake::Notified),
            Event::Heard(None) | Event::Deadline => Some(Wake::Tick),
            Event::Ended {
                running,
                retry_at,
                at,
            } => {
                if let Some(due) = retry_at {
                    self.retry_at = Some(self.retry_at.map_or(due, |r| r.min(due)));
                }
                if self.backlog && running <= self.concurrency {
                    return Some(Wake::Capacity);
                }
                // A request that ended frees its endpoint's slot at once (its lease no longer
                // counts, see `claim::Unwritten`): claim it when the others sent with it have
                // ended too, or after GATHER.
                if !self.refill {
                    return None;
                }
                if running == 0 {
                    return Some(Wake::Capacity);
                }
                let until = at + GATHER;
                self.gather_until = Some(self.gather_until.map_or(until, |u| u.min(until)));
                None
            }
            Event::Recorded => self.awaits_results().then_some(Wake::Capacity),
        }
    }

    /// Whether the last claim came back full.
    pub(super) fn backlog(&self) -> bool {
        self.backlog
    }

    /// Whether a recorded batch can matter: this worker sent a delivery of an ordered key,
    /// whose result may make the key's next delivery due. A release notifies only workers
    /// already idle when it commits, and a result is often written while its worker is busy
    /// or going idle: without this, such a key waited for the poll (measured: one key drained
    /// at ~10 deliveries/s). Unordered work does not wake the worker: its results release
    /// nothing, and its slots are freed when its requests end (see [`Event::Ended`]).
    pub(super) fn awaits_results(&self) -> bool {
        self.keyed
    }

    /// The current pump sent a delivery that holds its ordering key's place.
    pub(super) fn sent_keyed(&mut self) {
        self.keyed = true;
    }

    /// No delivery of an ordered key is held any more: every such result is written, and none
    /// left can release a key. Until then, results wake the worker whatever woke its pumps
    /// meanwhile. (Forgotten at any pump that was not woken by results, as it was at first, a
    /// pump woken by the key's own release notification, or by the poll, while the sent
    /// delivery was in flight left its result waking nothing; the release then notified only
    /// if the worker was idle when it committed, and one key drained at 22-80 deliveries/s in
    /// half the runs instead of 320-480.)
    pub(super) fn no_keyed_held(&mut self) {
        self.keyed = false;
    }

    /// When to look for work next without being woken.
    pub(super) fn next_wake(&self) -> Instant {
        if self.burst.polling() {
            return self.last_pump + FAST_POLL;
        }
        let mut at = self.last_pump + self.poll;
        for due in [self.db_due_at, self.retry_at].into_iter().flatten() {
            at = at.min(due);
        }
        at = at.max(self.last_pump + MIN_REPOLL);
        self.gather_until.map_or(at, |until| at.min(until))
    }

    /// A pump starts after `wake`; `heard`: the listener's count. Returns whether its first
    /// claim should tell the database we are busy (a notified worker is no longer idle).
    pub(super) fn begin(&mut self, wake: Wake, heard: u64, now: Instant) -> bool {
        self.last_pump = now;
        self.gather_until = None;
        self.found = false;
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
        // A wake-up from the listener (re)connecting is a tick: the worker stays marked idle,
        // so a commit meanwhile still notifies it.
        let go_busy = wake == Wake::Notified && self.waiting;
        if go_busy && self.burst.woken(heard, now) {
            tracing::debug!("commits are frequent: polling instead of waiting to be notified");
        }
        go_busy
    }

    /// Before a claim, with `queued` requests running or waiting for a slot: how many
    /// deliveries to claim, or `Err` with what to do instead. A claim is made only when the
    /// queue has room for a whole batch, so claims stay large under load.
    pub(super) fn room(&mut self, queued: usize) -> Result<usize, Next> {
        let room = (2 * self.concurrency).saturating_sub(queued);
        if room >= self.concurrency {
            return Ok(room);
        }
        // The queue is full: busy, whatever woke us.
        self.backlog = true;
        Err(Next::Wait {
            go_busy: std::mem::take(&mut self.waiting),
        })
    }

    /// After a claim that came back `full` (or not) and `found` work (or not); `go_busy`: it
    /// told the database we are busy; `listening`: notifications can reach us.
    pub(super) fn claimed(
        &mut self,
        full: bool,
        found: bool,
        go_busy: bool,
        listening: bool,
        now: Instant,
    ) -> Next {
        if go_busy {
            self.waiting = false;
        }
        self.found |= found;
        if full {
            self.backlog = true;
            return Next::Claim {
                go_busy: self.waiting,
            };
        }
        self.backlog = false;
        if self.burst.keep_polling(self.found, now) || !listening {
            return Next::Wait { go_busy: false };
        }
        // Parked deliveries wait for the slots this pump's work holds: its results, once
        // recorded, wake us to claim them. Checking again meanwhile would cost a round trip per
        // refill. (A worker not yet idle goes idle first, so inserts notify it.)
        if self.waiting && self.found && self.refill {
            return Next::Wait { go_busy: false };
        }
        if self.waiting {
            Next::Refresh
        } else {
            Next::GoIdle
        }
    }

    /// The worker is going idle, the listener having heard `heard` notifications.
    pub(super) fn going_idle(&mut self, heard: u64) {
        self.burst.idle(heard);
    }

    /// Whether the last idle check said work would be due by `now`.
    pub(super) fn expects_due(&self, now: Instant) -> bool {
        self.db_due_at.is_some_and(|at| at <= now)
    }

    /// The idle check answered at `now`: the earliest due work (parked deliveries that can
    /// be claimed at once are due now), and whether an endpoint with parked deliveries is
    /// `capped`.
    pub(super) fn idle(&mut self, due: Option<Instant>, capped: bool, now: Instant) {
        self.waiting = true;
        self.db_due_at = due;
        self.refill = capped || due.is_some_and(|at| at <= now);
    }

    /// After the look for events committed while going idle: claim on if it came back full.
    pub(super) fn rechecked(&mut self, full: bool) -> Option<Next> {
        full.then_some(Next::Claim { go_busy: true })
    }

    /// The session was lost: our row's idle flag cannot be relied on.
    pub(super) fn lost_session(&mut self) {
        self.waiting = false;
    }
}

#[cfg(test)]
mod tests;
