//! Warnings an operator must act on: a delivery that ended dead (its receiver's address refused
//! by the guard, its payload too large, its attempts used up), named by endpoint and event.
//!
//! A newcomer whose receiver is on localhost would otherwise see "worker started" and nothing
//! else while every delivery dies. One failing endpoint must not flood the log either, so lines
//! are limited per endpoint by [`Limiter`]: the first passes, then at most one a minute, which
//! says how many were left out since.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pipeline::claim::Job;
use crate::pipeline::deliver::{Attempt, ErrorCode};
use crate::pipeline::payload::event_id;

/// At most one line per endpoint in this period (after its first).
const PERIOD: Duration = Duration::from_secs(60);

/// Per-endpoint rate limit of log lines: a small state machine, clock passed in.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    /// Per endpoint: when its last line was written, and lines left out since.
    endpoints: HashMap<i64, (Instant, u64)>,
}

impl Limiter {
    /// Whether a line about `endpoint` may be written at `now`: `Some(left_out)` with the count
    /// of lines left out since the last one written, or `None` to leave this one out.
    pub(crate) fn allow(&mut self, endpoint: i64, now: Instant) -> Option<u64> {
        match self.endpoints.get_mut(&endpoint) {
            Some((last, left_out)) if now.duration_since(*last) < PERIOD => {
                *left_out += 1;
                None
            }
            Some((last, left_out)) => {
                let said = *left_out;
                *last = now;
                *left_out = 0;
                Some(said)
            }
            None => {
                // Endpoints come and go: forget those quiet for a period.
                self.endpoints
                    .retain(|_, (last, _)| now.duration_since(*last) < PERIOD);
                self.endpoints.insert(endpoint, (now, 0));
                Some(0)
            }
        }
    }
}

/// What the operator can do about a dead delivery, by its last error.
fn fix(code: Option<ErrorCode>) -> &'static str {
    match code {
        Some(ErrorCode::BlockedAddress) => {
            "the receiver's address is not public: open its network with --allow-network \
             (127.0.0.0/8 for a receiver on this machine), then hookrelay redeliver"
        }
        Some(ErrorCode::PayloadTooLarge) => {
            "raise --max-payload-bytes or send fewer fields (the endpoint's include_fields), \
             then hookrelay redeliver"
        }
        _ => "see hookrelay delivery show ID; hookrelay redeliver sends it again",
    }
}

/// The worker's operator warnings, shared by its request tasks.
#[derive(Debug, Default)]
pub(crate) struct Alerts {
    limiter: Mutex<Limiter>,
}

impl Alerts {
    /// Warns that `job` ended dead after `result`, unless the endpoint had a line lately.
    /// A `410 Gone` is left to the recorder, which disables the endpoint and says so.
    pub(crate) fn dead(&self, job: &Job, result: &Attempt) {
        let code = result.error.as_ref().map(|e| e.code);
        if code == Some(ErrorCode::Gone) {
            return;
        }
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(job.target.id, Instant::now());
        let Some(left_out) = allowed else {
            return;
        };
        let error = result.error.as_ref();
        tracing::warn!(
            endpoint = %job.target.name,
            event = %event_id(&job.event.id),
            delivery = job.delivery_id,
            attempt = job.attempt,
            error_code = error.map_or("", |e| e.code.as_str()),
            error = error.map_or("", |e| e.message.as_str()),
            similar_lines_left_out = left_out,
            "a delivery ended dead: {}",
            fix(code)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_passes_then_one_a_period_saying_how_many_were_left_out() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        assert_eq!(limiter.allow(1, start), Some(0));
        assert_eq!(limiter.allow(1, start + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow(1, start + Duration::from_secs(59)), None);
        // Another endpoint has its own allowance.
        assert_eq!(limiter.allow(2, start + Duration::from_secs(2)), Some(0));
        assert_eq!(limiter.allow(1, start + PERIOD), Some(2));
        assert_eq!(limiter.allow(1, start + PERIOD), None);
        assert_eq!(limiter.allow(1, start + 2 * PERIOD + PERIOD), Some(1));
    }

    #[test]
    fn quiet_endpoints_are_forgotten() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        for endpoint in 0..100 {
            limiter.allow(endpoint, start);
        }
        limiter.allow(1000, start + PERIOD);
        assert_eq!(limiter.endpoints.len(), 1);
    }

    #[test]
    fn each_cause_names_its_fix() {
        assert!(fix(Some(ErrorCode::BlockedAddress)).contains("--allow-network"));
        assert!(fix(Some(ErrorCode::PayloadTooLarge)).contains("--max-payload-bytes"));
        assert!(fix(Some(ErrorCode::HttpStatus)).contains("redeliver"));
    }
}
