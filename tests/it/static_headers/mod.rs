//! Endpoint static headers (sent, masked, never over hookrelay's own), the checks on endpoint
//! writes that signing relies on (known schemes, well-formed headers and rotation), the
//! reserved names Rust and SQL share, and header errors that never repeat a value.

mod refusals;
mod reserved;
mod sending;
mod writes;
