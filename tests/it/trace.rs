//! An event's journey (issue 19): the trace context the application's transaction set is kept
//! with the event, every attempt sends it with a span id of its own, and the worker's spans
//! reach an OTLP/HTTP collector as children of the application's span.

use std::time::Duration;

use crate::bad_input::refused::connect_with_notices;
use crate::support::{hookrelay, Receiver, Reply, TestDb};

mod otlp;

const SECRET: &str = "whsec-trace-test-secret";
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const APP_SPAN: &str = "00f067aa0ba902b7";
pub const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The stored (traceparent, tracestate) of the event `event`.
async fn stored(db: &TestDb, event: &str) -> (Option<String>, Option<String>) {
    let row = db
        .client
        .query_one(
            "SELECT traceparent, tracestate FROM hookrelay.events WHERE event = $1",
            &[&event],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn the_transactions_trace_context_is_kept_by_emit_triggers_and_inserts() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE orders (id int PRIMARY KEY, status text);
             SELECT hookrelay.track_table('orders');
             BEGIN;
             SET LOCAL hookrelay.traceparent = '{PARENT}';
             SET LOCAL hookrelay.tracestate = 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7';
             SELECT hookrelay.emit('order.paid', '{{\"id\": 1}}');
             INSERT INTO orders VALUES (1, 'new');
             INSERT INTO hookrelay.events (event) VALUES ('direct.insert');
             COMMIT;
             SELECT hookrelay.emit('untraced', '{{}}');
             SELECT hookrelay.emit('by.argument', '{{}}',
                 traceparent => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
                 tracestate => 'k=v');"
        ))
        .await
        .unwrap();
    let state = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7";
    for event in ["order.paid", "created", "direct.insert"] {
        assert_eq!(
            stored(&db, event).await,
            (Some(PARENT.into()), Some(state.into())),
            "{event}"
        );
    }
    assert_eq!(stored(&db, "untraced").await, (None, None));
    assert_eq!(
        stored(&db, "by.argument").await,
        (
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".into()),
            Some("k=v".into())
        )
    );
}

/// One traceparent warning per transaction that set a bad one, a tracestate warning, and
/// each says what a valid value looks like.
fn one_warning_per_transaction_saying_what_is_valid(notices: &[String], transactions: usize) {
    let parents = notices
        .iter()
        .filter(|n| n.contains("hookrelay.traceparent is not a valid W3C trace context"))
        .count();
    assert_eq!(parents, transactions, "{notices:#?}");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("hookrelay.tracestate is not a valid") && n.contains("key=value")),
        "{notices:#?}"
    );
    assert!(
        notices
            .iter()
            .all(|n| n.contains("00-<32 lowercase hex") || n.contains("hookrelay.tracestate")),
        "each warning says what a valid value looks like: {notices:#?}"
    );
}

#[tokio::test]
async fn malformed_trace_context_is_dropped_with_a_warning_and_the_event_still_written() {
    let db = TestDb::new().await;
    let (client, notices) = connect_with_notices(&db.url).await;
    let bad_parents = [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "garbage",
    ];
    for (i, bad) in bad_parents.iter().enumerate() {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL hookrelay.traceparent = '{bad}';
                 SELECT hookrelay.emit('bad.{i}', '{{}}'); COMMIT;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{bad}: the app's transaction failed: {e}"));
        assert_eq!(stored(&db, &format!("bad.{i}")).await.0, None, "{bad}");
    }
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL hookrelay.traceparent = '{PARENT}';
             SET LOCAL hookrelay.tracestate = 'UPPER=no,=empty-key';
             SELECT hookrelay.emit('bad.state', '{{}}'); COMMIT;"
        ))
        .await
        .unwrap();
    assert_eq!(
        stored(&db, "bad.state").await,
        (Some(PARENT.into()), None),
        "a bad tracestate does not cost the good traceparent"
    );
    // Checked once per transaction, not per event: 50 rows, one warning.
    client
        .batch_execute(
            "BEGIN; SET LOCAL hookrelay.traceparent = 'not-a-traceparent';
             SELECT hookrelay.emit('bulk', '{}') FROM generate_series(1, 50); COMMIT;",
        )
        .await
        .unwrap();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM hookrelay.events WHERE event = 'bulk' AND traceparent IS NULL"
        )
        .await,
        50
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let notices = notices.lock().unwrap().clone();
    one_warning_per_transaction_saying_what_is_valid(&notices, bad_parents.len() + 1);
}

#[tokio::test]
async fn each_attempt_sends_the_event_trace_with_a_span_id_of_its_own() {
    let db = TestDb::new().await;
    // Fails once, then accepts: two attempts of the same delivery.
    let traced = Receiver::with(|_, n| Reply::status(if n == 0 { 500 } else { 200 })).await;
    let quiet = Receiver::ok().await;
    db.endpoint("traced", &traced.url("/"), SECRET).await;
    let quiet_id = db.endpoint("quiet", &quiet.url("/"), SECRET).await;
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET trace_context = false WHERE id = $1",
            &[&quiet_id],
        )
        .await
        .unwrap();
    // Static headers cannot stand in for the trace headers.
    let refused = db
        .client
        .execute(
            "UPDATE hookrelay.endpoints SET headers = '{\"traceparent\": \"00-x\"}' WHERE id = $1",
            &[&quiet_id],
        )
        .await
        .unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_string());
    assert!(
        message.as_deref().is_some_and(
            |m| m.contains("\"traceparent\"") && m.contains("set by hookrelay itself")
        ),
        "{refused:?}"
    );
    db.client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL hookrelay.traceparent = '{PARENT}';
             SET LOCAL hookrelay.tracestate = 'congo=t61rcWkgMzE';
             SELECT hookrelay.emit('order.paid', '{{\"id\": 1}}'); COMMIT;"
        ))
        .await
        .unwrap();
    let worker = db.start_worker(db.config());
    let got = traced.wait_for(2, Duration::from_secs(20)).await;
    quiet.wait_for(1, Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!(got.len(), 2);
    let mut span_ids = Vec::new();
    for request in &got {
        let parent = request.header("traceparent");
        let parts: Vec<&str> = parent.split('-').collect();
        assert_eq!(parts.len(), 4, "{parent}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"));
        assert_ne!(parts[2], APP_SPAN, "the attempt is a span of its own");
        assert_eq!(parts[2].len(), 16);
        span_ids.push(parts[2].to_string());
        assert_eq!(request.header("tracestate"), "congo=t61rcWkgMzE");
    }
    assert_ne!(span_ids[0], span_ids[1], "a new span id per attempt");
    let request = &quiet.requests()[0];
    assert!(request.headers.get("traceparent").is_none());
    assert!(request.headers.get("tracestate").is_none());
}

/// The one event row carries the key and trace context the command was given.
async fn the_event_has_its_key_and_trace_context(db: &TestDb, parent: &str) {
    let row = db
        .client
        .query_one(
            "SELECT ordering_key, traceparent, tracestate FROM hookrelay.events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("customer:42")
    );
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(parent));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("vendor=value")
    );
}

#[tokio::test]
async fn the_emit_command_takes_an_ordering_key_and_trace_context_and_refuses_bad_ones() {
    let db = TestDb::new().await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = hookrelay(
        &db,
        &[
            "emit",
            "order.paid",
            "--object",
            r#"{"id": 7}"#,
            "--ordering-key",
            "customer:42",
            "--traceparent",
            parent,
            "--tracestate",
            "vendor=value",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    the_event_has_its_key_and_trace_context(&db, parent).await;

    let refused = [
        (
            vec![
                "--traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ],
            "--traceparent is not a W3C traceparent",
        ),
        (
            vec!["--tracestate", "vendor=value"],
            "--tracestate needs --traceparent",
        ),
        (vec!["--ordering-key", ""], "ordering_key is empty"),
    ];
    for (extra, message) in refused {
        let mut args = vec!["emit", "order.paid"];
        args.extend(extra);
        let out = hookrelay(&db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 1);
}
