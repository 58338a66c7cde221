//! Ordered delivery per key with real workers and receivers: per key the receiver accepts
//! exactly the events' order through random failures, two worker processes and a SIGKILL; a
//! failing key holds back only itself; `on_dead = block` holds the key until `redeliver`,
//! `skip` lets it go on; replay keeps the order; the CLI and apply files set the options.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::faults::{Rng, WorkerProcess};
use crate::ordered::{emit_keyed, ordered_endpoint};
use crate::support::{hookrelay, temp_file, Receiver, Reply, Request, TestDb};

/// Every receiver here answers this late, so two requests of one key arriving closer together
/// than this were in flight at once.
const ANSWER_DELAY: Duration = Duration::from_millis(15);

/// What a receiver saw: per key, the arrivals (seq, when) and the seqs it accepted, in order.
#[derive(Default)]
struct Seen {
    arrivals: HashMap<String, Vec<(i64, Instant)>>,
    accepted: HashMap<String, Vec<i64>>,
}

fn key_and_seq(request: &Request) -> (String, i64) {
    let body = request.json();
    let object = &body["object"];
    (
        object["key"].as_str().unwrap_or("?").to_string(),
        object["seq"].as_i64().unwrap_or(-1),
    )
}

/// A receiver that answers `fail(key, seq, index)` with 500, else 200, after [`ANSWER_DELAY`].
async fn recording(
    fail: impl Fn(&str, i64, usize) -> bool + Send + Sync + 'static,
) -> (Receiver, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let receiver = Receiver::with(move |request, index| {
        let (key, seq) = key_and_seq(request);
        let failed = fail(&key, seq, index);
        let mut seen = log.lock().unwrap();
        seen.arrivals
            .entry(key.clone())
            .or_default()
            .push((seq, Instant::now()));
        if !failed {
            seen.accepted.entry(key).or_default().push(seq);
        }
        Reply {
            status: if failed { 500 } else { 200 },
            delay: ANSWER_DELAY,
        }
    })
    .await;
    (receiver, seen)
}

/// Accepted seqs per key with adjacent repeats (a resend of the same delivery) folded.
fn accepted_in_order(seen: &Seen, key: &str) -> Vec<i64> {
    let mut out: Vec<i64> = seen.accepted.get(key).cloned().unwrap_or_default();
    out.dedup();
    out
}

/// Panics if two requests of one key were in flight at once.
fn assert_one_at_a_time(seen: &Seen) {
    for (key, arrivals) in &seen.arrivals {
        for pair in arrivals.windows(2) {
            let gap = pair[1].1.duration_since(pair[0].1);
            assert!(
                gap >= ANSWER_DELAY,
                "key {key}: seq {} arrived {gap:?} after seq {}, before its answer",
                pair[1].0,
                pair[0].0
            );
        }
    }
}

async fn delivered(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'")
        .await
}

/// Writes `per_key` rounds, every key once per round, each round in one transaction.
async fn write_rounds(db: &TestDb, keys: i32, per_key: i32) {
    for seq in 0..per_key {
        db.client
            .execute(
                "SELECT count(hookrelay.emit('order.paid',
                                             jsonb_build_object('key', 'k' || k, 'seq', $1::int),
                                             ordering_key => 'k' || k))
                 FROM generate_series(1, $2::int) k",
                &[&seq, &keys],
            )
            .await
            .unwrap();
    }
}

/// Prints the first deliveries of keys not fully delivered, so a failed run says where
/// each stuck key stands.
async fn print_stuck_keys(db: &TestDb) {
    for row in db
        .client
        .query(
            "SELECT d.id, d.ordering_key, e.object ->> 'seq', d.state, d.attempts,
                    d.next_attempt_at::text, d.updated_at::text || ' / ' || coalesce(d.delivered_at::text, '-') || ' / ' || d.created_at::text, d.locked_by, d.last_error_code
             FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id
             WHERE d.ordering_key IN (SELECT ordering_key FROM hookrelay.deliveries
                                      WHERE state <> 'delivered')
             ORDER BY d.ordering_key, d.ordering_at LIMIT 4",
            &[],
        )
        .await
        .unwrap()
    {
        eprintln!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            row.get::<_, i64>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, Option<String>>(2),
            row.get::<_, String>(3),
            row.get::<_, i32>(4),
            row.get::<_, Option<String>>(5),
            row.get::<_, Option<String>>(6),
            row.get::<_, Option<String>>(7),
            row.get::<_, Option<String>>(8)
        );
    }
}

/// Many requests failed, yet each key's accepted seqs run 0.. without gap or overtaking,
/// one request of a key at a time.
fn every_key_accepted_in_order(
    seen: &Seen,
    receiver: &Receiver,
    total: i64,
    keys: i32,
    per_key: i32,
) {
    let failures = receiver.requests().len() as i64 - total;
    assert!(
        failures > total / 10,
        "the receiver failed {failures} requests"
    );
    let expected: Vec<i64> = (0..i64::from(per_key)).collect();
    for k in 1..=keys {
        let key = format!("k{k}");
        assert_eq!(
            accepted_in_order(seen, &key),
            expected,
            "key {key}: accepted out of order, with a gap, or overtaken"
        );
    }
    assert_one_at_a_time(seen);
}

#[tokio::test]
async fn per_key_order_holds_through_random_failures_two_workers_and_a_kill() {
    const KEYS: i32 = 50;
    const PER_KEY: i32 = 40;
    let db = TestDb::new().await;
    let mut rng = Rng::from_env("ordered");
    let salt = rng.between(1, u64::MAX / 2);
    // A random fifth of all requests fail (decided by a hash of the request's index).
    let (receiver, seen) = recording(move |_, _, index| {
        let mut x = (index as u64 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        x % 5 == 0
    })
    .await;
    ordered_endpoint(&db, &receiver.url("/hooks"), "skip").await;
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET max_in_flight = 50, max_attempts = 40",
            &[],
        )
        .await
        .unwrap();
    let flags = [
        "--retry-schedule",
        "20ms,50ms,100ms",
        "--lease",
        "3s",
        "--request-timeout",
        "1s",
        "--poll-interval",
        "100ms",
    ];
    let first = WorkerProcess::spawn(&db.url, "ordered-a", &flags);
    let second = WorkerProcess::spawn(&db.url, "ordered-b", &flags);
    // Written while the workers run.
    write_rounds(&db, KEYS, PER_KEY).await;
    let total = i64::from(KEYS * PER_KEY);
    // Killed mid-run: once a third is delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered(&db).await < total / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(delivered(&db).await < total, "still running when killed");
    first.kill();
    let third = WorkerProcess::spawn(&db.url, "ordered-c", &flags);
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            total,
            Duration::from_secs(40),
        )
        .await;
    second.terminate();
    third.terminate();
    if done != total {
        print_stuck_keys(&db).await;
    }
    assert_eq!(done, total, "every delivery ends delivered");
    every_key_accepted_in_order(&seen.lock().unwrap(), &receiver, total, KEYS, PER_KEY);
}

#[tokio::test]
async fn a_failing_key_holds_back_only_itself() {
    let db = TestDb::new().await;
    let (receiver, seen) = recording(|key, _, _| key == "bad").await;
    ordered_endpoint(&db, &receiver.url("/hooks"), "block").await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_attempts = 100", &[])
        .await
        .unwrap();
    for seq in 0..3 {
        emit_keyed(&db, "bad", seq).await;
    }
    for seq in 0..10 {
        for key in ["x", "y"] {
            emit_keyed(&db, key, seq).await;
        }
    }
    let worker = db.start_worker(db.config());
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            20,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(done, 20, "the other keys are all delivered meanwhile");
    {
        let seen = seen.lock().unwrap();
        let tried: Vec<i64> = seen.arrivals["bad"].iter().map(|a| a.0).collect();
        assert!(tried.len() > 1, "the failing head is retried: {tried:?}");
        assert!(
            tried.iter().all(|&s| s == 0),
            "nothing behind the failing head is sent: {tried:?}"
        );
        assert_eq!(accepted_in_order(&seen, "x"), (0..10).collect::<Vec<_>>());
    }
    let out = hookrelay(&db, &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ordered keys: 1 held"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("bad") && l.contains("retrying")),
        "{text}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn on_dead_block_holds_the_key_until_redelivered() {
    let db = TestDb::new().await;
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healed.clone();
    let (receiver, seen) = recording(move |key, seq, _| {
        key == "a" && seq == 0 && !flag.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    ordered_endpoint(&db, &receiver.url("/hooks"), "block").await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_attempts = 2", &[])
        .await
        .unwrap();
    for seq in 0..3 {
        emit_keyed(&db, "a", seq).await;
    }
    emit_keyed(&db, "b", 0).await;
    let worker = db.start_worker(db.config());
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(dead, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivered(&db).await, 1, "only b#0: a is held");
    let out = hookrelay(&db, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["held_keys"][0]["ordering_key"], "a");
    assert_eq!(stats["held_keys"][0]["reason"], "dead");
    assert_eq!(stats["held_keys"][0]["waiting"], 2);

    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let id = db
        .count("SELECT id FROM hookrelay.deliveries WHERE state = 'dead'")
        .await;
    let out = hookrelay(&db, &["redeliver", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            4,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done, 4);
    assert_eq!(accepted_in_order(&seen.lock().unwrap(), "a"), [0, 1, 2]);
    worker.stop().await;
}

#[tokio::test]
async fn on_dead_skip_lets_the_keys_next_delivery_go() {
    let db = TestDb::new().await;
    let (receiver, seen) = recording(|key, seq, _| key == "a" && seq == 0).await;
    ordered_endpoint(&db, &receiver.url("/hooks"), "skip").await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_attempts = 2", &[])
        .await
        .unwrap();
    for seq in 0..3 {
        emit_keyed(&db, "a", seq).await;
    }
    let worker = db.start_worker(db.config());
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            2,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done, 2);
    worker.stop().await;
    let seen = seen.lock().unwrap();
    let tried: Vec<i64> = seen.arrivals["a"].iter().map(|a| a.0).collect();
    assert_eq!(
        tried,
        [0, 0, 1, 2],
        "a#0 tried twice, then the rest in order"
    );
}

#[tokio::test]
async fn replay_sends_each_key_again_in_event_order() {
    let db = TestDb::new().await;
    let (receiver, seen) = recording(|_, _, _| false).await;
    ordered_endpoint(&db, &receiver.url("/hooks"), "skip").await;
    for seq in 0..8 {
        emit_keyed(&db, "a", seq).await;
    }
    let worker = db.start_worker(db.config());
    assert_eq!(
        db.wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            8,
            Duration::from_secs(10)
        )
        .await,
        8
    );
    let out = hookrelay(&db, &["replay", "--endpoint", "ordered", "--since", "1h"]);
    assert!(out.status.success(), "{out:?}");
    let all = receiver.wait_for(16, Duration::from_secs(10)).await;
    assert_eq!(all.len(), 16);
    worker.stop().await;
    let seen = seen.lock().unwrap();
    let mut twice: Vec<i64> = (0..8).collect();
    twice.extend(0..8);
    assert_eq!(seen.accepted["a"], twice);
    assert_one_at_a_time(&seen);
}

#[tokio::test]
async fn the_cli_and_apply_files_set_ordered_and_on_dead() {
    let db = TestDb::new().await;
    let out = hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "crm",
            "--url",
            "https://crm.example.com/hooks",
            "--ordered",
            "--on-dead",
            "block",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let show = hookrelay(&db, &["endpoint", "show", "crm"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("one at a time per ordering key; on dead: block"),
        "{text}"
    );

    let out = hookrelay(&db, &["endpoint", "update", "crm", "--on-dead", "later"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("skip, block"),
        "{err}"
    );
    let out = hookrelay(&db, &["endpoint", "update", "crm", "--ordered=false"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("unordered, on_dead block"));

    let file = temp_file(
        "ordered.toml",
        "[[endpoints]]\nname = \"crm\"\nurl = \"https://crm.example.com/hooks\"\n\
         ordered = true\non_dead = \"skip\"\n",
    );
    let out = hookrelay(&db, &["endpoint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let json = hookrelay(&db, &["endpoint", "show", "crm", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (shown["ordered"].clone(), shown["on_dead"].clone()),
        (true.into(), "skip".into())
    );

    let bad = temp_file(
        "ordered-bad.toml",
        "[[endpoints]]\nname = \"crm\"\nurl = \"https://crm.example.com/hooks\"\non_dead = \"hold\"\n",
    );
    let out = hookrelay(&db, &["endpoint", "apply", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("on_dead \"hold\" is not skip or block"),
        "{err}"
    );
}

#[tokio::test]
async fn a_keys_deliveries_follow_each_other_without_waiting_for_the_poll() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    ordered_endpoint(&db, &receiver.url("/hooks"), "block").await;
    const EVENTS: i32 = 300;
    for seq in 0..EVENTS {
        emit_keyed(&db, "k", seq).await;
    }
    // With a poll of a minute, each delivery of the key must be claimed when the result before
    // it is written (the worker's own recorder releases it): one wait for the poll fails this.
    let mut config = db.config();
    config.poll_interval = Duration::from_secs(60);
    let worker = db.start_worker(config);
    let done = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            i64::from(EVENTS),
            Duration::from_secs(30),
        )
        .await;
    worker.stop().await;
    assert_eq!(done, i64::from(EVENTS));
    let sent: Vec<i64> = receiver
        .requests()
        .iter()
        .map(|r| key_and_seq(r).1)
        .collect();
    assert_eq!(sent, (0..i64::from(EVENTS)).collect::<Vec<_>>());
}
