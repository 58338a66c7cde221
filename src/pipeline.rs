//! The pipeline: what the worker does with each event, one module per stage.
//!
//! An event is [`claim`]ed (fanned out into one delivery per matching endpoint, leased), its
//! [`payload`] shaped for the endpoint, its receiver's address checked by [`guard`], sent by
//! [`deliver`], its outcome decided by [`retry`] and written back by `record`. [`worker`]
//! runs that loop, woken by `listen`; [`sweep`] prunes finished history and `policy`
//! disables endpoints that keep failing.

pub mod claim;
pub mod deliver;
pub mod guard;
pub(crate) mod listen;
pub mod payload;
pub(crate) mod policy;
pub(crate) mod record;
pub mod retry;
pub mod sweep;
pub mod worker;
