//! Before the loop: the schema checked (or migrated), retried while the database is away.
//!
//! A worker started while PostgreSQL restarts (a deploy of both at once, a failover) must not
//! exit: a supervisor may not restart it, and nothing would be delivered. So a database that
//! cannot be reached, or refuses writes, is reported once (see [`Alarm`](crate::db::Alarm)) and
//! retried with backoff, with `/healthz` and `/readyz` already served; only a problem that
//! waiting cannot fix (the schema missing or newer than this build, a permission) stops it.

use tokio_util::sync::CancellationToken;

use super::{watchdog, WorkerError};
use crate::admin::migrate::{self, MigrateError};
use crate::db::task::Session;
use crate::db::{self, Db, DbError, DbTask, Flow, Health, Problem, Proof, Step};

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
    health: &Health,
    token: &CancellationToken,
) -> Result<bool, WorkerError> {
    let mut outage = DbTask::new("startup", health)
        .forgetting(&db.pool)
        .beating(watchdog());
    let mut preparing = Preparing {
        schema,
        db,
        fatal: None,
    };
    let ready = outage.run(token, &mut preparing).await;
    match preparing.fatal {
        Some(e) => Err(e),
        None => Ok(ready),
    }
}

/// Preparing the schema until it is ready, or a problem that waiting cannot fix ends the
/// retries (kept in `fatal`).
struct Preparing<'a> {
    schema: &'a Schema,
    db: &'a Db,
    fatal: Option<WorkerError>,
}

impl Step for Preparing<'_> {
    type Error = WorkerError;

    async fn step(&mut self, session: &mut Session<'_>) -> Result<Flow, WorkerError> {
        session.opened(std::time::Instant::now());
        match once(self.schema, self.db).await {
            Ok(()) => session.proved(Proof::Wrote),
            Err(e) if passes(e.problem()) => return Err(e),
            Err(e) => self.fatal = Some(e),
        }
        Ok(Flow::Done)
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
