//! Running a database task through outages: the worker loop, the recorder, the listener,
//! retention and the endpoint policy all use [`DbTask`] to run a step again and again, report
//! a failure once per problem (see [`Alarm`]), wait a backoff delay (or their own period), and
//! report the recovery once a newer session proves the database back.
//!
//! The [`Alarm`] and the error counter travel together as [`Health`], handed to each task when
//! it starts: outages are reported here, never through the metrics, which only count them.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::{forget_idle_sessions, Alarm, Failure, Problem, Proof};
use crate::pipeline::retry::Backoff;

/// The first delay after a success: failures then wait 100 ms, 200 ms, … up to 30 s.
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// An error a database task can meet, with the kind of trouble behind it.
pub trait Fault: Display {
    /// The kind of database trouble behind this error.
    fn problem(&self) -> Problem;
}

impl Fault for super::DbError {
    fn problem(&self) -> Problem {
        super::DbError::problem(self)
    }
}

/// What every database task shares: the alarm that reports each problem once, and the
/// counter of errors `/metrics` shows.
#[derive(Clone, Default)]
pub struct Health {
    alarm: Arc<Alarm>,
    errors: Counter,
}

impl Health {
    /// Health whose failures also count in `errors` (`hookrelay_database_errors_total`).
    pub fn counting(errors: Counter) -> Health {
        Health {
            alarm: Arc::default(),
            errors,
        }
    }

    /// The problem being reported now, if any.
    pub fn current(&self) -> Option<Problem> {
        self.alarm.current()
    }
}

/// Something to keep doing while a task waits out an outage (systemd's watchdog: a worker
/// waiting for its database is alive).
pub struct Heartbeat {
    interval: tokio::time::Interval,
    beat: fn(),
}

impl Heartbeat {
    /// Calls `beat` every `period` (the first one at once).
    pub fn every(period: Duration, beat: fn()) -> Heartbeat {
        Heartbeat {
            interval: tokio::time::interval(period),
            beat,
        }
    }
}

/// After a failure, when the task tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// After a backoff delay that doubles with each failure in a row.
    Backoff,
    /// At its next period anyway (retention, the policy's checks).
    Period(Duration),
}

/// One step of a database task, run again and again by [`DbTask::run`].
pub trait Step {
    /// What a failed step reports.
    type Error: Fault;

    /// Does the task's work once; tells `session` which session it uses and what its
    /// successes prove.
    fn step(
        &mut self,
        session: &mut Session<'_>,
    ) -> impl std::future::Future<Output = Result<Flow, Self::Error>> + Send;
}

/// What a step says comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The task is over (stopped, or its work is written).
    Done,
    /// Run the step again after this long.
    After(Duration),
}

/// One database task: its name in reports, its retry rule, and its outage state.
pub struct DbTask {
    task: &'static str,
    health: Health,
    pool: Option<Pool>,
    retry: Retry,
    backoff: Backoff,
    heartbeat: Option<Heartbeat>,
}

/// What a step may tell its task while it runs.
pub struct Session<'a> {
    health: &'a Health,
    backoff: &'a mut Backoff,
    heartbeat: &'a mut Option<Heartbeat>,
    opened: Option<Instant>,
}

impl Session<'_> {
    /// The step is using a session opened at `opened`: an old session's failure after the
    /// database came back is no new outage, and its success no proof of recovery.
    pub fn opened(&mut self, opened: Instant) {
        self.opened = Some(opened);
    }

    /// The session did what `proof` says: the outage being reported (if any) is over, and the
    /// next failure waits the shortest delay again.
    pub fn proved(&mut self, proof: Proof) {
        if let Some(opened) = self.opened {
            self.health.alarm.recovered(proof, opened);
        }
        self.backoff.reset(FIRST_DELAY);
    }

    /// Completes at each heartbeat, after beating (never without one): a step that waits long
    /// selects on it too.
    pub async fn heartbeat(&mut self) {
        beat(self.heartbeat).await
    }
}

async fn beat(heartbeat: &mut Option<Heartbeat>) {
    match heartbeat {
        Some(h) => {
            h.interval.tick().await;
            (h.beat)();
        }
        None => std::future::pending().await,
    }
}

impl DbTask {
    /// A task named `task` in reports, retrying with backoff.
    pub fn new(task: &'static str, health: &Health) -> DbTask {
        DbTask {
            task,
            health: health.clone(),
            pool: None,
            retry: Retry::Backoff,
            backoff: Backoff::new(FIRST_DELAY, Duration::from_secs(30)),
            heartbeat: None,
        }
    }

    /// After a failure that leaves sessions untrustworthy (read-only, unreachable), closes
    /// `pool`'s idle ones so new ones see the change.
    pub fn forgetting(mut self, pool: &Pool) -> DbTask {
        self.pool = Some(pool.clone());
        self
    }

    /// Retries by `retry` instead of with backoff.
    pub fn retrying(mut self, retry: Retry) -> DbTask {
        self.retry = retry;
        self
    }

    /// Keeps `heartbeat` beating while waiting (and in steps that select on it).
    pub fn beating(mut self, heartbeat: Option<Heartbeat>) -> DbTask {
        self.heartbeat = heartbeat;
        self
    }

    /// Runs `step` until it says [`Flow::Done`] (true) or `token` is cancelled (false). A
    /// failed step is reported, counted, and run again after the retry delay.
    pub async fn run(&mut self, token: &CancellationToken, step: &mut impl Step) -> bool {
        loop {
            let mut session = Session {
                health: &self.health,
                backoff: &mut self.backoff,
                heartbeat: &mut self.heartbeat,
                opened: None,
            };
            let wait = match step.step(&mut session).await {
                Ok(Flow::Done) => return true,
                Ok(Flow::After(wait)) => wait,
                Err(e) => {
                    let opened = session.opened;
                    self.failed(&e, opened)
                }
            };
            if !self.pause(wait, token).await {
                return false;
            }
        }
    }

    /// Reports a failure (once per problem), counts it, and returns how long to wait.
    fn failed(&mut self, error: &dyn Fault, opened: Option<Instant>) -> Duration {
        let problem = error.problem();
        let (wait, retry_in) = match self.retry {
            Retry::Backoff => {
                let wait = self.backoff.next_delay();
                (wait, Some(wait))
            }
            Retry::Period(period) => (period, None),
        };
        self.health.errors.inc();
        self.health.alarm.failed(Failure {
            task: self.task,
            problem,
            error: &error,
            retry_in,
            opened,
        });
        if let Some(pool) = &self.pool {
            forget_idle_sessions(pool, problem);
        }
        wait
    }

    /// Waits `wait`, beating meanwhile; false when `token` was cancelled first.
    async fn pause(&mut self, wait: Duration, token: &CancellationToken) -> bool {
        let pause = tokio::time::sleep(wait);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = token.cancelled() => return false,
                _ = &mut pause => return true,
                _ = beat(&mut self.heartbeat) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of a chosen kind.
    struct Down(Problem);

    impl Display for Down {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "down: {:?}", self.0)
        }
    }

    impl Fault for Down {
        fn problem(&self) -> Problem {
            self.0
        }
    }

    /// A step that plays a script: for each run, `Some(flow)` succeeds (proving the database
    /// written), `None` fails; it cancels `token` when the script runs out.
    struct Script {
        runs: Vec<Option<Flow>>,
        ran: usize,
        health: Health,
        seen: Vec<Option<Problem>>,
        token: CancellationToken,
    }

    impl Script {
        fn new(runs: Vec<Option<Flow>>, health: &Health) -> Script {
            Script {
                runs,
                ran: 0,
                health: health.clone(),
                seen: Vec::new(),
                token: CancellationToken::new(),
            }
        }
    }

    impl Step for Script {
        type Error = Down;

        async fn step(&mut self, session: &mut Session<'_>) -> Result<Flow, Down> {
            self.seen.push(self.health.current());
            let run = self.runs.get(self.ran).copied();
            self.ran += 1;
            match run {
                Some(Some(flow)) => {
                    session.opened(Instant::now());
                    session.proved(Proof::Wrote);
                    Ok(flow)
                }
                Some(None) => Err(Down(Problem::Unreachable)),
                None => {
                    self.token.cancel();
                    Err(Down(Problem::Other))
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_reported_once_backed_off_and_cleared_by_a_newer_session() {
        let health = Health::default();
        let mut task = DbTask::new("test", &health);
        let mut script = Script::new(vec![None, None, None, Some(Flow::Done)], &health);
        let started = tokio::time::Instant::now();
        let token = script.token.clone();
        assert!(task.run(&token, &mut script).await, "done, not cancelled");
        assert_eq!(script.ran, 4);
        // Each failure counted; the outage is reported from the first and over at the end.
        assert_eq!(health.errors.get(), 3);
        assert_eq!(script.seen[1], Some(Problem::Unreachable));
        assert_eq!(health.current(), None);
        // 100 + 200 + 400 ms of backoff between the four runs.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_periodic_task_retries_at_its_period_and_stops_when_cancelled() {
        let health = Health::default();
        let period = Duration::from_secs(60);
        let mut task = DbTask::new("test", &health).retrying(Retry::Period(period));
        let mut script = Script::new(vec![None], &health);
        let started = tokio::time::Instant::now();
        let token = script.token.clone();
        assert!(!task.run(&token, &mut script).await, "cancelled, not done");
        assert_eq!(script.ran, 2);
        assert_eq!(started.elapsed(), period);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_backoff_and_steps_run_at_their_own_pace() {
        let health = Health::default();
        let mut task = DbTask::new("test", &health);
        let again = Some(Flow::After(Duration::from_secs(1)));
        let runs = vec![None, None, again, None, Some(Flow::Done)];
        let mut script = Script::new(runs, &health);
        let started = tokio::time::Instant::now();
        let token = script.token.clone();
        assert!(task.run(&token, &mut script).await);
        // 100 + 200 ms, the step's own second, then 100 ms again after the success.
        assert_eq!(started.elapsed(), Duration::from_millis(1400));
    }
}
