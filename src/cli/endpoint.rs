//! `hookrelay endpoint …`: add, list, show, enable, disable, remove, rotate-secret, apply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tokio_postgres::Client;

use super::{rotate, show, Cli, Target};
use crate::admin::endpoint::{self, NewEndpoint};
use crate::sign::Scheme;

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
    /// Resume deliveries to an endpoint, whoever disabled it (an operator, a 410 Gone answer,
    /// or auto-disable after failing for days).
    Enable { name: String },
    /// Pause an endpoint: its pending deliveries wait until it is enabled, and events written
    /// while it is disabled skip it (they are not delivered to it after enabling either).
    Disable { name: String },
    /// Remove an endpoint with its deliveries and attempts.
    Remove { name: String },
    /// Replace the signing secret; the old one keeps signing beside it for a grace period.
    RotateSecret(rotate::RotateArgs),
    // `[[endpoints]]` is TOML, not a link; the help text shows it as written.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Change how an endpoint orders its deliveries (options left out stay as they are).
    Update(EndpointUpdateArgs),
    /// Make the endpoints match the [[endpoints]] of a TOML file (create or update by name).
    Apply {
        /// The file, e.g. hookrelay.toml.
        file: PathBuf,
        /// Also remove endpoints the file does not declare.
        #[arg(long)]
        prune: bool,
        /// Show what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
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
    #[arg(long, allow_negative_numbers = true)]
    pub max_attempts: Option<i32>,
    /// Request timeout for this endpoint, e.g. 5s (default: the worker's).
    #[arg(long, value_parser = super::duration)]
    pub timeout: Option<Duration>,
    /// Keep only these fields of object and changes: a JSON array for every model, or an
    /// object per model, e.g. '{"store.Order": ["id", "total"]}'.
    #[arg(long)]
    pub include_fields: Option<String>,
    /// Replace these fields' values, per model, e.g.
    /// '{"store.Customer": {"email": "***@***.com"}}' ("*" for every model).
    #[arg(long)]
    pub redact_fields: Option<String>,
    /// A static header sent with every request, as 'Name: value' (repeatable), e.g.
    /// 'Authorization: Bearer …'. hookrelay's own headers cannot be replaced.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Requests in flight at once to this endpoint, across all workers (default 16).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub max_in_flight: Option<i32>,
    /// Requests per second to this endpoint, across all workers (default: no limit).
    #[arg(long, value_name = "PER_SECOND", allow_negative_numbers = true)]
    pub rate_limit: Option<f64>,
    /// Deliver only events this jsonpath predicate over the envelope holds for, e.g.
    /// '$.object.total > 100 && $.account_id == "acme"'.
    #[arg(long)]
    pub filter: Option<String>,
    /// How numbers in object and changes are sent: json (exact digits as JSON numbers) or
    /// string (each number as a string of those digits, e.g. "150.00").
    #[arg(long, value_parser = ["json", "string"])]
    pub number_format: Option<String>,
    /// Do not send updates whose changes --include-fields leaves empty.
    #[arg(long)]
    pub skip_empty_changes: bool,
    /// Send no traceparent/tracestate headers (by default each attempt carries the trace
    /// context the event was written with).
    #[arg(long)]
    pub no_trace_context: bool,
    /// Write a hookrelay.delivery.dead event when a delivery to this endpoint dies.
    #[arg(long)]
    pub emit_dead: bool,
    /// Send deliveries that share an ordering key one at a time, in the order their events
    /// were written (other keys still go concurrently).
    #[arg(long)]
    pub ordered: bool,
    /// When a delivery of a key ends dead: skip (the key's next one goes) or block (the key
    /// waits until the dead one is redelivered or cancelled).
    #[arg(long, value_parser = endpoint::ON_DEAD)]
    pub on_dead: Option<String>,
}

/// `endpoint update` arguments.
#[derive(Debug, Args)]
pub struct EndpointUpdateArgs {
    pub name: String,
    /// Deliver in order per key (--ordered or --ordered=true), or not (--ordered=false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub ordered: Option<bool>,
    /// When a delivery of a key ends dead: skip or block.
    #[arg(long, value_parser = endpoint::ON_DEAD)]
    pub on_dead: Option<String>,
}

/// Runs an endpoint command.
pub(super) async fn endpoint_command(cli: &Cli, command: &EndpointCommand) -> Result<()> {
    let mut client = Target::ready(cli).await?;
    match command {
        EndpointCommand::Add(args) => add(&client, args).await,
        EndpointCommand::List { json } => list(&client, *json).await,
        EndpointCommand::Show {
            name,
            reveal_secret,
            json,
        } => show_one(&client, name, *reveal_secret, *json).await,
        EndpointCommand::Enable { name } => enable(&client, name).await,
        EndpointCommand::Disable { name } => disable(&client, name).await,
        EndpointCommand::Remove { name } => {
            endpoint::remove(&client, name).await?;
            println!("endpoint {name} removed");
            Ok(())
        }
        EndpointCommand::RotateSecret(args) => rotate::run(&mut client, args).await,
        EndpointCommand::Update(args) => update(&client, args).await,
        EndpointCommand::Apply {
            file,
            prune,
            dry_run,
        } => apply(&mut client, file, *prune, *dry_run).await,
    }
}

/// The endpoint the `add` flags describe, its JSON and header options parsed.
fn new_endpoint(args: &EndpointAddArgs) -> Result<NewEndpoint> {
    let scheme: Scheme = args.scheme.parse()?;
    let timeout_ms = args
        .timeout
        .map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    Ok(NewEndpoint {
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
        headers: args
            .headers
            .iter()
            .map(|h| endpoint::parse_static_header(h))
            .collect::<Result<_, _>>()
            .context("--header")?,
        max_in_flight: args.max_in_flight,
        rate_limit: args.rate_limit,
        filter: args.filter.clone(),
        number_format: args.number_format.clone(),
        skip_empty_changes: args.skip_empty_changes,
        trace_context: !args.no_trace_context,
        emit_dead: args.emit_dead,
        ordered: args.ordered,
        on_dead: args.on_dead.clone(),
    })
}

/// `endpoint add`: says where it sends, and how to see a secret it generated.
async fn add(client: &Client, args: &EndpointAddArgs) -> Result<()> {
    let new = new_endpoint(args)?;
    let (info, generated) = endpoint::add(client, &new).await?;
    println!("added endpoint {} -> {}", info.name, info.url);
    if generated {
        println!(
            "generated a {} secret ({}); show it with: hookrelay endpoint show {} --reveal-secret",
            info.signature_scheme, info.secret_fingerprint, info.name
        );
    }
    Ok(())
}

/// `endpoint list`: a table, or JSON.
async fn list(client: &Client, json: bool) -> Result<()> {
    let endpoints = endpoint::list(client).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&endpoints)?);
    } else {
        show::print_endpoints(&endpoints);
    }
    Ok(())
}

/// `endpoint show`: the secret is read (and printed) only when asked for.
async fn show_one(client: &Client, name: &str, reveal_secret: bool, json: bool) -> Result<()> {
    let info = endpoint::get(client, name).await?;
    let secret = if reveal_secret {
        Some(endpoint::secret(client, name).await?)
    } else {
        None
    };
    if json {
        let mut value = serde_json::to_value(&info)?;
        if let Some(secret) = secret {
            value["secret"] = secret.into();
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        show::print_endpoint(&info, secret.as_deref());
    }
    Ok(())
}

/// `endpoint enable`: says what it had been disabled for, and what happens now.
async fn enable(client: &Client, name: &str) -> Result<()> {
    match endpoint::enable(client, name).await? {
        Some(reason) => println!(
            "endpoint {name} enabled (it was disabled: {reason}); its pending deliveries are \
             due now and its failure count starts again from zero"
        ),
        None => println!("endpoint {name} was already enabled"),
    }
    Ok(())
}

/// `endpoint disable`: says what waits and what is skipped from now on.
async fn disable(client: &Client, name: &str) -> Result<()> {
    let done = endpoint::disable(client, name).await?;
    if done.was_active {
        let pending = match done.pending {
            0 => "it has no pending deliveries".to_string(),
            1 => "its 1 pending delivery waits until it is enabled".to_string(),
            n => format!("its {n} pending deliveries wait until it is enabled"),
        };
        println!(
            "endpoint {name} disabled: {pending}; events written while it is disabled \
             skip it, and are not sent to it after enabling either"
        );
    } else {
        println!(
            "endpoint {name} was already disabled ({}); nothing changed",
            done.reason.as_deref().unwrap_or("no reason recorded")
        );
    }
    Ok(())
}

/// `endpoint update`: the ordering options given, the rest left as they are.
async fn update(client: &Client, args: &EndpointUpdateArgs) -> Result<()> {
    if args.ordered.is_none() && args.on_dead.is_none() {
        anyhow::bail!("nothing to update: give --ordered[=true|false] and/or --on-dead skip|block");
    }
    let info =
        endpoint::set_ordering(client, &args.name, args.ordered, args.on_dead.as_deref()).await?;
    println!(
        "endpoint {}: {}, on_dead {}",
        info.name,
        if info.ordered {
            "ordered per key"
        } else {
            "unordered"
        },
        info.on_dead
    );
    Ok(())
}

/// `endpoint apply`: the file's settings are checked first, so a typo there is not ignored.
async fn apply(client: &mut Client, file: &Path, prune: bool, dry_run: bool) -> Result<()> {
    let table = crate::cli::settings::read(file)?;
    crate::cli::settings::settings_as_env(&table).with_context(|| file.display().to_string())?;
    let text = std::fs::read_to_string(file)?;
    let specs = crate::admin::apply::parse(&text).with_context(|| file.display().to_string())?;
    let changes = crate::admin::apply::apply(client, &specs, prune, dry_run).await?;
    for change in &changes {
        println!("{change}");
    }
    if dry_run {
        println!("dry run: nothing was changed");
    }
    Ok(())
}
