//! The `hookrelay` command: parses the command line, sets up logging and calls the library.

use std::process::ExitCode;

use clap::Parser;
use hookrelay::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The configuration file supplies defaults, so it is read before the flags are parsed.
    if let Err(e) = hookrelay::cli::settings::load_defaults(&args) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse_from(args);
    if !matches!(cli.command, Command::Run(_) | Command::Demo(_)) {
        hookrelay::cli::exit_quietly_on_closed_pipe();
    }
    // The demo's own output tells the story; routine log lines would interrupt it.
    let quiet_demo = matches!(cli.command, Command::Demo(_)) && cli.log == "info";
    let level = if quiet_demo { "warn" } else { cli.log.as_str() };
    if let Err(e) = hookrelay::logs::init(
        &hookrelay::cli::log_filter(level),
        cli.log_format == LogFormat::Json,
    ) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    hookrelay::cli::main(cli)
}
