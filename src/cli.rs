//! The command line: argument definitions and the code behind each command.
//!
//! Every setting's flag, environment variable `HOOKRELAY_…` and default come from
//! [`crate::config::setting`]; the database URL also falls back to `DATABASE_URL`. Errors print as one line and exit with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::admin::emit::{self, NewEvent};
use crate::admin::migrate;
use crate::config::setting as s;
use crate::db;
use crate::db::embedded;

mod backfill;
pub(crate) mod demo;
mod endpoint;
mod operate;
mod protect;
mod replay;
pub(crate) mod report;
mod rotate;
mod run;
mod schema;
pub mod settings;
mod show;
mod track;
mod verify;

pub use endpoint::{EndpointAddArgs, EndpointCommand};
pub use operate::{DeliveriesArgs, DeliveryCommand, RedeliverArgs};
pub use run::RunArgs;
pub use schema::MigrateArgs;
pub use track::TrackArgs;

/// hookrelay relays events from a PostgreSQL outbox to signed webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookrelay", version, about, max_term_width = 100)]
pub struct Cli {
    /// PostgreSQL URL (also read from DATABASE_URL). Without one, a private cluster under
    /// --data-dir is started or reused.
    #[arg(long = s::DATABASE_URL.flag, global = true, env = s::DATABASE_URL.env, hide_env_values = true)]
    pub database_url: Option<String>,

    /// How long connecting to the database may take, handshake included, when the URL has no
    /// ?connect_timeout of its own.
    #[arg(long = s::CONNECT_TIMEOUT.flag, global = true, env = s::CONNECT_TIMEOUT.env,
          default_value = s::CONNECT_TIMEOUT.default_text(), value_parser = duration)]
    pub connect_timeout: std::time::Duration,

    /// Where the embedded PostgreSQL cluster lives when no database URL is given.
    #[arg(long = s::DATA_DIR.flag, global = true, env = s::DATA_DIR.env, default_value = s::DATA_DIR.default_text())]
    pub data_dir: PathBuf,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long = s::LOG.flag, global = true, env = s::LOG.env, default_value = s::LOG.default_text())]
    pub log: String,

    /// Log lines as text or as JSON objects.
    #[arg(long = s::LOG_FORMAT.flag, global = true, env = s::LOG_FORMAT.env,
          default_value = s::LOG_FORMAT.default_text(), value_enum)]
    pub log_format: LogFormat,

    // `[[endpoints]]` is TOML, not a link; the help text shows it as written.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// A TOML file with settings (by flag name, e.g. poll_interval = "1s") and [[endpoints]].
    /// Flags and environment variables override it.
    #[arg(long, global = true, env = "HOOKRELAY_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The tracing filter for `--log`. At the info and warn levels the database libraries' own
/// lines about lost connections ("Connection error: db error", server notices such as
/// "terminating connection due to administrator command") are left out: hookrelay reports an
/// outage once itself, with its cause and fix (see [`crate::db::problem`]). Other levels and
/// filters with directives of their own are used as given.
pub fn log_filter(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "info" => "info,deadpool=error,tokio_postgres=warn".into(),
        "warn" => "warn,deadpool=error".into(),
        _ => level.to_string(),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install or upgrade the hookrelay schema (idempotent), or print its SQL.
    Migrate(MigrateArgs),
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
    /// Check a received request's signature and timestamp (for receivers; no database).
    Verify(verify::VerifyArgs),
    /// List deliveries, newest first.
    Deliveries(DeliveriesArgs),
    /// Look at one delivery.
    #[command(subcommand)]
    Delivery(DeliveryCommand),
    /// Send deliveries again, with a fresh attempt budget.
    Redeliver(RedeliverArgs),
    /// Write one event per existing row of a tracked table, in batches; resumable.
    Backfill(backfill::BackfillArgs),
    /// Send past events to one endpoint again, in event order (including ones it received).
    Replay(replay::ReplayArgs),
    /// Serve the operator console, a web page: health, deliveries, redelivery.
    Console(crate::admin::console::ConsoleArgs),
    /// Backlog and per-endpoint health.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Demo settings.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after the tour instead of running until Ctrl-C.
    #[arg(long, env = "HOOKRELAY_DEMO_ONCE")]
    pub once: bool,
    /// Also serve the operator console (`hookrelay console`), on 127.0.0.1:9465 or the
    /// address given.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9465")]
    pub console: Option<std::net::SocketAddr>,
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
    /// The sequence the event belongs to for ordered endpoints, e.g. customer:42 (default:
    /// its model and object id).
    #[arg(long)]
    pub ordering_key: Option<String>,
    /// W3C traceparent of the trace the event belongs to (sent on with every attempt).
    #[arg(long)]
    pub traceparent: Option<String>,
    /// W3C tracestate, sent on unchanged (with --traceparent).
    #[arg(long)]
    pub tracestate: Option<String>,
}

/// Makes writing to a closed pipe end the process quietly, as other command-line tools do
/// (`hookrelay deliveries | head`), instead of a panic in `println!`. Only for commands that
/// print and exit: the worker keeps ignoring the signal, so a log reader going away never
/// stops deliveries.
pub fn exit_quietly_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called first thing in main, before any thread exists; the default action
    // needs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

pub(crate) use crate::config::setting::{duration, whole};

/// Runs the parsed command and turns its result into an exit status.
pub fn main(cli: Cli) -> ExitCode {
    let known = known_variables();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    for line in settings::unknown_variables(variable_names(), &known) {
        tracing::warn!("{line}");
    }
    if let Command::Verify(args) = &cli.command {
        // Receiver side: no database, no runtime.
        return verify::run(args);
    }
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
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The names of this process's environment variables.
fn variable_names() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect()
}

/// Every variable hookrelay reads: each flag's of every command, each setting's, and the
/// ones read directly.
fn known_variables() -> Vec<String> {
    fn flags(command: &clap::Command, out: &mut Vec<String>) {
        let named = command.get_arguments().filter_map(|a| a.get_env());
        out.extend(named.filter_map(|e| e.to_str()).map(String::from));
        for sub in command.get_subcommands() {
            flags(sub, out);
        }
    }
    let mut known = Vec::new();
    flags(&<Cli as clap::CommandFactory>::command(), &mut known);
    known.extend(s::ALL.iter().map(|setting| setting.env.to_string()));
    known.extend(DIRECT_VARIABLES.iter().map(|name| name.to_string()));
    known
}

/// Variables read without a flag.
const DIRECT_VARIABLES: &[&str] = &["HOOKRELAY_CONFIG", "HOOKRELAY_PG_BINDIR"];

/// The error and its causes on one line, skipping causes the message already includes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        if !already_said(&out, cause) {
            out.push_str(": ");
            out.push_str(&cause.to_string());
        }
    }
    out.replace('\n', " ")
}

/// True when `out` already says what `cause` does. A database error is said once its
/// server message is there (every error enum words it with [`db::explain`]), not only when
/// its "db error: ERROR: …" form is.
fn already_said(out: &str, cause: &(dyn std::error::Error + 'static)) -> bool {
    let server = cause
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
        .or_else(|| cause.downcast_ref::<tokio_postgres::error::DbError>());
    match server {
        Some(db) => out.contains(db.message()),
        None => out.contains(&cause.to_string()),
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Migrate(args) => schema::migrate_command(&cli, args).await,
        Command::Run(args) => run::run(&cli, args).await,
        Command::Demo(args) => {
            let database = match given_url(&cli)? {
                Some(url) => demo::DemoDatabase::Server(url),
                None => demo::DemoDatabase::Embedded(cli.data_dir.clone()),
            };
            Ok(demo::run(database, args.once, args.console, shutdown_token()).await?)
        }
        Command::Endpoint(command) => endpoint::endpoint_command(&cli, command).await,
        Command::Track(args) => track::track_command(&cli, args).await,
        Command::Untrack { table } => track::untrack_command(&cli, table).await,
        Command::Deliveries(_)
        | Command::Delivery(_)
        | Command::Redeliver(_)
        | Command::Stats { .. } => operate::run(&cli).await,
        Command::Replay(args) => replay::run(&cli, args).await,
        Command::Backfill(args) => backfill::run(&cli, args).await,
        Command::Console(args) => {
            // Refused before a database is looked for: an exposed console never starts.
            crate::admin::console::check_exposure(args.addr, args.token.as_deref())?;
            let url = Target::resolve(&cli).await?.url;
            Ok(
                crate::admin::console::run(&url, cli.connect_timeout, args, shutdown_token())
                    .await?,
            )
        }
        Command::Verify(_) => unreachable!("verify runs before the runtime starts"),
        Command::Emit(args) => {
            let mut client = Target::ready(&cli).await?;
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
                ordering_key: args.ordering_key.clone(),
                traceparent: args.traceparent.clone(),
                tracestate: args.tracestate.clone(),
            };
            let id = emit::emit(&mut client, &event).await?;
            println!("{}", crate::pipeline::payload::event_id(&id));
            Ok(())
        }
    }
}

/// The database URL given by flag or environment, if any. One that is set but empty is an
/// error, not a request for the embedded cluster: it is most often a deployment's variable
/// that failed to fill in, and quietly starting a private database would hide that.
fn given_url(cli: &Cli) -> Result<Option<String>> {
    let (url, source) = match &cli.database_url {
        Some(url) => (url.clone(), "--database-url (HOOKRELAY_DATABASE_URL)"),
        None => match std::env::var("DATABASE_URL") {
            Ok(url) => (url, "DATABASE_URL"),
            Err(_) => return Ok(None),
        },
    };
    if url.trim().is_empty() {
        anyhow::bail!(
            "{source} is set but empty: give a URL such as \
             postgres://user:password@host:5432/dbname, or unset it to use the embedded \
             PostgreSQL under --data-dir"
        );
    }
    Ok(Some(url.trim().to_string()))
}

/// Where the database is, and whether it is the embedded one.
pub(crate) struct Target {
    url: String,
    embedded: bool,
    connect_timeout: std::time::Duration,
}

impl Target {
    /// The database given, or the embedded cluster's `hookrelay` database (started if needed,
    /// and said so on standard error with its URL and how to stop it).
    async fn resolve(cli: &Cli) -> Result<Target> {
        if let Some(url) = given_url(cli)? {
            return Ok(Target {
                url,
                embedded: false,
                connect_timeout: cli.connect_timeout,
            });
        }
        let dir = cli.data_dir.clone();
        let cluster = tokio::task::spawn_blocking(move || embedded::start_persistent(&dir))
            .await
            .context("starting the embedded PostgreSQL")??;
        cluster.ensure_database("hookrelay").await?;
        let url = cluster.url("hookrelay");
        tracing::info!(%url, stop = %cluster.stop_command(),
            "using the embedded PostgreSQL (no --database-url or DATABASE_URL given)");
        Ok(Target {
            url,
            embedded: true,
            connect_timeout: cli.connect_timeout,
        })
    }

    /// Like [`Target::resolve`], and the schema installed: migrated automatically on the
    /// embedded database, checked (with a hint to migrate) on any other. Returns a connection.
    async fn ready(cli: &Cli) -> Result<tokio_postgres::Client> {
        let target = Target::resolve(cli).await?;
        let mut client = target.connect().await?;
        if target.embedded {
            migrate::migrate(&mut client).await?;
        } else {
            migrate::check(&client).await?;
        }
        Ok(client)
    }

    /// The connection settings: the URL with hookrelay's defaults and time limit.
    fn config(&self) -> Result<tokio_postgres::Config> {
        Ok(db::config_with(&self.url, Some(self.connect_timeout))?)
    }

    /// One connection for a command, driven in the background, its statements limited to
    /// [`db::COMMAND_SESSION`]'s time.
    async fn connect(&self) -> Result<tokio_postgres::Client> {
        self.connect_for(Some(db::COMMAND_SESSION)).await
    }

    /// One connection with `session` settings (`None`: the server's own limits).
    async fn connect_for(&self, session: Option<&str>) -> Result<tokio_postgres::Client> {
        let mut config = self.config()?;
        if let Some(session) = session {
            db::with_session(&mut config, session);
        }
        db::connect(&config)
            .await
            .with_context(|| format!("could not connect to {}", db::redact_url(&self.url)))
    }
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

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn routine_levels_leave_out_the_database_libraries_connection_noise() {
        assert_eq!(
            log_filter("info"),
            "info,deadpool=error,tokio_postgres=warn"
        );
        assert_eq!(log_filter("WARN"), "warn,deadpool=error");
        assert_eq!(log_filter("debug"), "debug");
        assert_eq!(log_filter("error"), "error");
        assert_eq!(log_filter("hookrelay=trace"), "hookrelay=trace");
        for level in ["info", "warn", "debug", "error", "hookrelay=trace"] {
            let filter = log_filter(level);
            assert!(
                tracing_subscriber::EnvFilter::try_new(&filter).is_ok(),
                "{filter}"
            );
        }
    }
}
