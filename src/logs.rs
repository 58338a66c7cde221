//! Log output: the filter made from `--log` (or `RUST_LOG`), and what is never written
//! whatever that filter asks for.
//!
//! tokio-postgres writes every statement's parameters to its debug log ("executing statement
//! … with parameters: […]") and every batch's SQL text. Parameters carry endpoint secrets
//! (`endpoint add`, `rotate-secret`), static header values (`Authorization` tokens) and
//! application payloads, so its records more verbose than `info` are dropped here, for every
//! filter, including one that names tokio_postgres explicitly: `--log trace` must be safe to
//! paste into a bug report. Its `info` records (server notices and warnings) still show.
//!
//! Other crates were checked at `trace` with the test in `tests/it/secrets.rs`: reqwest and
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
/// the crates in [`WITHHELD_BELOW_INFO`] (their modules included).
pub fn is_withheld(target: &str, level: Level) -> bool {
    level > Level::INFO
        && WITHHELD_BELOW_INFO.iter().any(|crate_name| {
            target == *crate_name
                || target
                    .strip_prefix(crate_name)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
}

/// The filter `RUST_LOG` sets when it is set and valid, else the one for `directives` (`--log`,
/// such as `info` or `hookrelay=debug,warn`). Fails, naming the forms, when `directives` is
/// not a filter.
pub fn env_filter(directives: &str) -> Result<EnvFilter, String> {
    let given = EnvFilter::try_new(directives).map_err(|e| {
        format!(
            "--log {directives:?} is not a log filter ({e}): use error, warn, info, debug, \
             trace, or directives such as hookrelay=debug,warn"
        )
    })?;
    Ok(EnvFilter::try_from_env("RUST_LOG").unwrap_or(given))
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
        let err = env_filter("garbage[[").unwrap_err();
        assert!(
            err.starts_with("--log \"garbage[[\" is not a log filter"),
            "{err}"
        );
        assert!(env_filter("hookrelay=debug,warn").is_ok());
    }

    #[test]
    fn other_targets_follow_the_filter() {
        for target in [
            "hookrelay",
            "hookrelay::worker",
            "reqwest::connect",
            "tokio_postgresql",
        ] {
            assert!(!is_withheld(target, Level::TRACE), "{target}");
        }
    }
}
