//! Retention: keeps the tables bounded by removing finished history.
//!
//! The history tables are partitioned by day (migration 0030): every `interval` a pass first
//! keeps partitions ready for the coming days and drops the days older than the retention
//! whole ([`partitions`]), which writes next to nothing however many rows a day held. Then the
//! sweeper walks the DEFAULT partition (the work kept past its day's drop, and what was written
//! while no day's partition existed) — or, with a retention shorter than a day, which no day's
//! drop can honour, the whole events table — in id order (ids are time-ordered), one window at a time,
//! each window its own short transaction that skips locked rows, and removes events older than
//! the retention whose deliveries are all finished — with their deliveries and attempts.
//! Events with a dead delivery stay for the longer dead retention; events with pending work
//! are never removed. It stops a pass as soon as it reaches events younger than the retention,
//! so a pass costs little when there is nothing to prune.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::pooler;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::task::Session;
use crate::db::{DbError, DbTask, Flow, Health, Retry, Step};
use crate::metrics::{Kind, Metrics};

pub mod partitions;

const PRUNE_EVENTS: &str = include_str!("../../sql/queries/prune_events.sql");

/// The sweep of every partition, for a retention shorter than a day: a day's partitions are
/// dropped only once the whole day is past the retention, so rows due sooner are deleted.
static PRUNE_ALL_EVENTS: LazyLock<String> = LazyLock::new(|| {
    PRUNE_EVENTS.replace("FROM hookrelay.events_default e", "FROM hookrelay.events e")
});

/// The retention below which the sweep deletes from every partition (see [`PRUNE_ALL_EVENTS`]).
const DAY: Duration = Duration::from_secs(86_400);
const PRUNE_STATS: &str = include_str!("../../sql/queries/prune_stats.sql");

/// Events examined per statement.
const WINDOW: i64 = 1000;

/// Pause between windows, so a large pass never crowds out the pipeline.
const BREATHER: Duration = Duration::from_millis(20);

/// Retention settings.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Finished events (and their deliveries and attempts) older than this are removed.
    pub keep: Duration,
    /// Events with a dead delivery are kept this long.
    pub keep_dead: Duration,
    /// How often a pass runs.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        use crate::config::setting::{self, duration};
        Retention {
            keep: setting::RETENTION.default_value(duration),
            keep_dead: setting::DEAD_RETENTION.default_value(duration),
            interval: setting::RETENTION_INTERVAL.default_value(duration),
        }
    }
}

/// What one window did.
struct Window {
    last_examined: Option<Uuid>,
    examined: i64,
    reached_recent: bool,
    deleted: i64,
}

async fn prune_window(pool: &Pool, cursor: Uuid, retention: &Retention) -> Result<Window, DbError> {
    let client = pool.get().await?;
    let keep = retention.keep.as_secs_f64();
    let keep_dead = retention.keep_dead.as_secs_f64().max(keep);
    let sql = if retention.keep < DAY {
        PRUNE_ALL_EVENTS.as_str()
    } else {
        PRUNE_EVENTS
    };
    let row = pooler::query_one(&client, sql, &[&cursor, &WINDOW, &keep, &keep_dead]).await?;
    Ok(Window {
        last_examined: row.try_get(0)?,
        examined: row.try_get(1)?,
        reached_recent: row.try_get(2)?,
        deleted: row.try_get(3)?,
    })
}

/// One full pass: partition maintenance, then the sweep of the DEFAULT partition. Returns the
/// number of events the sweep removed (dropped days are logged and counted apart).
pub async fn pass(
    pool: &Pool,
    retention: &Retention,
    metrics: &Metrics,
    token: &CancellationToken,
) -> Result<i64, DbError> {
    let maintained = partitions::maintain(pool, retention, metrics).await?;
    if !maintained.added.is_empty() {
        tracing::debug!(days = ?maintained.added, "created history partitions ahead");
    }
    let mut cursor = Uuid::nil();
    let mut removed = 0;
    loop {
        let window = prune_window(pool, cursor, retention).await?;
        removed += window.deleted;
        metrics
            .pruned
            .get_or_create(&Kind { kind: "events" })
            .inc_by(window.deleted as u64);
        match window.last_examined {
            Some(last) if window.examined == WINDOW && !window.reached_recent => cursor = last,
            _ => break,
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(removed),
            _ = tokio::time::sleep(BREATHER) => {}
        }
    }
    let client = pool.get().await?;
    let stats = pooler::execute(&client, PRUNE_STATS, &[]).await?;
    metrics
        .pruned
        .get_or_create(&Kind { kind: "stats" })
        .inc_by(stats);
    Ok(removed)
}

/// Runs a pass every `retention.interval` until `token` is cancelled; a failed pass is
/// reported to `health` and tried again at the next interval.
pub async fn run(
    pool: Pool,
    retention: Retention,
    metrics: Arc<Metrics>,
    health: Health,
    token: CancellationToken,
) {
    let mut outage = DbTask::new("retention", &health)
        .forgetting(&pool)
        .retrying(Retry::Period(retention.interval));
    let mut sweeper = Sweeper {
        pool,
        retention,
        metrics,
        token: token.clone(),
    };
    outage.run(&token, &mut sweeper).await;
}

/// The retention task: one pass per step.
struct Sweeper {
    pool: Pool,
    retention: Retention,
    metrics: Arc<Metrics>,
    token: CancellationToken,
}

impl Step for Sweeper {
    type Error = DbError;

    async fn step(&mut self, _: &mut Session<'_>) -> Result<Flow, DbError> {
        match pass(&self.pool, &self.retention, &self.metrics, &self.token).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "retention removed finished events"),
            Err(e) => {
                tracing::debug!(error = %e, "retention pass failed; trying again next interval");
                return Err(e);
            }
        }
        Ok(Flow::After(self.retention.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_of_every_partition_reads_the_parent_where_the_usual_one_reads_default() {
        // The variant is made by replacing text: if the query's wording changed, the short
        // retention would silently sweep the DEFAULT partition alone.
        assert_eq!(PRUNE_EVENTS.matches("hookrelay.events_default").count(), 1);
        assert!(!PRUNE_ALL_EVENTS.contains("events_default"));
        assert!(PRUNE_ALL_EVENTS.contains("FROM hookrelay.events e"));
    }
}
