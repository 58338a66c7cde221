//! `hookrelay backfill TABLE`: one event per existing row of a tracked table, resumable.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use super::{Cli, Target};
use crate::admin::backfill::{self, Backfill};

/// `backfill` arguments.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The tracked table, as SQL reads it: orders, store."Order".
    pub table: String,
    /// The events' name.
    #[arg(long, default_value = "snapshot")]
    pub event: String,
    /// Only rows where this boolean SQL condition over the table's columns holds.
    #[arg(long = "where", value_name = "SQL", default_value = "")]
    pub where_sql: String,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub batch: i32,
    /// Count the rows that would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `hookrelay backfill`.
pub(super) async fn run(cli: &Cli, args: &BackfillArgs) -> Result<()> {
    let client = Target::ready(cli).await?;
    let spec = Backfill {
        table: args.table.clone(),
        event: args.event.clone(),
        where_sql: args.where_sql.clone(),
        batch: args.batch,
    };
    let total = backfill::remaining(&client, &spec).await?;
    if args.dry_run {
        println!(
            "dry run: {total} rows of {} would be written as {} events; nothing was written",
            spec.table, spec.event
        );
        return Ok(());
    }
    println!(
        "backfilling {total} rows of {} as {} events, {} per transaction; if it is \
         interrupted, run the same command again to resume where it stopped",
        spec.table, spec.event, spec.batch
    );
    let stop = super::shutdown_token();
    let bar = progress_bar(total as u64);
    let mut done: i64 = 0;
    let step = loop {
        let step = backfill::batch(&client, &spec).await?;
        done += step.written;
        bar.inc(step.written as u64);
        if step.finished || stop.is_cancelled() {
            break step;
        }
    };
    // Left on the terminal, as the last state seen; the lines below say what happened.
    bar.abandon();
    if step.finished {
        println!(
            "backfill of {} done: {done} events written now, {} in all",
            spec.table, step.rows_done
        );
    } else {
        println!(
            "backfill of {} interrupted after {done} rows ({} in all); run the same command \
             again to resume",
            spec.table, step.rows_done
        );
    }
    Ok(())
}

/// The progress bar: rows done of the total, the rate and the time left. indicatif draws it
/// only when stderr is a terminal, so piped and logged runs get just the plain lines.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    // A template error is ours, not the user's: fall back to indicatif's plain bar.
    let style = ProgressStyle::with_template(
        "{wide_bar} {pos}/{len} rows ({percent}%), {rate}, {eta} left",
    )
    .map(|s| {
        s.with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", state.per_sec());
            },
        )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
