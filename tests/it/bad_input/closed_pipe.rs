//! A reader that closes the pipe early (`hookrelay endpoint list | head`) ends the command
//! without a panic or a "Broken pipe" error.

use std::process::{Command, Stdio};

use crate::support::{binary, TestDb};

#[tokio::test]
async fn a_reader_that_goes_away_ends_a_command_quietly() {
    let db = TestDb::new().await;
    for i in 0..50 {
        db.endpoint(&format!("e{i}"), "https://example.com/", "secret-secret")
            .await;
    }
    let mut child = Command::new(binary())
        .args(["endpoint", "list"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
