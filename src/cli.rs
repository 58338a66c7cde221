//! The command line: argument definitions and the code behind each command.
//!
//! Every flag can also be set with an environment variable `HOOKRELAY_…`; the database URL
//! also falls back to `DATABASE_URL`. Errors print as one line and exit with status 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::db::{self, Db};
use crate::emit::{self, NewEvent};
use crate::endpoint::{self, EndpointInfo, NewEndpoint};
use crate::retry::RetrySchedule;
use crate::sign::Scheme;
use crate::track::{self, TrackRequest};
use crate::{demo, embedded, migrate, worker};

/// hookrelay relays events from a PostgreSQL outbox to signed webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookrelay", version, about, max_term_width = 100)]
pub struct Cli {
    /// PostgreSQL URL (also read from DATABASE_URL). Without one, a private cluster under
    /// --data-dir is started or reused.
    #[arg(
        long,
        global = true,
        env = "HOOKRELAY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Where the embedded PostgreSQL cluster lives when no database URL is given.
    #[arg(
        long,
        global = true,
        env = "HOOKRELAY_DATA_DIR",
        default_value = ".hookrelay"
    )]
    pub data_dir: PathBuf,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, global = true, env = "HOOKRELAY_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install or upgrade the hookrelay schema (idempotent).
    Migrate,
    /// Run the worker: fan out, deliver, retry, until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Show hookrelay end to end on a private database with a local receiver.
    Demo(DemoArgs),
    /// Manage endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Write an event to the outbox, as an application would with hookrelay.emit().
    Emit(EmitArgs),
    /// Emit created/updated/deleted events from a table's rows (run again to reconfigure).
    Track(TrackArgs),
    /// Stop emitting events from a table.
    Untrack {
        /// The table, as SQL reads it: orders, store."Order".
        table: String,
    },
}

/// `track` arguments.
#[derive(Debug, Args)]
pub struct TrackArgs {
    /// The table, as SQL reads it: orders, store."Order".
    #[arg(required_unless_present = "list")]
    pub table: Option<String>,
    /// Events to emit, comma-separated, of created, updated, deleted, truncated
    /// (default: created,updated,deleted; TRUNCATE is then refused).
    #[arg(long, value_delimiter = ',')]
    pub events: Option<Vec<String>>,
    /// Columns left out of every event, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Column whose value becomes the event's account_id.
    #[arg(long)]
    pub account_column: Option<String>,
    /// Model name events carry (default: schema.table).
    #[arg(long)]
    pub model: Option<String>,
    /// List the tracked tables instead.
    #[arg(long, conflicts_with_all = ["table", "events", "exclude", "account_column", "model"])]
    pub list: bool,
}

/// Worker settings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Requests in flight at once.
    #[arg(long, env = "HOOKRELAY_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Most events or deliveries taken by one claim.
    #[arg(long, env = "HOOKRELAY_BATCH_SIZE", default_value_t = 100)]
    pub batch_size: usize,
    /// How often to look for work when no notification arrives.
    #[arg(long, env = "HOOKRELAY_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// How long a claimed delivery is held before another worker may take it over.
    #[arg(long, env = "HOOKRELAY_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Delays between attempts, comma-separated (±20 % jitter is added).
    #[arg(long, env = "HOOKRELAY_RETRY_SCHEDULE", default_value = crate::retry::DEFAULT_SCHEDULE)]
    pub retry_schedule: String,
    /// Attempts in all before a delivery is dead (default: one more than the schedule's steps).
    #[arg(long, env = "HOOKRELAY_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Request timeout for endpoints without their own.
    #[arg(long, env = "HOOKRELAY_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Bytes of each response body kept in hookrelay.attempts.
    #[arg(long, env = "HOOKRELAY_RESPONSE_EXCERPT_BYTES", default_value_t = 4096)]
    pub response_excerpt_bytes: usize,
    /// How long a stopping worker lets requests in flight finish.
    #[arg(long, env = "HOOKRELAY_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// This worker's name in the tables (default: host:pid:random).
    #[arg(long, env = "HOOKRELAY_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Apply pending schema migrations before starting.
    #[arg(long, env = "HOOKRELAY_MIGRATE")]
    pub migrate: bool,
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
        };
        config.validate()?;
        Ok(config)
    }
}

/// Demo settings.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the worker and receiver running after the sample events, until Ctrl-C.
    #[arg(long, env = "HOOKRELAY_DEMO_KEEP_RUNNING")]
    pub keep_running: bool,
}

/// Endpoint commands.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Add an endpoint (a secret is generated unless given).
    Add(Box<EndpointAddArgs>),
    /// List endpoints (secrets shown only as fingerprints).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one endpoint.
    Show {
        name: String,
        /// Print the signing secret too.
        #[arg(long)]
        reveal_secret: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume deliveries to an endpoint.
    Enable { name: String },
    /// Pause deliveries to an endpoint (pending ones wait until it is enabled).
    Disable { name: String },
    /// Remove an endpoint with its deliveries and attempts.
    Remove { name: String },
}

/// `endpoint add` arguments.
#[derive(Debug, Args)]
pub struct EndpointAddArgs {
    /// Unique name: letters, digits, ".", "_" or "-".
    #[arg(long)]
    pub name: String,
    /// http:// or https:// URL to POST to.
    #[arg(long)]
    pub url: String,
    /// Signing secret (default: 32 random bytes). Prefer the environment variable.
    #[arg(long, env = "HOOKRELAY_ENDPOINT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Only these events, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub events: Vec<String>,
    /// Only these models, comma-separated, e.g. store.Order (default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Only events of this account (default: every account).
    #[arg(long)]
    pub account: Option<String>,
    /// Signature scheme: hookrelay, body-hex or standard.
    #[arg(long, default_value = "hookrelay")]
    pub scheme: String,
    /// Attempts in all for this endpoint (default: the worker's).
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Request timeout for this endpoint, e.g. 5s (default: the worker's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Keep only these fields of object and changes: a JSON array for every model, or an
    /// object per model, e.g. '{"store.Order": ["id", "total"]}'.
    #[arg(long)]
    pub include_fields: Option<String>,
    /// Replace these fields' values, per model, e.g.
    /// '{"store.Customer": {"email": "***@***.com"}}' ("*" for every model).
    #[arg(long)]
    pub redact_fields: Option<String>,
}

/// `emit` arguments.
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Event name, e.g. order.paid.
    pub event: String,
    /// The object, as a JSON object.
    #[arg(long)]
    pub object: Option<String>,
    /// Model name, e.g. store.Order.
    #[arg(long)]
    pub model: Option<String>,
    /// Object id (default: the object's "id").
    #[arg(long)]
    pub object_id: Option<String>,
    /// Changes, as a JSON object {"field": {"old": …, "new": …}}.
    #[arg(long)]
    pub changes: Option<String>,
    /// Account the event belongs to.
    #[arg(long)]
    pub account: Option<String>,
    /// Acting user: a JSON object or an id.
    #[arg(long)]
    pub actor: Option<String>,
}

/// Runs the parsed command and turns its result into an exit status.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Migrate => {
            let target = Target::resolve(&cli).await?;
            let mut client = connect(&target.url).await?;
            let report = migrate::migrate(&mut client).await?;
            if report.applied.is_empty() {
                println!(
                    "schema hookrelay is up to date (version {})",
                    report.version
                );
            } else {
                for name in &report.applied {
                    println!("applied {name}");
                }
                println!("schema hookrelay is at version {}", report.version);
            }
            Ok(())
        }
        Command::Run(args) => run(&cli, args).await,
        Command::Demo(args) => {
            Ok(demo::run(&cli.data_dir, args.keep_running, shutdown_token()).await?)
        }
        Command::Endpoint(command) => endpoint_command(&cli, command).await,
        Command::Track(args) => track_command(&cli, args).await,
        Command::Untrack { table } => {
            let target = Target::ready(&cli).await?;
            let client = connect(&target.url).await?;
            if track::untrack(&client, table).await? {
                println!("stopped tracking {table}");
            } else {
                println!("{table} was not tracked; nothing to do");
            }
            Ok(())
        }
        Command::Emit(args) => {
            let target = Target::ready(&cli).await?;
            let event = NewEvent {
                event: args.event.clone(),
                object: args
                    .object
                    .as_deref()
                    .map(|o| emit::json_object("--object", o))
                    .transpose()?,
                model: args.model.clone(),
                object_id: args.object_id.clone(),
                changes: args
                    .changes
                    .as_deref()
                    .map(|c| emit::json_object("--changes", c))
                    .transpose()?,
                account_id: args.account.clone(),
                actor: args.actor.clone(),
            };
            let mut client = connect(&target.url).await?;
            let id = emit::emit(&mut client, &event).await?;
            println!("{}", crate::payload::event_id(&id));
            Ok(())
        }
    }
}

/// Where the database is, and whether it is the embedded one.
struct Target {
    url: String,
    embedded: bool,
}

impl Target {
    /// The database given, or the embedded cluster's `hookrelay` database (started if needed).
    async fn resolve(cli: &Cli) -> Result<Target> {
        let given = cli
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = given {
            return Ok(Target {
                url,
                embedded: false,
            });
        }
        let dir = cli.data_dir.clone();
        let cluster = tokio::task::spawn_blocking(move || embedded::start_persistent(&dir))
            .await
            .context("starting the embedded PostgreSQL")??;
        cluster.ensure_database("hookrelay").await?;
        let url = cluster.url("hookrelay");
        tracing::debug!(%url, data = %cluster.data_dir.display(), "using the embedded PostgreSQL");
        Ok(Target {
            url,
            embedded: true,
        })
    }

    /// Like [`Target::resolve`], and the schema installed: migrated automatically on the
    /// embedded database, checked (with a hint to migrate) on any other.
    async fn ready(cli: &Cli) -> Result<Target> {
        let target = Target::resolve(cli).await?;
        let mut client = connect(&target.url).await?;
        if target.embedded {
            migrate::migrate(&mut client).await?;
        } else {
            migrate::check(&client).await?;
        }
        Ok(target)
    }
}

/// One connection, driven in the background.
async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let config = db::config(url)?;
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        anyhow::anyhow!(
            "could not connect to {}: {}",
            db::redact_url(url),
            db::explain(&e)
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// A token cancelled by the first SIGTERM or SIGINT; a second one exits at once.
pub fn shutdown_token() -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("could not install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: finishing requests in flight (signal again to exit at once)");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        std::process::exit(130);
    });
    token
}

async fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let config = args.worker_config()?;
    let target = Target::resolve(cli).await?;
    if target.embedded {
        tracing::info!(url = %target.url, "using the embedded PostgreSQL");
    }
    let mut client = connect(&target.url).await?;
    if target.embedded || args.migrate {
        migrate::migrate(&mut client).await?;
    } else {
        migrate::check(&client).await?;
    }
    drop(client);
    let db: Db = db::pool(&target.url, 4)?;
    worker::run(config, db, shutdown_token()).await?;
    Ok(())
}

async fn endpoint_command(cli: &Cli, command: &EndpointCommand) -> Result<()> {
    let target = Target::ready(cli).await?;
    let client = connect(&target.url).await?;
    match command {
        EndpointCommand::Add(args) => {
            let scheme: Scheme = args.scheme.parse()?;
            let timeout_ms = args
                .timeout
                .map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
            let new = NewEndpoint {
                name: args.name.clone(),
                url: args.url.clone(),
                secret: args.secret.clone(),
                events: args.events.clone(),
                models: args.models.clone(),
                account_id: args.account.clone(),
                scheme,
                max_attempts: args.max_attempts,
                timeout_ms,
                include_fields: args
                    .include_fields
                    .as_deref()
                    .map(|j| endpoint::shaping_json("--include-fields", j))
                    .transpose()?,
                redact_fields: args
                    .redact_fields
                    .as_deref()
                    .map(|j| endpoint::shaping_json("--redact-fields", j))
                    .transpose()?,
            };
            let (info, generated) = endpoint::add(&client, &new).await?;
            println!("added endpoint {} -> {}", info.name, info.url);
            if generated {
                println!(
                    "generated a {} secret ({}); show it with: hookrelay endpoint show {} --reveal-secret",
                    info.signature_scheme, info.secret_fingerprint, info.name
                );
            }
        }
        EndpointCommand::List { json } => {
            let endpoints = endpoint::list(&client).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&endpoints)?);
            } else {
                print_endpoints(&endpoints);
            }
        }
        EndpointCommand::Show {
            name,
            reveal_secret,
            json,
        } => {
            let info = endpoint::get(&client, name).await?;
            let secret = if *reveal_secret {
                Some(endpoint::secret(&client, name).await?)
            } else {
                None
            };
            if *json {
                let mut value = serde_json::to_value(&info)?;
                if let Some(secret) = secret {
                    value["secret"] = secret.into();
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_endpoint(&info, secret.as_deref());
            }
        }
        EndpointCommand::Enable { name } => {
            endpoint::set_active(&client, name, true).await?;
            println!("endpoint {name} enabled");
        }
        EndpointCommand::Disable { name } => {
            endpoint::set_active(&client, name, false).await?;
            println!("endpoint {name} disabled; its pending deliveries wait until it is enabled");
        }
        EndpointCommand::Remove { name } => {
            endpoint::remove(&client, name).await?;
            println!("endpoint {name} removed");
        }
    }
    Ok(())
}

async fn track_command(cli: &Cli, args: &TrackArgs) -> Result<()> {
    let target = Target::ready(cli).await?;
    let client = connect(&target.url).await?;
    let Some(table) = &args.table else {
        let tables = track::list(&client).await?;
        if tables.is_empty() {
            println!("no tracked tables; track one with: hookrelay track TABLE");
        }
        for t in &tables {
            println!("{}", track::describe(t));
        }
        return Ok(());
    };
    let request = TrackRequest {
        table: table.clone(),
        events: args.events.clone(),
        exclude_columns: args.exclude.clone(),
        account_column: args.account_column.clone(),
        model: args.model.clone(),
    };
    let tracked = track::track(&client, &request).await?;
    println!("tracking {}", track::describe(&tracked));
    Ok(())
}

fn or_all(list: &[String]) -> String {
    if list.is_empty() {
        "*".into()
    } else {
        list.join(",")
    }
}

fn print_endpoints(endpoints: &[EndpointInfo]) {
    let rows: Vec<[String; 7]> = endpoints
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                if e.active { "active" } else { "disabled" }.into(),
                e.url.clone(),
                or_all(&e.events),
                or_all(&e.models),
                e.account_id.clone().unwrap_or_else(|| "*".into()),
                e.secret_fingerprint.clone(),
            ]
        })
        .collect();
    let header = [
        "NAME", "STATE", "URL", "EVENTS", "MODELS", "ACCOUNT", "SECRET",
    ]
    .map(String::from);
    print_table(&header, &rows);
}

fn print_endpoint(e: &EndpointInfo, secret: Option<&str>) {
    let lines = [
        ("name", e.name.clone()),
        ("url", e.url.clone()),
        ("state", if e.active { "active" } else { "disabled" }.into()),
        ("events", or_all(&e.events)),
        ("models", or_all(&e.models)),
        (
            "account",
            e.account_id.clone().unwrap_or_else(|| "*".into()),
        ),
        ("scheme", e.signature_scheme.clone()),
        (
            "secret",
            secret.map_or_else(|| e.secret_fingerprint.clone(), str::to_string),
        ),
        (
            "max attempts",
            e.max_attempts
                .map_or("worker default".into(), |n| n.to_string()),
        ),
        (
            "timeout",
            e.timeout_ms
                .map_or("worker default".into(), |n| format!("{n} ms")),
        ),
        (
            "include fields",
            e.include_fields
                .as_ref()
                .map_or("all".into(), |v| v.to_string()),
        ),
        (
            "redact fields",
            e.redact_fields
                .as_ref()
                .map_or("none".into(), |v| v.to_string()),
        ),
        ("created", e.created_at.to_rfc3339()),
    ];
    for (k, v) in lines {
        println!("{k:>14}: {v}");
    }
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in rows {
        line(row);
    }
}
