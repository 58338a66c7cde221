//! Header errors, from the command line, an apply file and SQL, never repeat a value.

use crate::support::TestDb;

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
