//! `hookrelay replay`: send past events to one endpoint again (`hookrelay.replay`).

use std::time::Duration;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{Cli, Target};
use crate::admin::operator::{self, Replay};
use crate::config::setting as s;

/// `replay` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The endpoint to send to (by name).
    #[arg(long)]
    pub endpoint: String,
    /// Events written since then: a duration ago (24h, 7d) or a time (2026-01-24T00:00:00Z).
    #[arg(long, value_parser = point_in_time)]
    pub since: DateTime<Utc>,
    /// Events written before then (default: now), in the same forms as --since.
    #[arg(long, value_parser = point_in_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only this event name (repeatable).
    #[arg(long = "event")]
    pub events: Vec<String>,
    /// Count the events that would be sent, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The worker's retention: events older than it may be deleted, so they are refused.
    #[arg(long = s::RETENTION.flag, env = s::RETENTION.env,
          default_value = s::RETENTION.default_text(), value_parser = super::duration)]
    pub retention: Duration,
}

/// A duration ago, or an RFC 3339 time.
fn point_in_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
        return Ok(Utc::now() - ago);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{text:?} is neither a duration (24h, 7d) nor a time such as \
                 2026-01-24T00:00:00Z"
            )
        })
}

/// Runs `hookrelay replay`.
pub(super) async fn run(cli: &Cli, args: &ReplayArgs) -> Result<()> {
    let until = args.until.unwrap_or_else(Utc::now);
    if args.since >= until {
        bail!(
            "--since ({}) must be before --until ({}): nothing to replay",
            args.since.to_rfc3339(),
            until.to_rfc3339()
        );
    }
    let client = Target::ready(cli).await?;
    let replay = Replay {
        endpoint: &args.endpoint,
        since: args.since,
        until,
        events: &args.events,
        dry_run: args.dry_run,
        retention: Some(args.retention),
    };
    let n = operator::replay(&client, &replay).await?;
    let what = if n == 1 { "event" } else { "events" };
    if args.dry_run {
        println!(
            "dry run: {n} {what} would be sent again to {}; nothing was changed",
            args.endpoint
        );
    } else {
        println!(
            "replaying {n} {what} to {} in event order (a running worker sends them; \
             `hookrelay deliveries --endpoint {}` shows them)",
            args.endpoint, args.endpoint
        );
    }
    Ok(())
}
