//! The operator commands: `deliveries`, `delivery show`, `redeliver` and `stats`.

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Cli, Command, Target};
use crate::admin::endpoint;
use crate::admin::operator::{self, DeliveryFilter};
use crate::cli::report;

/// `deliveries` filters.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only this endpoint (by name).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only this state: pending, delivered, dead or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this event name.
    #[arg(long)]
    pub event: Option<String>,
    /// Only deliveries created within this long, e.g. 1h.
    #[arg(long, value_parser = super::duration)]
    pub since: Option<Duration>,
    /// At most this many.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `delivery` commands.
#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// Show a delivery with every attempt: status, duration, error, response excerpt.
    Show {
        #[arg(allow_negative_numbers = true)]
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `redeliver` arguments: delivery ids, or a bulk selection.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["ids", "endpoint", "all_endpoints"]))]
pub struct RedeliverArgs {
    /// Delivery ids.
    #[arg(allow_negative_numbers = true)]
    pub ids: Vec<i64>,
    /// Every dead delivery of this endpoint (with --since).
    #[arg(long, conflicts_with = "ids")]
    pub endpoint: Option<String>,
    /// Every dead delivery of every endpoint (with --since).
    #[arg(long, conflicts_with_all = ["ids", "endpoint"])]
    pub all_endpoints: bool,
    /// Which deliveries to send again in bulk; only dead ones can be.
    #[arg(long, default_value = "dead")]
    pub state: String,
    /// Bulk: deliveries created within this long.
    #[arg(long, default_value = "24h", value_parser = super::duration)]
    pub since: Duration,
}

/// Runs an operator command.
pub(super) async fn run(cli: &Cli) -> Result<()> {
    let client = Target::ready(cli).await?;
    match &cli.command {
        Command::Deliveries(args) => {
            // An empty table would look like "no deliveries" for a name that was mistyped.
            if let Some(name) = &args.endpoint {
                endpoint::get(&client, name).await?;
            }
            let filter = DeliveryFilter {
                endpoint: args.endpoint.clone(),
                state: args.state.clone(),
                event: args.event.clone(),
                since: args.since,
                limit: args.limit,
            };
            let rows = operator::deliveries(&client, &filter).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                report::print_deliveries(&rows);
            }
        }
        Command::Delivery(DeliveryCommand::Show { id, json }) => {
            let detail = operator::delivery(&client, *id).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                report::print_delivery(&detail);
            }
        }
        Command::Redeliver(args) => redeliver(&client, args).await?,
        Command::Stats { json } => {
            let backlog = operator::backlog(&client).await?;
            let health = operator::health(&client).await?;
            let held = operator::held(&client).await?;
            if *json {
                let value = serde_json::json!({
                    "backlog": backlog,
                    "endpoints": health,
                    "held_keys": held.keys,
                    "waiting_for_key": held.waiting_for_key,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                report::print_stats(&backlog, &health);
                report::print_held(&held);
            }
        }
        _ => unreachable!("dispatch sends only operator commands here"),
    }
    Ok(())
}

async fn redeliver(client: &tokio_postgres::Client, args: &RedeliverArgs) -> Result<()> {
    if !args.ids.is_empty() {
        let mut missed = Vec::new();
        for (id, scheduled) in operator::redeliver(client, &args.ids).await? {
            if scheduled {
                println!("delivery {id} scheduled");
            } else {
                missed.push(id.to_string());
            }
        }
        if !missed.is_empty() {
            anyhow::bail!(
                "not scheduled: {} (no such delivery, or an attempt is in flight right now)",
                missed.join(", ")
            );
        }
        return Ok(());
    }
    if args.state != "dead" {
        anyhow::bail!(
            "only dead deliveries can be sent again in bulk (got --state {}): give delivery ids for others",
            args.state
        );
    }
    if let Some(name) = &args.endpoint {
        endpoint::get(client, name).await?;
    }
    let n = operator::redeliver_dead(client, args.endpoint.as_deref(), args.since).await?;
    let which = args.endpoint.as_deref().unwrap_or("every endpoint");
    println!(
        "{n} dead deliveries of {which} from the last {} scheduled",
        crate::pipeline::retry::human_duration(args.since)
    );
    Ok(())
}
