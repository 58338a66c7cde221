//! `hookrelay run`: the worker's settings and its start.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::{shutdown_token, Cli, Target};
use crate::config::{setting as s, WorkerConfig};
use crate::db::pooler::{self, Pooler};
use crate::db::{self, Db};
use crate::pipeline::retry::RetrySchedule;
use crate::pipeline::worker::{self, Schema};

/// Worker settings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Requests in flight at once.
    #[arg(long = s::CONCURRENCY.flag, env = s::CONCURRENCY.env, default_value = s::CONCURRENCY.default_text(),
          allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    pub concurrency: usize,
    /// Most events or deliveries taken by one claim.
    #[arg(long = s::BATCH_SIZE.flag, env = s::BATCH_SIZE.env, default_value = s::BATCH_SIZE.default_text(),
          allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    pub batch_size: usize,
    /// How often to look for work when no notification arrives.
    #[arg(long = s::POLL_INTERVAL.flag, env = s::POLL_INTERVAL.env, default_value = s::POLL_INTERVAL.default_text(),
          value_parser = super::duration)]
    pub poll_interval: Duration,
    /// How long a claimed delivery is held before another worker may take it over.
    #[arg(long = s::LEASE.flag, env = s::LEASE.env, default_value = s::LEASE.default_text(),
          value_parser = super::duration)]
    pub lease: Duration,
    /// Delays between attempts, comma-separated (±20 % jitter is added).
    #[arg(long = s::RETRY_SCHEDULE.flag, env = s::RETRY_SCHEDULE.env, default_value = s::RETRY_SCHEDULE.default_text())]
    pub retry_schedule: String,
    /// Attempts in all before a delivery is dead (default: one more than the schedule's steps).
    #[arg(long = s::MAX_ATTEMPTS.flag, env = s::MAX_ATTEMPTS.env, allow_negative_numbers = true,
          value_parser = super::whole::<u32>)]
    pub max_attempts: Option<u32>,
    /// Request timeout for endpoints without their own.
    #[arg(long = s::REQUEST_TIMEOUT.flag, env = s::REQUEST_TIMEOUT.env, default_value = s::REQUEST_TIMEOUT.default_text(),
          value_parser = super::duration)]
    pub request_timeout: Duration,
    /// Bytes of each response body kept in hookrelay.attempts.
    #[arg(long = s::RESPONSE_EXCERPT_BYTES.flag, env = s::RESPONSE_EXCERPT_BYTES.env,
          default_value = s::RESPONSE_EXCERPT_BYTES.default_text(), allow_negative_numbers = true,
          value_parser = super::whole::<usize>)]
    pub response_excerpt_bytes: usize,
    /// How long a stopping worker lets requests in flight finish.
    #[arg(long = s::SHUTDOWN_TIMEOUT.flag, env = s::SHUTDOWN_TIMEOUT.env, default_value = s::SHUTDOWN_TIMEOUT.default_text(),
          value_parser = super::duration)]
    pub shutdown_timeout: Duration,
    /// This worker's name in the tables (default: host:pid:random).
    #[arg(long = s::WORKER_ID.flag, env = s::WORKER_ID.env)]
    pub worker_id: Option<String>,
    /// A direct database URL for the LISTEN connection, when --database-url goes through a
    /// pooler in transaction mode (which cannot keep a LISTEN); default: --database-url.
    #[arg(long = s::LISTEN_DATABASE_URL.flag, env = s::LISTEN_DATABASE_URL.env, hide_env_values = true)]
    pub listen_database_url: Option<String>,
    /// What is between the worker and the database: none, a pooler (PgBouncer) in session or
    /// transaction mode, or detect it at start (see README, Behind a connection pooler).
    #[arg(long = s::POOLER.flag, env = s::POOLER.env, default_value = s::POOLER.default_text(),
          value_enum)]
    pub pooler: Pooler,
    /// Apply pending schema migrations before starting.
    #[arg(long = s::MIGRATE.flag, env = s::MIGRATE.env)]
    pub migrate: bool,
    /// Keep finished events, deliveries and attempts this long.
    #[arg(long = s::RETENTION.flag, env = s::RETENTION.env, default_value = s::RETENTION.default_text(),
          value_parser = super::duration)]
    pub retention: Duration,
    /// Keep events with a dead delivery this long.
    #[arg(long = s::DEAD_RETENTION.flag, env = s::DEAD_RETENTION.env, default_value = s::DEAD_RETENTION.default_text(),
          value_parser = super::duration)]
    pub dead_retention: Duration,
    /// How often retention runs.
    #[arg(long = s::RETENTION_INTERVAL.flag, env = s::RETENTION_INTERVAL.env,
          default_value = s::RETENTION_INTERVAL.default_text(), value_parser = super::duration)]
    pub retention_interval: Duration,
    /// false pauses delivery: the worker runs but claims nothing, and events wait.
    #[arg(long = s::ENABLED.flag, env = s::ENABLED.env, default_value = s::ENABLED.default_text(),
          action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Address for /metrics, /healthz and /readyz, or "off".
    #[arg(long = s::METRICS_ADDR.flag, env = s::METRICS_ADDR.env, default_value = s::METRICS_ADDR.default_text())]
    pub metrics_addr: String,
    /// Export the worker's spans (fan-out claims, attempts) over OTLP/HTTP to this collector,
    /// e.g. http://127.0.0.1:4318. Unset: the standard OTEL_EXPORTER_OTLP_ENDPOINT, if set.
    #[arg(long = s::OTLP_ENDPOINT.flag, env = s::OTLP_ENDPOINT.env)]
    pub otlp_endpoint: Option<String>,
    /// Metrics labelled by endpoint name: deliveries by outcome, attempt durations, pending
    /// deliveries and the oldest one's age.
    #[arg(long = s::METRICS_PER_ENDPOINT.flag, env = s::METRICS_PER_ENDPOINT.env)]
    pub metrics_per_endpoint: bool,
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
            retention: crate::pipeline::sweep::Retention {
                keep: self.retention,
                keep_dead: self.dead_retention,
                interval: self.retention_interval,
            },
            metrics_addr: s::metrics_addr(&self.metrics_addr).with_context(|| {
                format!(
                    "--metrics-addr {:?} is not an address like 127.0.0.1:9464 (or \"off\")",
                    self.metrics_addr.trim()
                )
            })?,
            allow_networks: self.protect.allow_list()?,
            max_payload_bytes: self.protect.max_payload_bytes,
            disable_after: self.protect.disable_after,
            disable_after_failures: self.protect.disable_after_failures,
            otlp_endpoint: match self.otlp_endpoint.as_deref().map(str::trim) {
                // Checked now, so a typo stops `hookrelay run` before it starts.
                Some(url) if !url.is_empty() => {
                    crate::trace::traces_url(url)?;
                    Some(url.to_string())
                }
                _ => None,
            },
            metrics_per_endpoint: self.metrics_per_endpoint,
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
    let token = shutdown_token();
    let mode = pooler_mode(args.pooler, &target.config()?).await;
    let mut db: Db = db::pool_behind(target.config()?, 4, mode)?;
    if let Some(url) = args.listen_database_url.as_deref() {
        let url = url.trim();
        anyhow::ensure!(
            !url.is_empty(),
            "--listen-database-url (HOOKRELAY_LISTEN_DATABASE_URL) is set but empty: give a \
             direct URL such as postgres://user:password@host:5432/dbname, or unset it"
        );
        db = db.listening_on(url).context("--listen-database-url")?;
    }
    worker::run_with_schema(config, db, schema, token).await?;
    Ok(())
}

/// The pooler mode: as given, or detected. Detection is tried once: /healthz is not served
/// yet and the worker must start while the database is away, so when it cannot be reached the
/// worker assumes no pooler and says so (behind PgBouncer, set `--pooler` outright).
async fn pooler_mode(given: Pooler, config: &tokio_postgres::Config) -> Pooler {
    if given != Pooler::Detect {
        return given;
    }
    let mut worker = config.clone();
    db::worker_session(&mut worker);
    let limit = pooler::detect_limit(config);
    let error = match tokio::time::timeout(limit, pooler::detect(&worker, config)).await {
        Ok(Ok(mode)) => {
            if mode == Pooler::None {
                tracing::debug!("detected a direct connection: no pooler");
            } else {
                tracing::info!(
                    pooler = mode.as_str(),
                    "detected how the database is reached"
                );
            }
            return mode;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "no answer within {}",
            crate::pipeline::retry::human_duration(limit)
        ),
    };
    tracing::warn!(error = %error,
        "could not find out whether a connection pooler is in the way, so assuming none: behind \
         PgBouncer, set --pooler session or --pooler transaction");
    Pooler::None
}
