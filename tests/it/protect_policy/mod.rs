//! Delivery policy toward receivers: redirects are not followed, `410 Gone` disables and
//! cancels, `Retry-After` sets the next attempt within bounds, oversized payloads are never
//! sent, response bodies are read only up to the cap, the timeout covers a trickled body, and
//! endpoints failing for too long are disabled until an operator enables them again.

mod auto_disable;
mod bodies;
mod gone;
mod redirects;
mod retry_after;

use std::net::SocketAddr;

use crate::support::TestDb;

const SECRET: &str = "test-secret-0123456789";

/// Serves `app` on 127.0.0.1.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Runs `sql` (a setting change) against the test database.
async fn set(db: &TestDb, sql: &str) {
    db.client.batch_execute(sql).await.unwrap();
}

#[tokio::test]
async fn worker_sessions_have_statement_and_lock_timeouts() {
    let db = TestDb::new().await;
    let pool = hookrelay::db::pool(&db.url, 1).unwrap();
    let client = pool.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),
                    current_setting('idle_in_transaction_session_timeout')",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(got, ("10s".into(), "5s".into(), "1min".into()));
}
