//! `hookrelay verify`: checks a received request's signature and timestamp, as a receiver
//! would. Exit status 0: valid; 1: not valid, with a one-line reason; 2: the check itself could
//! not run (a bad argument, an unreadable body).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::admin::endpoint::parse_header;
use crate::sign::Scheme;
use crate::verify::{Verifier, VerifyError};

/// Largest body read, so a mistaken pipe cannot exhaust memory.
const MAX_BODY: u64 = 64 << 20;

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The endpoint's signing secret. Repeat it to accept any of several (a rotation). Prefer
    /// the environment variable: it stays out of shell history.
    #[arg(
        long = "secret",
        env = "HOOKRELAY_VERIFY_SECRET",
        hide_env_values = true,
        required = true
    )]
    pub secrets: Vec<String>,
    /// Signature scheme: hookrelay, body-hex or standard.
    #[arg(long, env = "HOOKRELAY_VERIFY_SCHEME", default_value = "hookrelay")]
    pub scheme: String,
    /// A request header as 'Name: value' (repeatable; names ignore case).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// The exact request body (default: standard input).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Judge the timestamp as of this time, in unix seconds (default: now).
    #[arg(long, allow_negative_numbers = true)]
    pub at: Option<i64>,
    /// How far the signed timestamp may be from that time, either way.
    #[arg(long, env = "HOOKRELAY_VERIFY_TOLERANCE", default_value = "5m", value_parser = super::duration)]
    pub tolerance: Duration,
}

/// Runs the check and prints the verdict. Never prints a secret.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let prepared = prepare(args);
    let (verifier, headers, body, now) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match verifier.verify(&headers, &body, now) {
        Ok(ok) => {
            let secret = format!("secret {} of {}", ok.secret + 1, args.secrets.len());
            match ok.timestamp {
                Some(ts) => println!("valid: signed with {secret}, {} s ago", now - ts),
                None => println!("valid: signed with {secret} (body-hex signs no timestamp)"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {e}{}", hint(&e, &args.scheme, &headers));
            ExitCode::FAILURE
        }
    }
}

type Prepared = (Verifier, Vec<(String, String)>, Vec<u8>, i64);

fn prepare(args: &VerifyArgs) -> Result<Prepared> {
    let scheme: Scheme = args.scheme.parse()?;
    let verifier = Verifier::new(scheme, &args.secrets)
        .context("--secret")?
        .with_tolerance(args.tolerance);
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()
        .context("-H")?;
    let body = read_body(args.body_file.as_ref())?;
    let now = match args.at {
        Some(at) => at,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs() as i64,
    };
    Ok((verifier, headers, body, now))
}

fn read_body(file: Option<&PathBuf>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let read = match file {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("--body-file {}", path.display()))?
            .take(MAX_BODY + 1)
            .read_to_end(&mut body),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("give the request body with --body-file FILE or on standard input");
            }
            stdin.lock().take(MAX_BODY + 1).read_to_end(&mut body)
        }
    };
    read.context("reading the body")?;
    if body.len() as u64 > MAX_BODY {
        bail!("the body is larger than {} MiB", MAX_BODY >> 20);
    }
    Ok(body)
}

/// A pointer to the right `--scheme` when the headers look like another scheme's.
fn hint(e: &VerifyError, scheme: &str, headers: &[(String, String)]) -> &'static str {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let sig = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-webhook-signature"))
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    match (e, scheme) {
        (VerifyError::MissingHeader(_), "hookrelay" | "body-hex") if has("webhook-signature") => {
            " (the request has webhook-signature: try --scheme standard)"
        }
        (VerifyError::MissingHeader(_), "standard") if has("x-webhook-signature") => {
            " (the request has X-Webhook-Signature: try --scheme hookrelay or body-hex)"
        }
        (VerifyError::MalformedSignature { .. }, "hookrelay") if !sig.contains('=') => {
            " (no sha256= prefix: try --scheme body-hex)"
        }
        (VerifyError::MalformedSignature { .. }, "body-hex") if sig.starts_with("sha256=") => {
            " (a sha256= prefix: try --scheme hookrelay)"
        }
        _ => "",
    }
}
