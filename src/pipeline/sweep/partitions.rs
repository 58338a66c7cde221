//! Partition maintenance, run by the retention task before its sweep.
//!
//! The history tables are partitioned by day of their event (migration 0030). Each pass makes
//! sure today and the next [`DAYS_AHEAD`] days have partitions, so events land in a day's
//! partition rather than the DEFAULT one, then retires every day whose whole range is older
//! than the retention: its partitions are detached and dropped, and the few rows retention
//! keeps (pending work, young dead work) are moved to the DEFAULT partitions first. Each day is
//! its own short transaction; one that cannot get its locks at once is tried again on the
//! next pass.

use deadpool_postgres::Pool;

use crate::db::{pooler, DbError};
use crate::metrics::{Kind, Metrics};

use super::Retention;

const ADD_PARTITIONS: &str = include_str!("../../../sql/queries/add_partitions.sql");
const RETIRE_PARTITION: &str = include_str!("../../../sql/queries/retire_partition.sql");

/// Days after today that get their partitions ahead of time: a worker stopped for less than
/// this never has events written to the DEFAULT partition.
pub const DAYS_AHEAD: i32 = 3;

/// Most events a day's drop moves to the DEFAULT partition. The move happens while the three
/// history tables are locked, so a day keeping more waits whole (its pending work finishing,
/// its dead work ageing past the dead retention) rather than stalling the pipeline.
pub const MAX_KEPT: i64 = 10_000;

/// Most days retired by one pass (a database upgraded with months of history catches up over a
/// few passes, each bounded).
const MOST_DAYS: usize = 60;

/// What one pass of maintenance did.
#[derive(Debug, Default, PartialEq)]
pub struct Maintained {
    /// Days whose partitions were created.
    pub added: Vec<String>,
    /// Days whose partitions were dropped.
    pub retired: Vec<String>,
}

/// Creates the partitions ahead, then retires the days past the retention.
pub async fn maintain(
    pool: &Pool,
    retention: &Retention,
    metrics: &Metrics,
) -> Result<Maintained, DbError> {
    let client = pool.get().await?;
    let mut done = Maintained::default();
    for row in pooler::query(&client, ADD_PARTITIONS, &[&DAYS_AHEAD]).await? {
        let day: String = row.try_get(0)?;
        let outcome: String = row.try_get(1)?;
        match outcome.as_str() {
            "attached" => done.added.push(day),
            // Its rows stay in the DEFAULT partition, which the sweep prunes.
            _ => tracing::debug!(day, outcome, "no partition made for this day"),
        }
    }
    let keep = retention.keep.as_secs_f64();
    let keep_dead = retention.keep_dead.as_secs_f64().max(keep);
    for _ in 0..MOST_DAYS {
        let rows =
            pooler::query(&client, RETIRE_PARTITION, &[&keep, &keep_dead, &MAX_KEPT]).await?;
        let mut dropped = false;
        for row in &rows {
            let suffix: String = row.try_get("suffix")?;
            let outcome: String = row.try_get("outcome")?;
            let kept: i64 = row.try_get("kept")?;
            if outcome != "dropped" {
                // Busy: tried again on the next pass; too many kept: once its work is done.
                tracing::debug!(
                    partition = suffix,
                    outcome,
                    kept,
                    "history partition not retired yet"
                );
                continue;
            }
            let events: i64 = row.try_get("rows")?;
            tracing::info!(
                partition = suffix,
                kept,
                events,
                "retention dropped a day of history"
            );
            metrics.pruned.get_or_create(&Kind { kind: "days" }).inc();
            done.retired.push(suffix);
            dropped = true;
        }
        if !dropped {
            break;
        }
    }
    Ok(done)
}
