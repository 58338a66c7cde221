//! `hookrelay migrate`: install or upgrade the schema, or print its SQL for the application's
//! own migrations.

use anyhow::Result;
use clap::Args;

use super::{Cli, Target};
use crate::admin::migrate;

/// `migrate` arguments.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Print the schema's SQL instead of applying it (no database needed), for a Django
    /// RunSQL migration, a Rails migration or any migration tool. It records the versions as
    /// `hookrelay migrate` does, so either can upgrade the schema later.
    #[arg(long)]
    pub print_sql: bool,
    /// With --print-sql: only the migrations after this schema version (an upgrade step).
    #[arg(long, requires = "print_sql", value_name = "VERSION")]
    pub from: Option<i32>,
}

/// Applies the pending migrations, or prints them.
pub(super) async fn migrate_command(cli: &Cli, args: &MigrateArgs) -> Result<()> {
    if args.print_sql {
        print!("{}", migrate::script(args.from.unwrap_or(0))?);
        return Ok(());
    }
    let target = Target::resolve(cli).await?;
    let mut client = target.connect_for(None).await?;
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
