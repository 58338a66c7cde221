//! The retry schedule and the outcome of a finished attempt.
//!
//! Everything here is pure: the random jitter is passed in, so the schedule has known answers.

use std::time::Duration;

/// The default schedule: about a day and a quarter of retries after the first attempt.
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// How far each delay may move either way, as a fraction of it (±20 %).
pub const JITTER: f64 = 0.2;

/// The longest wait a receiver's `Retry-After` may ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Errors from parsing a retry schedule.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetryError {
    #[error("the retry schedule is empty: give comma-separated delays such as 5s,5m,30m")]
    Empty,
    #[error(
        "retry schedule step {step:?} is not a duration: use forms such as 500ms, 5s, 5m, 2h, 1d"
    )]
    BadStep { step: String },
    #[error("retry schedule step {step:?} is zero: every delay must be positive")]
    ZeroStep { step: String },
    #[error("the retry schedule has {0} steps; the limit is 99")]
    TooLong(usize),
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The attempt failed and another one is due after this delay.
    Retry { after: Duration },
    /// The attempt failed and there will be no other: the delivery stays visible as `dead`.
    Dead,
}

impl Outcome {
    /// The name stored in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead => "dead",
        }
    }
}

/// Delays between attempts: step `n` is the wait after the `n`-th failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    steps: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule::parse(DEFAULT_SCHEDULE).expect("the default schedule parses")
    }
}

impl RetrySchedule {
    /// Parses a comma-separated list of durations such as `5s,5m,30m,2h`.
    pub fn parse(text: &str) -> Result<Self, RetryError> {
        let mut steps = Vec::new();
        for step in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let delay = humantime::parse_duration(step).map_err(|_| RetryError::BadStep {
                step: step.to_string(),
            })?;
            if delay.is_zero() {
                return Err(RetryError::ZeroStep {
                    step: step.to_string(),
                });
            }
            steps.push(delay);
        }
        match steps.len() {
            0 => Err(RetryError::Empty),
            n if n > 99 => Err(RetryError::TooLong(n)),
            _ => Ok(RetrySchedule { steps }),
        }
    }

    /// The steps, without jitter.
    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    /// Attempts in all when nothing overrides it: the first one plus one per step.
    pub fn max_attempts(&self) -> u32 {
        self.steps.len() as u32 + 1
    }

    /// The wait after failed attempt `attempt` (1-based). Attempts beyond the schedule (an
    /// endpoint allowed more attempts than it has steps) reuse the last step. `jitter` is a
    /// random number in `[-1, 1]` that moves the delay by up to ±[`JITTER`].
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.steps.len() - 1);
        let base = self.steps[index].as_secs_f64();
        Duration::from_secs_f64(base * (1.0 + JITTER * jitter.clamp(-1.0, 1.0)))
    }

    /// Decides what follows a failed attempt: another one (after the schedule's delay, or
    /// after the receiver's `Retry-After` when it asks for longer, up to [`MAX_RETRY_AFTER`]),
    /// or none when `attempt` has reached `max_attempts`.
    pub fn after_failure(
        &self,
        attempt: u32,
        max_attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Outcome {
        if attempt >= max_attempts {
            return Outcome::Dead;
        }
        let scheduled = self.delay(attempt, jitter);
        let after = match retry_after {
            Some(asked) => scheduled.max(asked.min(MAX_RETRY_AFTER)),
            None => scheduled,
        };
        Outcome::Retry { after }
    }
}

impl std::fmt::Display for RetrySchedule {
    /// `5 s, 5 min, 30 min, 2 h`: the steps as [`human_duration`] writes them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<String> = self.steps.iter().map(|d| human_duration(*d)).collect();
        f.write_str(&steps.join(", "))
    }
}

/// A duration as messages write it: `1 day 2 h`, `5 min`, `1 s 500 ms`, `250 µs`. Every
/// non-zero unit from days down to milliseconds (microseconds only below a millisecond), a
/// space between number and unit. humantime's `format_duration` writes `1day 2h 5m`, which
/// reads badly in a sentence.
pub fn human_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        return match d.as_micros() {
            0 => "0 s".into(),
            us => format!("{us} µs"),
        };
    }
    const UNITS: [(u128, &str); 5] = [
        (86_400_000, "day"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
        (1, "ms"),
    ];
    let mut rest = d.as_millis();
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        let n = rest / size;
        rest %= size;
        match n {
            0 => {}
            1 => parts.push(format!("1 {name}")),
            n if name == "day" => parts.push(format!("{n} days")),
            n => parts.push(format!("{n} {name}")),
        }
    }
    parts.join(" ")
}

/// A random number in `[-1, 1]` for [`RetrySchedule::delay`].
pub fn random_jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    (u32::from_le_bytes(bytes) as f64 / u32::MAX as f64) * 2.0 - 1.0
}

/// Exponential backoff for reconnecting to the database: 100 ms doubling up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff that starts at `first` and doubles up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The next wait; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to the first wait after a success.
    pub fn reset(&mut self, first: Duration) {
        self.next = first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_schedule_spans_about_a_day() {
        let schedule = RetrySchedule::default();
        assert_eq!(
            schedule.steps(),
            &[
                secs(5),
                secs(300),
                secs(1800),
                secs(7200),
                secs(18000),
                secs(36000),
                secs(36000)
            ]
        );
        assert_eq!(schedule.max_attempts(), 8);
        let total: Duration = schedule.steps().iter().sum();
        assert_eq!(total, secs(99_305));
    }

    #[test]
    fn delay_without_jitter_follows_the_steps_and_repeats_the_last() {
        let schedule = RetrySchedule::parse("1s, 10s ,1m").unwrap();
        assert_eq!(schedule.delay(1, 0.0), secs(1));
        assert_eq!(schedule.delay(2, 0.0), secs(10));
        assert_eq!(schedule.delay(3, 0.0), secs(60));
        assert_eq!(schedule.delay(9, 0.0), secs(60));
        assert_eq!(schedule.delay(0, 0.0), secs(1));
    }

    #[test]
    fn jitter_moves_the_delay_by_at_most_twenty_percent() {
        let schedule = RetrySchedule::parse("100s").unwrap();
        assert_eq!(schedule.delay(1, 1.0), secs(120));
        assert_eq!(schedule.delay(1, -1.0), secs(80));
        assert_eq!(schedule.delay(1, 0.5), secs(110));
        assert_eq!(schedule.delay(1, 7.0), secs(120));
        for _ in 0..1000 {
            let j = random_jitter();
            assert!((-1.0..=1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn after_failure_gives_up_at_max_attempts() {
        let schedule = RetrySchedule::parse("1s,2s").unwrap();
        assert_eq!(
            schedule.after_failure(1, 3, None, 0.0),
            Outcome::Retry { after: secs(1) }
        );
        assert_eq!(
            schedule.after_failure(2, 3, None, 0.0),
            Outcome::Retry { after: secs(2) }
        );
        assert_eq!(schedule.after_failure(3, 3, None, 0.0), Outcome::Dead);
        assert_eq!(schedule.after_failure(1, 1, None, 0.0), Outcome::Dead);
        assert_eq!(
            schedule.after_failure(4, 6, None, 0.0),
            Outcome::Retry { after: secs(2) }
        );
    }

    #[test]
    fn retry_after_only_lengthens_and_is_capped() {
        let schedule = RetrySchedule::parse("10s").unwrap();
        let longer = schedule.after_failure(1, 5, Some(secs(60)), 0.0);
        assert_eq!(longer, Outcome::Retry { after: secs(60) });
        let shorter = schedule.after_failure(1, 5, Some(secs(1)), 0.0);
        assert_eq!(shorter, Outcome::Retry { after: secs(10) });
        let huge = schedule.after_failure(1, 5, Some(secs(10 * 86400)), 0.0);
        assert_eq!(
            huge,
            Outcome::Retry {
                after: MAX_RETRY_AFTER
            }
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_step_named() {
        assert_eq!(RetrySchedule::parse(" , "), Err(RetryError::Empty));
        assert_eq!(
            RetrySchedule::parse("5s,soon"),
            Err(RetryError::BadStep {
                step: "soon".into()
            })
        );
        assert_eq!(
            RetrySchedule::parse("0s"),
            Err(RetryError::ZeroStep { step: "0s".into() })
        );
        let long = vec!["1s"; 100].join(",");
        assert_eq!(RetrySchedule::parse(&long), Err(RetryError::TooLong(100)));
        let msg = RetrySchedule::parse("5s,soon").unwrap_err().to_string();
        assert!(msg.contains("\"soon\"") && msg.contains("5m"), "{msg}");
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
        b.reset(Duration::from_millis(100));
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn durations_read_as_words_with_spaces() {
        assert_eq!(human_duration(secs(86_400)), "1 day");
        assert_eq!(human_duration(secs(2 * 86_400 + 3 * 3600)), "2 days 3 h");
        assert_eq!(human_duration(secs(300)), "5 min");
        assert_eq!(human_duration(secs(5400)), "1 h 30 min");
        assert_eq!(human_duration(Duration::from_millis(500)), "500 ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1 s 500 ms");
        assert_eq!(human_duration(Duration::from_micros(250)), "250 µs");
        assert_eq!(human_duration(Duration::ZERO), "0 s");
        assert_eq!(
            RetrySchedule::default().to_string(),
            "5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h"
        );
    }

    #[test]
    fn outcome_names_are_stable() {
        assert_eq!(Outcome::Delivered.as_str(), "delivered");
        assert_eq!(Outcome::Retry { after: secs(1) }.as_str(), "retry");
        assert_eq!(Outcome::Dead.as_str(), "dead");
    }
}
