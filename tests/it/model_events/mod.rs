//! Model events: row triggers installed by `hookrelay.track_table` turn inserts, updates and
//! deletes of application tables into events, delivered to real receivers.

mod accounts;
mod basics;
mod column_types;
mod identifiers;

use std::time::Duration;

use serde_json::Value;

use crate::support::{Receiver, TestDb};

pub const SECRET: &str = "model-events-secret";

/// Runs a worker until every event is fanned out and no delivery is pending.
pub async fn drain(db: &TestDb) {
    drain_with(db, db.config()).await;
}

/// [`drain`] with these worker settings.
pub async fn drain_with(db: &TestDb, config: hookrelay::config::WorkerConfig) {
    let worker = db.start_worker(config);
    let limit = Duration::from_secs(20);
    let unclaimed = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.events WHERE fanned_out_at IS NULL",
            0,
            limit,
        )
        .await;
    let pending = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'pending'",
            0,
            limit,
        )
        .await;
    worker.stop().await;
    assert_eq!((unclaimed, pending), (0, 0), "the worker finished its work");
}

/// Every body a receiver got (optionally only those sent to `path`), as JSON.
pub fn bodies(receiver: &Receiver, path: Option<&str>) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .filter(|r| path.is_none_or(|p| r.path == p))
        .map(|r| r.json())
        .collect()
}

/// The one body whose event is `event`.
pub fn only(bodies: &[Value], event: &str) -> Value {
    let found: Vec<&Value> = bodies.iter().filter(|b| b["event"] == event).collect();
    assert_eq!(found.len(), 1, "one {event} event in {bodies:#?}");
    found[0].clone()
}

/// JSON from text, keeping numbers' digits as written.
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// A database, a receiver and one endpoint that takes everything.
pub async fn setup() -> (TestDb, Receiver) {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("everything", &receiver.url("/all"), SECRET)
        .await;
    (db, receiver)
}
