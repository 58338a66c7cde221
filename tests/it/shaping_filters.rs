//! Per-endpoint content filters (`endpoints.filter`, a jsonpath predicate over the envelope,
//! evaluated in the fan-out claim): delivered only where they hold, refused on write when they
//! are not predicates, set from the CLI and apply files; and what one costs the claim.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::model_events::{bodies, drain, SECRET};
use crate::support::{hookrelay, temp_file, Receiver, TestDb};

/// `hookrelay endpoint add` with these extra arguments; panics with its output on failure.
fn add(db: &TestDb, name: &str, url: &str, extra: &[&str]) {
    let mut args = vec![
        "endpoint", "add", "--name", name, "--url", url, "--secret", SECRET,
    ];
    args.extend_from_slice(extra);
    let out = hookrelay(db, &args);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `id`s of the objects delivered to `path`, in order.
fn ids(receiver: &Receiver, path: &str) -> Vec<String> {
    let mut ids: Vec<String> = bodies(receiver, Some(path))
        .iter()
        .map(|b| b["object"]["id"].as_str().unwrap_or("?").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn each_endpoint_gets_only_the_events_its_filter_holds_for() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    add(
        &db,
        "big-acme",
        &receiver.url("/big-acme"),
        &[
            "--filter",
            r#"$.object.total > 100 && $.account_id == "acme""#,
        ],
    );
    add(
        &db,
        "orders",
        &receiver.url("/orders"),
        &[
            "--filter",
            r#"$.model.name == "Order" && $.event starts with "order.""#,
        ],
    );
    add(&db, "everything", &receiver.url("/everything"), &[]);
    db.client
        .batch_execute(
            r#"SELECT hookrelay.emit('order.paid', '{"id": "1", "total": 150.00}', 'store.Order', account_id => 'acme');
               SELECT hookrelay.emit('order.paid', '{"id": "2", "total": 99}', 'store.Order', account_id => 'acme');
               SELECT hookrelay.emit('order.paid', '{"id": "3", "total": 500}', 'store.Order', account_id => 'other');
               SELECT hookrelay.emit('customer.created', '{"id": "4", "total": 1000}', 'crm.Customer', account_id => 'acme');
               SELECT hookrelay.emit('order.note', '{"id": "5"}', 'store.Order');"#,
        )
        .await
        .unwrap();
    drain(&db).await;
    assert_eq!(ids(&receiver, "/big-acme"), ["1", "4"]);
    assert_eq!(ids(&receiver, "/orders"), ["1", "2", "3", "5"]);
    assert_eq!(ids(&receiver, "/everything"), ["1", "2", "3", "4", "5"]);
    // An event a filter does not hold for gets no delivery row at all for that endpoint.
    let filtered_out = db
        .count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.endpoints ep
             ON ep.id = d.endpoint_id WHERE ep.name = 'big-acme'",
        )
        .await;
    assert_eq!(filtered_out, 2);
    // What operators see.
    let out = hookrelay(&db, &["endpoint", "show", "big-acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"filter: ($."object"."total" > 100 && $."account_id" == "acme")"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_filter_sees_the_envelope_fields_a_receiver_reads() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    // id, timestamp, model.app, object_id, changes and user, as the payload module writes them.
    let filter = concat!(
        r#"$.id starts with "evt_" && $.timestamp like_regex "^[0-9]{4}-.*\\.[0-9]{6}Z$""#,
        r#" && $.model.app == "store" && $.object_id == "42""#,
        r#" && $.changes.status.new == "PAID" && $.user.username == "admin""#
    );
    add(&db, "exact", &receiver.url("/exact"), &["--filter", filter]);
    db.client
        .batch_execute(
            r#"SET hookrelay.actor = '{"id": "1", "username": "admin"}';
               SELECT hookrelay.emit('order.paid', '{"id": "a"}', 'store.Order', '42',
                                     '{"status": {"old": "NEW", "new": "PAID"}}');
               SELECT hookrelay.emit('order.paid', '{"id": "b"}', 'store.Order', '43',
                                     '{"status": {"old": "NEW", "new": "PAID"}}');
               RESET hookrelay.actor;
               SELECT hookrelay.emit('order.paid', '{"id": "c"}', 'store.Order', '42',
                                     '{"status": {"old": "NEW", "new": "PAID"}}');"#,
        )
        .await
        .unwrap();
    drain(&db).await;
    assert_eq!(ids(&receiver, "/exact"), ["a"]);
}

/// `endpoint add --filter` with a broken path or a non-predicate: refused with the problem
/// and an example, without a panic.
fn assert_bad_filter_flags_refused(db: &TestDb) {
    for (filter, problem) in [
        ("$.object.total >", "is not a valid jsonpath"),
        ("$.object.total", "is not a predicate"),
        ("$.object ? (@.total > 1)", "is not a predicate"),
    ] {
        let out = hookrelay(
            db,
            &[
                "endpoint",
                "add",
                "--name",
                "bad",
                "--url",
                "https://example.com/hook",
                "--filter",
                filter,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{filter}: accepted");
        assert!(stderr.contains(problem), "{filter}: {stderr}");
        assert!(
            stderr.contains(r#"for example $.object.total > 100 && $.account_id == "acme""#),
            "{filter}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// SQL writes get the predicate check too, with an example in the hint.
async fn assert_bad_filter_in_sql_refused(db: &TestDb) {
    let err = db
        .client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, filter)
             VALUES ('sql', 'https://example.com/hook', 'secret-secret-secret', '$.event')",
            &[],
        )
        .await
        .unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert!(
        db_err.message().contains("is not a predicate"),
        "{db_err:?}"
    );
    assert!(db_err.hint().unwrap().contains("for example"), "{db_err:?}");
}

/// The same in an apply file: refused naming the endpoint.
fn assert_bad_filter_in_a_file_refused(db: &TestDb) {
    let file = temp_file(
        "bad-filter.toml",
        "[[endpoints]]\nname = \"good\"\nurl = \"https://example.com/a\"\n\
         [[endpoints]]\nname = \"filtered\"\nurl = \"https://example.com/b\"\nfilter = '$.object.total'\n",
    );
    let out = hookrelay(
        db,
        &["endpoint".as_ref(), "apply".as_ref(), file.as_os_str()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("endpoint \"filtered\"") && stderr.contains("is not a predicate"),
        "{stderr}"
    );
}

#[tokio::test]
async fn filters_that_are_not_predicates_are_refused_with_an_example_and_write_nothing() {
    let db = TestDb::new().await;
    assert_bad_filter_flags_refused(&db);
    assert_bad_filter_in_sql_refused(&db).await;
    // The file changes nothing, like the others.
    assert_bad_filter_in_a_file_refused(&db);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0
    );
}

#[tokio::test]
async fn apply_files_set_filter_number_format_and_skip_empty_changes() {
    let db = TestDb::new().await;
    let text = "[[endpoints]]\nname = \"crm\"\nurl = \"https://example.com/crm\"\n\
                filter = '$.object.total > 100'\nnumber_format = \"string\"\n\
                skip_empty_changes = true\n";
    let file = temp_file("shaping-apply.toml", text);
    let args = ["endpoint".as_ref(), "apply".as_ref(), file.as_os_str()];
    let out = hookrelay(&db, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hookrelay(&db, &["endpoint", "show", "crm", "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["filter"], r#"($."object"."total" > 100)"#);
    assert_eq!(shown["number_format"], "string");
    assert_eq!(shown["skip_empty_changes"], true);
    // Applying the same file again changes nothing (the filter compares as stored).
    let out = hookrelay(&db, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("unchanged crm"), "{stdout}");
    // The operator console shows them too.
    let console = crate::console::serve(&db.url, None).await;
    let page = crate::console::get(&console, "/endpoints/crm", &[]).await;
    for shown in [
        "($.&quot;object&quot;.&quot;total&quot; &gt; 100)",
        "strings of their digits",
        "<dt>Updates with no changes left</dt><dd>skipped</dd>",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
}

/// A filter every bench event passes, so it costs evaluation only (the same deliveries).
const PASSING: &str = r#"$.object.total >= 0 && $.event == "order.paid""#;
/// A filter about a quarter of the bench events pass.
const SELECTIVE: &str = r#"$.object.total > 100 && $.account_id == "acme""#;

/// Time to fan out `events` events to 10 endpoints, `filtered` of which have `filter`,
/// claiming 100 at a time as the worker does; and the deliveries made.
async fn fan_out_time(events: i64, filtered: usize, filter: &str) -> (Duration, i64) {
    use hookrelay::pipeline::claim::{self, Lease, Scan};
    let db = TestDb::new().await;
    for i in 0..10 {
        let filter = (i < filtered).then_some(filter);
        db.client
            .execute(
                "INSERT INTO hookrelay.endpoints (name, url, secret, filter, max_in_flight)
                 VALUES ($1, 'https://example.com/hook', 'secret-secret-secret', $2::text::jsonpath, 10000)",
                &[&format!("ep{i}"), &filter],
            )
            .await
            .unwrap();
    }
    db.client
        .execute(
            "SELECT hookrelay.emit('order.paid', jsonb_build_object('id', i::text, 'total', i % 200,
                                   'status', 'PAID', 'reference', 'ORD-' || i),
                                   'store.Order', i::text, account_id => CASE WHEN i % 2 = 0 THEN 'acme' END)
             FROM generate_series(1, $1::bigint) i",
            &[&events],
        )
        .await
        .unwrap();
    db.client
        .batch_execute("ANALYZE hookrelay.events")
        .await
        .unwrap();
    let pool = hookrelay::db::pool(&db.url, 1).unwrap();
    let client = pool.pool.get().await.unwrap();
    let lease = Lease::new(Duration::from_secs(60), "bench");
    let started = Instant::now();
    loop {
        let claimed = claim::claim_new(&client, 100, Scan::FromStart, &lease)
            .await
            .unwrap();
        if claimed.taken == 0 {
            break;
        }
    }
    let took = started.elapsed();
    let deliveries = db.count("SELECT count(*) FROM hookrelay.deliveries").await;
    (took, deliveries)
}

/// Prints what a filter costs the fan-out claim (README quotes these figures); asserts only
/// what was delivered, never a time.
#[tokio::test]
async fn fan_out_claim_cost_of_a_filter_is_printed() {
    const EVENTS: i64 = 5_000;
    let (none, all) = fan_out_time(EVENTS, 0, PASSING).await;
    let (one, with_one) = fan_out_time(EVENTS, 1, PASSING).await;
    let (ten, with_ten) = fan_out_time(EVENTS, 10, PASSING).await;
    let (selective, with_selective) = fan_out_time(EVENTS, 10, SELECTIVE).await;
    assert_eq!([all, with_one, with_ten], [EVENTS * 10; 3]);
    // total > 100 (99 of every 200) and an even id (acme).
    let matching = (1..=EVENTS).filter(|i| i % 200 > 100 && i % 2 == 0).count() as i64;
    assert_eq!(with_selective, matching * 10);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / EVENTS as f64;
    println!(
        "fan-out claim, {EVENTS} events x 10 endpoints, 100 events per claim: \
         no filter {:.0} ms ({:.0} µs/event); a filter every event passes on 1 endpoint \
         {:.0} ms ({:.0} µs/event), on all 10 {:.0} ms ({:.0} µs/event); a filter a quarter \
         pass on all 10 {:.0} ms ({:.0} µs/event, fewer deliveries written)",
        ms(none),
        per_event(none),
        ms(one),
        per_event(one),
        ms(ten),
        per_event(ten),
        ms(selective),
        per_event(selective),
    );
}
