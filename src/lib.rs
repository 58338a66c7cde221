//! hookrelay: a PostgreSQL transactional-outbox worker that relays events to signed webhooks.
//!
//! The pipeline, one module per stage:
//!
//! - [`migrate`]: installs and upgrades the `hookrelay` schema from the numbered files in `sql/`.
//! - [`listen`]: the LISTEN connection that wakes an idle worker when events are committed.
//! - [`claim`]: claims new events (fanning them out to matching endpoints) and due deliveries,
//!   each in one short `FOR UPDATE SKIP LOCKED` statement that sets a lease.
//! - [`payload`]: builds the JSON envelope a receiver gets.
//! - [`sign`]: HMAC-SHA256 signature headers for each signature scheme (from the
//!   `hookrelay-verify` crate of this workspace, which receivers use alone).
//! - [`guard`]: the SSRF guard: which addresses receivers may be on, checked as names resolve.
//! - [`deliver`]: the HTTP POST and the classification of what came back.
//! - [`retry`]: the retry schedule with jitter, and the outcome of a finished attempt.
//! - [`record`]: writes attempt results back in batches.
//! - [`worker`]: the loop that ties these together, with bounded concurrency and clean shutdown.
//! - [`sweep`]: retention, pruning finished history in small batches.
//! - [`policy`]: auto-disable of endpoints that keep failing.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/readyz`.
//! - [`trace`]: the trace context an event was written with, sent with each attempt, and the
//!   worker's OpenTelemetry spans (OTLP/HTTP).
//!
//! Around it: [`config`] and [`settings`] (worker settings and the configuration file), [`logs`] (log
//! output, which never shows statement parameters), [`db`] (connection pools and database URLs), [`embedded`] (the private
//! PostgreSQL cluster used when no database URL is given), [`endpoint`] and [`apply`]
//! (endpoint management, one by one or declared in a file),
//! [`emit`] (writing events from the command line), [`track`] (row triggers on application
//! tables that emit created/updated/deleted events), [`operator`] and [`report`] (what
//! operators ask and its output), [`demo`] and [`cli`] (the command line), [`console`] (the operator console in the browser), and [`verify`]:
//! the receiver's side, checking a delivery's signature and timestamp (re-exported, like [`sign`],
//! from `crates/hookrelay-verify`).

pub mod apply;
pub mod backfill;
pub mod claim;
pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod deliver;
pub mod demo;
pub mod embedded;
pub mod emit;
pub mod endpoint;
pub mod guard;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod migrate;
pub mod operator;
pub mod payload;
pub mod policy;
pub mod record;
pub mod report;
pub mod retry;
pub mod settings;
pub use hookrelay_verify::sign;
pub mod sweep;
pub mod trace;
pub mod track;
pub use hookrelay_verify::verify;
pub mod worker;

/// The `User-Agent` sent with every webhook request.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));
