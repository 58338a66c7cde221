//! Worker processes: several share one database safely, and one killed mid-flight loses nothing.

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, Receiver, Reply, TestDb};

/// Starts a worker process that retries quickly, with extra flags.
fn spawn_worker(db: &TestDb, name: &str, extra: &[&str]) -> Child {
    let flags = [&["--retry-schedule", "200ms,200ms"], extra].concat();
    support::spawn_worker(db, name, &flags)
}

/// SIGTERM, and a clean exit within 10 s.
fn terminate(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "a clean stop exits 0, got {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("worker did not stop within 10 s of SIGTERM");
}

#[tokio::test]
async fn two_worker_processes_deliver_every_event_exactly_once() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    db.client
        .execute(
            "INSERT INTO hookrelay.events (event, object)
             SELECT 'order.paid', jsonb_build_object('id', i) FROM generate_series(1, 2000) i",
            &[],
        )
        .await
        .unwrap();

    let a = spawn_worker(&db, "worker-a", &["--batch-size", "50"]);
    let b = spawn_worker(&db, "worker-b", &["--batch-size", "50"]);
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            2000,
            Duration::from_secs(60),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(a);
    terminate(b);
    assert_eq!(delivered, 2000);

    let per_event = requests_per_event(&receiver);
    assert_eq!(per_event.len(), 2000);
    assert!(per_event.values().all(|&n| n == 1), "no event sent twice");
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.attempts").await,
        2000
    );
    let both = db
        .count("SELECT count(DISTINCT worker) FROM hookrelay.attempts")
        .await;
    assert_eq!(both, 2, "both workers took part");
}

/// How many requests the receiver got per event id.
fn requests_per_event(receiver: &Receiver) -> HashMap<String, usize> {
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        *per_event
            .entry(request.header("x-webhook-event-id").to_string())
            .or_default() += 1;
    }
    per_event
}

/// 20 events for one endpoint with room for all at once, and a receiver that holds requests
/// open far beyond a kill while the returned flag is set.
async fn twenty_held_requests(db: &TestDb) -> (Receiver, Arc<AtomicBool>) {
    let hang = Arc::new(AtomicBool::new(true));
    let holding = hang.clone();
    let receiver = Receiver::with(move |_, _| {
        if holding.load(Ordering::SeqCst) {
            Reply {
                status: 200,
                delay: Duration::from_secs(30),
            }
        } else {
            Reply::status(200)
        }
    })
    .await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    // Room for all 20 at once (more than the default max_in_flight).
    db.client
        .execute("UPDATE hookrelay.endpoints SET max_in_flight = 20", &[])
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO hookrelay.events (event, object)
             SELECT 'order.paid', jsonb_build_object('id', i) FROM generate_series(1, 20) i",
            &[],
        )
        .await
        .unwrap();

    (receiver, hang)
}

/// Each delivery has a lease_expired record by the victim, then a success by the rescuer.
async fn assert_expired_then_delivered(db: &TestDb) {
    let rows = db
        .client
        .query(
            "SELECT a.attempt, a.error_code, a.status, a.worker FROM hookrelay.attempts a ORDER BY a.delivery_id, a.attempt",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        40,
        "a lease_expired record and a success per delivery"
    );
    for pair in rows.chunks(2) {
        assert_eq!(pair[0].get::<_, i32>(0), 1);
        assert_eq!(
            pair[0].get::<_, Option<String>>(1).as_deref(),
            Some("lease_expired")
        );
        assert_eq!(
            pair[0].get::<_, Option<String>>(3).as_deref(),
            Some("victim")
        );
        assert_eq!(pair[1].get::<_, i32>(0), 2);
        assert_eq!(pair[1].get::<_, Option<i32>>(2), Some(200));
        assert_eq!(
            pair[1].get::<_, Option<String>>(3).as_deref(),
            Some("rescuer")
        );
    }
}

#[tokio::test]
async fn a_worker_killed_after_claiming_loses_nothing() {
    let db = TestDb::new().await;
    let (receiver, hang) = twenty_held_requests(&db).await;
    let lease = ["--lease", "4s", "--request-timeout", "2s"];
    let mut victim = spawn_worker(&db, "victim", &lease);
    let held = receiver.wait_for(20, Duration::from_secs(10)).await;
    assert_eq!(held.len(), 20, "the victim claimed and sent every event");
    victim.kill().expect("SIGKILL");
    victim.wait().unwrap();
    hang.store(false, Ordering::SeqCst);

    let rescuer = spawn_worker(&db, "rescuer", &lease);
    let delivered = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            20,
            Duration::from_secs(20),
        )
        .await;
    terminate(rescuer);
    assert_eq!(delivered, 20);

    assert_expired_then_delivered(&db).await;
    // Each event reached the receiver twice: once held open at the kill, once delivered.
    let per_event = requests_per_event(&receiver);
    assert_eq!(per_event.len(), 20);
    assert!(per_event.values().all(|&n| n == 2));
}

#[tokio::test]
async fn the_410_warning_names_the_disabled_endpoint() {
    let db = TestDb::new().await;
    let gone = Receiver::with(|_, _| Reply::status(410)).await;
    db.endpoint("crm-old", &gone.url("/hooks"), "secret-secret-secret")
        .await;
    db.emit("order.paid", serde_json::json!({"id": "1"})).await;

    let log_path = std::env::temp_dir().join(format!(
        "hookrelay-410-log-{}-{}",
        std::process::id(),
        db.url.rsplit('/').next().unwrap()
    ));
    let log = std::fs::File::create(&log_path).unwrap();
    let worker = support::worker_command(&db, "gone-test", &[])
        .env_remove("HOOKRELAY_CONFIG")
        .stderr(log)
        .spawn()
        .expect("start hookrelay run");
    let disabled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.endpoints WHERE NOT active",
            1,
            Duration::from_secs(15),
        )
        .await;
    terminate(worker);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(disabled, 1, "{log}");
    let warning = log
        .lines()
        .find(|l| l.contains("410 Gone"))
        .unwrap_or_else(|| panic!("no 410 warning in the log:\n{log}"));
    assert!(
        warning.contains(r#"endpoints=["crm-old"]"#),
        "the warning names the endpoint: {warning}"
    );
}
