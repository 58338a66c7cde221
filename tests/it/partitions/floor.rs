//! The work floor (migration 0034): the oldest day with pending work, below which due claims
//! do not look; and work that appears below it later still goes out soon.

use std::time::Duration;

use super::{history, labels, past_day, receiving};
use crate::support::TestDb;

/// The floor, and the first id of the day `days_ago` days before today (UTC), as text.
async fn floor_and_day(db: &TestDb, days_ago: i32) -> (String, String) {
    let row = db
        .client
        .query_one(
            "SELECT hookrelay.work_floor()::text,
                    hookrelay.id_floor(((now() AT TIME ZONE 'UTC')::date - $1::int)::timestamp
                                       AT TIME ZONE 'UTC')::text",
            &[&days_ago],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn the_work_floor_is_the_oldest_day_with_work_or_the_least_id_the_default_keeps() {
    let db = TestDb::new().await;
    db.endpoint("sink", "http://127.0.0.1:9/", "floor-test-secret")
        .await;
    for days_ago in 2..=4 {
        past_day(&db, days_ago).await;
    }
    let write = |rows: &[(&str, &str, Option<&str>)]| history(rows, true);
    // Finished history in every day, dead work too: today.
    db.client
        .batch_execute(&write(&[
            ("done4", "4 days", Some("delivered")),
            ("dead3", "3 days", Some("dead")),
            ("done2", "2 days", Some("delivered")),
        ]))
        .await
        .unwrap();
    let (floor, today) = floor_and_day(&db, 0).await;
    assert_eq!(floor, today, "no pending work before today");
    // A pending delivery two days ago, then an event three days ago not fanned out.
    db.client
        .batch_execute(&write(&[("retry2", "2 days", Some("pending"))]))
        .await
        .unwrap();
    let (floor, day) = floor_and_day(&db, 2).await;
    assert_eq!(floor, day, "the day of the pending delivery");
    db.client
        .batch_execute(&write(&[("late3", "3 days", None)]))
        .await
        .unwrap();
    let (floor, day) = floor_and_day(&db, 3).await;
    assert_eq!(floor, day, "the day of the event not fanned out");
    // Work kept in the DEFAULT partition (no day of its own): its own id.
    db.client
        .batch_execute(&write(&[("kept70", "70 days", Some("pending"))]))
        .await
        .unwrap();
    let kept: String = db
        .client
        .query_one(
            "SELECT d.event_id::text FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id WHERE e.object ->> 'id' = 'kept70'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(floor_and_day(&db, 0).await.0, kept);
}

#[tokio::test]
async fn a_redelivery_below_the_floor_of_an_idle_worker_goes_out_soon() {
    let db = TestDb::new().await;
    let receiver = receiving(&db).await;
    past_day(&db, 3).await;
    db.client
        .batch_execute(&history(&[("dead3", "3 days", Some("dead"))], true))
        .await
        .unwrap();
    // The worker reads the floor (today: nothing is pending) and goes idle.
    let worker = db.start_worker(db.config());
    db.wait_count(
        "SELECT count(*) FROM hookrelay.workers WHERE waiting",
        1,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.client
        .batch_execute(
            "SELECT hookrelay.redeliver(d.id) FROM hookrelay.deliveries d WHERE d.state = 'dead'",
        )
        .await
        .unwrap();
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    worker.stop().await;
    assert_eq!(labels(&received), ["dead3"]);
}
