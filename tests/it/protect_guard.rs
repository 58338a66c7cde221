//! The SSRF guard end to end: receivers on non-public addresses are refused by literal and by
//! name unless their network is opened, in-process and through `hookrelay run`; TLS
//! certificates are verified.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hookrelay::pipeline::guard::{parse_network, AllowList};
use serde_json::json;

use crate::support::{binary, Receiver, TestDb};

const SECRET: &str = "test-secret-0123456789";

/// Endpoints that all point at `receiver` (or at the cloud metadata address) in the ways a URL
/// can spell a loopback or link-local address.
async fn refused_endpoints(db: &TestDb, receiver: &Receiver) -> Vec<(&'static str, String)> {
    let port = receiver.addr.port();
    let endpoints = vec![
        ("literal", format!("http://127.0.0.1:{port}/hooks")),
        ("name", format!("http://localhost:{port}/hooks")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/hooks")),
        ("decimal", format!("http://2130706433:{port}/hooks")),
        ("ipv6", format!("http://[::1]:{port}/hooks")),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
    ];
    for (name, url) in &endpoints {
        db.endpoint(name, url, SECRET).await;
    }
    endpoints
}

/// One refused attempt: final, coded blocked_address, no status, and an error naming the
/// address, why it is refused and the setting that would allow it.
fn assert_refused_by_name(row: &tokio_postgres::Row) {
    let name: String = row.get(0);
    let error: String = row.get(3);
    assert_eq!(row.get::<_, i32>(1), 1, "{name}");
    assert_eq!(
        row.get::<_, String>(2),
        "blocked_address",
        "{name}: {error}"
    );
    assert_eq!(row.get::<_, Option<i32>>(4), None, "{name}");
    assert!(
        error.contains("--allow-network") && error.contains("HOOKRELAY_ALLOW_NETWORKS"),
        "{name}: {error}"
    );
    let expected = match name.as_str() {
        "literal" | "decimal" => "refused 127.0.0.1: it is a loopback address",
        "name" => "refused localhost: it resolves to",
        "mapped" => "an IPv4-mapped form of 127.0.0.1, which is a loopback address",
        "ipv6" => "refused ::1: it is a loopback address",
        "metadata" => "refused 169.254.169.254: it is a link-local address",
        other => panic!("unexpected endpoint {other}"),
    };
    assert!(error.contains(expected), "{name}: {error}");
}

#[tokio::test]
async fn non_public_receivers_are_refused_by_literal_and_by_name_and_never_contacted() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let endpoints = refused_endpoints(&db, &receiver).await;
    db.emit("order.paid", json!({"id": "1"})).await;

    let config = hookrelay::config::WorkerConfig {
        allow_networks: AllowList::default(),
        ..db.config()
    };
    let worker = db.start_worker(config);
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            endpoints.len() as i64,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(dead, endpoints.len() as i64);
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the receiver"
    );

    let rows = db
        .client
        .query(
            "SELECT ep.name, d.attempts, a.error_code, a.error, a.status
             FROM hookrelay.deliveries d
             JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
             JOIN hookrelay.attempts a ON a.delivery_id = d.id
             ORDER BY ep.name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        endpoints.len(),
        "one attempt each: refusals are final"
    );
    for row in &rows {
        assert_refused_by_name(row);
    }
}

#[tokio::test]
async fn an_opened_network_lets_the_same_receivers_through() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let port = receiver.addr.port();
    for (name, url) in [
        ("literal", format!("http://127.0.0.1:{port}/hooks")),
        ("name", format!("http://localhost:{port}/hooks")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/hooks")),
    ] {
        db.endpoint(name, &url, SECRET).await;
    }
    // Only 127.0.0.0/8 (not ::1): the IPv4-mapped form is opened with the address it carries.
    let config = hookrelay::config::WorkerConfig {
        allow_networks: AllowList::new(vec![parse_network("127.0.0.0/8").unwrap()]),
        ..db.config()
    };
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(config);
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            3,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(delivered, 3);
    assert_eq!(receiver.requests().len(), 3);
}

fn run_worker(db: &TestDb, flags: &[&str], env: Option<&str>) -> std::process::Child {
    let mut command = Command::new(binary());
    command
        .args(["run", "--database-url", &db.url, "--metrics-addr", "off"])
        .args(["--poll-interval", "100ms", "--max-attempts", "1"])
        .args(flags)
        .env("HOOKRELAY_LOG", "warn")
        .env_remove("HOOKRELAY_ALLOW_NETWORKS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(value) = env {
        command.env("HOOKRELAY_ALLOW_NETWORKS", value);
    }
    command.spawn().expect("start hookrelay run")
}

async fn stop(child: std::process::Child) -> String {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "exit {}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn hookrelay_run_refuses_loopback_unless_the_flag_or_its_variable_opens_it() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("local", &receiver.url("/hooks"), SECRET).await;
    let state = "SELECT count(*) FROM hookrelay.deliveries WHERE state = ";

    db.emit("order.paid", json!({"id": "1"})).await;
    let child = run_worker(&db, &[], None);
    let dead = db
        .wait_count(&format!("{state}'dead'"), 1, Duration::from_secs(15))
        .await;
    stop(child).await;
    assert_eq!(dead, 1, "refused without --allow-network");
    assert!(receiver.requests().is_empty());

    db.emit("order.paid", json!({"id": "2"})).await;
    let child = run_worker(&db, &["--allow-network", "127.0.0.0/8"], None);
    let delivered = db
        .wait_count(&format!("{state}'delivered'"), 1, Duration::from_secs(15))
        .await;
    stop(child).await;
    assert_eq!(delivered, 1, "delivered with --allow-network");

    db.emit("order.paid", json!({"id": "3"})).await;
    let child = run_worker(&db, &[], Some("10.0.0.0/8, 127.0.0.1/32"));
    let delivered = db
        .wait_count(&format!("{state}'delivered'"), 2, Duration::from_secs(15))
        .await;
    let logs = stop(child).await;
    assert_eq!(delivered, 2, "delivered with HOOKRELAY_ALLOW_NETWORKS");
    assert!(!logs.contains("ERROR"), "unexpected errors: {logs}");
    assert_eq!(receiver.requests().len(), 2);

    let out = Command::new(binary())
        .args([
            "run",
            "--database-url",
            &db.url,
            "--allow-network",
            "10.0.0/8",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--allow-network")
            && err.contains("is not a network")
            && err.contains("10.0.0.0/8"),
        "{err}"
    );
}

/// A TLS server on 127.0.0.1 with a self-signed certificate, in a thread: it completes
/// handshakes it can, and records whether any request got through.
fn self_signed_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = CertificateDer::from(include_bytes!("fixtures/self_signed_cert.der").to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        include_bytes!("fixtures/self_signed_key.der").to_vec(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = got_request.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut buf = [0u8; 1024];
            if let Ok(n) = std::io::Read::read(&mut tls, &mut buf) {
                if n > 0 {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    });
    (addr, got_request)
}

#[tokio::test]
async fn https_receivers_must_present_a_certificate_the_worker_can_verify() {
    let db = TestDb::new().await;
    let (addr, got_request) = self_signed_server();
    db.endpoint(
        "self-signed",
        &format!("https://localhost:{}/hooks", addr.port()),
        SECRET,
    )
    .await;
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_attempts = 1", &[])
        .await
        .unwrap();
    db.emit("order.paid", json!({"id": "1"})).await;
    let worker = db.start_worker(db.config());
    let dead = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'dead'",
            1,
            Duration::from_secs(15),
        )
        .await;
    worker.stop().await;
    assert_eq!(dead, 1);
    let row = db
        .client
        .query_one("SELECT error_code, error FROM hookrelay.attempts", &[])
        .await
        .unwrap();
    let (code, error): (String, String) = (row.get(0), row.get(1));
    assert_eq!(code, "connect", "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(
        !got_request.load(std::sync::atomic::Ordering::SeqCst),
        "no request was sent over the unverified connection"
    );
}
