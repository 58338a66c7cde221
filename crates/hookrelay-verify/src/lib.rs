//! hookrelay's signatures, for both sides of a webhook, with no database or HTTP client:
//!
//! - [`sign`]: the signature headers hookrelay sends, in each scheme (`hookrelay`, `body-hex`,
//!   Standard Webhooks), and secret generation and fingerprints.
//! - [`verify`]: the receiver's check of a request's signature and timestamp.
//!
//! The `hookrelay` crate re-exports both modules; a receiver written in Rust depends on this
//! crate alone.

pub mod sign;
pub mod verify;
