//! The usual alternative to an outbox table, for the producer scenario: graphile-worker's
//! `graphile_worker.add_job` in the app's transaction. The real package is installed with npm
//! (once, into the bench's target folder) and its schema by its own migrations
//! (`graphile-worker --schema-only`), so the figure is of its SQL as released, notifications
//! included. Without node and npm, or without the registry, the figure is skipped with a note.

use std::path::PathBuf;
use std::process::Command;

/// The release measured: 0.16 is the newest that runs on the Node.js 20 this machine has.
const PACKAGE: &str = "graphile-worker@0.16.6";

/// The same order as the other producer statements, with a job instead of an outbox event.
pub const ADD_JOB: &str = "WITH o AS (INSERT INTO app_orders (status, total) VALUES ('PAID', 150.00) RETURNING id, status, total)
     SELECT graphile_worker.add_job('order_paid', json_build_object('id', o.id, 'status', o.status, 'total', o.total))
     FROM o";

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("graphile-worker")
}

/// Runs `command`; `shown` names it in the reason (never with the database URL, which may
/// hold a password).
fn run(shown: &str, command: &mut Command) -> Result<(), String> {
    match command.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(err) => Err(format!("{shown} could not start: {err}")),
    }
}

/// Installs graphile-worker's schema into the database at `url`; the reason when it cannot.
pub fn install(url: &str) -> Result<(), String> {
    let dir = folder();
    let cli = dir.join("node_modules/.bin/graphile-worker");
    if !cli.exists() {
        run("node --version", Command::new("node").arg("--version"))?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run(
            &format!("npm install {PACKAGE}"),
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(PACKAGE),
        )?;
    }
    run(
        "graphile-worker --schema-only",
        Command::new(&cli).args(["--schema-only", "-c", url]),
    )
}
