//! Inputs issue 13 found slipping through, and what an upgrade must not break: events named
//! before 0015 are still delivered, endpoint names that differ only in case stop the migration
//! with a message naming them, `migrate` says each thing once, and opening every address needs
//! its own flag.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{binary, Receiver, TestDb};

/// `hookrelay ARGS` with the default log level, as an operator runs it.
fn plain(db: &TestDb, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env_remove("HOOKRELAY_LOG")
        .env_remove("RUST_LOG")
        .env_remove("HOOKRELAY_CONFIG")
        .env_remove("HOOKRELAY_ALLOW_NETWORKS")
        .env_remove("HOOKRELAY_ALLOW_ANY_NETWORK")
        .output()
        .expect("run hookrelay")
}

#[tokio::test]
async fn an_event_named_before_the_ascii_rule_is_still_delivered() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    // An event written by an older hookrelay, whose rule let non-ASCII names through: the
    // constraint is set aside for the insert, as it was then, and put back as it is now.
    let definition: String = db
        .client
        .query_one(
            // The partitioned table's: each partition has a copy of it (0030).
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conname = 'event_must_be_valid' AND conrelid = 'hookrelay.events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.client
        .batch_execute(&format!(
            "ALTER TABLE hookrelay.events DROP CONSTRAINT event_must_be_valid;
             INSERT INTO hookrelay.events (event, object) VALUES ('commande.payée', '{{\"id\": 1}}');
             ALTER TABLE hookrelay.events ADD CONSTRAINT event_must_be_valid {definition};"
        ))
        .await
        .unwrap();
    let refused = db
        .client
        .batch_execute("SELECT hookrelay.emit('commande.payée')")
        .await;
    assert!(refused.is_err(), "new events with the name are refused");

    let worker = db.start_worker(db.config());
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    worker.stop().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["event"], "commande.payée");
    assert_eq!(
        got[0].headers["x-webhook-event"].as_bytes(),
        "commande.payée".as_bytes(),
        "sent as before 0015"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'")
            .await,
        1
    );
}

#[tokio::test]
async fn names_that_differ_only_in_case_stop_the_migration_by_name() {
    let db = TestDb::new().await;
    // A database from before 0015, holding "DEC" and "dec".
    db.client
        .batch_execute(
            "DROP INDEX hookrelay.endpoints_name_ignoring_case;
             DELETE FROM hookrelay.schema_migrations WHERE version >= 15;
             INSERT INTO hookrelay.endpoints (name, url, secret) VALUES
                 ('DEC', 'https://example.com/a', 'secret-secret'),
                 ('dec', 'https://example.com/b', 'secret-secret'),
                 ('crm', 'https://example.com/c', 'secret-secret');",
        )
        .await
        .unwrap();
    let out = plain(&db, &["migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: migration 0015_input_checks.sql failed, nothing of it was applied: endpoint \
             names must be unique ignoring case, and these differ only in case: \"DEC\" and \
             \"dec\"; hint: rename all but one of each"
        ),
        "{stderr}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.schema_migrations WHERE version = 15")
            .await,
        0,
        "nothing of 0015 was recorded"
    );
}

#[tokio::test]
async fn migrate_says_each_migration_once() {
    let db = TestDb::empty().await;
    let out = plain(&db, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for m in hookrelay::admin::migrate::MIGRATIONS {
        assert_eq!(all.matches(m.name).count(), 1, "{}: {all}", m.name);
    }
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no log lines");
    let again = plain(&db, &["migrate"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        format!(
            "schema hookrelay is up to date (version {})",
            hookrelay::admin::migrate::latest_version()
        )
    );
}

#[tokio::test]
async fn opening_every_address_needs_its_own_flag() {
    let db = TestDb::new().await;
    for wide in ["0.0.0.0/0", "::/0"] {
        let out = plain(&db, &["run", "--allow-network", wide]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "error: --allow-network {wide} opens every address, which turns the address \
                 guard off (loopback, your private networks and cloud metadata at \
                 169.254.169.254 become reachable): name the networks your receivers are on, or \
                 add --allow-any-network (HOOKRELAY_ALLOW_ANY_NETWORK=true) if you really mean \
                 every address"
            )
        );
    }
    // With the flag it starts; it is stopped as soon as it says so.
    let mut child = Command::new(binary())
        .args(["run", "--allow-network", "0.0.0.0/0", "--allow-any-network"])
        .args(["--metrics-addr", "off"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("HOOKRELAY_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("worker started"))
    });
    let started = tokio::time::timeout(Duration::from_secs(20), started).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert!(matches!(started, Ok(Ok(true))), "the worker started");
}
