//! The configuration file (`--config hookrelay.toml`): every command-line setting, by the
//! flag's name with underscores (`poll_interval = "1s"`), plus `[[endpoints]]` for
//! `hookrelay endpoint apply`.
//!
//! The file is read before the command line is parsed and its values become the defaults:
//! a flag beats an environment variable, which beats the file, which beats the built-in
//! default. Unknown keys and wrong types are refused with the key named.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use toml::Value;

/// How a setting's value is written in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Duration,
    Count,
    Bool,
    /// Comma-separated durations, or an array of them.
    Durations,
    /// Comma-separated values, or an array of strings.
    List,
}

/// Every setting the file may hold, with its kind.
const SETTINGS: &[(&str, Kind)] = &[
    ("database_url", Kind::Text),
    ("data_dir", Kind::Text),
    ("log", Kind::Text),
    ("log_format", Kind::Text),
    ("enabled", Kind::Bool),
    ("concurrency", Kind::Count),
    ("batch_size", Kind::Count),
    ("poll_interval", Kind::Duration),
    ("lease", Kind::Duration),
    ("retry_schedule", Kind::Durations),
    ("max_attempts", Kind::Count),
    ("request_timeout", Kind::Duration),
    ("response_excerpt_bytes", Kind::Count),
    ("shutdown_timeout", Kind::Duration),
    ("worker_id", Kind::Text),
    ("migrate", Kind::Bool),
    ("retention", Kind::Duration),
    ("dead_retention", Kind::Duration),
    ("retention_interval", Kind::Duration),
    ("metrics_addr", Kind::Text),
    ("allow_networks", Kind::List),
    ("max_payload_bytes", Kind::Count),
    ("disable_after", Kind::Duration),
    ("disable_after_failures", Kind::Count),
];

/// Keys that are not settings but are allowed in the file.
const SECTIONS: &[&str] = &["endpoints"];

/// The `--config` path given on the command line or in `HOOKRELAY_CONFIG`.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("HOOKRELAY_CONFIG").map(PathBuf::from)
}

/// Reads and parses a TOML file.
pub fn read(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().replace('\n', " ")))
}

fn text_of(key: &str, kind: Kind, value: &Value) -> Result<String> {
    let wrong = |what: &str| anyhow::anyhow!("setting `{key}` must be {what} (got {value})");
    match (kind, value) {
        (Kind::Text, Value::String(s)) => Ok(s.clone()),
        (Kind::Text, _) => Err(wrong("a string")),
        (Kind::Bool, Value::Boolean(b)) => Ok(b.to_string()),
        (Kind::Bool, _) => Err(wrong("true or false")),
        (Kind::Count, Value::Integer(n)) if *n >= 0 => Ok(n.to_string()),
        (Kind::Count, _) => Err(wrong("a whole number, 0 or more")),
        (Kind::Duration, Value::String(s)) => {
            humantime::parse_duration(s)
                .map_err(|_| wrong("a duration such as \"30s\" or \"5m\""))?;
            Ok(s.clone())
        }
        (Kind::Duration, _) => Err(wrong("a duration string such as \"30s\"")),
        (Kind::Durations | Kind::List, Value::String(s)) => Ok(s.clone()),
        (Kind::Durations | Kind::List, Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(wrong("a string or an array of strings")),
            })
            .collect::<Result<Vec<_>>>()
            .map(|parts| parts.join(",")),
        (Kind::Durations | Kind::List, _) => Err(wrong("a string or an array of strings")),
    }
}

/// The environment variables the file's settings stand for, checked.
pub fn settings_as_env(table: &toml::Table) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in table {
        if SECTIONS.contains(&key.as_str()) {
            continue;
        }
        let Some((_, kind)) = SETTINGS.iter().find(|(name, _)| name == key) else {
            let known: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
            bail!(
                "unknown setting `{key}`; the settings are: {}, and [[endpoints]]",
                known.join(", ")
            );
        };
        let text = text_of(key, *kind, value)?;
        out.push((format!("HOOKRELAY_{}", key.to_uppercase()), text));
    }
    Ok(out)
}

/// Loads the configuration file named by `--config` or `HOOKRELAY_CONFIG`, if any, making its
/// settings the defaults for this process. Call before parsing the command line, while the
/// process has a single thread.
pub fn load_defaults(args: &[OsString]) -> Result<()> {
    let Some(path) = config_path(args) else {
        return Ok(());
    };
    let table = read(&path)?;
    let vars = settings_as_env(&table).with_context(|| path.display().to_string())?;
    for (name, value) in vars {
        if std::env::var_os(&name).is_none() {
            // SAFETY (edition 2021: safe): no other thread exists yet.
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(text: &str) -> Result<Vec<(String, String)>> {
        settings_as_env(&text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn settings_become_environment_variables() {
        let vars = env_of(
            r#"
            concurrency = 8
            poll_interval = "250ms"
            enabled = false
            retry_schedule = ["1s", "1m"]
            metrics_addr = "off"
            allow_networks = ["10.0.0.0/8", "fd00::/8"]
            disable_after = "2d"
            [[endpoints]]
            name = "crm"
            "#,
        )
        .unwrap();
        let mut vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vars.sort();
        assert_eq!(
            vars,
            [
                "HOOKRELAY_ALLOW_NETWORKS=10.0.0.0/8,fd00::/8",
                "HOOKRELAY_CONCURRENCY=8",
                "HOOKRELAY_DISABLE_AFTER=2d",
                "HOOKRELAY_ENABLED=false",
                "HOOKRELAY_METRICS_ADDR=off",
                "HOOKRELAY_POLL_INTERVAL=250ms",
                "HOOKRELAY_RETRY_SCHEDULE=1s,1m",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let err = env_of("concurency = 8").unwrap_err().to_string();
        assert!(
            err.contains("unknown setting `concurency`") && err.contains("concurrency"),
            "{err}"
        );
        let err = env_of("concurrency = \"eight\"").unwrap_err().to_string();
        assert!(
            err.contains("`concurrency` must be a whole number"),
            "{err}"
        );
        let err = env_of("poll_interval = \"soon\"").unwrap_err().to_string();
        assert!(err.contains("`poll_interval` must be a duration"), "{err}");
        let err = env_of("enabled = \"yes\"").unwrap_err().to_string();
        assert!(err.contains("`enabled` must be true or false"), "{err}");
        let err = env_of("concurrency = -1").unwrap_err().to_string();
        assert!(err.contains("0 or more"), "{err}");
    }

    #[test]
    fn the_config_flag_is_found_in_either_form() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["hookrelay", "--config", "a.toml", "run"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["hookrelay", "run", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}
