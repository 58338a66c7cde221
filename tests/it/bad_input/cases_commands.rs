//! Refused worker settings, operator commands and global flags.

use super::{case, Case};

/// `hookrelay run` with one bad setting each.
pub(super) fn run() -> Vec<Case> {
    vec![
        // Worker settings.
        case(
            &["run", "--concurrency", "0"],
            1,
            "--concurrency must be between 1 and 10000 (got 0)",
        ),
        case(&["run", "--concurrency", "-1"], 2, "-1 is negative"),
        case(
            &["run", "--concurrency", "many"],
            2,
            "\"many\" is not a whole number",
        ),
        case(
            &["run", "--batch-size", "0"],
            1,
            "--batch-size must be between 1 and 10000",
        ),
        case(
            &["run", "--lease", "10s", "--request-timeout", "10s"],
            1,
            "--lease (10 s) must be at least twice --request-timeout (10 s)",
        ),
        case(&["run", "--lease", "0s"], 1, "--lease (ms) must be between"),
        case(
            &["run", "--poll-interval", "soon"],
            2,
            "\"soon\" is not a duration",
        ),
        case(
            &["run", "--poll-interval", "1ms"],
            1,
            "--poll-interval (ms) must be between 10",
        ),
        case(
            &["run", "--request-timeout", "1ns"],
            1,
            "--request-timeout (ms) must be between 100",
        ),
        case(
            &["run", "--allow-network", "10.0.0.300/8"],
            2,
            "is not a network",
        ),
        case(
            &["run", "--allow-network", "10.0.0/8"],
            2,
            "is not a network",
        ),
        case(
            &["run", "--allow-network", "::1/200"],
            2,
            "is not a network",
        ),
        case(
            &["run", "--max-payload-bytes", "10"],
            1,
            "--max-payload-bytes must be between 1024",
        ),
        case(
            &["run", "--max-payload-bytes", "99999999999"],
            1,
            "--max-payload-bytes must be between 1024",
        ),
        case(
            &["run", "--max-attempts", "101"],
            1,
            "--max-attempts must be between 1 and 100",
        ),
        case(
            &["run", "--retry-schedule", "1s,,x"],
            1,
            "retry schedule step \"x\" is not a duration",
        ),
        case(
            &["run", "--retry-schedule", ""],
            1,
            "the retry schedule is empty",
        ),
        case(
            &["run", "--metrics-addr", "nope"],
            1,
            "--metrics-addr \"nope\" is not an address",
        ),
        case(
            &["run", "--enabled", "maybe"],
            2,
            "invalid value 'maybe' for '--enabled",
        ),
        case(
            &["run", "--retention", "0s"],
            1,
            "--retention (s) must be between 1",
        ),
        case(
            &["run", "--disable-after-failures", "-3"],
            2,
            "-3 is negative",
        ),
        case(
            &["run", "--response-excerpt-bytes", "99999999"],
            1,
            "--response-excerpt-bytes must be between 0 and 1048576",
        ),
    ]
}

/// Operator commands naming what does not exist or asking what is not allowed.
pub(super) fn operator() -> Vec<Case> {
    vec![
        // Operator commands.
        case(&["deliveries", "--limit", "0"], 2, "0 is not in 1..=100000"),
        case(
            &["deliveries", "--limit", "-5"],
            2,
            "-5 is not in 1..=100000",
        ),
        case(
            &["deliveries", "--state", "weird"],
            1,
            "unknown state \"weird\"",
        ),
        case(
            &["deliveries", "--since=-1h"],
            2,
            "\"-1h\" is not a duration",
        ),
        case(
            &["delivery", "show", "999999"],
            1,
            "no delivery with id 999999",
        ),
        case(&["delivery", "show", "-3"], 1, "no delivery with id -3"),
        case(&["delivery", "show", "abc"], 2, "invalid value 'abc'"),
        case(
            &["redeliver", "--endpoint", "nope"],
            1,
            "no endpoint named \"nope\"",
        ),
        case(
            &["redeliver", "--all-endpoints", "--state", "pending"],
            1,
            "only dead deliveries can be sent again in bulk",
        ),
        case(
            &["endpoint", "rotate-secret", "existing", "--grace", "400d"],
            1,
            "the grace period may be at most 30 days",
        ),
        case(
            &["endpoint", "rotate-secret", "existing", "--secret", "short"],
            1,
            "the secret has 5 characters; 8 to 1000 are allowed: give a longer one, or leave \
             --secret (and HOOKRELAY_NEW_SECRET) out of `hookrelay endpoint rotate-secret`",
        ),
        case(
            &["deliveries", "--endpoint", "nosuch"],
            1,
            "no endpoint named \"nosuch\": `hookrelay endpoint list` shows them",
        ),
        case(
            &["endpoint", "rotate-secret", "nope"],
            1,
            "no endpoint named \"nope\"",
        ),
        case(
            &["endpoint", "show", "nope"],
            1,
            "no endpoint named \"nope\"",
        ),
        case(
            &["endpoint", "remove", "nope"],
            1,
            "no endpoint named \"nope\"",
        ),
    ]
}

/// Global flags and the receiver's `verify` check.
pub(super) fn global() -> Vec<Case> {
    vec![
        // Global flags and the receiver's check.
        case(
            &["--database-url", "postgres://[nope", "stats"],
            1,
            "the database URL is not valid",
        ),
        case(
            &["--log", "garbage[[", "stats"],
            2,
            "--log \"garbage[[\" is not a log filter",
        ),
        case(&["--log-format", "xml", "stats"], 2, "invalid value 'xml'"),
        case(
            &["verify", "--secret", "some-secret", "--scheme", "nope"],
            2,
            "unknown signature scheme \"nope\"",
        ),
        case(
            &["verify", "--scheme", "standard", "--secret", "not-whsec"],
            2,
            "whsec_",
        ),
        case(
            &["verify", "--secret", "some-secret", "--tolerance", "soon"],
            2,
            "\"soon\" is not a duration",
        ),
    ]
}
