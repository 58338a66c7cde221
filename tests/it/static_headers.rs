//! Endpoint static headers (sent, masked, never over hookrelay's own), the checks on endpoint
//! writes that signing relies on (known schemes, well-formed headers and rotation), the
//! reserved names Rust and SQL share, and header errors that never repeat a value.

use crate::signing_cli::{one_delivery, text};
use crate::support::hookrelay;
use crate::support::{hmac_hex, Receiver, TestDb};

#[tokio::test]
async fn static_headers_are_sent_masked_and_never_replace_hookrelays_own() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let token = "Bearer tok-5f0c2a9e";
    let url = receiver.url("/gw");
    let auth = format!("Authorization: {token}");
    let out = hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "gw",
            "--url",
            &url,
            "--secret",
            "gw-secret-1",
            "--header",
            &auth,
            "--header",
            "X-Tenant: acme",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for args in [
        &["endpoint", "show", "gw"][..],
        &["endpoint", "list", "--json"][..],
    ] {
        let out = hookrelay(&db, args);
        assert!(text(&out).contains("X-Tenant"), "{}", text(&out));
        assert!(!text(&out).contains("tok-5f0c2a9e"), "{}", text(&out));
    }

    let refused = hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "evil",
            "--url",
            &url,
            "--header",
            "X-Webhook-Signature: sha256=forged",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("set by hookrelay itself"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        1
    );

    // Even a row written past the check (its trigger disabled) cannot replace hookrelay's
    // headers: they are skipped when sending.
    db.client
        .batch_execute(
            "ALTER TABLE hookrelay.endpoints DISABLE TRIGGER endpoints_validate_signing;
             UPDATE hookrelay.endpoints SET headers = headers || \
                 '{\"X-Webhook-Signature\": \"forged\", \"content-type\": \"text/plain\", \
                   \"User-Agent\": \"evil\", \"webhook-id\": \"x\"}';
             ALTER TABLE hookrelay.endpoints ENABLE TRIGGER endpoints_validate_signing;",
        )
        .await
        .unwrap();
    let request = one_delivery(&db, &receiver).await;
    assert_eq!(request.header("authorization"), token);
    assert_eq!(request.header("x-tenant"), "acme");
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("hookrelay/"));
    assert!(request.headers.get("webhook-id").is_none());
    let signed = [
        request.header("x-webhook-timestamp").as_bytes(),
        b".",
        &request.body,
    ]
    .concat();
    assert_eq!(
        request.header("x-webhook-signature"),
        format!("sha256={}", hmac_hex(b"gw-secret-1", &signed))
    );
}

#[tokio::test]
async fn endpoint_writes_refuse_unknown_schemes_and_bad_headers_with_the_reason() {
    let db = TestDb::new().await;
    let insert = "INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme, headers) \
                  VALUES ('e', 'https://example.com/h', 'secret-value-1', $1, $2::text::jsonb)";
    let cases = [
        ("sha1", "{}", "unknown signature scheme"),
        (
            "hookrelay",
            r#"{"Content-Type": "text/plain"}"#,
            "set by hookrelay itself",
        ),
        (
            "hookrelay",
            r#"{"webhook-signature": "v1,x"}"#,
            "set by hookrelay itself",
        ),
        (
            "hookrelay",
            r#"{"x-webhook-event": "x"}"#,
            "set by hookrelay itself",
        ),
        (
            "hookrelay",
            r#"{"Host": "evil.example"}"#,
            "set by hookrelay itself",
        ),
        (
            "hookrelay",
            r#"{"X-Tenant": 5}"#,
            "must have a string value",
        ),
        ("hookrelay", r#"["Authorization"]"#, "must be a JSON object"),
        (
            "hookrelay",
            r#"{"Bad Name": "x"}"#,
            "has characters a header name cannot have",
        ),
        (
            "hookrelay",
            r#"{"X-A": "a\r\nX-Evil: 1"}"#,
            "control characters",
        ),
        ("hookrelay", r#"{"X-A": "1", "x-a": "2"}"#, "more than once"),
    ];
    for (scheme, headers, reason) in cases {
        let err = db
            .client
            .execute(insert, &[&scheme, &headers])
            .await
            .expect_err(headers);
        let said = hookrelay::db::explain(&err);
        assert!(said.contains(reason), "{scheme} {headers}: {said}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0
    );
    db.client
        .execute(insert, &[&"hookrelay", &r#"{"X-Tenant": "acme"}"#])
        .await
        .unwrap();
    let update = db
        .client
        .execute(
            "UPDATE hookrelay.endpoints SET signature_scheme = 'md5'",
            &[],
        )
        .await
        .unwrap_err();
    assert!(hookrelay::db::explain(&update).contains("unknown signature scheme"));
    let half = db
        .client
        .execute(
            "UPDATE hookrelay.endpoints SET previous_secret = 'old-secret-value'",
            &[],
        )
        .await
        .unwrap_err();
    assert!(hookrelay::db::explain(&half).contains("must be set together"));
    let out = hookrelay(
        &db,
        &[
            "endpoint",
            "add",
            "--name",
            "x",
            "--url",
            "https://example.com",
            "--scheme",
            "sha1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("use one of hookrelay, body-hex, standard"),
        "{}",
        text(&out)
    );
}

/// The reserved-header list lives in Rust (`deliver::RESERVED_HEADERS`, used before sending)
/// and in SQL (`hookrelay.is_reserved_header`, used by the endpoints trigger). The SQL list is
/// read back from the migrated database's function and must be the Rust one, and both must
/// answer the same for every reserved name, in any case, and for names that are not reserved.
#[tokio::test]
async fn the_reserved_header_lists_in_rust_and_sql_agree() {
    use hookrelay::deliver::{is_reserved_header, RESERVED_HEADERS, RESERVED_PREFIXES};
    let db = TestDb::new().await;
    let definition: String = db
        .client
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE oid = 'hookrelay.is_reserved_header(text)'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // The SQL literals: exact names, and LIKE patterns 'prefix%'.
    let literals: Vec<&str> = definition.split('\'').skip(1).step_by(2).collect();
    let mut names: Vec<&str> = literals
        .iter()
        .filter(|l| !l.ends_with('%'))
        .copied()
        .collect();
    let mut prefixes: Vec<&str> = literals
        .iter()
        .filter_map(|l| l.strip_suffix('%'))
        .collect();
    let (mut rust_names, mut rust_prefixes) =
        (RESERVED_HEADERS.to_vec(), RESERVED_PREFIXES.to_vec());
    for list in [
        &mut names,
        &mut prefixes,
        &mut rust_names,
        &mut rust_prefixes,
    ] {
        list.sort_unstable();
    }
    assert_eq!(names, rust_names, "reserved names: SQL, then Rust");
    assert_eq!(prefixes, rust_prefixes, "reserved prefixes: SQL, then Rust");

    let mut candidates: Vec<String> = Vec::new();
    for name in RESERVED_HEADERS {
        candidates.extend([name.to_string(), name.to_uppercase(), format!("{name}-x")]);
    }
    for prefix in RESERVED_PREFIXES {
        candidates.extend([format!("{prefix}signature"), prefix.to_uppercase() + "Id"]);
        candidates.push(prefix.trim_end_matches('-').to_string());
    }
    candidates
        .extend(["X-Tenant", "Authorization", "Accept", "X-Webhook", "hosts"].map(String::from));
    for name in &candidates {
        let sql: bool = db
            .client
            .query_one("SELECT hookrelay.is_reserved_header($1)", &[name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sql, is_reserved_header(name), "{name}: SQL says {sql}");
    }
}

/// The value every header mistake below carries; no message may repeat it.
const HEADER_SECRET: &str = "zz-header-secret-KKK111";

/// A value over the 4096-character limit, starting with [`HEADER_SECRET`].
fn long_value() -> String {
    format!("{HEADER_SECRET}{}", "x".repeat(4100))
}

/// Checks one refusal: exit status 1 and a first line naming `expected`, and no header
/// value anywhere; returns what is wrong.
fn judge(what: String, code: Option<i32>, stderr: &str, expected: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let first = stderr.lines().next().unwrap_or_default();
    if code != Some(1) || !first.starts_with("error: ") || !first.contains(expected) {
        wrong.push(format!(
            "{what}: exit {code:?}, {first:?} does not say {expected:?}"
        ));
    }
    if stderr.contains("zz-header-secret") {
        wrong.push(format!("{what}: the value is repeated: {stderr}"));
    }
    wrong
}

/// `--header` arguments, and what the message must say.
fn cli_cases() -> Vec<(Vec<String>, &'static str)> {
    let t = HEADER_SECRET;
    let long = long_value();
    let many: Vec<String> = (0..21).map(|i| format!("X-H{i}: {t}")).collect();
    vec![
        (
            vec![format!("Authorization Bearer {t}")],
            "the header has no colon",
        ),
        (vec![t.to_string()], "the header has no colon"),
        (
            vec![format!("Authorization Bearer {t}: x")],
            "a header name is longer than 100",
        ),
        (
            vec![format!("Authorization Bearer a:{t}")],
            "has characters a header name cannot have",
        ),
        (
            vec![format!(": {t}")],
            "a header has no name before its colon",
        ),
        (
            vec![format!("X-Token: a\u{1}{t}")],
            "header \"X-Token\" has a value with a line break",
        ),
        (
            vec![format!("X-Token: {t}\u{7f}")],
            "header \"X-Token\" has a value with a line break",
        ),
        (
            vec![format!("{}: {t}", "X".repeat(101))],
            "a header name is longer than 100",
        ),
        (
            vec![format!("X-Token: {long}")],
            "header \"X-Token\" has a value of 4123 characters",
        ),
        (
            vec![format!("X-Webhook-Signature: {t}")],
            "header \"X-Webhook-Signature\" is set by hookrelay itself",
        ),
        (
            vec![format!("Content-Type: {t}")],
            "header \"Content-Type\" is set by hookrelay itself",
        ),
        (
            vec![format!("X-Token: {t}"), format!("x-token: {t}")],
            "header \"X-Token\" is given more than once (names ignore case)",
        ),
        (
            many,
            "21 static headers are given; an endpoint may have at most 20",
        ),
    ]
}

/// Lines of the `headers` table of an apply file, and what the message must say.
fn apply_cases() -> Vec<(String, &'static str)> {
    let t = HEADER_SECRET;
    let long = long_value();
    let toml_string = |s: &str| serde_json::to_string(s).unwrap();
    vec![
        (
            format!(
                "{} = \"x\"",
                toml_string(&format!("Authorization Bearer {t}"))
            ),
            "a header name is longer than 100 characters or has characters",
        ),
        (
            format!("\"\" = {}", toml_string(t)),
            "a header name is empty",
        ),
        (
            format!("X-Token = {}", toml_string(&format!("a\n{t}"))),
            "header \"X-Token\" has a value with a line break",
        ),
        (
            format!("X-Token = {}", toml_string(&long)),
            "header \"X-Token\" has a value of 4123 characters",
        ),
        (
            format!("webhook-id = {}", toml_string(t)),
            "header \"webhook-id\" is set by hookrelay itself",
        ),
        (
            format!("X-Token = {0}\nx-token = {0}", toml_string(t)),
            "header \"X-Token\" is given more than once (names ignore case)",
        ),
    ]
}

/// The `headers` column written with SQL, and what the endpoints trigger must say.
fn json_cases() -> Vec<(serde_json::Value, &'static str)> {
    let t = HEADER_SECRET;
    let long = long_value();
    vec![
        (
            serde_json::json!({ format!("Authorization Bearer {t}"): "x" }),
            "an endpoint header name is empty, longer than 100 characters, or has characters",
        ),
        (
            serde_json::json!({ "": t }),
            "an endpoint header name is empty",
        ),
        (
            serde_json::json!({ "X-Token": format!("a\r\n{t}") }),
            "endpoint header \"X-Token\" has a value with control characters",
        ),
        (
            serde_json::json!({ "X-Token": long }),
            "endpoint header \"X-Token\" has a value longer than 4096 characters",
        ),
        (
            serde_json::json!({ "X-Webhook-Event": t }),
            "endpoint header \"X-Webhook-Event\" is set by hookrelay itself",
        ),
        (
            serde_json::json!({ "X-Token": t, "x-token": t }),
            "is given more than once (names ignore case)",
        ),
        (
            serde_json::json!({ "X-Token": 42 }),
            "endpoint header \"X-Token\" must have a string value",
        ),
    ]
}

/// `endpoint add --header …` for each of [`cli_cases`].
fn cli_failures(db: &TestDb) -> Vec<String> {
    let mut wrong = Vec::new();
    for (headers, expected) in &cli_cases() {
        let mut args = vec![
            "endpoint",
            "add",
            "--name",
            "h",
            "--url",
            "https://example.com/",
        ];
        for h in headers {
            args.extend(["--header", h]);
        }
        let out = crate::support::hookrelay(db, &args);
        wrong.extend(judge(
            format!("--header {headers:?}"),
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
            expected,
        ));
    }
    wrong
}

/// `endpoint apply` of a file with each of [`apply_cases`].
fn apply_failures(db: &TestDb) -> Vec<String> {
    let mut wrong = Vec::new();
    for (i, (table, expected)) in apply_cases().iter().enumerate() {
        let file = crate::support::temp_file(
            &format!("headers-{i}.toml"),
            &format!("[[endpoints]]\nname = \"h\"\nurl = \"https://example.com/\"\n[endpoints.headers]\n{table}\n"),
        );
        let out = crate::support::hookrelay(db, &["endpoint", "apply", file.to_str().unwrap()]);
        wrong.extend(judge(
            format!("apply headers {table:?}"),
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
            &format!("endpoint \"h\": {expected}"),
        ));
        let _ = std::fs::remove_file(file);
    }
    wrong
}

/// An endpoint row with each of [`json_cases`], written with SQL.
async fn sql_failures(db: &TestDb) -> Vec<String> {
    let mut wrong = Vec::new();
    for (headers, expected) in &json_cases() {
        let err = db
            .client
            .execute(
                "INSERT INTO hookrelay.endpoints (name, url, secret, headers)
                 VALUES ('h', 'https://example.com/', 'secret-secret', $1)",
                &[headers],
            )
            .await
            .unwrap_err();
        let db_err = err.as_db_error().expect("a database error");
        let text = format!(
            "error: {} {:?} {:?}",
            db_err.message(),
            db_err.detail(),
            db_err.hint()
        );
        wrong.extend(judge(
            format!("SQL headers {headers}"),
            Some(1),
            &text,
            expected,
        ));
    }
    wrong
}

/// Every way a static header can be refused, from the command line, from an apply file and
/// from SQL: each error names the header only when its name is a valid one, says what to fix,
/// and never repeats the value (or an invalid name, which is often a value typed before the
/// colon).
#[tokio::test]
async fn no_header_error_repeats_a_header_value() {
    let db = TestDb::new().await;
    let mut wrong = cli_failures(&db);
    wrong.extend(apply_failures(&db));
    wrong.extend(sql_failures(&db).await);
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints").await,
        0,
        "nothing was written"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
