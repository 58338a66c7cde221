//! Auto-disable: an endpoint whose every attempt has failed for a long time (`--disable-after`,
//! 5 days by default) and at least `--disable-after-failures` times in a row (10) is disabled,
//! with the reason recorded in `hookrelay.endpoints.disabled_reason`. Its pending deliveries
//! wait (parked, not lost) until `hookrelay endpoint enable NAME`, which also starts its failure
//! streak from zero. A single success resets the streak (`hookrelay.endpoint_state`).
//!
//! Both conditions are needed: the time alone would disable an endpoint that failed twice over
//! a quiet week; the count alone would disable one that had a bad hour. Each worker checks
//! every twentieth of `--disable-after` (between 250 ms and a minute), in a statement of its
//! own, so the check never holds a lock that delivery needs.
//!
//! The same loop flags endpoints whose deliveries are parked without their `waiting` flag (a
//! result recorded as the endpoint was being enabled can do that), so claims find them.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::pooler;
use tokio_util::sync::CancellationToken;

use crate::db::task::Session;
use crate::db::{DbError, DbTask, Flow, Health, Retry, Step};

const DISABLE_FAILING: &str = "SELECT name, disabled_reason \
     FROM hookrelay.disable_failing_endpoints($1::bigint * interval '1 millisecond', $2::integer)";
const FLAG_WAITING: &str = "SELECT hookrelay.flag_waiting_endpoints()";

/// How often the loop runs when auto-disable is off.
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// When failing endpoints are disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDisable {
    /// Every attempt failed for at least this long.
    pub after: Duration,
    /// ... and at least this many attempts in a row failed.
    pub min_failures: u32,
}

impl AutoDisable {
    /// How often to check: often enough that an endpoint is disabled within about 5 % of
    /// `after`, and at least every minute.
    pub fn interval(&self) -> Duration {
        (self.after / 20).clamp(Duration::from_millis(250), Duration::from_secs(60))
    }
}

/// Disables the endpoints that qualify now; returns their names and recorded reasons.
pub async fn disable_failing(
    pool: &Pool,
    policy: &AutoDisable,
) -> Result<Vec<(String, String)>, DbError> {
    let client = pool.get().await?;
    let after_ms = i64::try_from(policy.after.as_millis()).unwrap_or(i64::MAX);
    let min = i32::try_from(policy.min_failures).unwrap_or(i32::MAX);
    let rows = pooler::query(&client, DISABLE_FAILING, &[&after_ms, &min]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Flags endpoints with parked deliveries but no `waiting` flag; returns how many.
pub async fn flag_waiting(pool: &Pool) -> Result<i64, DbError> {
    let client = pool.get().await?;
    Ok(pooler::query_one(&client, FLAG_WAITING, &[]).await?.get(0))
}

/// Checks every [`AutoDisable::interval`] (every minute without auto-disable) until `token`
/// is cancelled; a failed check is reported to `health` and made again at the next period.
pub async fn run(
    pool: Pool,
    policy: Option<AutoDisable>,
    health: Health,
    token: CancellationToken,
) {
    let every = policy.as_ref().map_or(IDLE_CHECK, AutoDisable::interval);
    let mut outage = DbTask::new("policy", &health)
        .forgetting(&pool)
        .retrying(Retry::Period(every));
    let mut checks = Checks {
        pool,
        policy,
        every,
    };
    outage.run(&token, &mut checks).await;
}

/// The policy task: one check per step.
struct Checks {
    pool: Pool,
    policy: Option<AutoDisable>,
    every: Duration,
}

impl Step for Checks {
    type Error = DbError;

    async fn step(&mut self, _: &mut Session<'_>) -> Result<Flow, DbError> {
        check(&self.pool, self.policy.as_ref()).await?;
        Ok(Flow::After(self.every))
    }
}

/// One check: parked deliveries flagged, then failing endpoints disabled.
async fn check(pool: &Pool, policy: Option<&AutoDisable>) -> Result<(), DbError> {
    match flag_waiting(pool).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            endpoints = n,
            "found parked deliveries of enabled endpoints"
        ),
        Err(e) => {
            tracing::debug!(error = %e, "could not check for parked deliveries; will retry");
            return Err(e);
        }
    }
    let Some(policy) = policy else {
        return Ok(());
    };
    let disabled = disable_failing(pool, policy).await.inspect_err(|e| {
        tracing::debug!(error = %e, "could not check for failing endpoints; will retry");
    })?;
    for (name, reason) in disabled {
        tracing::warn!(endpoint = %name, %reason,
            "endpoint disabled; fix the receiver, then: hookrelay endpoint enable {name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_run_every_twentieth_of_the_period_within_bounds() {
        let every = |secs: u64| {
            AutoDisable {
                after: Duration::from_secs(secs),
                min_failures: 10,
            }
            .interval()
        };
        assert_eq!(every(5 * 86400), Duration::from_secs(60));
        assert_eq!(every(600), Duration::from_secs(30));
        assert_eq!(every(2), Duration::from_millis(250));
    }
}
