//! Waiting for work: the `waiting` flag that makes inserts notify an idle worker, and the
//! polling mode a worker switches to while commits are too frequent for notifications.

use std::time::Duration;

use deadpool_postgres::Client;

use crate::db::pooler;
use tokio::time::Instant;

use super::Worker;

const WORKER_IDLE: &str = include_str!("../../sql/queries/worker_idle.sql");
const WORKER_BUSY: &str = include_str!("../../sql/queries/worker_busy.sql");

/// Notifications for a single wake-up that switch the worker from waiting to polling.
pub(super) const BURST_NOTIFICATIONS: u64 = 3;

/// Poll interval while polling instead of waiting for notifications.
pub(super) const FAST_POLL: Duration = Duration::from_millis(5);

/// How long polling goes on after the last claim that found work.
pub(super) const LINGER: Duration = Duration::from_millis(250);

impl Worker {
    /// Many notifications for one wake-up mean commits arrive faster than the worker can go
    /// idle and be woken, and every notifying commit takes a database-wide lock: poll for a
    /// while instead of asking to be notified.
    pub(super) fn watch_notification_burst(&mut self) {
        let burst = self
            .metrics
            .notifications
            .get()
            .saturating_sub(self.notes_at_idle);
        if burst >= BURST_NOTIFICATIONS && self.polling.is_none() {
            tracing::debug!(
                burst,
                "commits are frequent: polling instead of waiting to be notified"
            );
            self.polling = Some(Instant::now());
        }
    }

    /// In polling mode, whether to stay in it: until nothing was found for [`LINGER`].
    pub(super) fn keep_polling(&mut self, found: bool) -> bool {
        let Some(quiet_since) = self.polling else {
            return false;
        };
        let now = Instant::now();
        if found {
            self.polling = Some(now);
            return true;
        }
        if now.duration_since(quiet_since) < LINGER {
            return true;
        }
        self.polling = None;
        false
    }

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
    /// endpoint is at its max_in_flight.
    pub(super) async fn set_idle(
        &self,
        client: &Client,
    ) -> Result<(Option<Instant>, bool), crate::db::DbError> {
        let pid = std::process::id() as i32;
        let row = pooler::query_one(
            client,
            WORKER_IDLE,
            &[&self.config.worker_id, &self.host, &pid],
        )
        .await?;
        let due_in_ms: Option<i64> = row.get(0);
        let capped: bool = row.get(1);
        let due = due_in_ms.map(|ms| Instant::now() + Duration::from_millis(ms.max(0) as u64));
        Ok((due, capped))
    }
}
