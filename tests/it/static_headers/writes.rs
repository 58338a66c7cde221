//! Endpoint writes refuse unknown schemes, bad headers and half a rotation, with the reason.

use crate::signing_cli::text;
use crate::support::hookrelay;
use crate::support::TestDb;

/// The insert every case tries: a scheme and headers.
const INSERT: &str =
    "INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme, headers) \
                      VALUES ('e', 'https://example.com/h', 'secret-value-1', $1, $2::text::jsonb)";

/// (scheme, headers, what the refusal must say).
const BAD_WRITES: &[(&str, &str, &str)] = &[
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

/// An unknown scheme and half a rotation are refused on update too.
async fn assert_bad_updates_refused(db: &TestDb) {
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
}

/// `endpoint add` with an unknown scheme lists the known ones.
fn assert_add_names_the_schemes(db: &TestDb) {
    let out = hookrelay(
        db,
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

#[tokio::test]
async fn endpoint_writes_refuse_unknown_schemes_and_bad_headers_with_the_reason() {
    let db = TestDb::new().await;
    for (scheme, headers, reason) in BAD_WRITES {
        let err = db
            .client
            .execute(INSERT, &[scheme, headers])
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
        .execute(INSERT, &[&"hookrelay", &r#"{"X-Tenant": "acme"}"#])
        .await
        .unwrap();
    assert_bad_updates_refused(&db).await;
    assert_add_names_the_schemes(&db);
}
