//! The statements behind the pacer's idle and busy decisions: our row in `hookrelay.workers`
//! says whether inserts should notify us, and the idle check says when work is next due.

use std::time::{Duration, SystemTime};

use deadpool_postgres::Client;

use crate::db::pooler;
use tokio::time::Instant;

use super::Worker;

const WORKER_IDLE: &str = include_str!("../../../sql/queries/worker_idle.sql");
const WORKER_BUSY: &str = include_str!("../../../sql/queries/worker_busy.sql");

impl Worker {
    /// In the same round trip as a claim: stops inserts from notifying us (`go_busy`).
    pub(super) async fn set_busy(
        &self,
        client: &Client,
        go_busy: bool,
    ) -> Result<(), crate::db::DbError> {
        if go_busy {
            pooler::execute(client, WORKER_BUSY, &[&self.config.worker_id]).await?;
        }
        Ok(())
    }

    /// Marks the worker idle; returns when there is next something to claim, and whether some
    /// endpoint is at its max_in_flight. Measures the database's clock again.
    pub(super) async fn set_idle(
        &mut self,
        client: &Client,
    ) -> Result<(Option<Instant>, bool), crate::db::DbError> {
        let pid = std::process::id() as i32;
        let sent = SystemTime::now();
        let row = pooler::query_one(
            client,
            WORKER_IDLE,
            &[&self.config.worker_id, &self.stages.host, &pid],
        )
        .await?;
        let due_in_ms: Option<i64> = row.get(0);
        let capped: bool = row.get(1);
        let server: SystemTime = row.try_get(2)?;
        self.clock.measured(sent, SystemTime::now(), server);
        let due = due_in_ms.map(|ms| Instant::now() + Duration::from_millis(ms.max(0) as u64));
        Ok((due, capped))
    }
}
