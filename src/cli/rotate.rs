//! `hookrelay endpoint rotate-secret`: a new signing secret, with the old one still signing
//! beside it for a grace period so receivers can switch at their own pace.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::admin::endpoint;

/// `endpoint rotate-secret` arguments.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The endpoint.
    pub name: String,
    /// The new secret (default: 32 random bytes, never printed). Prefer the environment
    /// variable: it stays out of shell history.
    #[arg(long, env = "HOOKRELAY_NEW_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// How long the old secret keeps signing beside the new one; 0 stops it at once.
    #[arg(long, env = "HOOKRELAY_ROTATION_GRACE", default_value = "24h", value_parser = super::duration)]
    pub grace: Duration,
}

/// Rotates and says what signs from now on, by fingerprint only.
pub async fn run(client: &mut tokio_postgres::Client, args: &RotateArgs) -> Result<()> {
    let done = endpoint::rotate_secret(client, &args.name, args.secret.clone(), args.grace).await?;
    let name = &args.name;
    println!(
        "endpoint {name} now signs with a new secret ({})",
        done.secret_fingerprint
    );
    match &done.previous {
        Some((fingerprint, until)) => println!(
            "the old secret ({fingerprint}) signs beside it until {} ({}): receivers may switch \
             until then",
            until.format("%Y-%m-%dT%H:%M:%SZ"),
            crate::pipeline::retry::human_duration(args.grace)
        ),
        None => println!("the old secret no longer signs (no grace period)"),
    }
    if let Some(dropped) = &done.dropped {
        println!("the secret an earlier rotation replaced ({dropped}) no longer signs");
    }
    if done.generated {
        println!("show the new secret with: hookrelay endpoint show {name} --reveal-secret");
    }
    Ok(())
}
