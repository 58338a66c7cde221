//! What a database error means for the operator, and reporting it once.
//!
//! Every task that talks to the database (the worker loop, the recorder, the listener,
//! retention, the endpoint policy) runs as a [`DbTask`](super::DbTask), which retries when a
//! statement fails. Logging each
//! retry would bury the cause under dozens of lines per outage, so errors are classified into a
//! [`Problem`] that names the cause and the fix, and an [`Alarm`] shared by those tasks logs a
//! problem once when it starts (later failures of the same kind at debug level) and once when
//! it is over.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use super::DbError;

/// The kind of trouble behind a database error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The server cannot be reached, is restarting, or refuses connections.
    Unreachable,
    /// Writes are refused: `default_transaction_read_only` is on, or the server is a standby.
    ReadOnly,
    /// The server has no disk space left.
    DiskFull,
    /// Anything else (a timeout, a permission, a bug): reported with its own message.
    Other,
}

impl Problem {
    /// The cause and the fix, for the log line that reports the problem.
    pub fn explain(self) -> &'static str {
        match self {
            Problem::Unreachable => {
                "the database is unreachable, restarting or refusing connections: claimed work \
                 and results are kept and retried with backoff; check the server and \
                 --database-url if this lasts"
            }
            Problem::ReadOnly => {
                "the database is read-only (default_transaction_read_only is on, or the server \
                 is a standby): hookrelay cannot claim or record deliveries, so events wait; \
                 make it writable (ALTER DATABASE … RESET default_transaction_read_only) or \
                 point --database-url at the primary; retrying with backoff"
            }
            Problem::DiskFull => {
                "the database server is out of disk space: hookrelay cannot claim or record \
                 deliveries, so events wait; free space on the server; retrying with backoff"
            }
            Problem::Other => "database error; retrying with backoff",
        }
    }

    /// The line logged when the problem is over (`None`: not worth a line).
    fn resolved(self) -> Option<&'static str> {
        match self {
            Problem::Unreachable => Some("the database is reachable again; resuming"),
            Problem::ReadOnly | Problem::DiskFull => {
                Some("the database accepts writes again; resuming")
            }
            Problem::Other => None,
        }
    }
}

/// Classifies an error from PostgreSQL by its `SqlState` (or its absence: an I/O error or a
/// closed connection).
pub fn classify(e: &tokio_postgres::Error) -> Problem {
    if e.is_closed() {
        return Problem::Unreachable;
    }
    classify_code(e.code())
}

/// The problem an error's `SqlState` means; `None` (no state: the error came from the
/// connection, not the server) means the server could not be reached.
pub fn classify_code(code: Option<&SqlState>) -> Problem {
    let Some(code) = code else {
        return Problem::Unreachable;
    };
    if code == &SqlState::READ_ONLY_SQL_TRANSACTION {
        Problem::ReadOnly
    } else if code == &SqlState::DISK_FULL {
        Problem::DiskFull
    } else if code.code().starts_with("08")
        || code == &SqlState::ADMIN_SHUTDOWN
        || code == &SqlState::CRASH_SHUTDOWN
        || code == &SqlState::CANNOT_CONNECT_NOW
        || code == &SqlState::TOO_MANY_CONNECTIONS
    {
        Problem::Unreachable
    } else {
        Problem::Other
    }
}

impl DbError {
    /// The kind of trouble behind this error.
    pub fn problem(&self) -> Problem {
        match self {
            DbError::Postgres(e) => classify(e),
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => classify(e),
            DbError::Pool(deadpool_postgres::PoolError::Timeout(_))
            | DbError::ConnectTimeout(_) => Problem::Unreachable,
            _ => Problem::Other,
        }
    }
}

/// What a success proves about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A connection was made and a statement answered (it may still refuse writes).
    Reached,
    /// A write committed.
    Wrote,
}

/// One failed database operation, as reported to the [`Alarm`].
pub struct Failure<'a> {
    /// The task that failed: worker, recorder, listener, retention, policy.
    pub task: &'static str,
    pub problem: Problem,
    pub error: &'a dyn Display,
    /// When the task tries again, if it knows.
    pub retry_in: Option<Duration>,
    /// When the session that failed was opened; `None` when none could be opened.
    pub opened: Option<Instant>,
}

/// The problem being reported: its kind, the message of an [`Problem::Other`] error (another
/// message is another problem), and when it was first seen.
type Reported = (Problem, String, Instant);

#[derive(Debug, Default)]
struct State {
    current: Option<Reported>,
    /// Every problem (with its detail) logged since the database was last proved well: tasks
    /// that meet different problems in turn (the listener a closed connection, the recorder
    /// a read-only database) log each once, not once per switch.
    logged: Vec<(Problem, String)>,
    cleared_at: Option<Instant>,
}

/// The database problem being reported, shared by every task that uses the database.
///
/// Sessions opened before a problem began say nothing about it: one that survived a server's
/// shutdown for a moment does not prove the database back, and one that dies after the
/// database came back (the server closed it while it was away) does not start a new outage.
#[derive(Debug, Default)]
pub struct Alarm {
    state: Mutex<State>,
}

impl Alarm {
    /// Reports a failure. A new problem is logged at warn level with its cause and fix; the
    /// same problem again, or an old session failing after recovery, only at debug level.
    pub fn failed(&self, failure: Failure<'_>) {
        let Failure {
            task,
            problem,
            error,
            retry_in,
            opened,
        } = failure;
        let message = error.to_string();
        let retry_in = retry_in.map_or_else(|| "later".to_string(), |d| format!("{d:?}"));
        let detail = if problem == Problem::Other {
            message.clone()
        } else {
            String::new()
        };
        let mut state = self.state.lock().expect("alarm lock");
        let same = state
            .logged
            .iter()
            .any(|(p, d)| *p == problem && *d == detail);
        let stale = state.current.is_none()
            && opened.is_some_and(|o| state.cleared_at.is_some_and(|c| o < c));
        if same || stale {
            tracing::debug!(task, error = %message, %retry_in, "{}", problem.explain());
            return;
        }
        state.logged.push((problem, detail.clone()));
        state.current = Some((problem, detail, Instant::now()));
        tracing::warn!(task, error = %message, %retry_in, "{}", problem.explain());
    }

    /// Reports a success on a session opened at `opened`: when that session is newer than the
    /// problem and the success proves the problem over, clears it with one line saying so.
    pub fn recovered(&self, proof: Proof, opened: Instant) {
        let mut state = self.state.lock().expect("alarm lock");
        let Some((problem, _, since)) = state.current else {
            return;
        };
        if opened < since || (proof == Proof::Reached && problem != Problem::Unreachable) {
            return;
        }
        if let Some(line) = problem.resolved() {
            tracing::info!("{line}");
        }
        state.current = None;
        state.logged.clear();
        state.cleared_at = Some(Instant::now());
    }

    /// The problem being reported, if any.
    pub fn current(&self) -> Option<Problem> {
        let state = self.state.lock().expect("alarm lock");
        state.current.as_ref().map(|c| c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_classified() {
        let cases = [
            (None, Problem::Unreachable),
            (Some(SqlState::READ_ONLY_SQL_TRANSACTION), Problem::ReadOnly),
            (Some(SqlState::DISK_FULL), Problem::DiskFull),
            (Some(SqlState::CONNECTION_FAILURE), Problem::Unreachable),
            (Some(SqlState::ADMIN_SHUTDOWN), Problem::Unreachable),
            (Some(SqlState::CRASH_SHUTDOWN), Problem::Unreachable),
            (Some(SqlState::CANNOT_CONNECT_NOW), Problem::Unreachable),
            (Some(SqlState::TOO_MANY_CONNECTIONS), Problem::Unreachable),
            (Some(SqlState::QUERY_CANCELED), Problem::Other),
            (Some(SqlState::LOCK_NOT_AVAILABLE), Problem::Other),
            (Some(SqlState::OUT_OF_MEMORY), Problem::Other),
            (Some(SqlState::INSUFFICIENT_PRIVILEGE), Problem::Other),
        ];
        for (code, want) in cases {
            assert_eq!(classify_code(code.as_ref()), want, "{code:?}");
        }
    }

    #[test]
    fn each_problem_names_its_cause_and_fix() {
        let read_only = Problem::ReadOnly.explain();
        assert!(
            read_only.contains("default_transaction_read_only") && read_only.contains("standby")
        );
        assert!(read_only.contains("--database-url") && read_only.contains("events wait"));
        assert!(Problem::DiskFull.explain().contains("disk space"));
        assert!(Problem::Unreachable
            .explain()
            .contains("retried with backoff"));
        assert_eq!(Problem::Other.resolved(), None);
    }

    fn fail(alarm: &Alarm, problem: Problem, error: &str, opened: Option<Instant>) {
        alarm.failed(Failure {
            task: "test",
            problem,
            error: &error,
            retry_in: None,
            opened,
        });
    }

    #[test]
    fn a_problem_is_reported_once_until_a_newer_session_proves_it_over() {
        let alarm = Alarm::default();
        let old = Instant::now();
        fail(&alarm, Problem::ReadOnly, "x", Some(old));
        fail(&alarm, Problem::ReadOnly, "y", None);
        assert_eq!(alarm.current(), Some(Problem::ReadOnly));
        // A session older than the problem proves nothing.
        alarm.recovered(Proof::Wrote, old);
        assert_eq!(alarm.current(), Some(Problem::ReadOnly));
        // Reaching the server does not prove it takes writes again.
        alarm.recovered(Proof::Reached, Instant::now());
        assert_eq!(alarm.current(), Some(Problem::ReadOnly));
        alarm.recovered(Proof::Wrote, Instant::now());
        assert_eq!(alarm.current(), None);
        fail(&alarm, Problem::Unreachable, "refused", None);
        alarm.recovered(Proof::Reached, Instant::now());
        assert_eq!(alarm.current(), None);
    }

    #[test]
    fn an_old_session_dying_after_recovery_is_no_new_outage() {
        let alarm = Alarm::default();
        let old = Instant::now();
        fail(&alarm, Problem::Unreachable, "closed", None);
        alarm.recovered(Proof::Reached, Instant::now());
        fail(&alarm, Problem::Unreachable, "closed", Some(old));
        assert_eq!(alarm.current(), None);
        // A session opened since then failing is news.
        fail(&alarm, Problem::Unreachable, "closed", Some(Instant::now()));
        assert_eq!(alarm.current(), Some(Problem::Unreachable));
    }

    #[test]
    fn other_errors_with_new_messages_are_new_problems() {
        let alarm = Alarm::default();
        let detail = |a: &Alarm| a.state.lock().unwrap().current.clone().map(|c| c.1);
        fail(&alarm, Problem::Other, "lock timeout", None);
        assert_eq!(detail(&alarm).as_deref(), Some("lock timeout"));
        fail(&alarm, Problem::Other, "permission denied", None);
        assert_eq!(detail(&alarm).as_deref(), Some("permission denied"));
    }

    #[test]
    fn problems_met_in_turn_by_different_tasks_are_each_logged_once() {
        let alarm = Alarm::default();
        let logged = |a: &Alarm| a.state.lock().unwrap().logged.len();
        fail(&alarm, Problem::Unreachable, "closed", None);
        fail(&alarm, Problem::ReadOnly, "read-only", None);
        fail(&alarm, Problem::Unreachable, "closed", None);
        fail(&alarm, Problem::ReadOnly, "read-only", None);
        assert_eq!(logged(&alarm), 2, "each problem once, not once per switch");
        // The one reported stays the first that is still news.
        assert_eq!(alarm.current(), Some(Problem::ReadOnly));
        alarm.recovered(Proof::Wrote, Instant::now());
        assert_eq!(logged(&alarm), 0);
        fail(&alarm, Problem::ReadOnly, "read-only", None);
        assert_eq!(logged(&alarm), 1, "a new outage is logged again");
    }
}
