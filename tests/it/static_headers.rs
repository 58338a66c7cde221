//! Endpoint static headers (sent, masked, never over hookrelay's own) and the checks on
//! endpoint writes that signing relies on (known schemes, well-formed headers and rotation).

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
