//! Signature headers: HMAC-SHA256 over the request body, in each supported scheme.
//!
//! - `hookrelay` (default): `X-Webhook-Signature: sha256=<hex HMAC(secret, "<timestamp>.<body>")>`
//!   with `X-Webhook-Timestamp: <unix seconds>`.
//! - `body-hex`: `X-Webhook-Signature: <hex HMAC(secret, body)>`.
//! - `standard` (Standard Webhooks v1): `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC(key, "<id>.<timestamp>.<body>")>`, where the key is the
//!   base64 after the `whsec_` prefix.
//!
//! Every scheme also sends `X-Webhook-Event-Id` and `X-Webhook-Event`. With several secrets (a
//! rotation in progress) each one signs, and the signatures share the header: comma-separated
//! for `hookrelay` and `body-hex`, space-separated for `standard`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Errors from signing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignError {
    #[error("unknown signature scheme {0:?}: use one of hookrelay, body-hex, standard")]
    UnknownScheme(String),
    #[error("a standard-webhooks secret must be \"whsec_\" followed by base64: {0}")]
    BadStandardSecret(String),
    #[error("no secret to sign with")]
    NoSecret,
}

/// How requests to an endpoint are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `sha256=` hex over `"<timestamp>.<body>"` (the Django document's scheme).
    #[default]
    Hookrelay,
    /// Hex over the body alone (the Rails document's scheme).
    BodyHex,
    /// Standard Webhooks v1.
    Standard,
}

impl Scheme {
    /// The name stored in `hookrelay.endpoints.signature_scheme`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Hookrelay => "hookrelay",
            Scheme::BodyHex => "body-hex",
            Scheme::Standard => "standard",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hookrelay" => Ok(Scheme::Hookrelay),
            "body-hex" => Ok(Scheme::BodyHex),
            "standard" => Ok(Scheme::Standard),
            other => Err(SignError::UnknownScheme(other.to_string())),
        }
    }
}

/// What a signature covers besides the secret.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The event id sent to receivers (`evt_…`).
    pub id: &'a str,
    /// The event name.
    pub event: &'a str,
    /// Unix seconds at sending time.
    pub timestamp: i64,
    /// The exact request body.
    pub body: &'a [u8],
}

/// The HMAC key a secret stands for: the secret's bytes, or for `standard` the bytes its
/// `whsec_` base64 decodes to.
pub fn key(scheme: Scheme, secret: &str) -> Result<Vec<u8>, SignError> {
    match scheme {
        Scheme::Standard => standard_key(secret),
        Scheme::Hookrelay | Scheme::BodyHex => Ok(secret.as_bytes().to_vec()),
    }
}

/// The decoded key of a `whsec_` secret.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, SignError> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| SignError::BadStandardSecret("the whsec_ prefix is missing".into()))?;
    let key = BASE64
        .decode(encoded)
        .map_err(|e| SignError::BadStandardSecret(e.to_string()))?;
    if key.is_empty() {
        return Err(SignError::BadStandardSecret("the key is empty".into()));
    }
    Ok(key)
}

/// The MAC over what `scheme` signs, keyed with `key` (from [`key`]), not finalized yet: the
/// signer takes its bytes, a verifier compares them in constant time.
pub(crate) fn mac(scheme: Scheme, key: &[u8], msg: &Message<'_>) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    let ts = msg.timestamp.to_string();
    match scheme {
        Scheme::Hookrelay => {
            mac.update(ts.as_bytes());
            mac.update(b".");
        }
        Scheme::BodyHex => {}
        Scheme::Standard => {
            mac.update(msg.id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
        }
    }
    mac.update(msg.body);
    mac
}

/// One signature of `msg` with `secret`, as it appears in the signature header.
pub fn signature(scheme: Scheme, secret: &str, msg: &Message<'_>) -> Result<String, SignError> {
    let tag = mac(scheme, &key(scheme, secret)?, msg)
        .finalize()
        .into_bytes();
    Ok(match scheme {
        Scheme::Hookrelay => format!("sha256={}", hex::encode(tag)),
        Scheme::BodyHex => hex::encode(tag),
        Scheme::Standard => format!("v1,{}", BASE64.encode(tag)),
    })
}

/// All headers hookrelay sets on a request: identity, timestamp and one signature per secret.
pub fn headers(
    scheme: Scheme,
    secrets: &[&str],
    msg: &Message<'_>,
) -> Result<Vec<(&'static str, String)>, SignError> {
    if secrets.is_empty() {
        return Err(SignError::NoSecret);
    }
    let signatures = secrets
        .iter()
        .map(|secret| signature(scheme, secret, msg))
        .collect::<Result<Vec<_>, _>>()?;
    let ts = msg.timestamp.to_string();
    let mut out = vec![
        ("X-Webhook-Event-Id", msg.id.to_string()),
        ("X-Webhook-Event", msg.event.to_string()),
    ];
    match scheme {
        Scheme::Hookrelay | Scheme::BodyHex => {
            out.push(("X-Webhook-Timestamp", ts));
            out.push(("X-Webhook-Signature", signatures.join(",")));
        }
        Scheme::Standard => {
            out.push(("webhook-id", msg.id.to_string()));
            out.push(("webhook-timestamp", ts));
            out.push(("webhook-signature", signatures.join(" ")));
        }
    }
    Ok(out)
}

/// A new random secret for `scheme`: 32 bytes from the operating system, as hex, or as
/// `whsec_` + base64 for Standard Webhooks.
pub fn generate_secret(scheme: Scheme) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    match scheme {
        Scheme::Standard => format!("whsec_{}", BASE64.encode(bytes)),
        Scheme::Hookrelay | Scheme::BodyHex => hex::encode(bytes),
    }
}

/// A short, non-reversible name for a secret (first 8 hex digits of its SHA-256), so operators
/// can tell secrets apart without seeing them.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(secret.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(body: &'a [u8]) -> Message<'a> {
        Message {
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            event: "order.paid",
            timestamp: 1614265330,
            body,
        }
    }

    #[test]
    fn standard_webhooks_published_vector() {
        // The example from the Standard Webhooks specification.
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(
            Scheme::Standard,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &msg(body),
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn hookrelay_scheme_known_answer() {
        // Computed independently: printf '1614265330.{"a":1}' | openssl dgst -sha256 -hmac 'secret_123'
        let sig = signature(Scheme::Hookrelay, "secret_123", &msg(br#"{"a":1}"#)).unwrap();
        assert_eq!(
            sig,
            "sha256=e1bb1e315c0fb151880105a16f45afa9e88c5b75d80817e80b8301de860a71af"
        );
    }

    #[test]
    fn body_hex_scheme_known_answer() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature(
            Scheme::BodyHex,
            "Jefe",
            &msg(b"what do ya want for nothing?"),
        )
        .unwrap();
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn headers_carry_every_secret_during_rotation() {
        let body = br#"{"a":1}"#;
        let h = headers(
            Scheme::Hookrelay,
            &["secret_123", "older_secret"],
            &msg(body),
        )
        .unwrap();
        let sig = &h
            .iter()
            .find(|(k, _)| *k == "X-Webhook-Signature")
            .unwrap()
            .1;
        let parts: Vec<&str> = sig.split(',').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[1],
            signature(Scheme::Hookrelay, "older_secret", &msg(body)).unwrap()
        );
        let std_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let h = headers(Scheme::Standard, &[std_key, std_key], &msg(body)).unwrap();
        let sig = &h.iter().find(|(k, _)| *k == "webhook-signature").unwrap().1;
        assert_eq!(sig.split(' ').count(), 2);
        assert!(h
            .iter()
            .any(|(k, v)| *k == "webhook-timestamp" && v == "1614265330"));
        assert!(h
            .iter()
            .any(|(k, v)| *k == "X-Webhook-Event-Id" && v == msg(body).id));
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            "sha1".parse::<Scheme>(),
            Err(SignError::UnknownScheme("sha1".into()))
        );
        assert!(signature(Scheme::Standard, "MfKQ9r8G", &msg(b"")).is_err());
        assert!(signature(Scheme::Standard, "whsec_!!!", &msg(b"")).is_err());
        assert_eq!(
            headers(Scheme::Hookrelay, &[], &msg(b"")),
            Err(SignError::NoSecret)
        );
    }

    #[test]
    fn generated_secrets_have_the_scheme_form() {
        let hex_secret = generate_secret(Scheme::Hookrelay);
        assert_eq!(hex_secret.len(), 64);
        assert_ne!(hex_secret, generate_secret(Scheme::Hookrelay));
        let std_secret = generate_secret(Scheme::Standard);
        assert_eq!(standard_key(&std_secret).unwrap().len(), 32);
    }

    #[test]
    fn fingerprint_hides_the_secret() {
        let fp = fingerprint("secret_123");
        assert!(fp.starts_with("sha256:") && fp.len() == 15);
        assert!(!fp.contains("secret"));
    }
}
