//! When the worker reads the work floor again: a small state machine over the clock.
//!
//! The work floor (`hookrelay.work_floor()`, migration 0034) is the lower bound of the oldest
//! day holding pending work; due claims pass it so the days of history before it are left
//! out of their plans (see `sql/queries/claim_due.sql`). It is right when read, and work can
//! appear below it later: an operator redelivers an old delivery, or an event that committed
//! just after midnight with the day before's id is fanned out. The floor is read in the round
//! trip of a claim, for the claims after it (before the first read, claims read every day),
//! and it is read
//! - with the first claim;
//! - every poll interval while claims find work (a busy worker never goes idle to notice);
//! - after something that says work may be below it: a pump that expected due work (the idle
//!   check said so) and found none, or a scan from the start that took events (late commits
//!   are what it is for). Not more than every [`FLOOR_RECHECK`], so a due delivery that
//!   another worker holds locked cannot make this one read it in a loop.
//!
//! An idle worker whose claims find nothing does not read it: the idle check looks at every
//! day, and says when something is due that the claims then miss.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

/// The shortest time between two reads of the floor prompted by a doubt.
pub(super) const FLOOR_RECHECK: Duration = Duration::from_millis(100);

/// The floor as last read, and what has happened since.
#[derive(Debug, Default)]
pub(super) struct WorkFloor {
    /// The floor and when it was read (None: not yet).
    read: Option<(Uuid, Instant)>,
    /// Claims found work since it was read.
    found: bool,
    /// Something said work may be below it since it was read.
    doubted: bool,
}

impl WorkFloor {
    /// The bound due claims pass: the nil uuid (every day) until the floor is read.
    pub(super) fn bound(&self) -> Uuid {
        self.read.map_or(Uuid::nil(), |(floor, _)| floor)
    }

    /// Whether to read the floor before the next claim, `poll` being the poll interval.
    pub(super) fn due(&self, poll: Duration, now: Instant) -> bool {
        let Some((_, at)) = self.read else {
            return true;
        };
        let age = now.duration_since(at);
        (self.doubted && age >= FLOOR_RECHECK) || (self.found && age >= poll)
    }

    /// The floor was read at `now`.
    pub(super) fn read(&mut self, floor: Uuid, now: Instant) {
        self.read = Some((floor, now));
        self.found = false;
        self.doubted = false;
    }

    /// A claim round found work or not; `expected`: the idle check said due work was there.
    pub(super) fn claimed(&mut self, found: bool, expected: bool) {
        self.found |= found;
        self.doubted |= expected && !found;
    }

    /// Work may be below the floor (a scan from the start took events).
    pub(super) fn doubt(&mut self) {
        self.doubted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);

    fn floor(n: u128) -> Uuid {
        Uuid::from_u128(n << 80)
    }

    #[test]
    fn the_floor_is_read_before_the_first_claim_and_no_day_is_left_out_until_then() {
        let now = Instant::now();
        let mut f = WorkFloor::default();
        assert_eq!(f.bound(), Uuid::nil());
        assert!(f.due(POLL, now));
        f.read(floor(7), now);
        assert_eq!(f.bound(), floor(7));
        assert!(!f.due(POLL, now));
    }

    #[test]
    fn a_busy_worker_reads_it_every_poll_and_an_idle_one_that_finds_nothing_never() {
        let start = Instant::now();
        let mut f = WorkFloor::default();
        f.read(floor(7), start);
        f.claimed(false, false);
        assert!(!f.due(POLL, start + 100 * POLL), "idle, nothing expected");
        f.claimed(true, false);
        assert!(!f.due(POLL, start + POLL / 2));
        assert!(f.due(POLL, start + POLL));
        f.read(floor(8), start + POLL);
        assert!(!f.due(POLL, start + 3 * POLL), "found nothing since");
    }

    #[test]
    fn a_doubt_has_it_read_again_soon_but_not_in_a_loop() {
        let start = Instant::now();
        let mut f = WorkFloor::default();
        f.read(floor(7), start);
        f.claimed(false, true);
        assert!(!f.due(POLL, start + FLOOR_RECHECK / 2));
        assert!(f.due(POLL, start + FLOOR_RECHECK));
        let again = start + FLOOR_RECHECK;
        f.read(floor(7), again);
        f.claimed(false, true);
        assert!(
            !f.due(POLL, again + FLOOR_RECHECK / 2),
            "still missing: wait again"
        );
        f.read(floor(7), again + FLOOR_RECHECK);
        f.claimed(true, true);
        assert!(
            !f.due(POLL, again + 2 * FLOOR_RECHECK),
            "found it: no doubt"
        );
        f.doubt();
        assert!(f.due(POLL, again + 2 * FLOOR_RECHECK));
    }
}
