//! The schema: migrations are idempotent and safe to run concurrently; the SQL surface checks
//! what applications write.

use std::process::Command;

use serde_json::json;

use crate::support::{binary, connect, TestDb};

/// What `sql/schema.sql` starts with; the rest is `pg_dump`'s, normalised.
const SNAPSHOT_HEADER: &str = "\
-- The hookrelay schema as the migrations in this folder leave it: every table, view, index
-- and function in its current form (a function redefined by a later migration appears once,
-- as it now is). Generated, do not edit; after adding a migration, regenerate it with
--     HOOKRELAY_BLESS=1 cargo test --test it schema_snapshot
-- and review the diff. Made by pg_dump --schema-only --schema=hookrelay --no-owner
-- --no-privileges, without its version lines and session settings, and without the daily
-- partitions of events, deliveries and attempts (dated, they change every day).
";

fn migrate_cli(url: &str) -> std::process::Output {
    Command::new(binary())
        .args(["migrate", "--database-url", url])
        .output()
        .expect("run hookrelay migrate")
}

#[tokio::test]
async fn migrate_is_idempotent_and_safe_to_run_concurrently() {
    let db = TestDb::empty().await;
    let url = db.url.clone();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || migrate_cli(&url))
        })
        .collect();
    let outputs: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let applied = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("applied 0001_outbox.sql"))
        .count();
    assert_eq!(applied, 1, "exactly one run applied the migrations");
    let again = migrate_cli(&url);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.schema_migrations")
            .await,
        hookrelay::admin::migrate::MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn run_refuses_an_unmigrated_database_with_the_fix() {
    let db = TestDb::empty().await;
    let out = Command::new(binary())
        .args(["run", "--database-url", &db.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hookrelay migrate"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

async fn emitted(client: &tokio_postgres::Client, sql: &str) -> uuid::Uuid {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    client: &tokio_postgres::Client,
    name: &str,
    id: uuid::Uuid,
) -> T {
    let sql = format!("SELECT {name} FROM hookrelay.events WHERE id = $1");
    client.query_one(&sql, &[&id]).await.unwrap().get(0)
}

#[tokio::test]
async fn emit_records_the_actor_and_malformed_actors_never_fail_the_transaction() {
    let db = TestDb::new().await;
    let client = connect(&db.url).await;
    let cases = [
        (
            r#"{"id": "1", "username": "admin"}"#,
            json!({"id": "1", "username": "admin"}),
        ),
        ("42", json!({"id": "42"})),
        (r#""alice""#, json!({"id": "alice"})),
        (r#"{"id": oops"#, json!({"raw": r#"{"id": oops"#})),
    ];
    for (actor, want) in cases {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL hookrelay.actor = '{}';",
                actor.replace('\'', "''")
            ))
            .await
            .unwrap();
        let id = emitted(&client, "SELECT hookrelay.emit('user.login')").await;
        client.batch_execute("COMMIT").await.unwrap();
        let actor: serde_json::Value = column(&client, "actor", id).await;
        assert_eq!(actor, want, "actor {actor}");
    }
    let id = emitted(&client, "SELECT hookrelay.emit('user.logout')").await;
    let none: Option<serde_json::Value> = column(&client, "actor", id).await;
    assert_eq!(none, None);
    // object_id defaults to the object's id.
    let id = emitted(&client, "SELECT hookrelay.emit('x.y', '{\"id\": 7}')").await;
    let object_id: Option<String> = column(&client, "object_id", id).await;
    assert_eq!(object_id.as_deref(), Some("7"));
}

/// The actor and trace context of an event emitted, and of one inserted directly (the
/// columns' defaults), under the same settings.
async fn context_pair(
    client: &tokio_postgres::Client,
    set_local: &str,
) -> [(Option<serde_json::Value>, Option<String>, Option<String>); 2] {
    client
        .batch_execute(&format!("BEGIN; {set_local}"))
        .await
        .unwrap();
    let emitted = emitted(client, "SELECT hookrelay.emit('context.emitted')").await;
    let inserted = emitted_by_insert(client).await;
    client.batch_execute("COMMIT").await.unwrap();
    let mut out = Vec::new();
    for id in [emitted, inserted] {
        let row = client
            .query_one(
                "SELECT actor, traceparent, tracestate FROM hookrelay.events WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        out.push((row.get(0), row.get(1), row.get(2)));
    }
    [out[0].clone(), out[1].clone()]
}

async fn emitted_by_insert(client: &tokio_postgres::Client) -> uuid::Uuid {
    emitted(
        client,
        "INSERT INTO hookrelay.events (event) VALUES ('context.inserted') RETURNING id",
    )
    .await
}

#[tokio::test]
async fn emit_without_context_writes_what_the_defaults_would() {
    // emit skips the context columns' defaults when no setting is set (0035): whatever the
    // settings, it must write what a direct insert's defaults write.
    let db = TestDb::new().await;
    let client = connect(&db.url).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let states = [
        ("never set", String::new()),
        (
            "actor of spaces",
            "SET LOCAL hookrelay.actor = '   ';".to_owned(),
        ),
        ("actor", "SET LOCAL hookrelay.actor = '42';".to_owned()),
        (
            "traceparent",
            format!("SET LOCAL hookrelay.traceparent = '{parent}';"),
        ),
        (
            "tracestate",
            "SET LOCAL hookrelay.tracestate = 'congo=t61rcWkgMzE';".to_owned(),
        ),
        // The settings exist now, empty, since the transactions that set them ended.
        ("set before, empty now", String::new()),
    ];
    let mut seen = Vec::new();
    for (state, set_local) in &states {
        let [emitted, inserted] = context_pair(&client, set_local).await;
        assert_eq!(emitted, inserted, "{state}");
        seen.push((*state, emitted));
    }
    assert_eq!(seen[0].1, (None, None, None));
    assert_eq!(seen[1].1, (None, None, None));
    assert_eq!(seen[2].1 .0, Some(json!({"id": "42"})));
    assert_eq!(seen[3].1 .1.as_deref(), Some(parent));
    assert_eq!(seen[5].1, (None, None, None));
}

#[tokio::test]
async fn bad_events_and_endpoints_are_refused_with_a_clear_message() {
    let db = TestDb::new().await;
    let refused = [
        ("SELECT hookrelay.emit('')", "event_name_must_be_1_to_200_characters_without_spaces"),
        ("SELECT hookrelay.emit('has space')", "event_name_must_be"),
        ("SELECT hookrelay.emit('x', '[1, 2]')", "event_object_must_be_a_json_object"),
        (
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('a', 'ftp://x', 'secret-secret')",
            "not an http:// or https:// URL",
        ),
        (
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('a', 'https://u:p@x', 'secret-secret')",
            "must not contain credentials",
        ),
        (
            "INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('a', 'https://x', 'short')",
            "secret must be 8 to 1000 characters",
        ),
        (
            "INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) VALUES ('a', 'https://x', 'secret-secret', 'md5')",
            "unknown signature scheme",
        ),
        (
            "INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) VALUES ('a', 'https://x', 'secret-secret', 'standard')",
            "whsec_",
        ),
        (
            "INSERT INTO hookrelay.endpoints (name, url, secret, events) VALUES ('a', 'https://x', 'secret-secret', '{\"\"}')",
            "event filter: the event name is empty",
        ),
    ];
    for (sql, expected) in refused {
        let err = db.client.batch_execute(sql).await.unwrap_err();
        let db_err = err.as_db_error().expect("a server error");
        let text = format!(
            "{} {}",
            db_err.message(),
            db_err.constraint().unwrap_or_default()
        );
        assert!(text.contains(expected), "{sql}: {text}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM hookrelay.events").await, 0);
}

/// `pg_dump`'s schema of `url`, with what changes between runs and versions left out: the
/// version lines, the session settings and the random `\restrict` key, and the daily
/// partitions of the history tables (migration 0030 makes them for the days around the day it
/// runs, so their names and bounds change every day). They are left out by name with
/// `--exclude-table` (`events_p20260124`, `events_before_20251125`, …: the partitioned tables
/// and their DEFAULT partitions stay in); pg_dump then leaves out their indexes and their
/// ATTACH statements too.
fn schema_dump(url: &str) -> String {
    let pg_dump = hookrelay::db::embedded::bindir()
        .expect("PostgreSQL server binaries")
        .join("pg_dump");
    let out = Command::new(&pg_dump)
        .args([
            "--schema-only",
            "--schema=hookrelay",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=hookrelay.*_p[0-9]*",
            "--exclude-table=hookrelay.*_before_[0-9]*",
        ])
        .arg(format!("--dbname={url}"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", pg_dump.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kept = String::new();
    for line in text.lines() {
        let varying = line.starts_with("-- Dumped ")
            || session_setting(line)
            || line.starts_with("SELECT pg_catalog.set_config(")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict");
        if varying || (line.is_empty() && (kept.is_empty() || kept.ends_with("\n\n"))) {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept.trim_end().to_string() + "\n"
}

/// A session setting pg_dump writes (`SET client_encoding = 'UTF8';`), which differs between
/// its versions; never a line of a function body, which pg_dump leaves as it was written.
fn session_setting(line: &str) -> bool {
    let Some(setting) = line.strip_prefix("SET ").and_then(|l| l.strip_suffix(';')) else {
        return false;
    };
    setting
        .split_once(" = ")
        .is_some_and(|(name, _)| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

/// `sql/schema.sql` is the schema a fresh database gets from every migration, so a reader
/// finds a function's current body there instead of in the last migration that redefined it.
#[tokio::test]
async fn schema_snapshot_is_what_the_migrations_make() {
    let db = TestDb::new().await;
    let want = format!("{SNAPSHOT_HEADER}{}", schema_dump(&db.url));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/schema.sql");
    if std::env::var_os("HOOKRELAY_BLESS").is_some() {
        std::fs::write(path, &want).expect("write sql/schema.sql");
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "sql/schema.sql is not the schema the migrations make (first difference at line {}: \
             file has {:?}, migrations make {:?}); regenerate it with \
             `HOOKRELAY_BLESS=1 cargo test --test it schema_snapshot` and review the diff",
            line + 1,
            have.lines().nth(line).unwrap_or("<end>"),
            want.lines().nth(line).unwrap_or("<end>")
        );
    }
}
