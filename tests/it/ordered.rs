//! Ordered delivery per key (0022), rule by rule at the level of the claims: only the head of
//! a key is claimed, the others wait parked and are released when it settles; a head another
//! worker is claiming, and an earlier event not fanned out yet, still hold the key; `emit`
//! with a key serialises its writers. Worker-level behaviour is in `ordered_delivery`.

use std::time::Duration;

use hookrelay::db;
use hookrelay::pipeline::claim::{self, Lease, Scan};

use crate::support::{connect, TestDb};

/// Adds endpoint `ordered` (ordered per key, with `on_dead`) and returns its id.
pub async fn ordered_endpoint(db: &TestDb, url: &str, on_dead: &str) -> i64 {
    db.client
        .query_one(
            "INSERT INTO hookrelay.endpoints (name, url, secret, ordered, on_dead)
             VALUES ('ordered', $1, 'ordered-secret', true, $2) RETURNING id",
            &[&url, &on_dead],
        )
        .await
        .expect("insert ordered endpoint")
        .get(0)
}

/// Emits `order.paid` for `{"key": key, "seq": seq}` with ordering key `key`.
pub async fn emit_keyed(db: &TestDb, key: &str, seq: i32) -> uuid::Uuid {
    db.client
        .query_one(
            "SELECT hookrelay.emit('order.paid', jsonb_build_object('key', $1::text, 'seq', $2::int),
                                   ordering_key => $1)",
            &[&key, &seq],
        )
        .await
        .expect("emit with a key")
        .get(0)
}

/// "key#seq" of each delivery id given.
async fn labels(db: &TestDb, ids: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let row = db
            .client
            .query_one(
                "SELECT (e.object ->> 'key') || '#' || (e.object ->> 'seq')
                 FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id
                 WHERE d.id = $1",
                &[id],
            )
            .await
            .unwrap();
        out.push(row.get(0));
    }
    out.sort();
    out
}

/// The delivery id of `key#seq`.
async fn delivery(db: &TestDb, key: &str, seq: i32) -> i64 {
    db.client
        .query_one(
            "SELECT d.id FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id
             WHERE e.object ->> 'key' = $1 AND (e.object ->> 'seq')::int = $2",
            &[&key, &seq],
        )
        .await
        .expect("the delivery exists")
        .get(0)
}

/// What one due claim takes, as "key#seq" labels.
async fn claim_due(db: &TestDb, pool: &db::Db) -> Vec<String> {
    let client = pool.pool.get().await.unwrap();
    let lease = Lease::new(Duration::from_secs(30), "test-worker");
    // From the work floor, as the worker claims.
    let floor = claim::work_floor(&client).await.expect("work floor");
    let claimed = claim::claim_due(&client, 50, &lease, floor)
        .await
        .expect("claim due");
    let ids: Vec<i64> = claimed.jobs.iter().map(|j| j.delivery_id).collect();
    labels(db, &ids).await
}

/// Fans out every event not fanned out yet; returns the deliveries leased at once.
async fn fan_out(db: &TestDb, pool: &db::Db) -> Vec<String> {
    let client = pool.pool.get().await.unwrap();
    let lease = Lease::new(Duration::from_secs(30), "test-worker");
    let claimed = claim::claim_new(&client, 100, Scan::FromStart, &lease)
        .await
        .expect("claim new");
    let ids: Vec<i64> = claimed.jobs.iter().map(|j| j.delivery_id).collect();
    labels(db, &ids).await
}

/// Settles a delivery as a worker's result would.
async fn settle(db: &TestDb, id: i64, state: &str) {
    db.client
        .execute(
            "UPDATE hookrelay.deliveries SET state = $2, locked_until = NULL, locked_by = NULL,
                    next_attempt_at = NULL WHERE id = $1",
            &[&id, &state],
        )
        .await
        .unwrap();
}

async fn parked(db: &TestDb, id: i64) -> bool {
    db.client
        .query_one(
            "SELECT state = 'pending' AND next_attempt_at IS NULL FROM hookrelay.deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn only_the_head_of_each_key_is_claimed_and_settling_it_releases_the_next() {
    let db = TestDb::new().await;
    let pool = db::pool(&db.url, 2).unwrap();
    ordered_endpoint(&db, "http://127.0.0.1:9/hooks", "skip").await;
    for seq in 0..3 {
        emit_keyed(&db, "a", seq).await;
    }
    emit_keyed(&db, "b", 0).await;

    // Fan-out leases no ordered delivery itself: the due claim decides.
    assert!(fan_out(&db, &pool).await.is_empty());
    assert_eq!(claim_due(&db, &pool).await, ["a#0", "b#0"]);
    let (a1, a2) = (delivery(&db, "a", 1).await, delivery(&db, "a", 2).await);
    assert!(parked(&db, a1).await && parked(&db, a2).await);
    assert!(
        claim_due(&db, &pool).await.is_empty(),
        "nothing more goes while a#0 is in flight"
    );

    settle(&db, delivery(&db, "a", 0).await, "delivered").await;
    assert!(!parked(&db, a1).await, "a#1 is released when a#0 settles");
    assert!(parked(&db, a2).await, "a#2 still waits");
    assert_eq!(claim_due(&db, &pool).await, ["a#1"]);

    // Cancelled settles too.
    settle(&db, a1, "cancelled").await;
    assert_eq!(claim_due(&db, &pool).await, ["a#2"]);
}

#[tokio::test]
async fn a_parked_delivery_another_claim_has_share_locked_is_still_released() {
    let db = TestDb::new().await;
    let pool = db::pool(&db.url, 2).unwrap();
    ordered_endpoint(&db, "http://127.0.0.1:9/hooks", "skip").await;
    for seq in 0..3 {
        emit_keyed(&db, "a", seq).await;
    }
    fan_out(&db, &pool).await;
    assert_eq!(claim_due(&db, &pool).await, ["a#0"]);
    let (a0, a1) = (delivery(&db, "a", 0).await, delivery(&db, "a", 1).await);
    // A claim parking a#2 behind a#1 holds a share lock on a#1 while a#0 settles.
    let mut other = connect(&db.url).await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM hookrelay.deliveries WHERE id = $1 FOR SHARE",
        &[&a1],
    )
    .await
    .unwrap();
    let url = db.url.clone();
    let settling = tokio::spawn(async move {
        let client = connect(&url).await;
        client
            .execute(
                "UPDATE hookrelay.deliveries SET state = 'delivered', locked_until = NULL,
                        next_attempt_at = NULL WHERE id = $1",
                &[&a0],
            )
            .await
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), settling)
        .await
        .expect("the settling transaction finishes once the claim commits")
        .unwrap();
    assert!(!parked(&db, a1).await, "a#1 is released");
    assert_eq!(claim_due(&db, &pool).await, ["a#1"]);
}

#[tokio::test]
async fn a_reopened_earlier_delivery_goes_before_a_later_one_whose_worker_died() {
    let db = TestDb::new().await;
    let pool = db::pool(&db.url, 2).unwrap();
    ordered_endpoint(&db, "http://127.0.0.1:9/hooks", "skip").await;
    emit_keyed(&db, "a", 0).await;
    emit_keyed(&db, "a", 1).await;
    fan_out(&db, &pool).await;
    let (a0, a1) = (delivery(&db, "a", 0).await, delivery(&db, "a", 1).await);
    assert_eq!(claim_due(&db, &pool).await, ["a#0"]);
    settle(&db, a0, "delivered").await;
    assert_eq!(claim_due(&db, &pool).await, ["a#1"]);
    // a#1's worker died mid-request (its lease ran out), and an operator redelivers a#0.
    db.client
        .execute(
            "UPDATE hookrelay.deliveries SET locked_until = now() - interval '1 second',
                    next_attempt_at = now() - interval '1 second' WHERE id = $1",
            &[&a1],
        )
        .await
        .unwrap();
    let redelivered: bool = db
        .client
        .query_one("SELECT hookrelay.redeliver($1)", &[&a0])
        .await
        .unwrap()
        .get(0);
    assert!(redelivered);
    assert_eq!(
        claim_due(&db, &pool).await,
        ["a#0"],
        "the earlier one first"
    );
    assert!(parked(&db, a1).await, "a#1 waits behind it");
    settle(&db, a0, "delivered").await;
    assert_eq!(claim_due(&db, &pool).await, ["a#1"]);
}

#[tokio::test]
async fn a_head_another_worker_is_claiming_still_holds_its_key() {
    let db = TestDb::new().await;
    let pool = db::pool(&db.url, 2).unwrap();
    ordered_endpoint(&db, "http://127.0.0.1:9/hooks", "skip").await;
    emit_keyed(&db, "a", 0).await;
    emit_keyed(&db, "a", 1).await;
    fan_out(&db, &pool).await;
    let a0 = delivery(&db, "a", 0).await;

    // Another worker's claim has locked a#0 and not committed yet: SKIP LOCKED hides a#0 from
    // this claim, which must still not send a#1.
    let mut other = connect(&db.url).await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM hookrelay.deliveries WHERE id = $1 FOR NO KEY UPDATE",
        &[&a0],
    )
    .await
    .unwrap();
    assert!(claim_due(&db, &pool).await.is_empty());
    tx.commit().await.unwrap();
    assert_eq!(claim_due(&db, &pool).await, ["a#0"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        claim_due(&db, &pool).await.is_empty(),
        "a#1 waits for a#0, now in flight"
    );
}

#[tokio::test]
async fn an_earlier_event_not_fanned_out_yet_holds_the_later_ones() {
    let db = TestDb::new().await;
    let pool = db::pool(&db.url, 2).unwrap();
    let ep = ordered_endpoint(&db, "http://127.0.0.1:9/hooks", "skip").await;
    emit_keyed(&db, "a", 0).await;
    let later = emit_keyed(&db, "a", 1).await;
    // Another worker fanned out a#1 while a#0 was in a batch not committed yet.
    db.client
        .batch_execute(&format!(
            "UPDATE hookrelay.events SET fanned_out_at = now() WHERE id = '{later}';
             INSERT INTO hookrelay.deliveries (event_id, endpoint_id, ordering_key, ordering_at)
             SELECT id, {ep}, 'a', created_at FROM hookrelay.events WHERE id = '{later}';"
        ))
        .await
        .unwrap();
    assert!(claim_due(&db, &pool).await.is_empty(), "a#1 waits for a#0");
    fan_out(&db, &pool).await;
    assert_eq!(claim_due(&db, &pool).await, ["a#0"]);
}

#[tokio::test]
async fn a_dead_head_blocks_its_key_only_when_on_dead_is_block() {
    let db = TestDb::new().await;
    let pool = db::pool(&db.url, 2).unwrap();
    ordered_endpoint(&db, "http://127.0.0.1:9/hooks", "block").await;
    for seq in 0..2 {
        emit_keyed(&db, "a", seq).await;
    }
    fan_out(&db, &pool).await;
    assert_eq!(claim_due(&db, &pool).await, ["a#0"]);
    settle(&db, delivery(&db, "a", 0).await, "dead").await;
    assert!(claim_due(&db, &pool).await.is_empty(), "block: a#1 is held");
    let held: Vec<(String, String, i64)> = db
        .client
        .query(
            "SELECT ordering_key, reason, waiting FROM hookrelay.held_keys",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(held, [("a".to_string(), "dead".to_string(), 1)]);

    // Switching to skip lets the key go on.
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET on_dead = 'skip' WHERE name = 'ordered'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claim_due(&db, &pool).await, ["a#1"]);
}

#[tokio::test]
async fn a_tracked_tables_ordering_column_is_the_events_key() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric);
             SELECT hookrelay.track_table('orders', ordering_key => 'customer_id');
             INSERT INTO orders VALUES (1, 42, 10), (2, 42, 20), (3, NULL, 5);
             UPDATE orders SET total = 11 WHERE id = 1;",
        )
        .await
        .unwrap();
    let keys: Vec<(String, Option<String>, String)> = db
        .client
        .query(
            "SELECT event, ordering_key,
                    hookrelay.event_ordering_key(ordering_key, model, object_id)
             FROM hookrelay.events ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want =
        |e: &str, k: Option<&str>, eff: &str| (e.to_string(), k.map(String::from), eff.to_string());
    assert_eq!(
        keys,
        [
            want("created", Some("42"), "42"),
            want("created", Some("42"), "42"),
            want("created", None, "public.orders:3"),
            want("updated", Some("42"), "42"),
        ]
    );
    let shown: Option<String> = db
        .client
        .query_one(
            "SELECT ordering_key FROM hookrelay.tracked_tables WHERE tbl = 'orders'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown.as_deref(), Some("customer_id"));
    let err = db
        .client
        .batch_execute("SELECT hookrelay.track_table('orders', ordering_key => 'customer')")
        .await
        .unwrap_err();
    let message = hookrelay::db::explain(&err);
    assert!(
        message.contains("ordering_key names no column of orders")
            && message.contains("customer_id"),
        "{message}"
    );
}

#[tokio::test]
async fn emit_with_a_key_waits_for_the_keys_earlier_writer_to_commit() {
    let db = TestDb::new().await;
    let mut first = connect(&db.url).await;
    let tx = first.transaction().await.unwrap();
    let early: uuid::Uuid = tx
        .query_one(
            "SELECT hookrelay.emit('a', ordering_key => 'customer:42')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let second = tokio::spawn(emit_b_for_customer_42(db.url.clone()));
    // Another key does not wait.
    let other = tokio::time::timeout(
        Duration::from_secs(5),
        db.client.query_one(
            "SELECT hookrelay.emit('c', ordering_key => 'customer:7')",
            &[],
        ),
    )
    .await;
    assert!(other.is_ok(), "a different key is not held");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second writer of the key waits for the first to commit"
    );
    tx.commit().await.unwrap();
    let late = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second writer goes on after the commit")
        .unwrap();
    assert!(
        written_before(&db, early, late).await,
        "the later writer's event is written after the commit"
    );
    an_empty_key_is_refused_with_a_hint(&db).await;
}

/// Emits event b keyed customer:42 on a connection of its own (it may wait for a lock).
async fn emit_b_for_customer_42(url: String) -> uuid::Uuid {
    let client = connect(&url).await;
    client
        .query_one(
            "SELECT hookrelay.emit('b', ordering_key => 'customer:42')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Whether event `early` was written before event `late`.
async fn written_before(db: &TestDb, early: uuid::Uuid, late: uuid::Uuid) -> bool {
    db.client
        .query_one(
            "SELECT (SELECT created_at FROM hookrelay.events WHERE id = $1)
                  < (SELECT created_at FROM hookrelay.events WHERE id = $2)",
            &[&early, &late],
        )
        .await
        .unwrap()
        .get(0)
}

async fn an_empty_key_is_refused_with_a_hint(db: &TestDb) {
    let empty = db
        .client
        .query_one("SELECT hookrelay.emit('a', ordering_key => '')", &[])
        .await
        .unwrap_err();
    let message = hookrelay::db::explain(&empty);
    assert!(
        message.contains("ordering_key is empty") && message.contains("hint"),
        "{message}"
    );
}

#[tokio::test]
async fn the_track_command_takes_the_ordering_column() {
    let db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE invoices (id int PRIMARY KEY, customer_id int, total int)")
        .await
        .unwrap();
    let out =
        crate::support::hookrelay(&db, &["track", "invoices", "--ordering-key", "customer_id"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("; ordering key from customer_id"),
        "{stdout}"
    );
    db.client
        .batch_execute("INSERT INTO invoices VALUES (1, 42, 100)")
        .await
        .unwrap();
    let key: Option<String> = db
        .client
        .query_one("SELECT ordering_key FROM hookrelay.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(key.as_deref(), Some("42"));
    let out = crate::support::hookrelay(&db, &["track", "invoices", "--ordering-key", "nosuch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ordering_key names no column"), "{stderr}");
}
