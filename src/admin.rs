//! The control plane: what operators and applications change and ask, beside the pipeline.
//!
//! [`migrate`] installs the schema; `endpoint` and `apply` manage endpoints; `emit`,
//! `track` and `backfill` write events; `operator` answers and acts on what operators
//! ask (the CLI's tables and the [`console`]'s pages both read through it).

pub(crate) mod apply;
pub(crate) mod backfill;
pub mod console;
pub(crate) mod emit;
pub(crate) mod endpoint;
pub mod migrate;
pub(crate) mod operator;
pub(crate) mod track;
