//! Static headers are sent, masked when shown, and never replace hookrelay's own.

use crate::signing_cli::{one_delivery, text};
use crate::support::hookrelay;
use crate::support::{hmac_hex, Receiver, Request, TestDb};

/// Adds endpoint gw with an Authorization and an X-Tenant header; `show` and `list --json`
/// name the headers but never print the token.
fn add_gw_with_headers(db: &TestDb, url: &str, token: &str) {
    let auth = format!("Authorization: {token}");
    let out = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "gw",
            "--url",
            url,
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
        let out = hookrelay(db, args);
        assert!(text(&out).contains("X-Tenant"), "{}", text(&out));
        assert!(!text(&out).contains("tok-5f0c2a9e"), "{}", text(&out));
    }
}

/// A static header hookrelay sets itself is refused, and nothing is written.
async fn assert_reserved_header_refused(db: &TestDb, url: &str) {
    let refused = hookrelay(
        db,
        &[
            "endpoint",
            "add",
            "--name",
            "evil",
            "--url",
            url,
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
}

/// Even a row written past the check (its trigger disabled) cannot replace hookrelay's
/// headers: they are skipped when sending.
async fn force_reserved_headers_past_the_check(db: &TestDb) {
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
}

/// The static headers arrived; hookrelay's own kept their values and the signature holds.
fn assert_gw_request(request: &Request, token: &str) {
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
async fn static_headers_are_sent_masked_and_never_replace_hookrelays_own() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let token = "Bearer tok-5f0c2a9e";
    let url = receiver.url("/gw");
    add_gw_with_headers(&db, &url, token);
    assert_reserved_header_refused(&db, &url).await;
    force_reserved_headers_past_the_check(&db).await;
    let request = one_delivery(&db, &receiver).await;
    assert_gw_request(&request, token);
}
