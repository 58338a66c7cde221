//! Worker settings, with their defaults (from [`setting`], the one definition of every
//! setting) and the checks that keep them consistent.

use std::net::SocketAddr;
use std::time::Duration;

use crate::pipeline::guard::AllowList;
use crate::pipeline::retry::{human_duration, RetrySchedule};
use crate::pipeline::sweep::Retention;

pub mod setting;
use setting::{self as s, Setting, Value};

/// Errors in worker settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--{flag}{unit} must be between {min} and {max} (got {value})")]
    OutOfRange {
        flag: &'static str,
        unit: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error(
        "--lease ({}) must be at least twice --request-timeout ({}): a claimed delivery may \
         wait for a slot as long as a request takes, then take as long itself, and a lease that \
         runs out first lets another worker send it again; raise --lease to {} or more, or \
         lower --request-timeout to {} or less",
        human_duration(*.lease),
        human_duration(*.timeout),
        human_duration(*.timeout * 2),
        human_duration(*.lease / 2)
    )]
    LeaseTooShort { lease: Duration, timeout: Duration },
}

/// Everything the worker loop needs to know.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Most events or deliveries taken by one claim.
    pub batch_size: usize,
    /// How often to look for work when no notification arrives.
    pub poll_interval: Duration,
    /// How long a claim is held before another worker may take it over.
    pub lease: Duration,
    /// Delays between attempts.
    pub retry_schedule: RetrySchedule,
    /// Attempts in all for endpoints without their own; `None`: one more than the schedule
    /// has steps.
    pub max_attempts: Option<u32>,
    /// Request timeout for endpoints without their own.
    pub request_timeout: Duration,
    /// Bytes of each response body kept.
    pub excerpt_bytes: usize,
    /// How long a stopping worker lets requests in flight finish.
    pub shutdown_timeout: Duration,
    /// This worker's name in `locked_by` and `hookrelay.workers`.
    pub worker_id: String,
    /// `false` pauses delivery: nothing is claimed and events wait in the outbox.
    pub enabled: bool,
    /// How long finished history is kept, and how often it is pruned.
    pub retention: Retention,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (by default 127.0.0.1:9464, as
    /// `hookrelay run`); `None`: nowhere, which tests and embedders running several workers want.
    pub metrics_addr: Option<SocketAddr>,
    /// Non-public networks receivers may be on (`--allow-network`); empty: public only.
    pub allow_networks: AllowList,
    /// Largest request body sent; larger payloads end `dead` with `payload_too_large`.
    pub max_payload_bytes: usize,
    /// An endpoint whose every attempt failed for this long is disabled; zero: never.
    pub disable_after: Duration,
    /// ... and only once it has failed at least this many times in a row.
    pub disable_after_failures: u32,
    /// Where spans go over OTLP/HTTP (`--otlp-endpoint`); `None`: where the standard
    /// `OTEL_EXPORTER_OTLP_*` variables say, or nowhere.
    pub otlp_endpoint: Option<String>,
    /// Per-endpoint metrics, labelled by endpoint name (`--metrics-per-endpoint`).
    pub metrics_per_endpoint: bool,
}

impl Default for WorkerConfig {
    /// The built-in defaults of [`setting`], the same the command line starts from.
    fn default() -> Self {
        use setting::{duration, whole};
        WorkerConfig {
            concurrency: setting::CONCURRENCY.default_value(whole),
            batch_size: setting::BATCH_SIZE.default_value(whole),
            poll_interval: setting::POLL_INTERVAL.default_value(duration),
            lease: setting::LEASE.default_value(duration),
            retry_schedule: setting::RETRY_SCHEDULE.default_value(RetrySchedule::parse),
            max_attempts: None,
            request_timeout: setting::REQUEST_TIMEOUT.default_value(duration),
            excerpt_bytes: setting::RESPONSE_EXCERPT_BYTES.default_value(whole),
            shutdown_timeout: setting::SHUTDOWN_TIMEOUT.default_value(duration),
            worker_id: default_worker_id(),
            enabled: setting::ENABLED.default_value(str::parse),
            retention: Retention::default(),
            metrics_addr: setting::METRICS_ADDR.default_value(setting::metrics_addr),
            allow_networks: AllowList::default(),
            max_payload_bytes: setting::MAX_PAYLOAD_BYTES.default_value(whole),
            disable_after: setting::DISABLE_AFTER.default_value(duration),
            disable_after_failures: setting::DISABLE_AFTER_FAILURES.default_value(whole),
            otlp_endpoint: None,
            metrics_per_endpoint: setting::METRICS_PER_ENDPOINT.default_value(str::parse),
        }
    }
}

/// `host:pid:random`, unique enough to tell workers apart in the tables.
pub fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let mut tag = [0u8; 2];
    let _ = getrandom::fill(&mut tag);
    format!("{host}:{}:{}", std::process::id(), hex::encode(tag))
}

/// Checks `value` against the range in `setting`'s definition.
fn range(setting: &Setting, value: Value) -> Result<(), ConfigError> {
    match setting.outside(value) {
        None => Ok(()),
        Some((value, min, max, unit)) => Err(ConfigError::OutOfRange {
            flag: setting.flag,
            unit,
            value,
            min,
            max,
        }),
    }
}

impl WorkerConfig {
    /// Checks ranges and that the lease outlasts a request.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let count = |n: usize| Value::Count(n as u64);
        range(&s::CONCURRENCY, count(self.concurrency))?;
        range(&s::BATCH_SIZE, count(self.batch_size))?;
        range(&s::POLL_INTERVAL, Value::Duration(self.poll_interval))?;
        range(&s::REQUEST_TIMEOUT, Value::Duration(self.request_timeout))?;
        range(&s::LEASE, Value::Duration(self.lease))?;
        range(&s::RESPONSE_EXCERPT_BYTES, count(self.excerpt_bytes))?;
        if let Some(n) = self.max_attempts {
            range(&s::MAX_ATTEMPTS, Value::Count(n.into()))?;
        }
        range(&s::RETENTION, Value::Duration(self.retention.keep))?;
        range(
            &s::DEAD_RETENTION,
            Value::Duration(self.retention.keep_dead),
        )?;
        range(&s::MAX_PAYLOAD_BYTES, count(self.max_payload_bytes))?;
        if !self.disable_after.is_zero() {
            range(&s::DISABLE_AFTER, Value::Duration(self.disable_after))?;
        }
        range(
            &s::DISABLE_AFTER_FAILURES,
            Value::Count(self.disable_after_failures.into()),
        )?;
        if self.lease < self.request_timeout * 2 {
            return Err(ConfigError::LeaseTooShort {
                lease: self.lease,
                timeout: self.request_timeout,
            });
        }
        Ok(())
    }

    /// Attempts in all for an endpoint that does not set its own.
    pub fn default_max_attempts(&self) -> u32 {
        self.max_attempts
            .unwrap_or_else(|| self.retry_schedule.max_attempts())
    }

    /// The timeout for one request: the endpoint's own, kept under half the lease so that a
    /// delivery that waited for a slot still ends before another worker could take it over.
    pub fn request_timeout_for(&self, endpoint: Option<Duration>) -> Duration {
        let ceiling = self.lease.mul_f64(0.45);
        endpoint.unwrap_or(self.request_timeout).min(ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = WorkerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.default_max_attempts(), 8);
        assert_eq!(c.request_timeout_for(None), Duration::from_secs(10));
        assert_eq!(
            c.request_timeout_for(Some(Duration::from_secs(300))),
            Duration::from_secs(27)
        );
    }

    #[test]
    fn lease_must_outlast_the_timeout() {
        let c = WorkerConfig {
            lease: Duration::from_secs(5),
            ..WorkerConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "--lease (5 s) must be at least twice --request-timeout (10 s): a claimed delivery \
             may wait for a slot as long as a request takes, then take as long itself, and a \
             lease that runs out first lets another worker send it again; raise --lease to 20 s \
             or more, or lower --request-timeout to 2 s 500 ms or less"
        );
        let exactly_twice = WorkerConfig {
            lease: Duration::from_secs(20),
            ..WorkerConfig::default()
        };
        assert_eq!(exactly_twice.validate(), Ok(()));
    }

    #[test]
    fn ranges_are_checked() {
        let c = WorkerConfig {
            concurrency: 0,
            ..WorkerConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "--concurrency must be between 1 and 10000 (got 0)"
        );
    }
}
