//! Integration tests: a real PostgreSQL (one throwaway cluster per run, or `DATABASE_URL`) and
//! real HTTP receivers on 127.0.0.1. One test binary, so the cluster starts once.

mod cli;
mod delivery;
mod fanout;
mod model_events;
mod processes;
mod schema;
mod seed_examples;
mod shaping;
mod support;
mod tracking;
mod wakeup;
