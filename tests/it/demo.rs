//! `hookrelay demo`: the tour runs end to end and shows what it promises.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};

use crate::support::{admin_url, binary};

/// Every demo recreates the same database (`hookrelay_demo`) on the server: one at a time.
static ONE_DEMO: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn the_demo_tour_delivers_verifies_retries_and_shows_the_tables() {
    let _alone = ONE_DEMO.lock().await;
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
    every_arrival_is_verified_and_one_answered_503(&stdout);
    the_bodies_are_shaped(&stdout);
    assert!(stdout.contains("rolled back: nothing is sent"));
    let delivered = stdout.lines().filter(|l| l.contains(" delivered ")).count();
    assert_eq!(delivered, 6, "six deliveries, all delivered:\n{stdout}");
    assert!(stdout.contains("SELECT * FROM hookrelay.delivery_log"));
    // Without --console, the tour still points the newcomer to the console.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("or in a browser: hookrelay --database-url ")
                && l.ends_with("/hookrelay_demo console"))
            && stdout.contains("run the demo with --console"),
        "{stdout}"
    );
    assert!(
        stderr.trim().is_empty(),
        "routine logs stay quiet in the demo: {stderr}"
    );
}

/// Seven requests arrived, each with a verified signature; the first try of one got a 503.
fn every_arrival_is_verified_and_one_answered_503(stdout: &str) {
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
}

fn the_bodies_are_shaped(stdout: &str) {
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
}

/// The demo's stdout, line by line, as it is printed.
fn lines_of(child: &mut std::process::Child) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one contains `needle`; returns it and everything read.
async fn until(
    lines: &mut mpsc::UnboundedReceiver<String>,
    needle: &str,
    seen: &mut String,
) -> String {
    let wait = async {
        while let Some(line) = lines.recv().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(120), wait).await {
        Ok(Some(line)) => line,
        _ => panic!("the demo never printed {needle:?}:\n{seen}"),
    }
}

#[tokio::test]
async fn the_demo_with_console_serves_it_beside_the_tour() {
    let _alone = ONE_DEMO.lock().await;
    let mut child = Command::new(binary())
        .args([
            "demo",
            "--console",
            "127.0.0.1:0",
            "--database-url",
            &admin_url(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = lines_of(&mut child);
    let mut seen = String::new();
    let line = until(&mut lines, "operator console: http://", &mut seen).await;
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {line:?}"));
    assert!(addr.ip().is_loopback(), "{line}");
    let console = crate::console::Served::at(addr);
    let overview = crate::console::get(&console, "/", &[]).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    for text in ["<title>Overview", "Due now", "Attempts per minute"] {
        assert!(overview.body.contains(text), "{text:?}: {}", overview.body);
    }
    // Once the tour is done, the console lists its deliveries.
    until(
        &mut lines,
        "The worker and receiver keep running",
        &mut seen,
    )
    .await;
    let found = crate::console::get(&console, "/deliveries?state=delivered", &[]).await;
    assert_eq!(found.status, 200);
    assert_eq!(
        found.body.matches("<a href=\"/deliveries/").count(),
        6,
        "the demo's six deliveries: {}",
        found.body
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the demo stops cleanly on SIGTERM:\n{seen}"
    );
}
