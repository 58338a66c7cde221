//! One definition per setting: its flag, file key, environment variable, built-in default and
//! kind of value. The command line (`cli`, `cli::run`, `cli::protect`) takes its `long`, `env`
//! and `default_value` from here, the configuration file (`settings`) its keys and checks, and
//! [`WorkerConfig::default`](super::WorkerConfig) its values, by parsing the same default text
//! with the same parser the command line uses — so the three cannot drift apart. Help text
//! lives once too: in the doc comment on the command-line field, the only place it is shown.
//!
//! Each setting's range is part of its definition too ([`Bounds`]);
//! [`WorkerConfig::validate`](super::WorkerConfig) applies them and the checks between settings.

use std::net::{AddrParseError, SocketAddr};
use std::time::Duration;

/// How a setting's value is written in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Text,
    /// A duration such as `"30s"`.
    Duration,
    /// A whole number, 0 or more.
    Count,
    /// `true` or `false`.
    Bool,
    /// Comma-separated durations, or an array of them.
    Durations,
    /// Comma-separated values, or an array of strings.
    List,
}

/// The values a setting accepts, in the unit its range is stated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// No range beyond what its parser accepts.
    Any,
    /// A whole number from the first to the second.
    Count(u64, u64),
    /// A duration, in milliseconds.
    Millis(u64, u64),
    /// A duration, in seconds.
    Secs(u64, u64),
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The configuration file's key: the flag's name with underscores.
    pub key: &'static str,
    /// The flag, without its dashes.
    pub flag: &'static str,
    /// The environment variable: `HOOKRELAY_` and the key in capitals.
    pub env: &'static str,
    /// The built-in default as it would be typed on the command line; `None`: unset.
    pub default: Option<&'static str>,
    /// How its value is written in the configuration file.
    pub kind: Kind,
    /// The values it accepts.
    pub bounds: Bounds,
}

impl Setting {
    /// The default text, for clap's `default_value`. Only called for settings that have one;
    /// the agreement test in this module walks every flag.
    pub const fn default_text(&self) -> &'static str {
        match self.default {
            Some(text) => text,
            None => panic!("this setting has no default"),
        }
    }

    /// The default parsed as the command line parses it. The defaults are constants that a
    /// unit test parses, so this cannot fail at run time.
    pub(crate) fn default_value<T, E: std::fmt::Debug>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> T {
        parse(self.default_text())
            .unwrap_or_else(|e| panic!("the default of {} does not parse: {e:?}", self.key))
    }
}

macro_rules! settings {
    ($($name:ident = $key:literal, $flag:literal, $env:literal, $default:expr, $kind:ident
        $(, $bounds:ident($min:expr, $max:expr))?;)*) => {
        $(
            #[doc = concat!("`--", $flag, "`, `", $env, "`, `", $key, "` in the file.")]
            pub const $name: Setting = Setting {
                key: $key,
                flag: $flag,
                env: $env,
                default: $default,
                kind: Kind::$kind,
                bounds: settings!(@bounds $($bounds($min, $max))?),
            };
        )*
        /// Every setting, in the order the configuration file's error messages list them.
        pub const ALL: &[Setting] = &[$($name),*];
    };
    (@bounds) => { Bounds::Any };
    (@bounds $bounds:ident($min:expr, $max:expr)) => { Bounds::$bounds($min, $max) };
}

settings! {
    DATABASE_URL = "database_url", "database-url", "HOOKRELAY_DATABASE_URL", None, Text;
    DATA_DIR = "data_dir", "data-dir", "HOOKRELAY_DATA_DIR", Some(".hookrelay"), Text;
    CONNECT_TIMEOUT = "connect_timeout", "connect-timeout", "HOOKRELAY_CONNECT_TIMEOUT", Some("5s"), Duration;
    LOG = "log", "log", "HOOKRELAY_LOG", Some("info"), Text;
    LOG_FORMAT = "log_format", "log-format", "HOOKRELAY_LOG_FORMAT", Some("text"), Text;
    ENABLED = "enabled", "enabled", "HOOKRELAY_ENABLED", Some("true"), Bool;
    CONCURRENCY = "concurrency", "concurrency", "HOOKRELAY_CONCURRENCY", Some("64"), Count,
        Count(1, 10_000);
    BATCH_SIZE = "batch_size", "batch-size", "HOOKRELAY_BATCH_SIZE", Some("100"), Count,
        Count(1, 10_000);
    POLL_INTERVAL = "poll_interval", "poll-interval", "HOOKRELAY_POLL_INTERVAL", Some("1s"), Duration,
        Millis(10, 3_600_000);
    LEASE = "lease", "lease", "HOOKRELAY_LEASE", Some("60s"), Duration,
        Millis(1_000, 86_400_000);
    RETRY_SCHEDULE = "retry_schedule", "retry-schedule", "HOOKRELAY_RETRY_SCHEDULE",
        Some(crate::pipeline::retry::DEFAULT_SCHEDULE), Durations;
    MAX_ATTEMPTS = "max_attempts", "max-attempts", "HOOKRELAY_MAX_ATTEMPTS", None, Count,
        Count(1, 100);
    REQUEST_TIMEOUT = "request_timeout", "request-timeout", "HOOKRELAY_REQUEST_TIMEOUT", Some("10s"), Duration,
        Millis(100, 300_000);
    RESPONSE_EXCERPT_BYTES = "response_excerpt_bytes", "response-excerpt-bytes",
        "HOOKRELAY_RESPONSE_EXCERPT_BYTES", Some("4096"), Count,
        Count(0, 1 << 20);
    SHUTDOWN_TIMEOUT = "shutdown_timeout", "shutdown-timeout", "HOOKRELAY_SHUTDOWN_TIMEOUT", Some("30s"), Duration;
    WORKER_ID = "worker_id", "worker-id", "HOOKRELAY_WORKER_ID", None, Text;
    LISTEN_DATABASE_URL = "listen_database_url", "listen-database-url",
        "HOOKRELAY_LISTEN_DATABASE_URL", None, Text;
    POOLER = "pooler", "pooler", "HOOKRELAY_POOLER", Some("none"), Text;
    MIGRATE = "migrate", "migrate", "HOOKRELAY_MIGRATE", Some("false"), Bool;
    RETENTION = "retention", "retention", "HOOKRELAY_RETENTION", Some("7d"), Duration,
        Secs(1, 10 * 365 * 86_400);
    DEAD_RETENTION = "dead_retention", "dead-retention", "HOOKRELAY_DEAD_RETENTION", Some("30d"), Duration,
        Secs(1, 10 * 365 * 86_400);
    RETENTION_INTERVAL = "retention_interval", "retention-interval", "HOOKRELAY_RETENTION_INTERVAL",
        Some("1m"), Duration;
    METRICS_ADDR = "metrics_addr", "metrics-addr", "HOOKRELAY_METRICS_ADDR", Some("127.0.0.1:9464"), Text;
    ALLOW_NETWORKS = "allow_networks", "allow-network", "HOOKRELAY_ALLOW_NETWORKS", None, List;
    ALLOW_ANY_NETWORK = "allow_any_network", "allow-any-network", "HOOKRELAY_ALLOW_ANY_NETWORK",
        Some("false"), Bool;
    MAX_PAYLOAD_BYTES = "max_payload_bytes", "max-payload-bytes", "HOOKRELAY_MAX_PAYLOAD_BYTES",
        Some("262144"), Count,
        Count(1024, 64 << 20);
    DISABLE_AFTER = "disable_after", "disable-after", "HOOKRELAY_DISABLE_AFTER", Some("5d"), Duration,
        Secs(1, 365 * 86_400);
    DISABLE_AFTER_FAILURES = "disable_after_failures", "disable-after-failures",
        "HOOKRELAY_DISABLE_AFTER_FAILURES", Some("10"), Count,
        Count(1, 1_000_000);
    OTLP_ENDPOINT = "otlp_endpoint", "otlp-endpoint", "HOOKRELAY_OTLP_ENDPOINT", None, Text;
    METRICS_PER_ENDPOINT = "metrics_per_endpoint", "metrics-per-endpoint",
        "HOOKRELAY_METRICS_PER_ENDPOINT", Some("false"), Bool;
}

impl Setting {
    /// A value outside this setting's range: the value, the range and the unit they are in
    /// (`" (ms)"`, `" (s)"`, or `""` for counts). Durations are measured in their bounds' unit.
    pub fn outside(&self, value: Value) -> Option<(u64, u64, u64, &'static str)> {
        let (value, min, max, unit) = match (self.bounds, value) {
            (Bounds::Any, _) => return None,
            (Bounds::Count(min, max), Value::Count(n)) => (n, min, max, ""),
            (Bounds::Millis(min, max), Value::Duration(d)) => {
                (d.as_millis() as u64, min, max, " (ms)")
            }
            (Bounds::Secs(min, max), Value::Duration(d)) => (d.as_secs(), min, max, " (s)"),
            (bounds, value) => panic!("{}: {value:?} checked against {bounds:?}", self.key),
        };
        (!(min..=max).contains(&value)).then_some((value, min, max, unit))
    }
}

/// A value to check against a setting's [`Bounds`].
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A whole number.
    Count(u64),
    /// A duration.
    Duration(Duration),
}

/// The setting with this file key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    ALL.iter().find(|s| s.key == key)
}

/// Parses a duration (`500ms`, `30s`, `5m`, `2h`, `7d`), naming the forms it takes when the
/// value is not one.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as 500ms, 30s, 5m, 2h or 7d ({e})"))
}

/// Parses a whole number, saying plainly when the value is negative.
pub fn whole<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let trimmed = text.trim();
    trimmed.parse().map_err(|e| {
        if trimmed.len() > 1
            && trimmed.starts_with('-')
            && trimmed[1..].bytes().all(|b| b.is_ascii_digit())
        {
            format!("{text} is negative: give a whole number, 0 or more")
        } else {
            format!("{text:?} is not a whole number ({e})")
        }
    })
}

/// Parses `--metrics-addr`: an address, or `off` (or nothing) for none.
pub fn metrics_addr(text: &str) -> Result<Option<SocketAddr>, AddrParseError> {
    match text.trim() {
        "off" | "" => Ok(None),
        addr => addr.parse().map(Some),
    }
}

#[cfg(test)]
mod tests;
