//! `hookrelay demo`: the tour runs end to end and shows what it promises.

use std::process::Command;
use std::time::Duration;

use crate::support::{admin_url, binary};

#[tokio::test]
async fn the_demo_tour_delivers_verifies_retries_and_shows_the_tables() {
    let url = admin_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["demo", "--once", "--database-url", &url])
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the demo finishes within two minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for step in 1..=6 {
        assert!(
            stdout.contains(&format!("[{step}/6]")),
            "step {step} missing:\n{stdout}"
        );
    }
    let arrivals: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("-> answered"))
        .collect();
    assert_eq!(arrivals.len(), 7, "{stdout}");
    assert!(
        arrivals.iter().all(|l| l.contains("signature verified")),
        "{stdout}"
    );
    assert!(!stdout.contains("SIGNATURE MISMATCH"));
    assert_eq!(
        arrivals
            .iter()
            .filter(|l| l.contains("answered 503"))
            .count(),
        1
    );
    // The shaped bodies: crm redacts the email, analytics keeps only three fields.
    assert!(
        stdout.contains(r#""customer_email": "***@***.com""#),
        "{stdout}"
    );
    assert!(
        !stdout.contains("ada@example.com\""),
        "the e-mail is redacted in every body"
    );
    assert!(
        !stdout.contains("\"internal_note\""),
        "excluded columns never appear"
    );
    assert!(stdout.contains("rolled back: nothing is sent"));
    let delivered = stdout.lines().filter(|l| l.contains(" delivered ")).count();
    assert_eq!(delivered, 6, "six deliveries, all delivered:\n{stdout}");
    assert!(stdout.contains("SELECT * FROM hookrelay.delivery_log"));
    assert!(
        stderr.trim().is_empty(),
        "routine logs stay quiet in the demo: {stderr}"
    );
}
