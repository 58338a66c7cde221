//! `hookrelay backfill TABLE`: one event per existing row of a tracked table, resumable.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::{Cli, Target};
use crate::backfill::{self, Backfill};

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
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut done: i64 = 0;
    let step = loop {
        let step = backfill::batch(&client, &spec).await?;
        done += step.written;
        if terminal {
            let line = backfill::progress_line(done as u64, total as u64, started.elapsed());
            eprint!("\r{line}\x1b[K");
            let _ = std::io::stderr().flush();
        }
        if step.finished || stop.is_cancelled() {
            break step;
        }
    };
    if terminal {
        eprintln!();
    }
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
