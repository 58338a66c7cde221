//! The configuration file (`--config hookrelay.toml`): every command-line setting, by the
//! flag's name with underscores (`poll_interval = "1s"`), plus `[[endpoints]]` for
//! `hookrelay endpoint apply`. The keys, their kinds and their environment variables are
//! [`crate::config::setting::ALL`].
//!
//! The file is read before the command line is parsed and its values become the defaults:
//! a flag beats an environment variable, which beats the file, which beats the built-in
//! default. Unknown keys and wrong types are refused with the key named.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use toml::Value;

use crate::config::setting::{self, Kind};

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
    toml::from_str::<toml::Table>(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), toml_error(&e, &text)))
}

/// A TOML error on one line: where, the key when the error is about a value, and what is
/// wrong. Never the offending line or value: the file holds database URLs and secrets, and
/// the TOML crate's own message quotes both.
pub fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = without_values(e.message());
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return format!("TOML parse error: {message}");
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    match key_before(&before[line_start..]) {
        Some(key) => {
            format!("TOML parse error at line {line}, column {column}, key `{key}`: {message}")
        }
        None => format!("TOML parse error at line {line}, column {column}: {message}"),
    }
}

/// The key a value belongs to, from the text before the value on its line (`key = ` or
/// `{ a = 1, key = `).
fn key_before(prefix: &str) -> Option<&str> {
    let assigned = prefix.trim_end().strip_suffix('=')?;
    let key = assigned.rsplit(['{', ',']).next()?.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c);
    (!key.is_empty() && key.len() <= 100 && key.chars().all(plain)).then_some(key)
}

/// `message` with the values serde quotes in it (`string "…"`, ``integer `…` ``,
/// ``floating point `…` ``) replaced by their kind.
fn without_values(message: &str) -> String {
    const QUOTED: [(&str, char, &str); 3] = [
        ("string \"", '"', "a string"),
        ("integer `", '`', "an integer"),
        ("floating point `", '`', "a number"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, (open, close, kind))) = QUOTED
        .iter()
        .filter_map(|q| rest.find(q.0).map(|at| (at, q)))
        .min_by_key(|(at, _)| *at)
    {
        out.push_str(&rest[..at]);
        out.push_str(kind);
        let value = &rest[at + open.len()..];
        // Skip to the closing quote; a string is escaped as Rust's Debug does (\").
        let mut escaped = false;
        let end = value
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == *close && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(value.len(), |(i, c)| i + c.len_utf8());
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

fn text_of(key: &str, kind: Kind, value: &Value) -> Result<String> {
    // The value's type, not the value: it may be a database URL with its password.
    let wrong =
        |what: &str| anyhow::anyhow!("setting `{key}` must be {what} (got {})", kind_of(value));
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

/// What kind of TOML value `value` is, for messages.
fn kind_of(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "an empty string".into(),
        Value::Integer(n) => format!("the number {n}"),
        Value::Boolean(b) => format!("{b}"),
        other => match other.type_str() {
            kind @ ("array" | "integer") => format!("an {kind}"),
            kind => format!("a {kind}"),
        },
    }
}

/// The environment variables the file's settings stand for, checked.
pub fn settings_as_env(table: &toml::Table) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in table {
        if SECTIONS.contains(&key.as_str()) {
            continue;
        }
        let Some(setting) = setting::by_key(key) else {
            bail!("{}", unknown_setting(key, value));
        };
        let text = text_of(key, setting.kind, value)?;
        out.push((setting.env.to_string(), text));
    }
    Ok(out)
}

/// The message for a key that is no setting: the setting it most likely meant, then every
/// setting. `max_retries` (the Django document's name) counts retries after the first
/// attempt, where `max_attempts` counts the first attempt too.
fn unknown_setting(key: &str, value: &Value) -> String {
    let known: Vec<&str> = setting::ALL.iter().map(|s| s.key).collect();
    let hint = if key == "max_retries" {
        let example = match value {
            Value::Integer(n) if (0..i64::MAX).contains(n) => {
                format!("max_retries = {n} is max_attempts = {}", n + 1)
            }
            _ => "max_retries = N is max_attempts = N + 1".into(),
        };
        format!(
            ": hookrelay counts attempts, the first one included, so use `max_attempts` \
             ({example})."
        )
    } else {
        closest(key, &known).map_or_else(|| ".".into(), |name| format!("; did you mean `{name}`?"))
    };
    format!(
        "unknown setting `{key}`{hint} The settings are: {}, and [[endpoints]]",
        known.join(", ")
    )
}

/// The known name nearest to `key` by edit distance, when it is near enough to be a typo: at
/// most a third of the key's length (and at least 1, at most 3 edits) away.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    nearest(&lower, known.iter().chain(SECTIONS).copied())
}

/// The candidate nearest to `key` by edit distance, within a third of its length (1 to 3).
fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|name| (strsim::damerau_levenshtein(key, name), name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Variables of this repository's own tests and benches, which reach the binaries they start.
const DEVELOPMENT_VARIABLES: &[&str] = &[
    "HOOKRELAY_BENCH_",
    "HOOKRELAY_CHAOS_",
    "HOOKRELAY_TEST_",
    "HOOKRELAY_BLESS",
    "HOOKRELAY_CONSOLE_SCREENSHOTS",
    "HOOKRELAY_DJANGO_VENV",
];

/// One line for each variable in `names` that looks like hookrelay's (`HOOKRELAY_…`) but is
/// not one of `known`, with the name it most likely meant. A misspelt flag or file key is
/// refused; a misspelt variable would otherwise be silently ignored. The value is never shown.
pub fn unknown_variables(names: impl IntoIterator<Item = String>, known: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|name| name.starts_with("HOOKRELAY_") && !known.contains(&name.as_str()))
        .filter(|name| {
            !DEVELOPMENT_VARIABLES
                .iter()
                .any(|dev| name.starts_with(dev))
        })
        .map(|name| {
            let meant = nearest(&name, known.iter().copied())
                .map_or_else(|| ".".to_string(), |m| format!("; did you mean {m}?"));
            format!(
                "{name} is set, but hookrelay reads no variable of that name{meant} It is ignored."
            )
        })
        .collect();
    out.sort();
    out
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
        let err = env_of("database_url = [\"postgres://u:hunter2@db/x\"]")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "setting `database_url` must be a string (got an array)"
        );
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_setting() {
        let err = env_of("concurency = 8").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown setting `concurency`; did you mean `concurrency`? The settings are: database_url,"),
            "{err}"
        );
        let err = env_of("retry-schedule = \"1s\"").unwrap_err().to_string();
        assert!(err.contains("did you mean `retry_schedule`?"), "{err}");
        let err = env_of("[[endpoint]]\nname = \"crm\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `endpoints`?"), "{err}");
        let err = env_of("colour = true").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown setting `colour`. The settings are:"),
            "{err}"
        );
        let err = env_of("max_retries = 5").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "unknown setting `max_retries`: hookrelay counts attempts, the first one \
                 included, so use `max_attempts` (max_retries = 5 is max_attempts = 6). The \
                 settings are:"
            ),
            "{err}"
        );
        let err = env_of("max_retries = \"five\"").unwrap_err().to_string();
        assert!(
            err.contains("(max_retries = N is max_attempts = N + 1)"),
            "{err}"
        );
    }

    #[test]
    fn toml_errors_name_the_place_and_key_but_never_the_value() {
        let error = |text: &str| {
            let e = toml::from_str::<toml::Table>(text).unwrap_err();
            toml_error(&e, text)
        };
        let err = error("concurrency = 8\ndatabase_url = \"postgres://u:hunter2@db/x\n");
        assert!(
            err.starts_with("TOML parse error at line 2, column "),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Spec {
            secret: String,
            headers: std::collections::BTreeMap<String, String>,
        }
        for (text, key, kind) in [
            ("secret = 123456789\nheaders = {}\n", "secret", "an integer"),
            (
                "secret = \"x\"\nheaders = \"Bearer hunter2\"\n",
                "headers",
                "a string",
            ),
            ("secret = 1.5e3\nheaders = {}\n", "secret", "a number"),
        ] {
            let e = toml::from_str::<Spec>(text).unwrap_err();
            let err = toml_error(&e, text);
            assert!(
                err.contains(&format!("key `{key}`")) && err.contains(kind),
                "{text}: {err}"
            );
            for value in ["123456789", "hunter2", "1.5e3"] {
                assert!(!err.contains(value), "{text}: {err}");
            }
        }
        assert_eq!(
            without_values(r#"invalid type: string "a\"b", expected a map"#),
            "invalid type: a string, expected a map"
        );
        assert_eq!(
            without_values("invalid value: integer `-1`, expected u32"),
            "invalid value: an integer, expected u32"
        );
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

    #[test]
    fn misspelt_variables_are_named_with_the_one_meant_and_no_value() {
        let known = [
            "HOOKRELAY_CONCURRENCY",
            "HOOKRELAY_DATABASE_URL",
            "HOOKRELAY_LEASE",
        ];
        let names = [
            "HOOKRELAY_CONCURENCY",
            "HOOKRELAY_DATABSE_URL",
            "HOOKRELAY_LEASE",
            "HOOKRELAY_SOMETHING_ELSE",
            "HOOKRELAY_BENCH_HISTORY_ROWS",
            "PATH",
        ];
        let lines = unknown_variables(names.map(String::from), &known);
        assert_eq!(
            lines,
            [
                "HOOKRELAY_CONCURENCY is set, but hookrelay reads no variable of that name; \
                 did you mean HOOKRELAY_CONCURRENCY? It is ignored.",
                "HOOKRELAY_DATABSE_URL is set, but hookrelay reads no variable of that name; \
                 did you mean HOOKRELAY_DATABASE_URL? It is ignored.",
                "HOOKRELAY_SOMETHING_ELSE is set, but hookrelay reads no variable of that \
                 name. It is ignored.",
            ]
        );
    }
}
