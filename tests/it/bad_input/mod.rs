//! Bad input, tried end to end: every kind a user or operator can give (flags, files, URLs,
//! names, JSON, identifiers, secrets, headers), through the built `hookrelay`
//! and through SQL as applications and operators write it. Each must end in an error that
//! names the problem (exit status 1, or 2 for command-line usage), on one line starting with
//! `error:`, with no panic, and with nothing written.

mod cases_commands;
mod cases_endpoint;
mod cases_events;
mod cases_files;
mod closed_pipe;
mod identifiers;
mod payload_limit;
pub(crate) mod refused;
mod sql_cases;

use std::process::Output;

use crate::support::{self, TestDb};

/// One command-line case: arguments, the exit status, and what the error must say.
pub(super) struct Case {
    args: Vec<String>,
    status: i32,
    expect: String,
}

/// A case from its arguments, exit status and the text the error must contain.
fn case(args: &[&str], status: i32, expect: &str) -> Case {
    Case {
        args: args.iter().map(|a| a.to_string()).collect(),
        status,
        expect: expect.to_string(),
    }
}

/// Everything a bad input could have changed, as one text: row counts, every endpoint row,
/// the tables in `public` and the triggers on them.
async fn state(db: &TestDb) -> String {
    db.client
        .query_one(
            "SELECT concat_ws(' | ',
                 (SELECT count(*) FROM hookrelay.events),
                 (SELECT count(*) FROM hookrelay.deliveries),
                 (SELECT count(*) FROM hookrelay.attempts),
                 (SELECT count(*) FROM hookrelay.tracked_tables),
                 (SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY id), '')) FROM hookrelay.endpoints e),
                 (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
                  WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'),
                 (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                  WHERE c.relnamespace = 'public'::regnamespace))",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Checks what a refused command printed; returns a description of what is wrong, if any.
fn judge(case: &Case, out: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stderr.lines().next().unwrap_or_default();
    let mut wrong = Vec::new();
    if out.status.code() != Some(case.status) {
        wrong.push(format!(
            "exit {:?}, wanted {}",
            out.status.code(),
            case.status
        ));
    }
    if !first.starts_with("error: ") || !first.contains(&case.expect) {
        wrong.push(format!("first line does not name {:?}", case.expect));
    }
    for marker in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        if stderr.contains(marker) {
            wrong.push(format!("{marker:?} in stderr"));
        }
    }
    // Usage errors come from clap, which follows its one error line with usage hints.
    let hint = |l: &str| {
        l.trim().is_empty()
            || l.starts_with("Usage: ")
            || l.starts_with("For more information")
            || l.starts_with("  tip: ")
            || l.starts_with("  [possible values")
    };
    let extra = stderr
        .lines()
        .skip(1)
        .filter(|l| !hint(l) || case.status == 1);
    if extra.filter(|l| !l.trim().is_empty()).count() > 0 {
        wrong.push("more than one line of error".into());
    }
    if !stdout.trim().is_empty() {
        wrong.push(format!("printed to stdout: {}", stdout.trim()));
    }
    (!wrong.is_empty()).then(|| format!("{:?}: {}\n{stderr}", case.args, wrong.join("; ")))
}

/// A temporary file's path, as text for the command line.
fn temp_file(name: &str, text: &str) -> String {
    support::temp_file(name, text)
        .to_string_lossy()
        .into_owned()
}

/// Every refused command line, grouped by the command it tries.
fn command_line_cases(configs: &cases_files::Configs) -> Vec<Case> {
    [
        cases_endpoint::endpoint_add(),
        cases_events::emit(),
        cases_events::track(),
        cases_commands::run(),
        cases_commands::operator(),
        cases_commands::global(),
        cases_files::config_files(configs),
    ]
    .into_iter()
    .flatten()
    .collect()
}
