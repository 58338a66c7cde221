//! What a worker error means for the operator: the kind of database trouble behind it, so
//! that [`DbTask`](crate::db::DbTask) reports each outage once and retries.

use super::WorkerError;
use crate::db::{Fault, Problem};

impl WorkerError {
    /// The kind of database trouble behind this error ([`Problem::Other`] when it is not a
    /// database error).
    pub fn problem(&self) -> Problem {
        match self {
            WorkerError::Db(e) => e.problem(),
            WorkerError::Schema(e) => e.problem(),
            _ => Problem::Other,
        }
    }
}

impl Fault for WorkerError {
    fn problem(&self) -> Problem {
        WorkerError::problem(self)
    }
}
