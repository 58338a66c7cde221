//! `hookrelay run`: the worker's settings and its start.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::{shutdown_token, Cli, Target};
use crate::config::WorkerConfig;
use crate::db::{self, Db};
use crate::retry::RetrySchedule;
use crate::worker::{self, Schema};

/// Worker settings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Requests in flight at once.
    #[arg(long, env = "HOOKRELAY_CONCURRENCY", default_value_t = 64, allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    pub concurrency: usize,
    /// Most events or deliveries taken by one claim.
    #[arg(long, env = "HOOKRELAY_BATCH_SIZE", default_value_t = 100, allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    pub batch_size: usize,
    /// How often to look for work when no notification arrives.
    #[arg(long, env = "HOOKRELAY_POLL_INTERVAL", default_value = "1s", value_parser = super::duration)]
    pub poll_interval: Duration,
    /// How long a claimed delivery is held before another worker may take it over.
    #[arg(long, env = "HOOKRELAY_LEASE", default_value = "60s", value_parser = super::duration)]
    pub lease: Duration,
    /// Delays between attempts, comma-separated (±20 % jitter is added).
    #[arg(long, env = "HOOKRELAY_RETRY_SCHEDULE", default_value = crate::retry::DEFAULT_SCHEDULE)]
    pub retry_schedule: String,
    /// Attempts in all before a delivery is dead (default: one more than the schedule's steps).
    #[arg(long, env = "HOOKRELAY_MAX_ATTEMPTS", allow_negative_numbers = true, value_parser = super::whole::<u32>)]
    pub max_attempts: Option<u32>,
    /// Request timeout for endpoints without their own.
    #[arg(long, env = "HOOKRELAY_REQUEST_TIMEOUT", default_value = "10s", value_parser = super::duration)]
    pub request_timeout: Duration,
    /// Bytes of each response body kept in hookrelay.attempts.
    #[arg(long, env = "HOOKRELAY_RESPONSE_EXCERPT_BYTES", default_value_t = 4096, allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    pub response_excerpt_bytes: usize,
    /// How long a stopping worker lets requests in flight finish.
    #[arg(long, env = "HOOKRELAY_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = super::duration)]
    pub shutdown_timeout: Duration,
    /// This worker's name in the tables (default: host:pid:random).
    #[arg(long, env = "HOOKRELAY_WORKER_ID")]
    pub worker_id: Option<String>,
    /// A direct database URL for the LISTEN connection, when --database-url goes through a
    /// pooler in transaction mode (which cannot keep a LISTEN); default: --database-url.
    #[arg(long, env = "HOOKRELAY_LISTEN_DATABASE_URL", hide_env_values = true)]
    pub listen_database_url: Option<String>,
    /// Apply pending schema migrations before starting.
    #[arg(long, env = "HOOKRELAY_MIGRATE")]
    pub migrate: bool,
    /// Keep finished events, deliveries and attempts this long.
    #[arg(long, env = "HOOKRELAY_RETENTION", default_value = "7d", value_parser = super::duration)]
    pub retention: Duration,
    /// Keep events with a dead delivery this long.
    #[arg(long, env = "HOOKRELAY_DEAD_RETENTION", default_value = "30d", value_parser = super::duration)]
    pub dead_retention: Duration,
    /// How often retention runs.
    #[arg(long, env = "HOOKRELAY_RETENTION_INTERVAL", default_value = "1m", value_parser = super::duration)]
    pub retention_interval: Duration,
    /// false pauses delivery: the worker runs but claims nothing, and events wait.
    #[arg(long, env = "HOOKRELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Address for /metrics, /healthz and /readyz, or "off".
    #[arg(long, env = "HOOKRELAY_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    #[command(flatten)]
    pub protect: super::protect::ProtectArgs,
}

impl RunArgs {
    /// The worker configuration these arguments describe.
    pub fn worker_config(&self) -> Result<WorkerConfig> {
        let retry_schedule =
            RetrySchedule::parse(&self.retry_schedule).context("--retry-schedule")?;
        let config = WorkerConfig {
            concurrency: self.concurrency,
            batch_size: self.batch_size,
            poll_interval: self.poll_interval,
            lease: self.lease,
            retry_schedule,
            max_attempts: self.max_attempts,
            request_timeout: self.request_timeout,
            excerpt_bytes: self.response_excerpt_bytes,
            shutdown_timeout: self.shutdown_timeout,
            worker_id: self
                .worker_id
                .clone()
                .unwrap_or_else(crate::config::default_worker_id),
            enabled: self.enabled,
            retention: crate::sweep::Retention {
                keep: self.retention,
                keep_dead: self.dead_retention,
                interval: self.retention_interval,
            },
            metrics_addr: match self.metrics_addr.trim() {
                "off" | "" => None,
                addr => Some(addr.parse().with_context(|| {
                    format!("--metrics-addr {addr:?} is not an address like 127.0.0.1:9464 (or \"off\")")
                })?),
            },
            allow_networks: self.protect.allow_list()?,
            max_payload_bytes: self.protect.max_payload_bytes,
            disable_after: self.protect.disable_after,
            disable_after_failures: self.protect.disable_after_failures,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Runs the worker until SIGTERM or SIGINT. The schema is checked (or, with `--migrate` and on
/// the embedded database, migrated) by the worker itself, which retries while the database is
/// unreachable instead of exiting.
pub(super) async fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let config = args.worker_config()?;
    let target = Target::resolve(cli).await?;
    let schema = if target.embedded || args.migrate {
        Schema::Migrate(Box::new(target.config()?))
    } else {
        Schema::Check
    };
    let mut db: Db = db::pool_from(target.config()?, 4)?;
    if let Some(url) = args.listen_database_url.as_deref() {
        let url = url.trim();
        anyhow::ensure!(
            !url.is_empty(),
            "--listen-database-url (HOOKRELAY_LISTEN_DATABASE_URL) is set but empty: give a \
             direct URL such as postgres://user:password@host:5432/dbname, or unset it"
        );
        db = db.listening_on(url).context("--listen-database-url")?;
    }
    worker::run_with_schema(config, db, schema, shutdown_token()).await?;
    Ok(())
}
