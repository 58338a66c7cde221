//! Safe by default: loopback unless a token is given, the token checked on every request and
//! never printed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::{get, serve};
use crate::support::{binary, free_addr, TestDb};

const TOKEN: &str = "console-token-0123456789abcdef";

#[tokio::test]
async fn off_loopback_the_console_refuses_to_start_without_a_token() {
    let out = Command::new(binary())
        .args(["console", "--addr", "0.0.0.0:0"])
        // Never reached: the refusal comes before any database is looked for.
        .env(
            "HOOKRELAY_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .env_remove("HOOKRELAY_CONSOLE_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the console would listen on 0.0.0.0:0, which is not loopback, without a token: give --token (or HOOKRELAY_CONSOLE_TOKEN)"),
        "{err}"
    );
    let out = Command::new(binary())
        .args(["console", "--addr", "0.0.0.0:0", "--token", "short"])
        .env(
            "HOOKRELAY_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the console token is 5 characters long; use at least 16"),
        "{err}"
    );
    assert!(!err.contains("short\""), "the token is not echoed: {err}");
}

#[tokio::test]
async fn with_a_token_every_request_needs_it_and_a_wrong_one_gets_401() {
    let db = TestDb::new().await;
    let console = serve(&db.url, Some(TOKEN)).await;
    assert_eq!(get(&console, "/", &[]).await.status, 401);
    assert_eq!(get(&console, "/assets/console.css", &[]).await.status, 401);
    let wrong = get(
        &console,
        "/",
        &[("authorization", "Bearer console-token-0123456789abcdeX")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("This console needs its token"),
        "{}",
        wrong.body
    );
    assert!(wrong.headers.contains_key("content-security-policy"));
    let right = get(
        &console,
        "/",
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(right.status, 200);
    assert_eq!(get(&console, "/?token=nope", &[]).await.status, 401);
    assert_eq!(
        get(&console, "/", &[("cookie", "hookrelay_console=00ff")])
            .await
            .status,
        401
    );

    // Signing in once: a cookie holding a digest, and the token gone from the address bar.
    let signed = get(
        &console,
        &format!("/deliveries?state=dead&token={TOKEN}"),
        &[],
    )
    .await;
    assert_eq!(signed.status, 303);
    assert_eq!(signed.headers["location"], "/deliveries?state=dead");
    let cookie = signed.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        get(&console, "/deliveries?state=dead", &[("cookie", pair)])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_console_process_announces_its_address_and_never_prints_the_token() {
    let db = TestDb::new().await;
    let addr = free_addr();
    let mut child = Command::new(binary())
        .args(["console", "--addr", &addr.to_string(), "--log", "debug"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("HOOKRELAY_CONSOLE_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with(&format!("hookrelay console on http://{addr}/")),
        "{line}"
    );
    let served = super::Served::at(addr);
    assert_eq!(
        get(&served, &format!("/?token={TOKEN}"), &[]).await.status,
        303
    );
    assert_eq!(get(&served, "/?token=wrong-token", &[]).await.status, 401);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{line}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(TOKEN) && !all.contains("wrong-token"),
        "{all}"
    );
}
