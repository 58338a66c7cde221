//! The `hookrelay` command: parses the command line, sets up logging and calls the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hookrelay::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The configuration file supplies defaults, so it is read before the flags are parsed.
    if let Err(e) = hookrelay::settings::load_defaults(&args) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse_from(args);
    // The demo's own output tells the story; routine log lines would interrupt it.
    let quiet_demo = matches!(cli.command, Command::Demo(_)) && cli.log == "info";
    let level = if quiet_demo { "warn" } else { cli.log.as_str() };
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(hookrelay::cli::log_filter(level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    hookrelay::cli::main(cli)
}
