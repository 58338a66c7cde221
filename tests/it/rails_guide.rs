//! docs/rails.md, run: an ActiveRecord app built from the guide's blocks (Debian's
//! ruby-activerecord and ruby-pg) on fresh development and test databases: migrations with the
//! printed schema, the relaying concern's `moved` event, set_actor in an around_action, its
//! minitest suite with suppressed fixtures; then a hookrelay worker delivers what it wrote and
//! the guide's receiver code verifies every signature.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::guides::{environment, installed, project_dir, run, run_guide};
use crate::support::{Receiver, Request, TestDb};

const BOARD_SECRET: &str = "board-secret-0123456";
const CARDS_SECRET: &str = "cards-secret-7654321";

const VERIFY_DRIVER: &str = r#"
require "json"
require "base64"
require_relative "lib/verify_webhook"
cases = JSON.parse(File.read(ARGV[0]))
puts JSON.generate(cases.map { |c| verify_webhook(c["secret"], Base64.decode64(c["body"]), c["signature"]) })
"#;

/// The bodies each path got, and checks them: one event per real change (none for touch or
/// the rolled-back card).
fn bodies_by_path(got: &[Request]) -> BTreeMap<String, Vec<Value>> {
    let mut by_path: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in got {
        by_path.entry(r.path.clone()).or_default().push(r.json());
    }
    let events: Vec<(&str, &str)> = by_path
        .iter()
        .flat_map(|(p, bodies)| {
            bodies
                .iter()
                .map(move |b| (p.as_str(), b["event"].as_str().unwrap()))
        })
        .collect();
    let mut sorted = events.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("/board", "moved"),
            ("/cards", "created"),
            ("/cards", "updated")
        ],
        "no event for touch or the rolled-back card: {by_path:#?}"
    );
    by_path
}

/// The seed's payload, as the relaying concern built it, from the acting user's request; the
/// card's update carries the change and the ignored-but-sent lock_version.
fn assert_rails_bodies(by_path: &BTreeMap<String, Vec<Value>>) {
    let moved = &by_path["/board"][0];
    assert_eq!(moved["model"]["name"], "Card");
    assert_eq!(moved["object"]["event"], "moved");
    assert_eq!(moved["object"]["eventable_type"], "Card");
    assert_eq!(moved["object"]["creator_id"], "user-456");
    assert_eq!(
        moved["object"]["particulars"],
        json!({"old_column_id": "col-1", "new_column_id": "col-2"})
    );
    assert_eq!(moved["account_id"], "acct-1");
    assert_eq!(moved["user"], json!({"id": "456", "username": "alice"}));
    let updated = by_path["/cards"]
        .iter()
        .find(|b| b["event"] == "updated")
        .unwrap();
    assert_eq!(
        updated["changes"]["column_id"],
        json!({"old": "col-1", "new": "col-2"})
    );
    assert_eq!(updated["user"], moved["user"]);
    assert!(
        updated["object"]["lock_version"].is_number(),
        "ignored, still sent"
    );
}

/// Each board delivery, then the same with its body tampered: what the guide's
/// verify_webhook must accept and refuse, alternately.
fn verify_cases(got: &[Request]) -> Vec<Value> {
    let mut cases = Vec::new();
    for r in got.iter().filter(|r| r.path == "/board") {
        let signature = r.header("x-webhook-signature");
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &r.body);
        cases.push(json!({"secret": BOARD_SECRET, "body": body, "signature": signature}));
        let mut tampered = r.body.to_vec();
        tampered[1] ^= 1;
        let tampered = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tampered);
        cases.push(json!({"secret": BOARD_SECRET, "body": tampered, "signature": signature}));
    }
    cases
}

#[tokio::test]
async fn the_rails_guide_runs_and_its_events_arrive_signed() {
    installed("/usr/bin/ruby", "Ruby, with ruby-activerecord and ruby-pg");
    let db = TestDb::empty().await;
    let test_db = TestDb::empty().await;
    let receiver = Receiver::ok().await;
    let dir = project_dir("rails");
    let mut env = environment(&db, &[]);
    env.extend([
        ("TEST_DATABASE_URL".to_string(), test_db.url.clone()),
        ("BOARD_WEBHOOK_URL".to_string(), receiver.url("/board")),
        ("BOARD_WEBHOOK_SECRET".to_string(), BOARD_SECRET.to_string()),
        ("CARDS_WEBHOOK_URL".to_string(), receiver.url("/cards")),
        ("CARDS_WEBHOOK_SECRET".to_string(), CARDS_SECRET.to_string()),
    ]);
    let said = run_guide("rails.md", &dir, &env);
    assert!(said.contains("schema hookrelay is up to date"), "{said}");
    assert!(
        said.contains("3 runs, ") && said.contains("0 failures, 0 errors"),
        "{said}"
    );

    let worker = db.start_worker(db.config());
    receiver.wait_for(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    let got = receiver.requests();
    let by_path = bodies_by_path(&got);
    assert_rails_bodies(&by_path);

    // The guide's verify_webhook accepts the board's body-hex signatures, not a tampered body.
    let cases = verify_cases(&got);
    std::fs::write(dir.join("cases.json"), serde_json::to_vec(&cases).unwrap()).unwrap();
    let out = run(
        &dir,
        &env,
        "ruby",
        &["-e", VERIFY_DRIVER, "cases.json"],
        "verify_webhook",
    );
    assert_eq!(out.trim(), "[true,false]");
    let _ = std::fs::remove_dir_all(&dir);
}
