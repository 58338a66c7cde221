//! Known answers: Retry-After, excerpts, static headers, error codes.

use super::*;
use chrono::TimeZone;

#[test]
fn retry_after_takes_seconds_and_http_dates() {
    let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
}

#[test]
fn excerpts_are_capped_at_a_character_boundary_and_nul_free() {
    assert_eq!(excerpt(b"", 10), None);
    assert_eq!(excerpt(b"hello world", 5).as_deref(), Some("hello"));
    assert_eq!(excerpt("héllo".as_bytes(), 2).as_deref(), Some("h"));
    assert_eq!(excerpt(b"a\0b", 10).as_deref(), Some("a\u{FFFD}b"));
    assert_eq!(
        excerpt(&[0xff, 0xfe], 10).as_deref(),
        Some("\u{FFFD}\u{FFFD}")
    );
}

#[test]
fn static_headers_never_replace_hookrelay_headers() {
    for name in [
        "Content-Type",
        "user-agent",
        "X-Webhook-Signature",
        "x-webhook-anything",
        "Webhook-Signature",
        "webhook-id",
        "Host",
        "Content-Length",
        "Transfer-Encoding",
    ] {
        assert!(is_reserved_header(name), "{name}");
    }
    for name in [
        "Authorization",
        "X-Tenant",
        "X-Webhooks",
        "Webhook",
        "Accept",
    ] {
        assert!(!is_reserved_header(name), "{name}");
    }
    let list = [
        ("Authorization".to_string(), "Bearer t0k3n".to_string()),
        ("X-Webhook-Signature".to_string(), "forged".to_string()),
        ("content-type".to_string(), "text/plain".to_string()),
    ];
    let map = static_headers(&list).unwrap();
    assert_eq!(map.len(), 1);
    assert_eq!(map["authorization"], "Bearer t0k3n");
    assert!(map["authorization"].is_sensitive());
    let bad = [("X-Tenant".to_string(), "a\r\nX-Evil: 1".to_string())];
    let err = static_headers(&bad).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert!(!err.message.contains("Evil"), "{}", err.message);
}

#[test]
fn error_codes_are_stable() {
    let all = [
        (ErrorCode::Timeout, "timeout"),
        (ErrorCode::Connect, "connect"),
        (ErrorCode::HttpStatus, "http_status"),
        (ErrorCode::Network, "network"),
        (ErrorCode::Signing, "signing"),
        (ErrorCode::InvalidRequest, "invalid_request"),
        (ErrorCode::LeaseExpired, "lease_expired"),
        (ErrorCode::PayloadInvalid, "payload_invalid"),
        (ErrorCode::BlockedAddress, "blocked_address"),
        (ErrorCode::PayloadTooLarge, "payload_too_large"),
        (ErrorCode::Gone, "gone"),
    ];
    for (code, text) in all {
        assert_eq!(code.as_str(), text);
    }
    assert!(ErrorCode::Signing.is_permanent());
    assert!(ErrorCode::BlockedAddress.is_permanent());
    assert!(ErrorCode::PayloadTooLarge.is_permanent());
    assert!(ErrorCode::Gone.is_permanent());
    assert!(!ErrorCode::Timeout.is_permanent());
    assert!(!ErrorCode::HttpStatus.is_permanent());
}
