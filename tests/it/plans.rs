//! Plan stability: the worker's hot statements keep the plan they need whatever the tables'
//! statistics said when the plan was made.
//!
//! Worker sessions keep one generic plan per statement (see `hookrelay::db`), made the first
//! time it runs. The worst case is a plan made right after an ANALYZE of empty tables (a fresh
//! install, or autovacuum while the backlog builds up before any delivery exists) and then run
//! against tables that have grown. Each test makes the plans that way, in a worker session,
//! fills the tables without analyzing again (the plans are kept), and reads the plan each
//! statement actually ran, and those of the statements run inside the functions it called
//! (admit, retention's deletes; sent by auto_explain as notices): every read of `events`,
//! `deliveries` and `attempts` must go through the index meant for it, with an index
//! condition. Plan shape only, no timing.
//!
//! The history tables are partitioned by day (migration 0030): a plan reads partitions, each
//! through its own copy of the parent's index; scans are named by the parent table and index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::support::TestDb;

const RECORD_RESULTS: &str = include_str!("../../sql/queries/record_results.sql");
pub(crate) const CLAIM_NEW: &str = include_str!("../../sql/queries/claim_new.sql");
pub(crate) const CLAIM_DUE: &str = include_str!("../../sql/queries/claim_due.sql");
const PRUNE_EVENTS: &str = include_str!("../../sql/queries/prune_events.sql");
const JOB_COLUMNS: &str = include_str!("../../sql/queries/job_columns.sql");

/// Rows written after the plans were made: enough history that a wrong index shows.
const FILL: &str = "
    INSERT INTO hookrelay.events (event, model, object, created_at)
    SELECT 'order.paid', 'store.Order', jsonb_build_object('id', i), now() - interval '10 days'
    FROM generate_series(1, 6000) i;
    UPDATE hookrelay.events SET fanned_out_at = now()
    WHERE id IN (SELECT id FROM hookrelay.events ORDER BY id LIMIT 5500);
    INSERT INTO hookrelay.deliveries (event_id, endpoint_id, state, attempts, next_attempt_at)
    SELECT id, (SELECT id FROM hookrelay.endpoints), 'delivered', 1, NULL
    FROM (SELECT id FROM hookrelay.events ORDER BY id LIMIT 5000) e;
    INSERT INTO hookrelay.deliveries
        (event_id, endpoint_id, state, attempts, next_attempt_at, locked_until, locked_by)
    SELECT id, (SELECT id FROM hookrelay.endpoints), 'pending', 1, now() + interval '1 minute',
           now() + interval '1 minute', 'w'
    FROM (SELECT id FROM hookrelay.events ORDER BY id OFFSET 5000 LIMIT 300) e;
    INSERT INTO hookrelay.deliveries (event_id, endpoint_id, state, attempts, next_attempt_at)
    SELECT id, (SELECT id FROM hookrelay.endpoints), 'pending', 0, 'infinity'
    FROM (SELECT id FROM hookrelay.events ORDER BY id OFFSET 5300 LIMIT 200) e;
    INSERT INTO hookrelay.endpoint_throttle (endpoint_id, waiting)
    SELECT id, true FROM hookrelay.endpoints
    ON CONFLICT (endpoint_id) DO UPDATE SET waiting = true;";

const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";
const NIL: &str = "'00000000-0000-0000-0000-000000000000'";
/// The work floor of a database whose pending work is all of today (UTC): today's first id.
pub(crate) const TODAY: &str =
    "hookrelay.id_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";

/// The arguments of record_results for the deliveries `ids` of the events `events` (array
/// literals of `n` ids; `first` and `last` the least and greatest event), each a first attempt
/// that was delivered.
fn record_args(ids: &str, events: &str, (first, last): (&str, &str), n: usize) -> String {
    let n = format!("array[{n}]");
    format!(
        "('{ids}'::bigint[], array_fill(1, {n}), array_fill('delivered'::text, {n}), \
          array_fill(200, {n}), array_fill(NULL::text, {n}), array_fill(NULL::text, {n}), \
          array_fill(NULL::text, {n}), array_fill(0::bigint, {n}), array_fill(1, {n}), \
          array_fill(now(), {n}), 'w', '{events}'::uuid[], '{first}', '{last}')"
    )
}

/// A claim's text with the job columns spliced in, as `src/pipeline/claim.rs` does.
pub(crate) fn with_job_columns(claim: &str) -> String {
    claim.replacen("-- @job_columns\n", JOB_COLUMNS, 1)
}

/// One statement: its text, and its arguments before and after the tables were filled.
struct Hot {
    name: &'static str,
    sql: String,
    first: String,
    then: String,
}

fn statements() -> Vec<Hot> {
    vec![
        Hot {
            name: "record_results",
            sql: RECORD_RESULTS.into(),
            first: record_args("{1}", &format!("{{{NIL_ID}}}"), (NIL_ID, NIL_ID), 1),
            // Filled in once the leased deliveries exist (see `plans_after`).
            then: String::new(),
        },
        Hot {
            name: "claim_new",
            sql: with_job_columns(CLAIM_NEW),
            first: format!("(64, 60000, 'w', {NIL}, '{{}}', '{{}}', NULL)"),
            then: format!("(64, 60000, 'w', {NIL}, '{{1}}', '{{1}}', NULL)"),
        },
        Hot {
            name: "claim_due",
            sql: with_job_columns(CLAIM_DUE),
            first: format!("(64, 60000, 'w', '{{}}', '{{}}', {TODAY}, NULL)"),
            then: format!("(64, 60000, 'w', '{{1}}', '{{1}}', {TODAY}, NULL)"),
        },
        Hot {
            name: "prune_events",
            sql: PRUNE_EVENTS.into(),
            first: format!("({NIL}::uuid, 1000, 0, 0)"),
            then: format!("({NIL}::uuid, 1000, 0, 0)"),
        },
    ]
}

/// Each scan of a large table in `plan`: (table, index or "none", has the index condition it needs), by
/// the names of the partitioned table and index (`parents` maps each partition's to them).
pub(crate) fn scans(
    plan: &serde_json::Value,
    parents: &HashMap<String, String>,
    out: &mut Vec<Scan>,
) {
    let is_scan = plan["Node Type"]
        .as_str()
        .is_some_and(|t| t.ends_with("Scan"));
    let parent = |name: &str| parents.get(name).map_or(name, String::as_str).to_string();
    if let (Some(relation), true) = (plan["Relation Name"].as_str(), is_scan) {
        let table = parent(relation);
        if table == "events" || table == "deliveries" || table == "attempts" {
            let index = parent(plan["Index Name"].as_str().unwrap_or("none"));
            let keyed = plan["Index Cond"]
                .as_str()
                .is_some_and(|c| keyed_by(&index).is_none_or(|key| c.contains(key)));
            out.push((table, index, keyed));
        }
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans(child, parents, out);
    }
}

/// The condition an index must be read with, when a condition alone is not enough: the
/// (event_id, endpoint_id) key, which record_results may read, by a list of events, and an
/// ordered key's release by its one event (a range of them would read every delivery between
/// the batch's first and last event).
fn keyed_by(index: &str) -> Option<&'static str> {
    (index == "deliveries_event_id_endpoint_id_key").then_some("event_id = ")
}

/// Each partition of the history tables, and each index of a partition, with the name of the
/// partitioned table or index it belongs to.
pub(crate) async fn partition_parents(client: &tokio_postgres::Client) -> HashMap<String, String> {
    let rows = client
        .query(
            "SELECT c.relname::text, p.relname::text
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE c.relnamespace = 'hookrelay'::regnamespace",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The indexes each statement may read its large tables through.
fn allowed(statement: &str, table: &str) -> &'static [&'static str] {
    match (statement, table) {
        ("record_results", "deliveries") => {
            &["deliveries_pkey", "deliveries_event_id_endpoint_id_key"]
        }
        ("claim_new", "events") => &["events_to_fan_out", "events_pkey"],
        ("claim_due", "deliveries") => &["deliveries_due", "deliveries_waiting", "deliveries_pkey"],
        ("claim_due", "events") => &["events_pkey"],
        ("prune_events", "events") => &["events_pkey"],
        ("prune_events", "deliveries") => &["deliveries_event_id_endpoint_id_key"],
        // admit()'s count of leases and look for parked deliveries; retention's deletes.
        (INSIDE, "deliveries") => &[
            "deliveries_leased",
            "deliveries_waiting",
            "deliveries_pkey",
            "deliveries_event_id_endpoint_id_key",
        ],
        (INSIDE, "attempts") => &["attempts_pkey", "attempts_by_delivery"],
        (INSIDE, "events") => &["events_pkey"],
        _ => &[],
    }
}

/// Indexes a statement may read from their start, without a condition: the due claim's
/// lookup of the first event not fanned out yet (for ordered endpoints, 0022) takes the first
/// entry of the partial index that holds only unfanned events.
fn from_the_start(statement: &str, table: &str) -> &'static [&'static str] {
    match (statement, table) {
        ("claim_due", "events") => &["events_to_fan_out"],
        _ => &[],
    }
}

/// Sends the plan of every statement run inside a function or trigger to the session, as a
/// notice (auto_explain; the server's own log is not the test's to read).
pub(crate) const NESTED_PLANS: &str = "LOAD 'auto_explain';
    SET auto_explain.log_min_duration = 0;
    SET auto_explain.log_nested_statements = on;
    SET auto_explain.log_format = json;
    SET auto_explain.log_level = notice;";

/// The plans [`NESTED_PLANS`] sent since the last call, but for the statements the session
/// itself ran: an EXPLAIN, a prepared statement (shown by its PREPARE), a call by constants
/// (which reads no table).
pub(crate) fn nested_plans(notices: &Mutex<Vec<String>>) -> Vec<serde_json::Value> {
    notices
        .lock()
        .unwrap()
        .drain(..)
        .filter_map(|n| {
            n.split_once("plan:")
                .map(|(_, json)| json.trim().to_string())
        })
        .map(|json| serde_json::from_str::<serde_json::Value>(&json).unwrap())
        .filter(|plan| {
            let text = plan["Query Text"].as_str().unwrap_or_default().trim_start();
            !text.starts_with("EXPLAIN") && !text.starts_with("PREPARE")
        })
        .collect()
}

/// A session with the worker's settings whose notices are kept.
pub(crate) async fn worker_session_with_notices(url: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let mut config = hookrelay::db::config(url).unwrap();
    hookrelay::db::worker_session(&mut config);
    let (client, mut connection) = config.connect(NoTls).await.unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let AsyncMessage::Notice(notice) = message {
                seen.lock().unwrap().push(notice.message().to_string());
            }
        }
    });
    (client, notices)
}

/// Prepares every hot statement in a worker session and runs it once, while `prepare` left the
/// tables as they are; fills them; returns each statement's scans as it then runs.
async fn plans_after(prepare: &str) -> Vec<Found> {
    let db = TestDb::new().await;
    db.endpoint("sink", "http://127.0.0.1:9/", "plans-test-secret-0123")
        .await;
    db.client.batch_execute(prepare).await.unwrap();
    let (session, notices) = worker_session_with_notices(&db.url).await;
    let hot = statements();
    for h in &hot {
        session
            .batch_execute(&format!("PREPARE {} AS {}", h.name, h.sql))
            .await
            .unwrap_or_else(|e| panic!("prepare {}: {e}", h.name));
        session
            .batch_execute(&format!("BEGIN; EXECUTE {}{}; ROLLBACK", h.name, h.first))
            .await
            .unwrap_or_else(|e| panic!("first run of {}: {e}", h.name));
    }
    db.client.batch_execute(FILL).await.unwrap();
    let parents = partition_parents(&db.client).await;
    session.batch_execute(NESTED_PLANS).await.unwrap();
    let mut found = Vec::new();
    for h in &hot {
        let then = if h.then.is_empty() {
            let leased = session
                .query_one(
                    "SELECT array_agg(id)::text, array_agg(event_id)::text,
                            (array_agg(event_id::text ORDER BY event_id))[1],
                            (array_agg(event_id::text ORDER BY event_id DESC))[1]
                     FROM (SELECT id, event_id FROM hookrelay.deliveries
                           WHERE locked_by = 'w' ORDER BY id LIMIT 128) k",
                    &[],
                )
                .await
                .unwrap();
            let text = |i| leased.get::<_, String>(i);
            record_args(&text(0), &text(1), (&text(2), &text(3)), 128)
        } else {
            h.then.clone()
        };
        session.batch_execute("BEGIN").await.unwrap();
        notices.lock().unwrap().clear();
        let row = session
            .query_one(
                &format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {}{then}", h.name),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("explain {}: {e}", h.name));
        session.batch_execute("ROLLBACK").await.unwrap();
        let plan: serde_json::Value = row.get(0);
        let mut out = Vec::new();
        scans(&plan[0]["Plan"], &parents, &mut out);
        found.push((h.name, String::new(), out));
        for nested in nested_plans(&notices) {
            let mut out = Vec::new();
            scans(&nested["Plan"], &parents, &mut out);
            let text = nested["Query Text"].as_str().unwrap_or_default();
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            found.push((INSIDE, text.chars().take(160).collect(), out));
        }
    }
    found
}

/// Each scan of a large table: (table, index or "none", whether it has the index condition it
/// needs: any, or the one [`keyed_by`] names for its index).
type Scan = (String, String, bool);

/// The scans of one statement: its name ([`INSIDE`] for a statement run inside a function or
/// trigger that a hot statement called), its text (for those), its scans.
type Found = (&'static str, String, Vec<Scan>);

/// The name under which the statements run inside functions and triggers are checked.
const INSIDE: &str = "inside";

/// Every scan of a large table goes through an allowed index with a condition; all the
/// statements that do not are named at once. A statement inside a function may have no scan
/// (it reads small tables only).
fn check(found: &[Found]) {
    let mut wrong = Vec::new();
    for (statement, text, scans) in found {
        assert!(
            !scans.is_empty() || *statement == INSIDE,
            "{statement}: no scan found"
        );
        for (table, index, with_condition) in scans {
            let allowed = allowed(statement, table);
            let fits = (allowed.contains(&index.as_str()) && *with_condition)
                || from_the_start(statement, table).contains(&index.as_str());
            if !allowed.is_empty() && !fits {
                wrong.push(format!(
                    "{statement} {text}\n  reads {table} through {index} (index condition: \
                     {with_condition}), expected one of {allowed:?} with a condition"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        found.iter().any(|(statement, _, _)| *statement == INSIDE),
        "no statement inside a function was seen"
    );
}

#[tokio::test]
async fn hot_statements_keep_their_indexes_when_planned_on_analyzed_empty_tables() {
    check(&plans_after("ANALYZE").await);
}

#[tokio::test]
async fn hot_statements_keep_their_indexes_when_planned_on_never_analyzed_tables() {
    check(&plans_after("SELECT 1").await);
}

#[tokio::test]
async fn hot_statements_keep_their_indexes_when_planned_just_after_a_truncate() {
    check(
        &plans_after(
            "INSERT INTO hookrelay.events (event) SELECT 'x' FROM generate_series(1, 2000);
             ANALYZE;
             TRUNCATE hookrelay.events CASCADE",
        )
        .await,
    );
}
