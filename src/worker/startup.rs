//! Before the loop: the schema checked (or migrated), retried while the database is away.
//!
//! A worker started while PostgreSQL restarts (a deploy of both at once, a failover) must not
//! exit: a supervisor may not restart it, and nothing would be delivered. So a database that
//! cannot be reached, or refuses writes, is reported once (see [`Alarm`](crate::db::Alarm)) and
//! retried with backoff, with `/healthz` and `/readyz` already served; only a problem that
//! waiting cannot fix (the schema missing or newer than this build, a permission) stops it.

use tokio_util::sync::CancellationToken;

use super::{notify, tick, WorkerError};
use crate::db::{self, Db, DbError, Failure, Problem, Proof};
use crate::metrics::Metrics;
use crate::migrate::{self, MigrateError};
use crate::retry::Backoff;
use sd_notify::NotifyState;

/// What the worker does with the schema before it starts.
#[derive(Debug, Clone)]
pub enum Schema {
    /// Trust it (tests and embedders that migrated already).
    Trust,
    /// Refuse to start unless it is at this build's version.
    Check,
    /// Apply pending migrations first, on a connection of its own made with this
    /// configuration (not a worker session, whose time limits suit claims, not DDL).
    Migrate(Box<tokio_postgres::Config>),
}

/// Whether waiting can fix `problem`.
fn passes(problem: Problem) -> bool {
    matches!(
        problem,
        Problem::Unreachable | Problem::ReadOnly | Problem::DiskFull
    )
}

/// Checks or migrates the schema, retrying while the database is away. Returns false when
/// stopped first.
pub(super) async fn prepare(
    schema: &Schema,
    db: &Db,
    metrics: &Metrics,
    token: &CancellationToken,
) -> Result<bool, WorkerError> {
    let mut backoff = Backoff::default();
    let mut watchdog = sd_notify::watchdog_enabled().map(|p| tokio::time::interval(p / 2));
    loop {
        let started = std::time::Instant::now();
        let error = match once(schema, db).await {
            Ok(()) => {
                metrics.database.recovered(Proof::Wrote, started);
                return Ok(true);
            }
            Err(e) if passes(e.problem()) => e,
            Err(e) => return Err(e),
        };
        let wait = backoff.next_delay();
        metrics.database_error(
            Failure {
                task: "startup",
                problem: error.problem(),
                error: &error,
                retry_in: Some(wait),
                opened: None,
            },
            Some(&db.pool),
        );
        let pause = tokio::time::sleep(wait);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = token.cancelled() => return Ok(false),
                _ = &mut pause => break,
                _ = tick(&mut watchdog) => notify(&[NotifyState::Watchdog]),
            }
        }
    }
}

async fn once(schema: &Schema, db: &Db) -> Result<(), WorkerError> {
    match schema {
        Schema::Trust => Ok(()),
        Schema::Check => {
            let client = db.pool.get().await.map_err(DbError::from)?;
            Ok(migrate::check(&client).await?)
        }
        Schema::Migrate(config) => {
            let mut client = db::connect(config).await?;
            for name in migrate::migrate(&mut client).await?.applied {
                tracing::info!(migration = name, "applied migration");
            }
            Ok(())
        }
    }
}

impl MigrateError {
    /// The kind of database trouble behind this error: a schema that is missing or too new
    /// is [`Problem::Other`], which waiting does not fix.
    pub fn problem(&self) -> Problem {
        match self {
            MigrateError::Db(e) | MigrateError::Failed { source: e, .. } => db::classify(e),
            MigrateError::TooNew { .. } | MigrateError::Pending { .. } => Problem::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_waiting_fixes_is_retried() {
        assert!(passes(Problem::Unreachable));
        assert!(passes(Problem::ReadOnly));
        assert!(passes(Problem::DiskFull));
        assert!(!passes(Problem::Other));
        let pending = MigrateError::Pending {
            current: 0,
            needed: 13,
        };
        assert_eq!(pending.problem(), Problem::Other);
    }
}
