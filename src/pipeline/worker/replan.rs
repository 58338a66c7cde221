//! Fresh plans while the tables grow.
//!
//! Worker sessions keep one generic plan per statement (see [`crate::db`]), made the first
//! time the statement runs: on a fresh install, against empty tables. Any plan looks cheap on
//! an empty table, and such plans walked whole indexes once the tables had grown; PostgreSQL
//! only plans again after an `ANALYZE`, which autovacuum may take a minute to run. The planner
//! does see the tables' real size whenever it plans, so the worker has its sessions plan again
//! each time the rows it has claimed double, from a thousand on: a handful of re-plans while
//! the tables grow, none once they are steady. Measured by the `cost` integration test (4,000
//! events right after an install, rows read from the server's statistics): events were read
//! 16 to 20 times each and deliveries 500 times; now 3 and 23 to 51.

use deadpool_postgres::Client;

use super::Worker;

/// Rows claimed before the first re-plan.
const FIRST: u64 = 1_000;

/// Counts claimed rows and says when to make the plans again.
#[derive(Debug)]
pub(super) struct Replan {
    claimed: u64,
    next: u64,
}

impl Replan {
    pub(super) fn new() -> Replan {
        Replan {
            claimed: 0,
            next: FIRST,
        }
    }

    /// Adds `rows` claimed; true when the plans should be made again now.
    pub(super) fn count(&mut self, rows: usize) -> bool {
        self.claimed += rows as u64;
        if self.claimed < self.next {
            return false;
        }
        self.next = (self.claimed * 2).max(FIRST);
        true
    }
}

impl Worker {
    /// Has the sessions plan again: this one at its next statements, the pool's idle ones by
    /// closing them (new sessions plan afresh; those in use now are caught at the next
    /// doubling).
    pub(super) async fn replan(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        client.batch_execute("DISCARD PLANS").await?;
        self.stages.db.pool.retain(|_, _| false);
        tracing::debug!("the worker's statements will be planned again: the tables have grown");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_made_again_each_time_the_claimed_rows_double() {
        let mut replan = Replan::new();
        let mut at = Vec::new();
        for batch in 1..=200 {
            if replan.count(100) {
                at.push(batch * 100);
            }
        }
        assert_eq!(at, vec![1_000, 2_000, 4_000, 8_000, 16_000]);
        assert!(!replan.count(0));
    }
}
