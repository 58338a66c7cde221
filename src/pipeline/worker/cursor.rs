//! Where fan-out claims look, and how many events they take: the claim cursor.
//!
//! A worker resumes a little before the last event it fanned out (see [`claim::Scan`]), and
//! looks from the start now and then for events that committed late with a lower id: every
//! poll interval, or every ten while a backlog drains (a scan from the start walks the dead
//! index entries of everything claimed since the last vacuum). Claims are sized in deliveries,
//! so events per claim follow the deliveries each event has made lately; a busy worker leaves
//! the fan-out out of its claims for a moment after one found nothing. The cursor also counts
//! claimed rows to say when the sessions should plan again (see [`super::replan`]), and holds
//! the work floor due claims start from (see [`super::floor`]).

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::floor::WorkFloor;
use super::replan::Replan;
use crate::pipeline::claim::{self, Scan};

/// While a backlog drains, fan-out claims look from the start only every this many poll
/// intervals.
const FULL_SCAN_BACKLOG_FACTOR: u32 = 10;

/// After a fan-out claim that found no event, how long a busy worker's claims leave the
/// fan-out out. Inserts notify only idle workers, so a busy one has to look for new events
/// itself; but while it drains retries or deliveries parked for a slot, one empty fan-out claim
/// beside every due claim was a third of the database's time per round (the default settings'
/// drain: 0.24 of 0.73 ms). An event committed meanwhile waits this long at most; an idle
/// worker always looks (see `go_idle`).
pub(super) const FAN_OUT_RECHECK: Duration = Duration::from_millis(10);

/// The claim cursor.
#[derive(Debug)]
pub(super) struct ClaimCursor {
    /// The greatest event id this worker has fanned out: claims resume after it.
    last: Option<Uuid>,
    /// When a fan-out claim last looked from the start.
    last_full_scan: Instant,
    /// Deliveries per claimed event lately.
    fan_out: f64,
    /// When the last fan-out claim came back without an event (None: it found some).
    found_none_at: Option<Instant>,
    replan: Replan,
    /// Where due claims start.
    pub(super) floor: WorkFloor,
}

impl ClaimCursor {
    pub(super) fn new(now: Instant) -> ClaimCursor {
        ClaimCursor {
            last: None,
            last_full_scan: now,
            fan_out: 1.0,
            found_none_at: None,
            replan: Replan::new(),
            floor: WorkFloor::default(),
        }
    }

    /// Where a pump's first fan-out claim looks: from the start when one is due (every
    /// `poll`, or every ten while a `backlog` drains), else where the last claim left off.
    pub(super) fn start(&mut self, backlog: bool, poll: Duration, now: Instant) -> Scan {
        let every = if backlog {
            poll * FULL_SCAN_BACKLOG_FACTOR
        } else {
            poll
        };
        if now.duration_since(self.last_full_scan) >= every {
            self.last_full_scan = now;
            return Scan::FromStart;
        }
        self.resume()
    }

    /// Where the next fan-out claim starts: a little before the last event claimed.
    pub(super) fn resume(&self) -> Scan {
        self.last.map_or(Scan::FromStart, |last| {
            Scan::After(claim::resume_point(last, claim::RESUME_SLACK))
        })
    }

    /// Events to claim for about `deliveries` deliveries.
    pub(super) fn events_for(&self, deliveries: usize) -> usize {
        ((deliveries as f64 / self.fan_out).floor() as usize).max(1)
    }

    /// A fan-out claim took `events` events up to `last`, making `deliveries` deliveries.
    pub(super) fn fanned_out(&mut self, events: usize, deliveries: usize, last: Option<Uuid>) {
        self.last = self.last.max(last);
        if events > 0 {
            let ratio = deliveries as f64 / events as f64;
            self.fan_out = (0.7 * self.fan_out + 0.3 * ratio).max(0.1);
        }
    }

    /// A busy worker's fan-out claim (not a recheck before going idle) took `events` events.
    pub(super) fn looked(&mut self, events: usize, now: Instant) {
        self.found_none_at = (events == 0).then_some(now);
    }

    /// New events may be waiting whatever the last look found: a notification, or the poll.
    pub(super) fn expect_events(&mut self) {
        self.found_none_at = None;
    }

    /// Whether a busy worker's claim now also looks for new events: not within
    /// [`FAN_OUT_RECHECK`] of a look that found none.
    pub(super) fn fan_out_due(&self, now: Instant) -> bool {
        self.found_none_at
            .is_none_or(|at| now.duration_since(at) >= FAN_OUT_RECHECK)
    }

    /// Counts `rows` claimed; true when the sessions should plan again now.
    pub(super) fn count(&mut self, rows: usize) -> bool {
        self.replan.count(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);

    /// A time-ordered event id made `ms` milliseconds after the epoch.
    fn event_at(ms: u64) -> Uuid {
        Uuid::from_u128(u128::from(ms) << 80)
    }

    #[test]
    fn claims_resume_after_the_greatest_event_claimed() {
        let mut cursor = ClaimCursor::new(Instant::now());
        assert_eq!(cursor.resume(), Scan::FromStart);
        let (low, high) = (event_at(1_000_000), event_at(2_000_000));
        cursor.fanned_out(2, 2, Some(high));
        cursor.fanned_out(1, 1, Some(low));
        cursor.fanned_out(0, 0, None);
        let point = claim::resume_point(high, claim::RESUME_SLACK);
        assert_eq!(cursor.resume(), Scan::After(point));
    }

    #[test]
    fn a_scan_from_the_start_comes_every_poll_or_every_ten_while_a_backlog_drains() {
        let start = Instant::now();
        let mut cursor = ClaimCursor::new(start);
        cursor.fanned_out(1, 1, Some(event_at(1_000_000)));
        let resumed = cursor.resume();
        assert_eq!(cursor.start(false, POLL, start + POLL / 2), resumed);
        assert_eq!(cursor.start(true, POLL, start + POLL), resumed);
        assert_eq!(cursor.start(false, POLL, start + POLL), Scan::FromStart);
        let last = start + POLL;
        assert_eq!(cursor.start(false, POLL, last + POLL / 2), resumed);
        assert_eq!(cursor.start(true, POLL, last + 9 * POLL), resumed);
        assert_eq!(cursor.start(true, POLL, last + 10 * POLL), Scan::FromStart);
    }

    #[test]
    fn claims_are_sized_by_the_recent_fan_out() {
        let mut cursor = ClaimCursor::new(Instant::now());
        assert_eq!(cursor.events_for(100), 100);
        for _ in 0..30 {
            cursor.fanned_out(10, 50, None);
        }
        assert_eq!(cursor.events_for(100), 20, "five deliveries an event");
        for _ in 0..30 {
            cursor.fanned_out(10, 0, None);
        }
        assert_eq!(
            cursor.events_for(100),
            1000,
            "filtered out: at most ten times"
        );
        assert_eq!(cursor.events_for(0), 1, "always at least one event");
    }

    #[test]
    fn a_fan_out_claim_that_found_nothing_is_left_out_for_a_moment() {
        let start = Instant::now();
        let mut cursor = ClaimCursor::new(start);
        assert!(cursor.fan_out_due(start));
        cursor.looked(3, start);
        assert!(
            cursor.fan_out_due(start),
            "events found: look again at once"
        );
        cursor.looked(0, start);
        assert!(!cursor.fan_out_due(start));
        assert!(!cursor.fan_out_due(start + FAN_OUT_RECHECK / 2));
        assert!(cursor.fan_out_due(start + FAN_OUT_RECHECK));
        let later = start + FAN_OUT_RECHECK;
        cursor.looked(0, later);
        assert!(
            !cursor.fan_out_due(later + FAN_OUT_RECHECK / 2),
            "still nothing"
        );
        cursor.looked(1, later + FAN_OUT_RECHECK);
        assert!(cursor.fan_out_due(later + FAN_OUT_RECHECK));
        cursor.looked(0, later);
        cursor.expect_events();
        assert!(cursor.fan_out_due(later), "notified: look at once");
    }

    #[test]
    fn plans_are_made_again_as_claimed_rows_double() {
        let mut cursor = ClaimCursor::new(Instant::now());
        assert!(!cursor.count(999));
        assert!(cursor.count(1));
        assert!(!cursor.count(999));
        assert!(cursor.count(1));
    }
}
