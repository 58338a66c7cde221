//! Schema migrations: the numbered files in `sql/`, applied in order, each in its own
//! transaction, recorded in `hookrelay.schema_migrations`.
//!
//! A session advisory lock makes concurrent `hookrelay migrate` runs safe: the second waits for
//! the first, then finds nothing left to do.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::db::explain;

/// One numbered migration file.
#[derive(Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A unit test checks this matches the files in `sql/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_outbox.sql",
        sql: include_str!("../sql/0001_outbox.sql"),
    },
    Migration {
        version: 2,
        name: "0002_operations.sql",
        sql: include_str!("../sql/0002_operations.sql"),
    },
    Migration {
        version: 3,
        name: "0003_signing.sql",
        sql: include_str!("../sql/0003_signing.sql"),
    },
    Migration {
        version: 4,
        name: "0004_model_events.sql",
        sql: include_str!("../sql/0004_model_events.sql"),
    },
    Migration {
        version: 5,
        name: "0005_producer_cost.sql",
        sql: include_str!("../sql/0005_producer_cost.sql"),
    },
    Migration {
        version: 6,
        name: "0006_hot_path.sql",
        sql: include_str!("../sql/0006_hot_path.sql"),
    },
    Migration {
        version: 7,
        name: "0007_protection.sql",
        sql: include_str!("../sql/0007_protection.sql"),
    },
    Migration {
        version: 8,
        name: "0008_roles.sql",
        sql: include_str!("../sql/0008_roles.sql"),
    },
    Migration {
        version: 9,
        name: "0009_hot_tables.sql",
        sql: include_str!("../sql/0009_hot_tables.sql"),
    },
    Migration {
        version: 10,
        name: "0010_bounded_joins.sql",
        sql: include_str!("../sql/0010_bounded_joins.sql"),
    },
    Migration {
        version: 11,
        name: "0011_event_check.sql",
        sql: include_str!("../sql/0011_event_check.sql"),
    },
    Migration {
        version: 12,
        name: "0012_claim_order.sql",
        sql: include_str!("../sql/0012_claim_order.sql"),
    },
    Migration {
        version: 13,
        name: "0013_wake_flag.sql",
        sql: include_str!("../sql/0013_wake_flag.sql"),
    },
    Migration {
        version: 14,
        name: "0014_tracked_columns.sql",
        sql: include_str!("../sql/0014_tracked_columns.sql"),
    },
    Migration {
        version: 15,
        name: "0015_input_checks.sql",
        sql: include_str!("../sql/0015_input_checks.sql"),
    },
    Migration {
        version: 16,
        name: "0016_last_error.sql",
        sql: include_str!("../sql/0016_last_error.sql"),
    },
    Migration {
        version: 18,
        name: "0018_console.sql",
        sql: include_str!("../sql/0018_console.sql"),
    },
];

/// Key of the advisory lock held while migrating ("hookrela" in ASCII).
const LOCK_KEY: i64 = 0x686f_6f6b_7265_6c61;

/// Errors from migrating.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("migration {name} failed, nothing of it was applied: {}", explain(.source))]
    Failed {
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error(
        "the database schema is at version {current} but this hookrelay knows only up to \
         {known}: upgrade hookrelay"
    )]
    TooNew { current: i32, known: i32 },
    #[error(
        "the hookrelay schema is not installed or not up to date (at version {current}, needs \
         {needed}): run `hookrelay migrate`, or `hookrelay run --migrate`"
    )]
    Pending { current: i32, needed: i32 },
}

/// What a migration run did.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Names of the migrations applied by this run.
    pub applied: Vec<&'static str>,
    /// The schema version afterwards.
    pub version: i32,
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// The newest version this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The installed schema version (0 when hookrelay was never installed).
pub async fn current_version(client: &Client) -> Result<i32, MigrateError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('hookrelay.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hookrelay.schema_migrations",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Fails with a clear message unless the schema is exactly at this build's version.
pub async fn check(client: &Client) -> Result<(), MigrateError> {
    let current = current_version(client).await?;
    let known = latest_version();
    if current > known {
        return Err(MigrateError::TooNew { current, known });
    }
    if current < known {
        return Err(MigrateError::Pending {
            current,
            needed: known,
        });
    }
    Ok(())
}

/// Applies every migration not applied yet. Idempotent; safe to run concurrently.
pub async fn migrate(client: &mut Client) -> Result<Report, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_pending(client).await;
    // apply_pending quieted IF NOT EXISTS notices for this session.
    let _ = client.batch_execute("RESET client_min_messages").await;
    // Released explicitly because pooled connections outlive this call.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let report = result?;
    unlocked?;
    Ok(report)
}

async fn apply_pending(client: &mut Client) -> Result<Report, MigrateError> {
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS hookrelay;
             CREATE TABLE IF NOT EXISTS hookrelay.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let current = current_version(client).await?;
    let known = latest_version();
    if current > known {
        return Err(MigrateError::TooNew { current, known });
    }
    let mut report = Report {
        applied: Vec::new(),
        version: current,
    };
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = client.transaction().await?;
        let applied = async {
            tx.batch_execute(migration.sql).await?;
            tx.execute(
                "INSERT INTO hookrelay.schema_migrations (version, name, checksum) \
                 VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.name,
                    &checksum(migration.sql),
                ],
            )
            .await?;
            tx.commit().await
        }
        .await;
        applied.map_err(|source| MigrateError::Failed {
            name: migration.name,
            source,
        })?;
        // Debug only: the report carries what was applied, and its caller says so once (the
        // `migrate` command on stdout, `run` in its log); an info line here printed it twice.
        tracing::debug!(migration = migration.name, "applied migration");
        report.applied.push(migration.name);
        report.version = migration.version;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_match_the_files_in_sql() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let names: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, names);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "versions are consecutive");
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
