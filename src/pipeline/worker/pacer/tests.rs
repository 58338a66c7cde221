//! The pacer's decisions, without a database.

use super::*;

const CONCURRENCY: usize = 4;
const POLL: Duration = Duration::from_secs(1);

fn pacer() -> (Pacer, Instant) {
    let now = Instant::now();
    (Pacer::new(CONCURRENCY, POLL, now), now)
}

/// A pacer that has gone idle with the listener at `heard`.
fn idle(heard: u64, capped: bool) -> (Pacer, Instant) {
    let (mut p, now) = pacer();
    p.begin(Wake::Tick, 0, now);
    assert_eq!(p.claimed(false, false, false, true, now), Next::GoIdle);
    p.going_idle(heard);
    p.idle(None, capped, now);
    (p, now)
}

#[test]
fn notifications_and_deadlines_wake_and_a_reconnection_is_a_tick() {
    let (mut p, _) = pacer();
    assert_eq!(p.on(Event::Heard(Some(1))), Some(Wake::Notified));
    assert_eq!(p.on(Event::Heard(None)), Some(Wake::Tick));
    assert_eq!(p.on(Event::Deadline), Some(Wake::Tick));
}

#[test]
fn a_finished_request_wakes_only_a_backlogged_worker_once_the_queue_has_room() {
    let (mut p, now) = pacer();
    let ended = |running| Event::Ended {
        running,
        retry_at: None,
        at: now,
    };
    assert_eq!(p.on(ended(0)), None, "no backlog: nothing to claim");
    p.begin(Wake::Tick, 0, now);
    assert_eq!(
        p.claimed(true, true, false, true, now),
        Next::Claim { go_busy: false }
    );
    assert_eq!(
        p.on(ended(CONCURRENCY + 1)),
        None,
        "the queue is still full"
    );
    assert_eq!(p.on(ended(CONCURRENCY)), Some(Wake::Capacity));
}

#[test]
fn a_finished_request_wakes_the_worker_while_deliveries_wait_for_slots() {
    let ended = |running, at| Event::Ended {
        running,
        retry_at: None,
        at,
    };
    let (mut p, now) = idle(0, false);
    assert_eq!(p.on(ended(0, now)), None, "nothing waits for a slot");
    let (mut p, now) = idle(0, true);
    assert_eq!(
        p.on(ended(0, now)),
        Some(Wake::Capacity),
        "an endpoint at its cap: the ended request's slot is free before its result is written"
    );
    // Others still running: their slots are claimed together, when they end or after GATHER.
    assert_eq!(p.on(ended(3, now)), None);
    assert_eq!(p.next_wake(), now + GATHER);
    assert_eq!(p.on(ended(0, now)), Some(Wake::Capacity));
    p.begin(Wake::Capacity, 0, now + GATHER);
    assert_eq!(
        p.next_wake(),
        now + GATHER + POLL,
        "the gathering ends with the pump"
    );
}

#[test]
fn recorded_results_wake_the_worker_only_for_ordered_work() {
    let (mut p, now) = idle(0, true);
    assert!(!p.awaits_results(), "slots are freed when requests end");
    assert_eq!(p.on(Event::Recorded), None);
    p.idle(Some(now), false, now);
    assert_eq!(p.on(Event::Recorded), None);
}

#[test]
fn an_idle_worker_whose_pump_sent_an_ordered_delivery_is_woken_by_its_results() {
    let (mut p, now) = idle(0, false);
    // Unordered work found: its results release nothing, so they do not wake the worker.
    p.begin(Wake::Notified, 1, now);
    assert_eq!(p.claimed(false, true, true, true, now), Next::GoIdle);
    p.going_idle(1);
    p.idle(None, false, now);
    assert_eq!(p.on(Event::Recorded), None);
    // A delivery of an ordered key sent: its result may make the key's next one due.
    p.begin(Wake::Notified, 2, now);
    p.sent_keyed();
    assert_eq!(p.claimed(false, true, true, true, now), Next::GoIdle);
    p.going_idle(2);
    p.idle(None, false, now);
    assert_eq!(p.on(Event::Recorded), Some(Wake::Capacity));
    // A pump woken by a request ending finds nothing yet (the key waits for the result
    // before it): the results still wake the worker.
    p.begin(Wake::Capacity, 2, now);
    assert_eq!(p.claimed(false, false, false, true, now), Next::Refresh);
    p.idle(None, false, now);
    assert_eq!(p.on(Event::Recorded), Some(Wake::Capacity));
    // Nor does a pump woken otherwise (the poll, the key's own release notification) that
    // finds nothing while the ordered delivery's result is still to be written.
    p.begin(Wake::Tick, 2, now);
    assert_eq!(p.claimed(false, false, false, true, now), Next::Refresh);
    p.idle(None, false, now);
    assert_eq!(p.on(Event::Recorded), Some(Wake::Capacity));
    // Once every ordered delivery's result is written, results no longer wake it.
    p.no_keyed_held();
    p.begin(Wake::Tick, 2, now);
    assert_eq!(p.claimed(false, false, false, true, now), Next::Refresh);
    p.idle(None, false, now);
    assert_eq!(p.on(Event::Recorded), None);
}

#[test]
fn an_idle_pump_that_refilled_freed_slots_waits_for_their_requests_not_a_check() {
    let (mut p, now) = idle(0, true);
    assert!(!p.begin(Wake::Capacity, 0, now));
    // The freed slots were refilled: not full, but work was found.
    assert_eq!(
        p.claimed(false, true, false, true, now),
        Next::Wait { go_busy: false }
    );
    let ended = Event::Ended {
        running: 0,
        retry_at: None,
        at: now,
    };
    assert_eq!(p.on(ended), Some(Wake::Capacity));
    // Once a claim finds nothing, the idle check runs again (and says whether still capped).
    assert!(!p.begin(Wake::Capacity, 0, now));
    assert_eq!(p.claimed(false, false, false, true, now), Next::Refresh);
    p.idle(None, false, now);
    assert_eq!(p.on(ended), None);
    // Without deliveries waiting for slots, work found is followed by the idle check.
    p.begin(Wake::Tick, 0, now);
    assert_eq!(p.claimed(false, true, false, true, now), Next::Refresh);
}

#[test]
fn a_worker_not_yet_idle_goes_idle_even_when_deliveries_wait_for_slots() {
    let (mut p, now) = idle(0, true);
    let go_busy = p.begin(Wake::Notified, 1, now);
    assert_eq!(p.claimed(false, true, go_busy, true, now), Next::GoIdle);
}

#[test]
fn an_uncapped_pump_that_found_a_little_goes_idle() {
    let (mut p, now) = pacer();
    p.begin(Wake::Tick, 0, now);
    assert_eq!(p.claimed(false, true, false, true, now), Next::GoIdle);
}

#[test]
fn a_full_claim_claims_again_and_a_notified_worker_goes_busy_once() {
    let (mut p, now) = idle(0, false);
    let go_busy = p.begin(Wake::Notified, 1, now);
    assert!(
        go_busy,
        "a notified idle worker stops inserts from notifying"
    );
    assert_eq!(
        p.claimed(true, true, go_busy, true, now),
        Next::Claim { go_busy: false }
    );
    // Woken by a tick while idle, a full claim goes busy on the next claim.
    let (mut p, now) = idle(0, false);
    let go_busy = p.begin(Wake::Tick, 0, now);
    assert!(!go_busy);
    assert_eq!(
        p.claimed(true, true, go_busy, true, now),
        Next::Claim { go_busy: true }
    );
}

#[test]
fn a_full_queue_stops_claiming_and_goes_busy_if_idle() {
    let (mut p, _) = idle(0, false);
    assert_eq!(p.room(2 * CONCURRENCY), Err(Next::Wait { go_busy: true }));
    assert_eq!(p.room(2 * CONCURRENCY), Err(Next::Wait { go_busy: false }));
    assert_eq!(p.room(CONCURRENCY), Ok(CONCURRENCY));
    assert_eq!(p.room(0), Ok(2 * CONCURRENCY));
    // Backlogged now: a request ending with room in the queue wakes the loop.
    assert_eq!(
        p.on(Event::Ended {
            running: CONCURRENCY,
            retry_at: None,
            at: Instant::now(),
        }),
        Some(Wake::Capacity)
    );
}

#[test]
fn after_going_idle_a_full_recheck_claims_on_busy() {
    let (mut p, _) = pacer();
    assert_eq!(p.rechecked(true), Some(Next::Claim { go_busy: true }));
    assert_eq!(p.rechecked(false), None);
}

#[test]
fn without_a_listener_the_worker_never_asks_to_be_notified() {
    let (mut p, now) = pacer();
    p.begin(Wake::Tick, 0, now);
    assert_eq!(
        p.claimed(false, false, false, false, now),
        Next::Wait { go_busy: false }
    );
}

#[test]
fn the_next_wake_is_the_earliest_of_poll_due_work_and_retries_but_never_a_spin() {
    let (mut p, now) = pacer();
    assert_eq!(p.next_wake(), now + POLL);
    p.idle(Some(now + Duration::from_millis(300)), false, now);
    assert_eq!(p.next_wake(), now + Duration::from_millis(300));
    p.on(Event::Ended {
        running: 0,
        retry_at: Some(now + Duration::from_millis(100)),
        at: now,
    });
    assert_eq!(p.next_wake(), now + Duration::from_millis(100));
    p.idle(Some(now), false, now);
    assert_eq!(
        p.next_wake(),
        now + MIN_REPOLL,
        "due now: not sooner than MIN_REPOLL"
    );
    // A retry that came due is forgotten at the next pump.
    let later = now + Duration::from_millis(150);
    p.idle(None, false, now);
    p.begin(Wake::Tick, 0, later);
    assert_eq!(p.next_wake(), later + POLL);
}

#[test]
fn a_burst_of_notifications_switches_to_polling_until_quiet_for_the_linger() {
    let (mut p, now) = idle(10, false);
    p.begin(Wake::Notified, 10 + BURST_NOTIFICATIONS - 1, now);
    assert_eq!(p.next_wake(), now + POLL, "below the burst: still notified");
    let (mut p, now) = idle(10, false);
    p.begin(Wake::Notified, 10 + BURST_NOTIFICATIONS, now);
    assert_eq!(p.next_wake(), now + FAST_POLL, "a burst: polling");
    assert_eq!(
        p.claimed(false, true, true, true, now),
        Next::Wait { go_busy: false }
    );
    let quiet = now + LINGER / 2;
    p.begin(Wake::Tick, 0, quiet);
    assert_eq!(
        p.claimed(false, false, false, true, quiet),
        Next::Wait { go_busy: false },
        "found nothing, but within the linger: still polling"
    );
    let over = now + LINGER;
    p.begin(Wake::Tick, 0, over);
    assert_eq!(p.claimed(false, false, false, true, over), Next::GoIdle);
    assert_eq!(p.next_wake(), over + POLL);
}
