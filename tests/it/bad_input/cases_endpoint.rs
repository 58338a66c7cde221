//! Refused `endpoint add` command lines: URLs, signature schemes and secrets, shaping,
//! static headers, names and ranges.

use super::{case, Case};

/// `hookrelay endpoint add` with one bad flag each.
pub(super) fn endpoint_add() -> Vec<Case> {
    let long_url = format!("https://example.com/{}", "a".repeat(3000));
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
    ]
}
