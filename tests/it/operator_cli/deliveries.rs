//! `deliveries` and `delivery show` answer what happened, and name what is missing.

use serde_json::json;

use super::{json_of, stdout, two_deliveries};
use crate::support::hookrelay;
use crate::support::TestDb;

/// The table and its JSON, with filters by state, endpoint, event and age; returns the dead
/// delivery's id.
fn assert_deliveries_lists_and_filters(db: &TestDb) -> String {
    let table = stdout(&hookrelay(db, &["deliveries"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("LAST ERROR"));
    assert!(table.contains("good") && table.contains("delivered"));
    assert!(table.contains("bad") && table.contains("dead") && table.contains("HTTP 500"));

    let dead = json_of(&hookrelay(db, &["deliveries", "--state", "dead", "--json"]));
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["endpoint"], "bad");
    assert_eq!(dead[0]["last_status"], 500);
    assert!(dead[0]["event_id"].as_str().unwrap().starts_with("evt_"));
    let filtered = json_of(&hookrelay(
        db,
        &[
            "deliveries",
            "--endpoint",
            "good",
            "--event",
            "order.paid",
            "--since",
            "1h",
            "--json",
        ],
    ));
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    let none = json_of(&hookrelay(db, &["deliveries", "--event", "nope", "--json"]));
    assert_eq!(none, json!([]));
    dead[0]["id"].as_i64().unwrap().to_string()
}

/// `delivery show` as text and as JSON: state, endpoint, event, error and the response.
fn assert_delivery_show(db: &TestDb, id: &str) {
    let shown = stdout(&hookrelay(db, &["delivery", "show", id]));
    for expected in [
        "state: dead",
        "bad (http://",
        "order.paid",
        "http_status",
        "HTTP 500",
        "response to attempt 1:",
        "ok",
    ] {
        assert!(
            shown.contains(expected),
            "{expected:?} missing in:\n{shown}"
        );
    }
    let detail = json_of(&hookrelay(db, &["delivery", "show", id, "--json"]));
    let attempts = detail["attempts_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["error_code"], "http_status");
    assert_eq!(attempts[0]["response_excerpt"], "ok");
    assert!(attempts[0]["duration_ms"].as_i64().is_some());
}

/// An unknown id and an unknown state are named, with what to do.
fn assert_unknown_id_and_state_named(db: &TestDb) {
    let missing = hookrelay(db, &["delivery", "show", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        err.trim(),
        "error: no delivery with id 999999: `hookrelay deliveries` lists them"
    );
    let bad_state = hookrelay(db, &["deliveries", "--state", "lost"]);
    assert_eq!(bad_state.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_state.stderr)
        .contains("use pending, delivered, dead or cancelled"));
}

#[tokio::test]
async fn deliveries_and_delivery_show_answer_what_happened() {
    let db = TestDb::new().await;
    two_deliveries(&db).await;
    let id = assert_deliveries_lists_and_filters(&db);
    assert_delivery_show(&db, &id);
    assert_unknown_id_and_state_named(&db);
}
