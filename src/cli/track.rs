//! `hookrelay track` and `hookrelay untrack`: created/updated/deleted events from a table's rows.

use anyhow::Result;
use clap::Args;

use super::{Cli, Target};
use crate::admin::track::{self, TrackRequest};

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
    /// Columns whose changes alone send no `updated` event, comma-separated (bookkeeping
    /// such as updated_at, lock_version); unlike --exclude they are still sent in `object`.
    #[arg(long, value_delimiter = ',')]
    pub ignore_columns: Vec<String>,
    /// Send an update only when one of these columns changed, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Emit only for rows where this SQL condition over OLD/NEW holds, as in a trigger's WHEN
    /// clause, e.g. "NEW.status = 'PAID'".
    #[arg(long)]
    pub condition: Option<String>,
    /// Column whose value becomes the event's account_id.
    #[arg(long)]
    pub account_column: Option<String>,
    /// Model name events carry (default: schema.table).
    #[arg(long)]
    pub model: Option<String>,
    /// Column whose value is the events' ordering key, for ordered endpoints (default: the
    /// row's own key, model and primary key).
    #[arg(long)]
    pub ordering_key: Option<String>,
    /// List the tracked tables instead.
    #[arg(long, conflicts_with_all = ["table", "events", "exclude", "ignore_columns", "account_column", "model", "columns", "condition", "ordering_key"])]
    pub list: bool,
}

/// Tracks a table, or lists the tracked ones.
pub(super) async fn track_command(cli: &Cli, args: &TrackArgs) -> Result<()> {
    let client = Target::ready(cli).await?;
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
        ignore_columns: args.ignore_columns.clone(),
        columns: args.columns.clone(),
        condition: args.condition.clone(),
        ordering_key: args.ordering_key.clone(),
    };
    let tracked = track::track(&client, &request).await?;
    println!("tracking {}", track::describe(&tracked));
    Ok(())
}

/// Stops tracking a table.
pub(super) async fn untrack_command(cli: &Cli, table: &str) -> Result<()> {
    let client = Target::ready(cli).await?;
    if track::untrack(&client, table).await? {
        println!("stopped tracking {table}");
    } else {
        println!("{table} was not tracked; nothing to do");
    }
    Ok(())
}
