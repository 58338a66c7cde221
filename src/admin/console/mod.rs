//! `hookrelay console`: the operator console, a web page served by the binary.
//!
//! Pages (modules `overview`, `endpoints`, `deliveries`, `delivery`) read through the same
//! views and functions as the CLI; `actions` are POSTs that call `operator` and
//! `endpoint`. The console connects with its own database URL: the read-only
//! `hookrelay_operator` role may look and redeliver, and what a role may not do comes back
//! as the database's own permission error, in words.
//!
//! Safe by default ([`security`]): loopback unless a token is given, strict security headers,
//! CSRF tokens on every form, and maud escapes everything it renders. Its stylesheet is
//! embedded; the pages need no script (charts are SVG drawn on the server, `chart`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::admin::migrate::{self, MigrateError};
use crate::db::{self, DbError};

mod actions;
mod chart;
mod deliveries;
mod delivery;
mod endpoints;
mod layout;
mod overview;
pub mod security;

/// `hookrelay console` arguments.
#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// Address to serve the console on. Any address but loopback needs --token.
    #[arg(long, env = "HOOKRELAY_CONSOLE_ADDR", default_value = "127.0.0.1:9465")]
    pub addr: SocketAddr,
    /// Token every request must carry (open http://ADDR/?token=… once in the browser, or send
    /// `Authorization: Bearer …`). Required on any address but loopback.
    #[arg(long, env = "HOOKRELAY_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Errors starting the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "the console would listen on {0}, which is not loopback, without a token: give \
         --token (or HOOKRELAY_CONSOLE_TOKEN) with a long random value such as the output of \
         `openssl rand -hex 32`, or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    #[error(
        "the console token is {0} characters long; use at least {MIN_TOKEN} (for example the \
         output of `openssl rand -hex 32`)"
    )]
    WeakToken(usize),
    #[error("could not listen on {addr} for the console: {source} (is another process using it? pick another with --addr)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Schema(#[from] MigrateError),
    #[error("could not connect to the database for the console: {0}")]
    Connect(String),
}

/// The shortest token accepted.
pub const MIN_TOKEN: usize = 16;

/// Shared by every request: the database pool and the secrets of this process.
#[derive(Clone)]
pub(crate) struct Console {
    pub pool: deadpool_postgres::Pool,
    pub keys: Arc<security::Keys>,
}

/// The planner settings of the console's queries. Connections come from hookrelay's pool,
/// whose sessions are set up for the worker's few fixed statements (generic plans, no
/// sequential, bitmap or incremental-sort scans: see `db::WORKER_PLANNING`). The console's
/// searches are ad hoc, and those settings made them slow on large tables (measured with 1 M
/// deliveries: 136 ms instead of 0.2 ms to find one event id, 123 ms instead of 0.1 ms for an
/// endpoint's dead deliveries), so each connection is given back PostgreSQL's defaults.
const PLANNING: &str = "SET plan_cache_mode = auto; SET enable_seqscan = on; \
                        SET enable_bitmapscan = on; SET enable_incremental_sort = on";

impl Console {
    /// A connection for one request, planning as PostgreSQL does by default.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, layout::PageError> {
        let client = self.pool.get().await?;
        client.batch_execute(PLANNING).await?;
        Ok(client)
    }
}

/// Checks the address and token before anything else: a console that would be reachable from
/// other machines without a token refuses to start.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), ConsoleError> {
    match token {
        Some(t) if t.chars().count() < MIN_TOKEN => Err(ConsoleError::WeakToken(t.chars().count())),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(ConsoleError::NeedsToken(addr)),
    }
}

/// The console's routes, with authentication and security headers around every one.
pub(crate) fn router(console: Console) -> axum::Router {
    let keys = console.keys.clone();
    axum::Router::new()
        .route("/", get(overview::page))
        .route("/endpoints", get(endpoints::list))
        .route("/endpoints/{name}", get(endpoints::detail))
        .route("/endpoints/{name}/enable", post(actions::enable))
        .route("/endpoints/{name}/disable", post(actions::disable))
        .route(
            "/endpoints/{name}/redeliver-dead",
            post(actions::redeliver_dead),
        )
        .route("/deliveries", get(deliveries::search))
        .route("/deliveries/{id}", get(delivery::page))
        .route("/deliveries/{id}/redeliver", post(actions::redeliver))
        .route("/assets/console.css", get(layout::stylesheet))
        .fallback(layout::not_found)
        .with_state(console)
        .layer(axum::middleware::from_fn_with_state(keys, security::guard))
}

/// Serves the console on `addr` with connections from `pool` until `cancel` is cancelled.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    pool: deadpool_postgres::Pool,
    addr: SocketAddr,
    token: Option<&str>,
    cancel: CancellationToken,
) -> Result<SocketAddr, ConsoleError> {
    check_exposure(addr, token)?;
    let console = Console {
        pool,
        keys: Arc::new(security::Keys::new(token)),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    let app = router(console);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the console server stopped");
        }
    });
    Ok(bound)
}

/// `hookrelay console`: connects to `url`, checks the schema, serves until `cancel`.
pub async fn run(
    url: &str,
    connect_timeout: std::time::Duration,
    args: &ConsoleArgs,
    cancel: CancellationToken,
) -> Result<(), ConsoleError> {
    check_exposure(args.addr, args.token.as_deref())?;
    let db = db::pool_from(db::config_with(url, Some(connect_timeout))?, 4)?;
    {
        let client = db
            .pool
            .get()
            .await
            .map_err(|e| ConsoleError::Connect(format!("{} ({e})", db::redact_url(url))))?;
        migrate::check(&client).await?;
    }
    let bound = serve(db.pool, args.addr, args.token.as_deref(), cancel.clone()).await?;
    let how = if args.token.is_some() {
        " (open it once with ?token=… to sign in)"
    } else {
        ""
    };
    println!("hookrelay console on http://{bound}/{how}; Ctrl-C to stop");
    cancel.cancelled().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        console: ConsoleArgs,
    }

    #[test]
    fn by_default_the_console_listens_on_loopback_and_elsewhere_only_with_a_token() {
        let args = Command::try_parse_from(["console"]).unwrap().console;
        assert_eq!(args.addr.to_string(), "127.0.0.1:9465");
        assert!(args.token.is_none());
        check_exposure(args.addr, None).expect("loopback needs no token");
        check_exposure("[::1]:9465".parse().unwrap(), None).expect("nor does IPv6 loopback");
        for exposed in ["0.0.0.0:9465", "[::]:9465", "192.0.2.7:9465"] {
            let e = check_exposure(exposed.parse().unwrap(), None).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "the console would listen on {exposed}, which is not loopback, without a \
                     token: give --token"
                )),
                "{e}"
            );
            check_exposure(exposed.parse().unwrap(), Some("0123456789abcdef"))
                .expect("a long enough token opens it");
        }
        let e = check_exposure("0.0.0.0:9465".parse().unwrap(), Some("short")).unwrap_err();
        assert!(e.to_string().contains("is 5 characters long"), "{e}");
    }
}
