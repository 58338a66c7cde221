//! hookrelay: a PostgreSQL transactional-outbox worker that relays events to signed webhooks.
//!
//! The folders are the layers:
//!
//! - [`pipeline`]: the worker's stages, in the order an event meets them —
//!   `listen` (the LISTEN connection that wakes an idle worker),
//!   [`claim`](pipeline::claim) (new events fanned out to endpoints, and due deliveries, each
//!   leased by one short `FOR UPDATE SKIP LOCKED` statement), [`payload`](pipeline::payload)
//!   (the body a receiver gets, shaped per endpoint), [`guard`](pipeline::guard) (which
//!   addresses receivers may be on), [`deliver`](pipeline::deliver) (the signed POST and what
//!   came back), [`retry`](pipeline::retry) (the schedule and the outcome of an attempt),
//!   `record` (results written back in batches), and around them
//!   [`worker`](pipeline::worker) (the loop: wait, claim, dispatch, record),
//!   [`sweep`](pipeline::sweep) (retention) and `policy` (auto-disable).
//! - [`admin`]: the control plane, what operators and apps change or ask —
//!   [`migrate`](admin::migrate) (the `hookrelay` schema from the numbered files in `sql/`),
//!   `endpoint` and `apply` (endpoints one by one or
//!   declared in a file), `emit`, `track` (row triggers) and
//!   `backfill`, `operator` (stats, deliveries,
//!   redelivery, replay) and [`console`](admin::console) (the same in a browser).
//! - [`cli`]: the command line — argument definitions, the code behind each command,
//!   [`settings`](cli::settings) (the configuration file read before the flags), the
//!   `demo` and the tables commands print.
//!
//! Shared by all three: [`config`] (every setting, defined once in [`config::setting`]),
//! [`db`] (connections, pools, PgBouncer modes, what database errors mean, and the
//! [`embedded`](db::embedded) cluster used when no database URL is given), [`metrics`]
//! (Prometheus metrics, `/healthz`, `/readyz`), [`trace`] (W3C trace context on each attempt and
//! OpenTelemetry spans over OTLP) and [`logs`] (log output, which never shows statement
//! parameters).
//!
//! The receiver's side, [`sign`] and [`verify`], lives in the `hookrelay-verify` crate of this
//! workspace, so receivers and fuzz targets use it without tokio-postgres or reqwest; it is
//! re-exported here.

pub mod admin;
pub mod cli;
pub mod config;
pub mod db;
pub mod logs;
pub mod metrics;
pub mod pipeline;
pub mod trace;
pub use hookrelay_verify::{sign, verify};

/// The `User-Agent` sent with every webhook request.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));
