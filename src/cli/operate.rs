//! The operator commands: `deliveries`, `delivery show`, `redeliver` and `stats`.

use anyhow::Result;

use super::{connect, Cli, Command, DeliveryCommand, RedeliverArgs, Target};
use crate::endpoint;
use crate::operator::{self, DeliveryFilter};
use crate::report;

/// Runs an operator command.
pub(super) async fn run(cli: &Cli) -> Result<()> {
    let target = Target::ready(cli).await?;
    let client = connect(&target.url).await?;
    match &cli.command {
        Command::Deliveries(args) => {
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
            if *json {
                let value = serde_json::json!({ "backlog": backlog, "endpoints": health });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                report::print_stats(&backlog, &health);
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
        humantime::format_duration(args.since)
    );
    Ok(())
}
