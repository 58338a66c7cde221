//! Bad input, tried end to end: every kind a user or operator can give (flags, files, URLs,
//! names, JSON, identifiers, secrets, headers), through the built `hookrelay`
//! and through SQL as applications and operators write it. Each must end in an error that
//! names the problem (exit status 1, or 2 for command-line usage), on one line starting with
//! `error:`, with no panic, and with nothing written.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::hookrelay;
use crate::support::{self, binary, Receiver, TestDb, LOOPBACK};

/// One command-line case: arguments, the exit status, and what the error must say.
struct Case {
    args: Vec<String>,
    status: i32,
    expect: String,
}

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

fn command_line_cases(configs: &Configs) -> Vec<Case> {
    let long_url = format!("https://example.com/{}", "a".repeat(3000));
    let long_event = "a".repeat(201);
    let long_unicode_event = "é".repeat(201);
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let add = |extra: &[&str]| {
        let mut args = vec![
            "endpoint",
            "add",
            "--name",
            "new",
            "--url",
            "https://example.com/",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let add_case = |extra: &[&str], status: i32, expect: &str| Case {
        args: add(extra),
        status,
        expect: expect.into(),
    };
    let url_case = |url: &str, expect: &str| {
        case(
            &["endpoint", "add", "--name", "new", "--url", url],
            1,
            expect,
        )
    };
    let config_case = |path: &str, expect: &str| case(&["--config", path, "stats"], 1, expect);
    let apply_case = |path: &str, expect: &str| case(&["endpoint", "apply", path], 1, expect);
    vec![
        // Endpoint URLs.
        url_case("ftp://example.com/x", "only http:// and https://"),
        url_case("javascript:alert(1)", "only http:// and https://"),
        url_case("not a url", "malformed"),
        url_case("http://", "malformed (empty host)"),
        url_case("https://exa mple.com/", "malformed"),
        url_case(
            "https://user:pw@example.com/",
            "must not contain credentials",
        ),
        url_case("https://token@example.com/", "must not contain credentials"),
        url_case(&long_url, "at most 2048 are allowed"),
        url_case("", "malformed"),
        // Signature schemes and secrets.
        add_case(&["--scheme", "md5"], 1, "unknown signature scheme \"md5\""),
        add_case(
            &["--scheme", "standard", "--secret", "not-a-whsec-secret"],
            1,
            "whsec_",
        ),
        add_case(
            &["--secret", "short"],
            1,
            "the secret has 5 characters; 8 to 1000 are allowed",
        ),
        // A 3-byte key, and a hint that names the command used.
        add_case(
            &["--scheme", "standard", "--secret", "whsec_AAAA"],
            1,
            "a standard-webhooks secret must hold 24 to 64 bytes; this one holds 3: give \
             whsec_<base64 of 24 to 64 random bytes>, or leave --secret (and \
             HOOKRELAY_ENDPOINT_SECRET) out of `hookrelay endpoint add`",
        ),
        url_case(
            "https://example.com:0/hooks",
            "endpoint url \"https://example.com:0/hooks\" has port 0, which nothing listens on",
        ),
        add_case(
            &["--events", "order\u{a0}paid"],
            1,
            "event filter: the event name \"order\\u{a0}paid\" has (U+00A0)",
        ),
        add_case(
            &["--models", "store.\u{200b}Order"],
            1,
            "model filter: the model name \"store.\\u{200b}Order\" has (U+200B)",
        ),
        // Shaping.
        add_case(
            &["--include-fields", r#"{"store.Order": "id"}"#],
            1,
            "include_fields for model \"store.Order\" must be an array",
        ),
        add_case(
            &["--include-fields", "[1]"],
            1,
            "include_fields must be an array of field names",
        ),
        add_case(
            &["--include-fields", r#""id""#],
            1,
            "include_fields must be a JSON array of field names",
        ),
        add_case(
            &["--include-fields", r#"{"store Order": ["id"]}"#],
            1,
            "include_fields has an invalid model name",
        ),
        add_case(
            &["--redact-fields", r#"["email"]"#],
            1,
            "redact_fields must be a JSON object",
        ),
        add_case(
            &["--redact-fields", r#"{"store.Customer": ["email"]}"#],
            1,
            "redact_fields for model \"store.Customer\" must be an object",
        ),
        add_case(
            &["--redact-fields", "{email: x}"],
            1,
            "--redact-fields is not valid JSON",
        ),
        // Static headers, names, ranges.
        add_case(&["--header", "X-Tenant"], 1, "has no colon"),
        add_case(
            &["--header", "Content-Type: text/plain"],
            1,
            "set by hookrelay itself",
        ),
        add_case(
            &["--header", "Bad Name: x"],
            1,
            "--header: a header name is longer than 100 characters or has characters a header \
             name cannot have",
        ),
        case(
            &[
                "endpoint",
                "add",
                "--name",
                "a b",
                "--url",
                "https://example.com/",
            ],
            1,
            "endpoint name \"a b\" is not valid",
        ),
        case(
            &[
                "endpoint",
                "add",
                "--name",
                "existing",
                "--url",
                "https://example.com/",
            ],
            1,
            "already exists",
        ),
        case(
            &[
                "endpoint",
                "add",
                "--name",
                "EXISTING",
                "--url",
                "https://example.com/",
            ],
            1,
            "endpoint name \"EXISTING\" is taken by \"existing\" (names ignore case)",
        ),
        add_case(
            &["--max-attempts", "0"],
            1,
            "max_attempts 0 is out of range",
        ),
        add_case(
            &["--max-attempts", "-1"],
            1,
            "max_attempts -1 is out of range",
        ),
        add_case(&["--max-in-flight", "0"], 2, "0 is not in 1..=10000"),
        add_case(
            &["--rate-limit", "NaN"],
            1,
            "rate_limit NaN is out of range",
        ),
        add_case(&["--rate-limit", "-1"], 1, "rate_limit -1 is out of range"),
        add_case(&["--timeout", "10ms"], 1, "timeout_ms 10 is out of range"),
        add_case(&["--timeout", "soon"], 2, "\"soon\" is not a duration"),
        // Events and payloads.
        case(
            &["emit", ""],
            1,
            "the event name is empty: name events like order.paid",
        ),
        case(
            &["emit", &long_event],
            1,
            "the event name has 201 characters; at most 200 are allowed",
        ),
        case(
            &["emit", &long_unicode_event],
            1,
            "the event name has 201 characters; at most 200 are allowed",
        ),
        case(
            &["emit", "order paid"],
            1,
            "the event name \"order paid\" has (U+0020), which event names may not have: \
             name events like order.paid, with 1 to 200 of A-Z a-z 0-9 . _ - : /",
        ),
        // Spaces PostgreSQL's [[:space:]] does not see, invisible characters, and non-ASCII
        // (which would travel raw in the X-Webhook-Event header).
        case(
            &["emit", "order\u{a0}paid"],
            1,
            "the event name \"order\\u{a0}paid\" has (U+00A0)",
        ),
        case(
            &["emit", "order.paid\u{200b}"],
            1,
            "the event name \"order.paid\\u{200b}\" has (U+200B)",
        ),
        case(
            &["emit", "commande.payée"],
            1,
            "the event name \"commande.payée\" has \"é\" (U+00E9)",
        ),
        case(
            &["emit", "x.y", "--object", "[1, 2]"],
            1,
            "--object must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", "\"text\""],
            1,
            "--object must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", "null"],
            1,
            "--object must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", "{bad"],
            1,
            "--object is not valid JSON",
        ),
        case(
            &["emit", "x.y", "--object", &nested],
            1,
            "--object is not valid JSON (recursion limit",
        ),
        case(
            &["emit", "x.y", "--changes", "5"],
            1,
            "--changes must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", r#"{"a": "\u0000"}"#],
            1,
            "cannot store the NUL character",
        ),
        // The acting user.
        case(
            &["emit", "x.y", "--actor", r#"{"id": oops"#],
            1,
            "--actor starts like JSON but is not valid JSON",
        ),
        case(
            &["emit", "x.y", "--actor", r#""unterminated"#],
            1,
            "--actor starts like JSON but is not valid JSON",
        ),
        case(&["emit", "x.y", "--actor", " "], 1, "--actor is empty"),
        // Hostile identifiers to track.
        case(
            &["track", "orders; DROP TABLE orders"],
            1,
            "no table orders; DROP TABLE orders",
        ),
        case(&["track", "\"; DROP TABLE orders; --"], 1, "no table"),
        case(&["track", "'orders'"], 1, "no table"),
        case(&["track", "ördérs"], 1, "no table ördérs"),
        case(
            &["track", "orders", "--events", "created,moved"],
            1,
            "unknown event 'moved'",
        ),
        case(
            &[
                "track",
                "orders",
                "--events",
                "created,'); DROP TABLE orders; --",
            ],
            1,
            "unknown event",
        ),
        case(
            &["track", "orders", "--exclude", "id); DROP TABLE orders; --"],
            1,
            "has no column",
        ),
        case(
            &[
                "track",
                "orders",
                "--account-column",
                "\"; DROP TABLE orders",
            ],
            1,
            "has no column",
        ),
        case(
            &["track", "orders", "--model", "store Order"],
            1,
            "model name 'store Order' is not valid",
        ),
        case(
            &["track", "orders", "--exclude", "id"],
            1,
            "cannot be excluded",
        ),
        case(&["track", "hookrelay.events"], 1, "cannot be tracked"),
        case(&["untrack", "orders; DROP TABLE orders"], 1, "no table"),
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
        // Configuration files.
        config_case(&configs.unknown_key, "unknown setting `concurency`"),
        config_case(
            &configs.wrong_type,
            "setting `concurrency` must be a whole number",
        ),
        config_case(
            &configs.number_for_duration,
            "setting `lease` must be a duration string",
        ),
        config_case(
            &configs.bad_duration,
            "setting `poll_interval` must be a duration",
        ),
        config_case(
            &configs.string_for_bool,
            "setting `enabled` must be true or false",
        ),
        config_case(
            &configs.table_for_list,
            "setting `allow_networks` must be a string or an array of strings",
        ),
        config_case(&configs.syntax, "TOML parse error at line 1"),
        config_case(
            "/nonexistent/hookrelay.toml",
            "cannot read the configuration file",
        ),
        apply_case(&configs.apply_unknown_field, "unknown field `urls`"),
        apply_case(
            &configs.apply_wrong_type,
            "key `max_in_flight`: invalid type: a string, expected i32",
        ),
        apply_case(&configs.apply_bad_url, "only http:// and https://"),
        apply_case(&configs.apply_twice, "declared twice"),
        apply_case(
            &configs.apply_bad_shaping,
            "include_fields must be an array of field names",
        ),
        apply_case(&configs.apply_unset_env, "which is not set"),
        apply_case(
            &configs.apply_second_bad,
            "endpoint \"second\": unknown signature scheme",
        ),
    ]
}

/// Configuration files, each with one mistake.
struct Configs {
    unknown_key: String,
    wrong_type: String,
    number_for_duration: String,
    bad_duration: String,
    string_for_bool: String,
    table_for_list: String,
    syntax: String,
    apply_unknown_field: String,
    apply_wrong_type: String,
    apply_bad_url: String,
    apply_twice: String,
    apply_bad_shaping: String,
    apply_unset_env: String,
    apply_second_bad: String,
}

impl Configs {
    fn write() -> Configs {
        let endpoint = |extra: &str| {
            format!("[[endpoints]]\nname = \"first\"\nurl = \"https://example.com/\"\n{extra}\n")
        };
        Configs {
            unknown_key: temp_file("unknown.toml", "concurency = 8\n"),
            wrong_type: temp_file("type.toml", "concurrency = \"eight\"\n"),
            number_for_duration: temp_file("number.toml", "lease = 60\n"),
            bad_duration: temp_file("duration.toml", "poll_interval = \"soon\"\n"),
            string_for_bool: temp_file("bool.toml", "enabled = \"yes\"\n"),
            table_for_list: temp_file("list.toml", "allow_networks = { a = 1 }\n"),
            syntax: temp_file("syntax.toml", "concurrency = \n"),
            apply_unknown_field: temp_file("a1.toml", &endpoint("urls = 1")),
            apply_wrong_type: temp_file("a2.toml", &endpoint("max_in_flight = \"8\"")),
            apply_bad_url: temp_file(
                "a3.toml",
                "[[endpoints]]\nname = \"first\"\nurl = \"ftp://example.com/\"\n",
            ),
            apply_twice: temp_file("a4.toml", &format!("{}{}", endpoint(""), endpoint(""))),
            apply_bad_shaping: temp_file("a5.toml", &endpoint("include_fields = [1]")),
            apply_unset_env: temp_file(
                "a6.toml",
                &endpoint("secret_env = \"HOOKRELAY_TEST_SURELY_UNSET\""),
            ),
            apply_second_bad: temp_file(
                "a7.toml",
                &format!(
                    "{}[[endpoints]]\nname = \"second\"\nurl = \"https://example.com/\"\nsignature_scheme = \"md5\"\n",
                    endpoint("")
                ),
            ),
        }
    }
}

const SQL_CASES: &[(&str, &str)] = &[
    // Endpoints written with SQL.
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'ftp://example.com/', 'secret-secret')", "is not an http:// or https:// URL"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'https://u:p@example.com/', 'secret-secret')", "must not contain credentials"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'ftp://u:p@example.com/', 'secret-secret')", "must not contain credentials"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'https://exa mple.com/', 'secret-secret')", "is malformed"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'https://example.com/' || repeat('a', 3000), 'secret-secret')", "at most 2048 are allowed"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'https://example.com/', 'short')", "secret must be 8 to 1000 characters"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) VALUES ('n', 'https://example.com/', 'secret-secret', 'md5')", "unknown signature scheme \"md5\""),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) VALUES ('n', 'https://example.com/', 'secret-secret', 'standard')", "\"whsec_\" followed by base64"),
    ("UPDATE hookrelay.endpoints SET signature_scheme = 'sha1'", "unknown signature scheme \"sha1\""),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, include_fields) VALUES ('n', 'https://example.com/', 'secret-secret', '\"id\"')", "include_fields must be a JSON array"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, include_fields) VALUES ('n', 'https://example.com/', 'secret-secret', '[\"id\", 5]')", "include_fields must be an array of field names"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, redact_fields) VALUES ('n', 'https://example.com/', 'secret-secret', '[\"email\"]')", "redact_fields must be a JSON object"),
    ("UPDATE hookrelay.endpoints SET redact_fields = '{\"store.Customer\": \"***\"}'", "redact_fields for model \"store.Customer\" must be an object"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, headers) VALUES ('n', 'https://example.com/', 'secret-secret', '[1]')", "headers must be a JSON object"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, headers) VALUES ('n', 'https://example.com/', 'secret-secret', '{\"X-Webhook-Signature\": \"x\"}')", "set by hookrelay itself"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, headers) VALUES ('n', 'https://example.com/', 'secret-secret', '{\"X-A\": \"a\\nb\"}')", "control characters"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, max_in_flight) VALUES ('n', 'https://example.com/', 'secret-secret', 0)", "max_in_flight 0 is out of range"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, rate_limit) VALUES ('n', 'https://example.com/', 'secret-secret', 'NaN')", "rate_limit NaN is out of range"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, timeout_ms) VALUES ('n', 'https://example.com/', 'secret-secret', 5)", "timeout_ms 5 is out of range"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, events) VALUES ('n', 'https://example.com/', 'secret-secret', '{\"\"}')", "event filter: the event name is empty"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, events) VALUES ('n', 'https://example.com/', 'secret-secret', ARRAY[E'order\\u00a0paid'])", "event filter: the event name \"order\u{a0}paid\" has (U+00A0)"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, models) VALUES ('n', 'https://example.com/', 'secret-secret', ARRAY[E'store.\\u200bOrder'])", "model filter: the model name \"store.\u{200b}Order\" has (U+200B)"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('n', 'https://example.com:0/', 'secret-secret')", "endpoint url \"https://example.com:0/\" has port 0"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) VALUES ('n', 'https://example.com/', 'whsec_AAAA', 'standard')", "a standard-webhooks secret must hold 24 to 64 bytes; this one holds 3"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) VALUES ('n', 'https://example.com/', 'whsec_' || translate(encode(repeat('k', 65)::bytea, 'base64'), E'\\n', ''), 'standard')", "this one holds 65"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('EXISTING', 'https://example.com/', 'secret-secret')", "endpoints_name_ignoring_case"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('crm''; drop', 'https://example.com/', 'secret-secret')", "endpoint name \"crm'; drop\" is not valid"),
    ("INSERT INTO hookrelay.endpoints (name, url, secret) VALUES ('a;b', 'https://example.com/', 'secret-secret')", "endpoint name \"a;b\" is not valid"),
    // Events written with SQL.
    ("SELECT hookrelay.emit('')", "event_name_must_be_1_to_200_characters_without_spaces"),
    ("SELECT hookrelay.emit(repeat('a', 201))", "event_name_must_be_1_to_200_characters_without_spaces"),
    ("SELECT hookrelay.emit('has space')", "event_name_must_be_1_to_200_characters_without_spaces"),
    ("SELECT hookrelay.emit(NULL)", "null value in column \"event\""),
    ("SELECT hookrelay.emit('x.y', '[1, 2]')", "event_object_must_be_a_json_object"),
    ("SELECT hookrelay.emit('x.y', '\"text\"')", "event_object_must_be_a_json_object"),
    ("SELECT hookrelay.emit('x.y', '{}', changes => '[1]')", "event_changes_must_be_a_json_object"),
    ("INSERT INTO hookrelay.events (event, object) VALUES ('x.y', 'null')", "event_object_must_be_a_json_object"),
    // The one check (0011) says how to fix it, and checks every row of a bulk insert.
    ("SELECT hookrelay.emit('has space')", "Name events like order.paid"),
    ("SELECT hookrelay.emit(E'order\\u00a0paid')", "the event name \"order\u{a0}paid\" has (U+00A0), which event names may not have"),
    ("SELECT hookrelay.emit(E'order.paid\\u200b')", "has (U+200B)"),
    ("SELECT hookrelay.emit('commande.payée')", "has \"é\" (U+00E9)"),
    ("INSERT INTO hookrelay.events (event) VALUES (E'a\\u2028b')", "has (U+2028)"),
    ("INSERT INTO hookrelay.events (event, object) VALUES ('a.b', '{}'), ('c d', '{}')", "event_name_must_be_1_to_200_characters_without_spaces"),
    ("INSERT INTO hookrelay.events (event, object, changes) VALUES ('x.y', '{}', '1')", "Pass changes as an object"),
    ("INSERT INTO hookrelay.events (event, object) VALUES ('x.y', '{\"a\": \"\\u0000\"}')", "unsupported Unicode escape sequence"),
    // Tracking, with hostile identifiers.
    ("SELECT hookrelay.track_table('orders; DROP TABLE orders')", "invalid name syntax"),
    ("SELECT hookrelay.track_table('\"orders\"\"; DROP TABLE orders; --\"')", "does not exist"),
    ("SELECT hookrelay.track_table('ördérs')", "relation \"ördérs\" does not exist"),
    ("SELECT hookrelay.track_table(NULL)", "track_table needs a table"),
    ("SELECT hookrelay.track_table('orders', '{created,\"''); DROP TABLE orders; --\"}')", "unknown event"),
    ("SELECT hookrelay.track_table('orders', exclude_columns => '{\"id); DROP TABLE orders; --\"}')", "has no column"),
    ("SELECT hookrelay.track_table('orders', account_column => 'x''; DROP TABLE orders; --')", "has no column"),
    ("SELECT hookrelay.track_table('orders', model => 'store Order')", "model name 'store Order' is not valid"),
    ("SELECT hookrelay.track_table('orders', exclude_columns => '{NULL}')", "exclude_columns must not contain NULL"),
    ("SELECT hookrelay.untrack_table(NULL)", "untrack_table needs a table"),
];

/// A connection whose server notices (warnings) are collected.
pub(crate) async fn connect_with_notices(
    url: &str,
) -> (
    tokio_postgres::Client,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let AsyncMessage::Notice(notice) = message {
                let hint = notice.hint().unwrap_or_default().to_string();
                seen.lock()
                    .unwrap()
                    .push(format!("{} {hint}", notice.message()));
            }
        }
    });
    (client, notices)
}

#[tokio::test]
async fn every_bad_input_is_refused_by_name_with_nothing_written() {
    let db = TestDb::new().await;
    db.endpoint("existing", "https://example.com/hooks", "existing-secret")
        .await;
    db.client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
        .await
        .unwrap();
    let before = state(&db).await;
    let configs = Configs::write();
    let cases = command_line_cases(&configs);
    let mut failures = Vec::new();
    for case in &cases {
        let out = hookrelay(&db, &case.args);
        failures.extend(judge(case, &out));
        let now = state(&db).await;
        if now != before {
            failures.push(format!("{:?} changed the database: {now}", case.args));
        }
    }
    for (sql, expected) in SQL_CASES {
        match db.client.batch_execute(sql).await {
            Ok(()) => failures.push(format!("{sql}: accepted")),
            Err(e) => {
                let text = match e.as_db_error() {
                    Some(db_err) => format!(
                        "{} {} {} {}",
                        db_err.message(),
                        db_err.detail().unwrap_or_default(),
                        db_err.constraint().unwrap_or_default(),
                        db_err.hint().unwrap_or_default()
                    ),
                    None => e.to_string(),
                };
                if !text.contains(expected) {
                    failures.push(format!("{sql}: {text:?} does not name {expected:?}"));
                }
            }
        }
        if state(&db).await != before {
            failures.push(format!("{sql} changed the database"));
        }
    }

    // A malformed acting user does not fail the application's transaction (by design): the
    // event keeps what was given as {"raw": …}, and the application is warned, by name.
    let (client, notices) = connect_with_notices(&db.url).await;
    client
        .batch_execute(
            "BEGIN; SET LOCAL hookrelay.actor = '{\"id\": oops';
             SELECT hookrelay.emit('user.login'); COMMIT;",
        )
        .await
        .unwrap();
    let actor: serde_json::Value = db
        .client
        .query_one(
            "SELECT actor FROM hookrelay.events WHERE event = 'user.login'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, json!({"raw": "{\"id\": oops"}));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let warned = notices.lock().unwrap().clone();
    assert!(
        warned
            .iter()
            .any(|n| n.contains("hookrelay.actor is not valid JSON")
                && n.contains("a bare id such as 42")),
        "{warned:?}"
    );

    let tried = cases.len() + SQL_CASES.len() + 1;
    println!(
        "bad inputs tried: {tried} ({} command lines, {} SQL statements, 1 malformed actor)",
        cases.len(),
        SQL_CASES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn hostile_identifiers_that_name_real_tables_are_quoted_never_run() {
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE orders (id int PRIMARY KEY);
               CREATE TABLE "we""ird; DROP TABLE orders; --" (
                   id int PRIMARY KEY, "note'); DROP TABLE orders; --" text, "ünï cödé" text);
               CREATE TABLE "Ünïcödé Tåble" (id int PRIMARY KEY, "Prïcé" numeric);"#,
        )
        .await
        .unwrap();
    db.client
        .batch_execute(
            r#"SELECT hookrelay.track_table('"we""ird; DROP TABLE orders; --"',
                   exclude_columns => '{"note''); DROP TABLE orders; --"}',
                   model => 'x''y;DROP;TABLE;orders;--');
               INSERT INTO "we""ird; DROP TABLE orders; --" VALUES (1, 'hidden', 'ü');"#,
        )
        .await
        .expect("a hostile but real table name is tracked");
    let out = hookrelay(
        &db,
        &[
            "track",
            r#"public."Ünïcödé Tåble""#,
            "--model",
            "shop.Tåble'--",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("as model shop.Tåble'--"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    db.client
        .batch_execute(r#"INSERT INTO "Ünïcödé Tåble" VALUES (7, 9.50)"#)
        .await
        .unwrap();
    let events: Vec<(String, serde_json::Value)> = db
        .client
        .query(
            "SELECT model, object FROM hookrelay.events ORDER BY model",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        events,
        [
            (
                "shop.Tåble'--".to_string(),
                // The stored digits, as PostgreSQL keeps them.
                serde_json::from_str(r#"{"id": 7, "Prïcé": 9.50}"#).unwrap()
            ),
            (
                "x'y;DROP;TABLE;orders;--".to_string(),
                json!({"id": 1, "ünï cödé": "ü"})
            ),
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 'orders'")
            .await,
        1,
        "no identifier was executed"
    );
}

#[tokio::test]
async fn a_payload_over_the_limit_ends_dead_unsent_and_the_worker_goes_on() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    db.endpoint("crm", &receiver.url("/"), "secret-secret-secret")
        .await;
    db.emit("too.big", json!({"id": 1, "blob": "x".repeat(4000)}))
        .await;
    db.emit("small", json!({"id": 2})).await;
    let mut worker = Command::new(binary())
        .args([
            "run",
            "--database-url",
            &db.url,
            "--max-payload-bytes",
            "1024",
        ])
        .args(["--metrics-addr", "off", "--poll-interval", "100ms"])
        .env("HOOKRELAY_ALLOW_NETWORKS", LOOPBACK)
        .env("HOOKRELAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
            2,
            Duration::from_secs(15),
        )
        .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(finished, 2);
    let row = db
        .client
        .query_one(
            "SELECT d.state, d.last_error_code, d.last_error FROM hookrelay.deliveries d
             JOIN hookrelay.events e ON e.id = d.event_id WHERE e.event = 'too.big'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(row.get::<_, String>(1), "payload_too_large");
    let error: String = row.get(2);
    assert!(
        error.contains("above the 1024 allowed (--max-payload-bytes): not sent"),
        "{error}"
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "only the small event was sent");
    assert_eq!(got[0].json()["event"], "small");
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_a_command_quietly() {
    let db = TestDb::new().await;
    for i in 0..50 {
        db.endpoint(&format!("e{i}"), "https://example.com/", "secret-secret")
            .await;
    }
    let mut child = Command::new(binary())
        .args(["endpoint", "list"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
