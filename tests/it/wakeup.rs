//! Wake-up: an idle worker is notified at once; a busy one is not notified at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::{Receiver, Reply, TestDb};

/// Counts the notifications sent on the worker channel, from a connection of our own.
async fn count_notifications(url: &str) -> (tokio_postgres::Client, Arc<AtomicUsize>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(_) = message {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    client
        .batch_execute("LISTEN hookrelay_events")
        .await
        .unwrap();
    (client, count)
}

async fn wait_until_idle(db: &TestDb) {
    let idle = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.workers WHERE waiting",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(idle, 1, "the worker marks itself idle");
}

#[tokio::test]
async fn an_idle_worker_is_notified_without_waiting_for_its_poll() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    let mut config = db.config();
    config.poll_interval = Duration::from_secs(60);
    let worker = db.start_worker(config);
    wait_until_idle(&db).await;

    for i in 0..3 {
        let started = Instant::now();
        db.emit("order.paid", serde_json::json!({ "id": i })).await;
        let got = receiver.wait_for(i + 1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), i + 1, "event {i} delivered");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "event {i} took {took:?} with a 60 s poll"
        );
    }
    worker.stop().await;
}

#[tokio::test]
async fn a_burst_while_the_worker_is_busy_sends_few_notifications() {
    let db = TestDb::new().await;
    let receiver = Receiver::with(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(30),
    })
    .await;
    db.endpoint("slow", &receiver.url("/"), "secret-secret-secret")
        .await;
    let mut config = db.config();
    config.concurrency = 4;
    config.poll_interval = Duration::from_secs(60);
    let worker = db.start_worker(config);
    wait_until_idle(&db).await;

    let (_listen, notifications) = count_notifications(&db.url).await;
    let inserts = 200;
    for i in 0..inserts {
        db.emit("order.paid", serde_json::json!({ "id": i })).await;
    }
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            inserts,
            Duration::from_secs(30),
        )
        .await;
    let sent = notifications.load(Ordering::SeqCst);
    worker.stop().await;
    assert_eq!(delivered, inserts, "every event delivered with a 60 s poll");
    assert!(sent >= 1, "the first insert woke the idle worker");
    // Notifying every insert would send 200. How often the worker runs dry between claims, and
    // so waits again, depends on scheduling: 4-7 alone, 11 once in a full parallel run.
    assert!(
        sent <= 20,
        "{sent} notifications for {inserts} inserts while the worker was busy"
    );
}

#[tokio::test]
async fn without_a_waiting_worker_inserts_do_not_notify() {
    let db = TestDb::new().await;
    let (_listen, notifications) = count_notifications(&db.url).await;
    for i in 0..20 {
        db.emit("order.paid", serde_json::json!({ "id": i })).await;
    }
    // A crashed worker's stale "waiting" row does not count either.
    db.client
        .execute(
            "INSERT INTO hookrelay.workers (id, host, pid, waiting, heartbeat_at)
             VALUES ('gone', 'h', 1, true, now() - interval '1 hour')",
            &[],
        )
        .await
        .unwrap();
    db.emit("order.paid", serde_json::json!({ "id": "x" }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(notifications.load(Ordering::SeqCst), 0);
    db.client
        .execute("UPDATE hookrelay.workers SET heartbeat_at = now()", &[])
        .await
        .unwrap();
    db.emit("order.paid", serde_json::json!({ "id": "y" }))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while notifications.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(notifications.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn inserts_notify_while_any_worker_waits_and_stop_when_none_does() {
    let db = TestDb::new().await;
    let (_listen, notifications) = count_notifications(&db.url).await;
    // Notifications sent for one insert, waited for until `expected` or a short timeout.
    let notified_by_an_insert = |expected: usize| {
        let db = &db;
        let notifications = notifications.clone();
        async move {
            let before = notifications.load(Ordering::SeqCst);
            db.emit("order.paid", serde_json::json!({ "id": 1 })).await;
            let deadline =
                Instant::now() + Duration::from_millis(if expected > 0 { 5_000 } else { 200 });
            while notifications.load(Ordering::SeqCst) - before < expected.max(1)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            notifications.load(Ordering::SeqCst) - before
        }
    };
    db.client
        .batch_execute(
            "INSERT INTO hookrelay.workers (id, host, pid, waiting)
             VALUES ('a', 'h', 1, true), ('b', 'h', 2, true)",
        )
        .await
        .unwrap();
    assert_eq!(notified_by_an_insert(1).await, 1, "two workers wait");
    // One goes busy from its own session; the other still waits and must still be woken.
    db.client
        .execute(
            "UPDATE hookrelay.workers SET waiting = false WHERE id = 'a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(notified_by_an_insert(1).await, 1, "worker b still waits");
    db.client
        .execute("DELETE FROM hookrelay.workers WHERE id = 'b'", &[])
        .await
        .unwrap();
    assert_eq!(notified_by_an_insert(0).await, 0, "no worker waits");
    db.client
        .execute(
            "UPDATE hookrelay.workers SET waiting = true WHERE id = 'a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(notified_by_an_insert(1).await, 1, "worker a waits again");
    db.client
        .execute("TRUNCATE hookrelay.workers", &[])
        .await
        .unwrap();
    assert_eq!(
        notified_by_an_insert(0).await,
        0,
        "the workers were cleared away"
    );
}
