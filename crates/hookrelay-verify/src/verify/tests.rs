//! Known answers and every reason a request is refused.

use super::*;

const TS: i64 = 1614265330;
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STD_BODY: &[u8] = br#"{"test": 2432232314}"#;
const STD_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const HR_BODY: &[u8] = br#"{"a":1}"#;
// printf '1614265330.{"a":1}' | openssl dgst -sha256 -hmac 'secret_123'
const HR_SIG: &str = "sha256=e1bb1e315c0fb151880105a16f45afa9e88c5b75d80817e80b8301de860a71af";
// RFC 4231 test case 2.
const RFC_BODY: &[u8] = b"what do ya want for nothing?";
const RFC_SIG: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

fn standard(sig: &str) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
        ("webhook-timestamp", TS.to_string()),
        ("webhook-signature", sig.to_string()),
    ]
}

fn hookrelay(sig: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Webhook-Timestamp", TS.to_string()),
        ("X-Webhook-Signature", sig.to_string()),
    ]
}

fn v(scheme: Scheme, secrets: &[&str]) -> Verifier {
    Verifier::new(scheme, secrets).unwrap()
}

fn malformed(result: Result<Verified, VerifyError>) -> String {
    match result {
        Err(VerifyError::MalformedSignature { reason, .. }) => reason,
        other => panic!("expected a malformed signature, got {other:?}"),
    }
}

#[test]
fn standard_webhooks_published_vector_verifies() {
    let ok = v(Scheme::Standard, &[STD_SECRET]).verify(&standard(STD_SIG), STD_BODY, TS);
    assert_eq!(
        ok,
        Ok(Verified {
            secret: 0,
            timestamp: Some(TS)
        })
    );
}

#[test]
fn hookrelay_and_body_hex_known_answers_verify() {
    let hr = v(Scheme::Hookrelay, &["secret_123"]);
    assert!(hr.verify(&hookrelay(HR_SIG), HR_BODY, TS).is_ok());
    let bh = v(Scheme::BodyHex, &["Jefe"]);
    let headers = [("X-Webhook-Signature", RFC_SIG)];
    assert_eq!(
        bh.verify(&headers[..], RFC_BODY, 0),
        Ok(Verified {
            secret: 0,
            timestamp: None
        })
    );
}

#[test]
fn header_names_ignore_case() {
    let headers = [
        ("x-webhook-timestamp", TS.to_string()),
        ("X-WEBHOOK-SIGNATURE", HR_SIG.to_string()),
    ];
    let hr = v(Scheme::Hookrelay, &["secret_123"]);
    assert!(hr.verify(&headers[..], HR_BODY, TS).is_ok());
    let mut map = http::HeaderMap::new();
    map.insert(
        "webhook-id",
        "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
    );
    map.insert("Webhook-Timestamp", TS.to_string().parse().unwrap());
    map.insert("WEBHOOK-SIGNATURE", STD_SIG.parse().unwrap());
    assert!(v(Scheme::Standard, &[STD_SECRET])
        .verify(&map, STD_BODY, TS)
        .is_ok());
}

#[test]
fn wrong_signatures_secrets_and_bodies_are_bad_signatures() {
    let hr = v(Scheme::Hookrelay, &["secret_123"]);
    let flipped = HR_SIG.replace("e1bb", "e1bc");
    assert_eq!(
        hr.verify(&hookrelay(&flipped), HR_BODY, TS),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        v(Scheme::Hookrelay, &["secret_124"]).verify(&hookrelay(HR_SIG), HR_BODY, TS),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        hr.verify(&hookrelay(HR_SIG), br#"{"a":2}"#, TS),
        Err(VerifyError::BadSignature)
    );
    // A signature valid for another timestamp: the timestamp is signed too.
    let mut moved = hookrelay(HR_SIG);
    moved[0].1 = (TS + 1).to_string();
    assert_eq!(
        hr.verify(&moved, HR_BODY, TS),
        Err(VerifyError::BadSignature)
    );
    let std = v(Scheme::Standard, &[STD_SECRET]);
    let mut other_id = standard(STD_SIG);
    other_id[0].1 = "msg_other".into();
    assert_eq!(
        std.verify(&other_id, STD_BODY, TS),
        Err(VerifyError::BadSignature)
    );
    let bh = v(Scheme::BodyHex, &["Jefe"]);
    let headers = [("X-Webhook-Signature", RFC_SIG.replace('5', "6"))];
    assert_eq!(
        bh.verify(&headers[..], RFC_BODY, 0),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn truncated_empty_and_undecodable_signatures_are_malformed() {
    let hr = v(Scheme::Hookrelay, &["secret_123"]);
    let reason = malformed(hr.verify(&hookrelay(&HR_SIG[..HR_SIG.len() - 2]), HR_BODY, TS));
    assert!(reason.contains("31 bytes"), "{reason}");
    let reason = malformed(hr.verify(&hookrelay(&HR_SIG[..HR_SIG.len() - 1]), HR_BODY, TS));
    assert!(reason.contains("64 hex digits"), "{reason}");
    let reason = malformed(hr.verify(&hookrelay(""), HR_BODY, TS));
    assert!(reason.contains("empty"), "{reason}");
    let reason = malformed(hr.verify(&hookrelay(" , "), HR_BODY, TS));
    assert!(reason.contains("empty"), "{reason}");
    // The body-hex form given to the hookrelay scheme lacks its prefix.
    let reason = malformed(hr.verify(&hookrelay(&HR_SIG[7..]), HR_BODY, TS));
    assert!(reason.contains("sha256="), "{reason}");

    let std = v(Scheme::Standard, &[STD_SECRET]);
    let reason = malformed(std.verify(&standard("v1,g0hM9SsE+OTPJ!!!"), STD_BODY, TS));
    assert!(reason.contains("base64"), "{reason}");
    let reason = malformed(std.verify(&standard(&STD_SIG[..20]), STD_BODY, TS));
    assert!(reason.contains("base64"), "{reason}");
    let reason = malformed(std.verify(&standard("v1,AAAA"), STD_BODY, TS));
    assert!(reason.contains("3 bytes"), "{reason}");
    let reason = malformed(std.verify(&standard(""), STD_BODY, TS));
    assert!(reason.contains("empty"), "{reason}");
    let reason = malformed(std.verify(&standard("g0hM9SsE"), STD_BODY, TS));
    assert!(reason.contains("v1,"), "{reason}");
    let reason = malformed(std.verify(&standard("v2,g0hM9SsE"), STD_BODY, TS));
    assert!(reason.contains("no v1 signature"), "{reason}");
}

#[test]
fn missing_duplicate_and_malformed_headers_are_named() {
    let hr = v(Scheme::Hookrelay, &["secret_123"]);
    let no_sig = [("X-Webhook-Timestamp", TS.to_string())];
    assert_eq!(
        hr.verify(&no_sig[..], HR_BODY, TS),
        Err(VerifyError::MissingHeader("X-Webhook-Signature"))
    );
    let no_ts = [("X-Webhook-Signature", HR_SIG)];
    assert_eq!(
        hr.verify(&no_ts[..], HR_BODY, TS),
        Err(VerifyError::MissingHeader("X-Webhook-Timestamp"))
    );
    let mut twice = hookrelay(HR_SIG);
    twice.push(("x-webhook-timestamp", TS.to_string()));
    assert_eq!(
        hr.verify(&twice, HR_BODY, TS),
        Err(VerifyError::DuplicateHeader("X-Webhook-Timestamp"))
    );
    for bad in ["", "abc", "-5", "1614265330.5", "99999999999999999999"] {
        let mut headers = hookrelay(HR_SIG);
        headers[0].1 = bad.into();
        assert!(
            matches!(
                hr.verify(&headers, HR_BODY, TS),
                Err(VerifyError::BadTimestamp { .. })
            ),
            "{bad:?}"
        );
    }
    let mut no_id = standard(STD_SIG);
    no_id.remove(0);
    assert_eq!(
        v(Scheme::Standard, &[STD_SECRET]).verify(&no_id, STD_BODY, TS),
        Err(VerifyError::MissingHeader("webhook-id"))
    );
}

#[test]
fn timestamps_outside_the_tolerance_are_refused_both_ways() {
    let std = v(Scheme::Standard, &[STD_SECRET]);
    let headers = standard(STD_SIG);
    assert!(std.verify(&headers, STD_BODY, TS + 300).is_ok());
    assert!(std.verify(&headers, STD_BODY, TS - 300).is_ok());
    assert_eq!(
        std.verify(&headers, STD_BODY, TS + 301),
        Err(VerifyError::StaleTimestamp {
            age: 301,
            tolerance: 300
        })
    );
    assert_eq!(
        std.verify(&headers, STD_BODY, TS - 301),
        Err(VerifyError::FutureTimestamp {
            ahead: 301,
            tolerance: 300
        })
    );
    let strict = std.with_tolerance(Duration::from_secs(10));
    assert!(strict.verify(&headers, STD_BODY, TS + 11).is_err());
    // A bad signature is reported as such even when the timestamp is stale too.
    assert_eq!(
        v(Scheme::Hookrelay, &["secret_124"]).verify(&hookrelay(HR_SIG), HR_BODY, TS + 9999),
        Err(VerifyError::BadSignature)
    );
    // body-hex does not sign its timestamp, so it has none to check.
    let bh = v(Scheme::BodyHex, &["Jefe"]);
    let headers = [
        ("X-Webhook-Signature", RFC_SIG),
        ("X-Webhook-Timestamp", "1"),
    ];
    assert!(bh.verify(&headers[..], RFC_BODY, TS).is_ok());
}

#[test]
fn during_a_rotation_either_secret_verifies() {
    let msg = Message {
        id: "evt_1",
        event: "order.paid",
        timestamp: TS,
        body: HR_BODY,
    };
    let pairs = [
        (Scheme::Hookrelay, "new-secret-value", "old-secret-value"),
        (Scheme::BodyHex, "new-secret-value", "old-secret-value"),
        (
            Scheme::Standard,
            "whsec_bmV3LXNlY3JldC12YWx1ZS0xMjM0NTY3OA==",
            STD_SECRET,
        ),
    ];
    for (scheme, new, old) in pairs {
        let headers = sign::headers(scheme, &[new, old], &msg).unwrap();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let check = |secrets: &[&str]| v(scheme, secrets).verify(&headers, HR_BODY, TS);
        assert_eq!(check(&[new]).map(|v| v.secret), Ok(0), "{scheme}");
        assert_eq!(check(&[old]).map(|v| v.secret), Ok(0), "{scheme}");
        let wrong = if scheme == Scheme::Standard {
            "whsec_d3Jvbmc="
        } else {
            "wrong-secret"
        };
        assert_eq!(check(&[wrong, old]).map(|v| v.secret), Ok(1), "{scheme}");
        assert_eq!(check(&[wrong]), Err(VerifyError::BadSignature), "{scheme}");
    }
    // Standard Webhooks receivers skip signatures of versions they do not know.
    let std = v(Scheme::Standard, &[STD_SECRET]);
    let mixed = standard(&format!("v1a,c2lnbmF0dXJl {STD_SIG}"));
    assert!(std.verify(&mixed, STD_BODY, TS).is_ok());
    // One malformed signature beside a good one does not spoil it.
    let hr = v(Scheme::Hookrelay, &["secret_123"]);
    let mixed = hookrelay(&format!("sha256=zz,{HR_SIG}"));
    assert!(hr.verify(&mixed, HR_BODY, TS).is_ok());
}

#[test]
fn secrets_are_checked_up_front_and_never_debug_printed() {
    assert_eq!(
        Verifier::new::<&str>(Scheme::Hookrelay, &[]).unwrap_err(),
        SignError::NoSecret
    );
    assert!(matches!(
        Verifier::new(Scheme::Standard, &["MfKQ9r8GKYqrTwjU"]),
        Err(SignError::BadStandardSecret(_))
    ));
    assert!(matches!(
        Verifier::new(Scheme::Standard, &["whsec_!!!"]),
        Err(SignError::BadStandardSecret(_))
    ));
    let debug = format!("{:?}", v(Scheme::Hookrelay, &["secret_123"]));
    assert!(
        !debug.contains("secret_123") && debug.contains("Hookrelay"),
        "{debug}"
    );
}

#[test]
fn reasons_are_one_line() {
    let errors = [
        VerifyError::MissingHeader("webhook-id"),
        VerifyError::BadTimestamp {
            header: "X-Webhook-Timestamp",
            value: "a\nb".into(),
        },
        VerifyError::BadSignature,
        VerifyError::StaleTimestamp {
            age: 400,
            tolerance: 300,
        },
    ];
    for e in errors {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
