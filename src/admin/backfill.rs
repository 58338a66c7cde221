//! Backfill: one event per existing row of a tracked table (`hookrelay.backfill_batch`),
//! shaped as the table's triggers shape rows, in keyset batches of short transactions. The
//! database keeps each backfill's progress with the events it writes, so running the same
//! backfill again resumes it.

use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use crate::db::explain;

/// Errors from backfills.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    Invalid(String),
    #[error("no table named {0:?}: give it as SQL reads it, e.g. orders or store.\"Order\"")]
    NoTable(String),
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// Which rows a backfill writes, and how.
#[derive(Debug, Clone)]
pub struct Backfill {
    /// A tracked table, as SQL reads it.
    pub table: String,
    /// The events' name.
    pub event: String,
    /// A boolean SQL condition over the table's columns (empty: every row). Part of the
    /// backfill's identity: the same table, event and condition resume together.
    pub where_sql: String,
    /// Rows per transaction.
    pub batch: i32,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub written: i64,
    /// Rows written by this backfill in all, across runs.
    pub rows_done: i64,
    pub finished: bool,
}

fn classify(e: tokio_postgres::Error, table: &str) -> BackfillError {
    match e.code() {
        Some(c) if c == &SqlState::UNDEFINED_TABLE || c == &SqlState::INVALID_SCHEMA_NAME => {
            BackfillError::NoTable(table.to_string())
        }
        Some(c) if c == &SqlState::INVALID_PARAMETER_VALUE => BackfillError::Invalid(explain(&e)),
        _ => BackfillError::Db(e),
    }
}

/// Rows the backfill has left to write (every matching row when it has not started).
pub async fn remaining(client: &impl GenericClient, b: &Backfill) -> Result<i64, BackfillError> {
    let row = client
        .query_one(
            "SELECT hookrelay.backfill_remaining($1::text::regclass, $2, $3)",
            &[&b.table, &b.event, &b.where_sql],
        )
        .await
        .map_err(|e| classify(e, &b.table))?;
    Ok(row.get(0))
}

/// Writes the next batch, in its own transaction.
pub async fn batch(client: &impl GenericClient, b: &Backfill) -> Result<Step, BackfillError> {
    let row = client
        .query_one(
            "SELECT written, rows_done, finished \
             FROM hookrelay.backfill_batch($1::text::regclass, $2, $3, $4)",
            &[&b.table, &b.event, &b.where_sql, &b.batch],
        )
        .await
        .map_err(|e| classify(e, &b.table))?;
    Ok(Step {
        written: row.get(0),
        rows_done: row.get(1),
        finished: row.get(2),
    })
}
