//! Log output: the filter made from `--log` (or `RUST_LOG`), and what is never written
//! whatever that filter asks for.
//!
//! tokio-postgres writes every statement's parameters to its debug log ("executing statement
//! … with parameters: […]") and every batch's SQL text. Parameters carry endpoint secrets
//! (`endpoint add`, `rotate-secret`), static header values (`Authorization` tokens) and
//! application payloads, so its records more verbose than `info` are dropped here, for every
//! filter, including one that names tokio_postgres explicitly: `--log trace` must be safe to
//! paste into a bug report. (Server notices and warnings do not go through its log: the
//! connection driver in `db::connect` shows them, once each, at the default level.)
//!
//! Other crates were checked at `trace` with the tests in `tests/it/secrets/`: reqwest and
//! hyper log connections by scheme and host only, and static header values are marked
//! sensitive, so `Debug` prints of requests show them as `Sensitive`.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets whose records below `info` (debug, trace) are never written: they print
/// statement parameters.
const WITHHELD_BELOW_INFO: &[&str] = &["tokio_postgres"];

/// True for a record that is never written, whatever the filter: debug and trace records of
/// the crates in `WITHHELD_BELOW_INFO` (their modules included).
pub fn is_withheld(target: &str, level: Level) -> bool {
    level > Level::INFO
        && WITHHELD_BELOW_INFO.iter().any(|crate_name| {
            target == *crate_name
                || target
                    .strip_prefix(crate_name)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
}

/// The levels a filter may name, most quiet first.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks that every comma-separated directive names a level: `info`, or `target=level`.
/// tracing reads a bare word as a *target* with every level on, so a misspelt level
/// (`warning`, `verbose`) would be accepted and turn every line off; this refuses it instead.
fn check_levels(directives: &str) -> Result<(), String> {
    for part in directives
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let level = part
            .rsplit_once('=')
            .map_or(part, |(_, level)| level)
            .trim();
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let hint = match level.to_ascii_lowercase().as_str() {
                "warning" => " (did you mean warn?)",
                "verbose" | "all" => " (did you mean debug or trace?)",
                "err" | "fatal" | "critical" => " (did you mean error?)",
                "none" | "quiet" | "silent" => " (did you mean off?)",
                _ => "",
            };
            return Err(format!("{level:?} is not a log level{hint}"));
        }
    }
    Ok(())
}

/// The filter for `directives` as `source` gave them, or why they are not one.
fn parse_filter(source: &str, directives: &str) -> Result<EnvFilter, String> {
    check_levels(directives)
        .and_then(|()| EnvFilter::try_new(directives).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!(
                "{source} {directives:?} is not a log filter: {e}; use one of {} or \
                 directives such as hookrelay=debug,warn",
                LEVELS.join(", ")
            )
        })
}

/// The filter `RUST_LOG` sets when it is set, else the one for `directives` (`--log`, such as
/// `info` or `hookrelay=debug,warn`). Fails, naming the accepted levels, when either is not a
/// filter whose every directive names a level.
pub fn env_filter(directives: &str) -> Result<EnvFilter, String> {
    let given = parse_filter("--log", directives)?;
    match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => parse_filter("RUST_LOG", &rust_log),
        _ => Ok(given),
    }
}

/// Installs the process's logger: lines on standard error, as text or JSON, filtered by
/// [`env_filter`] and never showing what [`is_withheld`] keeps back. Records of crates that use
/// the `log` facade (tokio-postgres, rustls) go through the same filter.
pub fn init(directives: &str, json: bool) -> Result<(), String> {
    let filter = env_filter(directives)?.and(filter_fn(|meta: &Metadata<'_>| {
        !is_withheld(meta.target(), *meta.level())
    }));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let layer = if json {
        layer.json().boxed()
    } else {
        layer.boxed()
    };
    // Fails only when a logger is already installed (a second call): that one stays.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_parameters_are_withheld_at_every_verbose_level() {
        for target in [
            "tokio_postgres",
            "tokio_postgres::query",
            "tokio_postgres::prepare",
        ] {
            assert!(is_withheld(target, Level::DEBUG), "{target}");
            assert!(is_withheld(target, Level::TRACE), "{target}");
            assert!(!is_withheld(target, Level::INFO), "notices still show");
            assert!(!is_withheld(target, Level::WARN));
        }
    }

    #[test]
    fn a_bad_filter_is_refused_with_the_forms() {
        let err = parse_filter("--log", "garbage[[").unwrap_err();
        assert!(
            err.starts_with("--log \"garbage[[\" is not a log filter"),
            "{err}"
        );
        assert!(parse_filter("--log", "hookrelay=debug,warn").is_ok());
        assert!(parse_filter("--log", "INFO").is_ok());
        assert!(parse_filter("--log", "info,deadpool=error,tokio_postgres=warn").is_ok());
    }

    #[test]
    fn misspelt_levels_are_refused_not_read_as_targets() {
        for (given, said) in [
            ("warning", "did you mean warn?"),
            ("verbose!!", "\"verbose!!\" is not a log level"),
            (
                "nonexistent_level",
                "\"nonexistent_level\" is not a log level",
            ),
            ("hookrelay=loud", "\"loud\" is not a log level"),
            ("info,hookrelay", "\"hookrelay\" is not a log level"),
        ] {
            let err = parse_filter("--log", given).unwrap_err();
            assert!(err.contains(said), "{given}: {err}");
            assert!(err.contains("error, warn, info, debug, trace"), "{err}");
        }
    }

    #[test]
    fn other_targets_follow_the_filter() {
        for target in [
            "hookrelay",
            "hookrelay::pipeline::worker",
            "reqwest::connect",
            "tokio_postgresql",
        ] {
            assert!(!is_withheld(target, Level::TRACE), "{target}");
        }
    }
}
