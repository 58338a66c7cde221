//! Integration tests: a real PostgreSQL (one throwaway cluster per run, or `DATABASE_URL`) and
//! real HTTP receivers on 127.0.0.1. One test binary, so the cluster starts once.

mod bad_input;
mod cli;
mod config_file;
mod console;
mod cost;
mod delivery;
mod demo;
mod fanout;
mod faults;
mod first_day;
mod input_checks;
mod metrics;
mod model_events;
mod operations;
mod operator_cli;
mod processes;
mod protect_guard;
mod protect_isolation;
mod protect_policy;
mod renames;
mod roles;
mod schema;
mod secrets;
mod seed_examples;
mod shaping;
mod signing;
mod signing_cli;
mod snippets;
mod static_headers;
mod support;
mod systemd;
mod tracking;
mod wakeup;
