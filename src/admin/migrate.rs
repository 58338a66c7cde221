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
        sql: include_str!("../../sql/0001_outbox.sql"),
    },
    Migration {
        version: 2,
        name: "0002_operations.sql",
        sql: include_str!("../../sql/0002_operations.sql"),
    },
    Migration {
        version: 3,
        name: "0003_signing.sql",
        sql: include_str!("../../sql/0003_signing.sql"),
    },
    Migration {
        version: 4,
        name: "0004_model_events.sql",
        sql: include_str!("../../sql/0004_model_events.sql"),
    },
    Migration {
        version: 5,
        name: "0005_producer_cost.sql",
        sql: include_str!("../../sql/0005_producer_cost.sql"),
    },
    Migration {
        version: 6,
        name: "0006_hot_path.sql",
        sql: include_str!("../../sql/0006_hot_path.sql"),
    },
    Migration {
        version: 7,
        name: "0007_protection.sql",
        sql: include_str!("../../sql/0007_protection.sql"),
    },
    Migration {
        version: 8,
        name: "0008_roles.sql",
        sql: include_str!("../../sql/0008_roles.sql"),
    },
    Migration {
        version: 9,
        name: "0009_hot_tables.sql",
        sql: include_str!("../../sql/0009_hot_tables.sql"),
    },
    Migration {
        version: 10,
        name: "0010_bounded_joins.sql",
        sql: include_str!("../../sql/0010_bounded_joins.sql"),
    },
    Migration {
        version: 11,
        name: "0011_event_check.sql",
        sql: include_str!("../../sql/0011_event_check.sql"),
    },
    Migration {
        version: 12,
        name: "0012_claim_order.sql",
        sql: include_str!("../../sql/0012_claim_order.sql"),
    },
    Migration {
        version: 13,
        name: "0013_wake_flag.sql",
        sql: include_str!("../../sql/0013_wake_flag.sql"),
    },
    Migration {
        version: 14,
        name: "0014_tracked_columns.sql",
        sql: include_str!("../../sql/0014_tracked_columns.sql"),
    },
    Migration {
        version: 15,
        name: "0015_input_checks.sql",
        sql: include_str!("../../sql/0015_input_checks.sql"),
    },
    Migration {
        version: 16,
        name: "0016_last_error.sql",
        sql: include_str!("../../sql/0016_last_error.sql"),
    },
    Migration {
        version: 17,
        name: "0017_app_stack.sql",
        sql: include_str!("../../sql/0017_app_stack.sql"),
    },
    Migration {
        version: 18,
        name: "0018_console.sql",
        sql: include_str!("../../sql/0018_console.sql"),
    },
    Migration {
        version: 19,
        name: "0019_shaping.sql",
        sql: include_str!("../../sql/0019_shaping.sql"),
    },
    Migration {
        version: 20,
        name: "0020_conditional_tracking.sql",
        sql: include_str!("../../sql/0020_conditional_tracking.sql"),
    },
    Migration {
        version: 21,
        name: "0021_condition_names.sql",
        sql: include_str!("../../sql/0021_condition_names.sql"),
    },
    Migration {
        version: 22,
        name: "0022_ordered_delivery.sql",
        sql: include_str!("../../sql/0022_ordered_delivery.sql"),
    },
    Migration {
        version: 23,
        name: "0023_ordering_column.sql",
        sql: include_str!("../../sql/0023_ordering_column.sql"),
    },
    Migration {
        version: 24,
        name: "0024_trace.sql",
        sql: include_str!("../../sql/0024_trace.sql"),
    },
    Migration {
        version: 25,
        name: "0025_stable_plans.sql",
        sql: include_str!("../../sql/0025_stable_plans.sql"),
    },
    Migration {
        version: 26,
        name: "0026_event_search.sql",
        sql: include_str!("../../sql/0026_event_search.sql"),
    },
    Migration {
        version: 27,
        name: "0027_replay_ops_events.sql",
        sql: include_str!("../../sql/0027_replay_ops_events.sql"),
    },
    Migration {
        version: 28,
        name: "0028_cheap_outbox_row.sql",
        sql: include_str!("../../sql/0028_cheap_outbox_row.sql"),
    },
    Migration {
        version: 29,
        name: "0029_free_slots.sql",
        sql: include_str!("../../sql/0029_free_slots.sql"),
    },
    Migration {
        version: 30,
        name: "0030_partitioned_history.sql",
        sql: include_str!("../../sql/0030_partitioned_history.sql"),
    },
    Migration {
        version: 31,
        name: "0031_producer_cost.sql",
        sql: include_str!("../../sql/0031_producer_cost.sql"),
    },
    Migration {
        version: 32,
        name: "0032_plans_inside_functions.sql",
        sql: include_str!("../../sql/0032_plans_inside_functions.sql"),
    },
    Migration {
        version: 33,
        name: "0033_default_cap.sql",
        sql: include_str!("../../sql/0033_default_cap.sql"),
    },
    Migration {
        version: 34,
        name: "0034_work_floor.sql",
        sql: include_str!("../../sql/0034_work_floor.sql"),
    },
    Migration {
        version: 35,
        name: "0035_emit_without_context.sql",
        sql: include_str!("../../sql/0035_emit_without_context.sql"),
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

/// A version `--print-sql --from` does not know.
#[derive(Debug, thiserror::Error)]
#[error(
    "--from {from} is not a schema version this hookrelay knows: give 0 to {known} (the \
     version `hookrelay migrate` reports, or SELECT max(version) FROM \
     hookrelay.schema_migrations)"
)]
pub struct UnknownVersion {
    pub from: i32,
    pub known: i32,
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
    // Unnamed statements (query_typed): they also work through a transaction pooler.
    let exists: bool = client
        .query_typed_one(
            "SELECT to_regclass('hookrelay.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_typed_one(
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

/// The schema and the table that records migrations, shared by `migrate` and the printed SQL.
const BOOTSTRAP: &str = "CREATE SCHEMA IF NOT EXISTS hookrelay;
CREATE TABLE IF NOT EXISTS hookrelay.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);";

/// Records an applied migration: `$1` version, `$2` name, `$3` checksum.
const RECORD: &str =
    "INSERT INTO hookrelay.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)";

async fn apply_pending(client: &mut Client) -> Result<Report, MigrateError> {
    client
        .batch_execute(&format!("SET client_min_messages = warning;\n{BOOTSTRAP}"))
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
                RECORD,
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

/// The SQL of the migrations after version `from` (0: the whole schema), for an application to
/// run from its own migrations (a Django `RunSQL`, a Rails migration, any tool).
///
/// It does what `hookrelay migrate` does, in the caller's transaction: takes the same advisory
/// lock, applies each migration not yet recorded, and records it in
/// `hookrelay.schema_migrations` with the same checksum, so `hookrelay migrate` finds it
/// installed and later upgrades (by either) apply on top. Running it again changes nothing.
pub fn script(from: i32) -> Result<String, UnknownVersion> {
    let known = latest_version();
    if !(0..=known).contains(&from) {
        return Err(UnknownVersion { from, known });
    }
    let mut out = format!(
        "-- The hookrelay schema, migrations {first} to {known}, printed by \
         `hookrelay migrate --print-sql{from_flag}`.\n\
         -- Run it as one transaction (a Django RunSQL or Rails migration does). It applies the\n\
         -- migrations not yet recorded in hookrelay.schema_migrations and records them as\n\
         -- `hookrelay migrate` does, so either can upgrade the schema later.\n\
         SELECT pg_advisory_xact_lock({LOCK_KEY});\n{BOOTSTRAP}\n{guard}\n",
        first = from + 1,
        from_flag = if from > 0 {
            format!(" --from {from}")
        } else {
            String::new()
        },
        guard = version_guard(from, known),
    );
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        let tag = format!("$hookrelay_{:04}$", m.version);
        let record = RECORD
            .replace("$1", &m.version.to_string())
            .replace("$2", &format!("'{}'", m.name))
            .replace("$3", &format!("'{}'", checksum(m.sql)));
        out.push_str(&format!(
            "\n-- {name}\nDO $hookrelay$\nBEGIN\n    \
             IF EXISTS (SELECT 1 FROM hookrelay.schema_migrations WHERE version = {version}) THEN\n        \
             RETURN;\n    END IF;\n    EXECUTE {tag}\n{sql}\n{tag};\n    {record};\nEND\n$hookrelay$;\n",
            name = m.name,
            version = m.version,
            sql = m.sql.trim_end(),
        ));
    }
    Ok(out)
}

/// Refuses a schema newer than this build, and (for an upgrade step) one older than its start.
fn version_guard(from: i32, known: i32) -> String {
    format!(
        "DO $hookrelay$
DECLARE
    current integer := (SELECT coalesce(max(version), 0) FROM hookrelay.schema_migrations);
BEGIN
    IF current > {known} THEN
        RAISE EXCEPTION 'the hookrelay schema is at version %, newer than this SQL (up to {known})', current
            USING HINT = 'print the SQL again with the hookrelay that installed it';
    END IF;
    IF current < {from} THEN
        RAISE EXCEPTION 'this SQL upgrades the hookrelay schema from version {from}, but it is at version %', current
            USING HINT = format('print the step from there: hookrelay migrate --print-sql --from %s', current);
    END IF;
END
$hookrelay$;"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_sql_quotes_every_migration_safely() {
        for m in MIGRATIONS {
            assert!(
                !m.sql.contains("$hookrelay"),
                "{} uses a reserved tag",
                m.name
            );
        }
        let full = script(0).unwrap();
        assert!(full.contains("-- 0001_outbox.sql"));
        assert!(full.contains(&checksum(MIGRATIONS[0].sql)));
        let step = script(latest_version() - 1).unwrap();
        assert!(!step.contains("-- 0001_outbox.sql"));
        assert_eq!(step.matches("EXECUTE $hookrelay_").count(), 1);
        assert!(script(latest_version() + 1).is_err());
        assert!(script(-1).is_err());
    }

    #[test]
    fn migrations_match_the_files_in_sql() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // Migrations are numbered; schema.sql is the generated snapshot of their sum.
            .filter(|n| n.ends_with(".sql") && n.starts_with(|c: char| c.is_ascii_digit()))
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
