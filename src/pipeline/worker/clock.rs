//! The database's clock as seen from the worker, so a claim can say when it must start by.
//!
//! A claim sent just before its connection goes silent may still reach the server much later,
//! when a stuck proxy or a relay lets the bytes through again, long after the worker gave up on
//! the connection and gave back its leases ([`record::release_orphans`](crate::pipeline::record)).
//! Run then, it would lease deliveries that no request will be made for until the lease runs
//! out (a minute by default), counting against their endpoint's `max_in_flight` meanwhile. So
//! each claim carries a time by which it must start on the server (`statement_timestamp()`),
//! or take nothing. The worker gives up on a connection `statement_timeout` plus
//! [`MARGIN`](crate::db::socket::MARGIN) after a request, and the server cancels a statement
//! `statement_timeout` after it starts, so a claim that starts within the margin either answers
//! before the worker gives up or is rolled back.
//!
//! The time is on the server's clock: the offset between the two clocks is measured on each
//! round trip that returns the server's time (registering a session, going idle), from the
//! middle of the round trip. Until the first measure, claims carry no time. A server clock
//! that jumps forward voids claims until the next measure; a worker that finds nothing goes
//! idle, and going idle measures again.

use std::time::{Duration, SystemTime};

/// How long after it is sent a claim may start on the server.
pub(super) const START_WITHIN: Duration = crate::db::socket::MARGIN;

/// The server's clock minus ours, once measured.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct DbClock {
    /// Nanoseconds to add to our clock to read the server's.
    offset: Option<i128>,
}

impl DbClock {
    /// A round trip sent at `sent` and answered at `received` (our clock) read `server` on the
    /// server's clock.
    pub(super) fn measured(&mut self, sent: SystemTime, received: SystemTime, server: SystemTime) {
        let half = received.duration_since(sent).unwrap_or_default() / 2;
        let middle = sent + half;
        self.offset = Some(nanos(server) - nanos(middle));
    }

    /// On the server's clock, when a claim sent at `now` (our clock) must start by; `None`
    /// before the first measure.
    pub(super) fn start_by(&self, now: SystemTime) -> Option<SystemTime> {
        let offset = self.offset?;
        let magnitude = Duration::from_nanos(offset.unsigned_abs().min(u64::MAX as u128) as u64);
        let server_now = if offset >= 0 {
            now.checked_add(magnitude)
        } else {
            now.checked_sub(magnitude)
        }?;
        server_now.checked_add(START_WITHIN)
    }
}

/// Nanoseconds since the Unix epoch, negative before it.
fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(ms)
    }

    #[test]
    fn claims_carry_no_time_until_the_clock_is_measured() {
        assert_eq!(DbClock::default().start_by(at(0)), None);
    }

    #[test]
    fn the_time_is_on_the_servers_clock_from_the_middle_of_the_round_trip() {
        let mut clock = DbClock::default();
        // Server 3 s ahead: sent at 0, read 3,010 there, answered at 20.
        clock.measured(at(0), at(20), at(3_010));
        assert_eq!(clock.start_by(at(1_000)), Some(at(4_000) + START_WITHIN));
        // Server 2 s behind.
        clock.measured(at(10_000), at(10_040), at(8_020));
        assert_eq!(clock.start_by(at(11_000)), Some(at(9_000) + START_WITHIN));
    }

    #[test]
    fn a_new_measure_replaces_the_old_one() {
        let mut clock = DbClock::default();
        clock.measured(at(0), at(0), at(0));
        assert_eq!(clock.start_by(at(500)), Some(at(500) + START_WITHIN));
        // The server's clock jumped 30 s forward: claims would be void until measured again.
        clock.measured(at(1_000), at(1_000), at(31_000));
        assert_eq!(clock.start_by(at(1_000)), Some(at(31_000) + START_WITHIN));
    }

    #[test]
    fn an_answer_before_the_question_counts_as_instant() {
        let mut clock = DbClock::default();
        // Our clock stepped back during the round trip.
        clock.measured(at(100), at(50), at(100));
        assert_eq!(clock.start_by(at(100)), Some(at(100) + START_WITHIN));
    }
}
