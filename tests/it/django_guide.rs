//! docs/django.md, run: one Django project built from the guide's blocks on a fresh database,
//! its migrations (with the printed schema), test suite, signal, middleware and fixtures; then
//! a hookrelay worker delivers what it wrote, and the guide's receiver code verifies every
//! signature.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::guides::{environment, installed, project_dir, run, run_guide};
use crate::support::{Receiver, Request, TestDb};

/// The virtualenv `.ci/run` creates with Django and psycopg (HOOKRELAY_DJANGO_VENV to move it).
fn venv() -> std::path::PathBuf {
    let dir = std::env::var("HOOKRELAY_DJANGO_VENV").unwrap_or("/opt/hookrelay-venv".into());
    installed(
        &format!("{dir}/bin/python"),
        "the virtualenv with Django and psycopg",
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

const CRM_SECRET: &str = "crm-signing-secret-0123";
const FULFILMENT_SECRET: &str = "fulfilment-secret-4567";

/// Runs the guide's verify_webhook on each request: true or false for each.
fn verified(dir: &std::path::Path, env: &[(String, String)], cases: &[Value]) -> Vec<bool> {
    let cases_file = dir.join("cases.json");
    std::fs::write(&cases_file, serde_json::to_vec(cases).unwrap()).unwrap();
    let driver = "import base64, json, sys\n\
                  from receiver.verify import verify_webhook\n\
                  cases = json.load(open(sys.argv[1]))\n\
                  print(json.dumps([verify_webhook(c['secret'], c['headers'], base64.b64decode(c['body'])) for c in cases]))\n";
    let out = run(
        dir,
        env,
        "python",
        &["-c", driver, cases_file.to_str().unwrap()],
        "the guide's verify_webhook",
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// The guide's environment variables for its two webhooks, pointed at `receiver`.
fn webhook_env(receiver: &Receiver) -> Vec<(String, String)> {
    vec![
        ("CRM_WEBHOOK_URL".to_string(), receiver.url("/crm")),
        ("CRM_WEBHOOK_SECRET".to_string(), CRM_SECRET.to_string()),
        (
            "FULFILMENT_WEBHOOK_URL".to_string(),
            receiver.url("/fulfilment"),
        ),
        (
            "FULFILMENT_WEBHOOK_SECRET".to_string(),
            FULFILMENT_SECRET.to_string(),
        ),
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ]
}

/// The bodies each path got, and checks them: one event per real change (none for the no-op
/// save, the rolled-back ORD-999 or the backfill).
fn bodies_by_path(got: &[Request]) -> BTreeMap<String, Vec<Value>> {
    let mut by_path: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in got {
        by_path.entry(r.path.clone()).or_default().push(r.json());
    }
    let summary: Vec<(String, String, String)> = by_path
        .iter()
        .flat_map(|(path, bodies)| {
            bodies.iter().map(move |b| {
                (
                    path.clone(),
                    b["event"].as_str().unwrap().to_string(),
                    b["object"]["reference"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    let mut summary_sorted = summary.clone();
    summary_sorted.sort();
    assert_eq!(
        summary_sorted,
        [
            ("/crm".into(), "created".into(), "ORD-123".into()),
            ("/crm".into(), "created".into(), "ord-124".into()),
            ("/crm".into(), "updated".into(), "ORD-123".into()),
            ("/fulfilment".into(), "order.paid".into(), "ORD-123".into()),
        ],
        "no event for the no-op save, the rolled-back ORD-999 or the backfill: {by_path:#?}"
    );
    by_path
}

/// order.paid carries the model, the values and the request's user; the CRM's update
/// carries the change, the same user and the ignored-but-sent updated_at.
fn assert_django_bodies(by_path: &BTreeMap<String, Vec<Value>>) {
    let paid = &by_path["/fulfilment"][0];
    assert_eq!(paid["model"], json!({"app": "store", "name": "Order"}));
    assert_eq!(paid["object"]["total"], "150.00");
    assert_eq!(paid["object"]["status"], "PAID");
    assert_eq!(paid["user"]["username"], "admin");
    let updated = by_path["/crm"]
        .iter()
        .find(|b| b["event"] == "updated")
        .unwrap();
    assert_eq!(
        updated["changes"]["status"],
        json!({"old": "PENDING", "new": "PAID"})
    );
    assert_eq!(updated["user"], paid["user"], "the actor of the request");
    assert!(
        updated["object"]["updated_at"].is_string(),
        "ignored, still sent"
    );
}

/// Each delivery with its endpoint's secret, then the same with its body tampered: what the
/// guide's verify_webhook must accept and refuse, alternately.
fn verify_cases(got: &[Request]) -> Vec<Value> {
    let mut cases = Vec::new();
    for r in got {
        let secret = if r.path == "/crm" {
            CRM_SECRET
        } else {
            FULFILMENT_SECRET
        };
        let headers: BTreeMap<String, String> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &r.body);
        cases.push(json!({"secret": secret, "headers": headers, "body": body}));
        let mut tampered = r.body.to_vec();
        tampered[1] ^= 1;
        let tampered = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tampered);
        cases.push(json!({"secret": secret, "headers": headers, "body": tampered}));
    }
    cases
}

#[tokio::test]
async fn the_django_guide_runs_and_its_events_arrive_signed() {
    let venv_bin = venv();
    let db = TestDb::empty().await;
    let receiver = Receiver::ok().await;
    let dir = project_dir("django");
    let mut env = environment(&db, &[&venv_bin]);
    env.extend(webhook_env(&receiver));
    let said = run_guide("django.md", &dir, &env);
    assert!(said.contains("schema hookrelay is up to date"), "{said}");
    assert!(said.contains("2 endpoints synced"), "{said}");

    let worker = db.start_worker(db.config());
    receiver.wait_for(4, Duration::from_secs(20)).await;
    // Anything late (an event that should not exist) would show up meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    let got = receiver.requests();
    let by_path = bodies_by_path(&got);
    assert_django_bodies(&by_path);

    // The receiving side, with the guide's own code: every delivery verifies with its
    // endpoint's secret, and a tampered body does not.
    let cases = verify_cases(&got);
    let results = verified(&dir, &env, &cases);
    let expected: Vec<bool> = (0..cases.len()).map(|i| i % 2 == 0).collect();
    assert_eq!(results, expected);
    let _ = std::fs::remove_dir_all(&dir);
}
