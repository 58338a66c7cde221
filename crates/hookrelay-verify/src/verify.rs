//! Receiver-side verification: is a request really from hookrelay, unchanged, and recent?
//!
//! The same check `hookrelay verify` runs, for Rust receivers:
//!
//! ```
//! use hookrelay_verify::sign::Scheme;
//! use hookrelay_verify::verify::Verifier;
//!
//! let verifier = Verifier::new(Scheme::Hookrelay, &["secret_123"]).unwrap();
//! let headers = [
//!     ("X-Webhook-Timestamp", "1614265330"),
//!     ("X-Webhook-Signature", "sha256=e1bb1e315c0fb151880105a16f45afa9e88c5b75d80817e80b8301de860a71af"),
//! ];
//! let verified = verifier.verify(&headers[..], br#"{"a":1}"#, 1614265330).unwrap();
//! assert_eq!(verified.secret, 0);
//! ```
//!
//! Signatures are compared in constant time (the `hmac` crate's `verify_slice`). A header may
//! carry several signatures (a secret rotation in progress): the request is valid when any of
//! them matches any of the receiver's secrets, so a receiver holding either the old or the new
//! secret accepts. Header names are matched ignoring case.
//!
//! The timestamp must be within the tolerance of `now`, both ways, for `hookrelay` and
//! `standard`, whose signatures cover it. `body-hex` signs the body alone, so its timestamp
//! header proves nothing and is not checked: such receivers deduplicate on the event id.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::Mac;

use crate::sign::{self, Message, Scheme, SignError};

/// How far a timestamp may be from now unless told otherwise (as Standard Webhooks suggests).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const SIGNATURE: &str = "X-Webhook-Signature";
const TIMESTAMP: &str = "X-Webhook-Timestamp";
const STD_SIGNATURE: &str = "webhook-signature";
const STD_TIMESTAMP: &str = "webhook-timestamp";
const STD_ID: &str = "webhook-id";

/// Why a request is not accepted. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is given more than once")]
    DuplicateHeader(&'static str),
    #[error("header {header} is not a unix timestamp in seconds: {value:?}")]
    BadTimestamp { header: &'static str, value: String },
    #[error("malformed signature in {header}: {reason}")]
    MalformedSignature {
        header: &'static str,
        reason: String,
    },
    #[error(
        "bad signature: no signature matches the secret (wrong secret, or the body, timestamp \
         or id was changed)"
    )]
    BadSignature,
    #[error(
        "stale timestamp: signed {age} s ago, beyond the {tolerance} s tolerance (a replayed \
         request, or a clock out of sync)"
    )]
    StaleTimestamp { age: u64, tolerance: u64 },
    #[error(
        "timestamp {ahead} s in the future, beyond the {tolerance} s tolerance (a clock out of \
         sync)"
    )]
    FutureTimestamp { ahead: u64, tolerance: u64 },
}

/// Header lookup for [`Verifier::verify`]: every value of a header, its name matched
/// ignoring ASCII case.
pub trait HeaderSource {
    /// The values of every header named `name`, in order.
    fn values(&self, name: &str) -> Vec<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for [(K, V)] {
    fn values(&self, name: &str) -> Vec<&str> {
        self.iter()
            .filter(|(k, _)| k.as_ref().trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for Vec<(K, V)> {
    fn values(&self, name: &str) -> Vec<&str> {
        self.as_slice().values(name)
    }
}

/// The header map of `http` (used by axum, hyper and reqwest alike).
impl HeaderSource for http::HeaderMap {
    fn values(&self, name: &str) -> Vec<&str> {
        self.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

/// What a valid request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index (in the order given to [`Verifier::new`]) of the secret that matched.
    pub secret: usize,
    /// The signed timestamp (`None` for `body-hex`, which does not sign one).
    pub timestamp: Option<i64>,
}

/// Checks requests signed with one scheme against one or more secrets.
#[derive(Clone)]
pub struct Verifier {
    scheme: Scheme,
    keys: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys: a Debug print must not leak a secret into logs.
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl Verifier {
    /// A verifier accepting signatures by any of `secrets` (several while a rotation is in
    /// progress), with the [`DEFAULT_TOLERANCE`]. Fails on no secret, or on a `standard`
    /// secret that is not `whsec_` base64.
    pub fn new<S: AsRef<str>>(scheme: Scheme, secrets: &[S]) -> Result<Verifier, SignError> {
        if secrets.is_empty() {
            return Err(SignError::NoSecret);
        }
        let keys = secrets
            .iter()
            .map(|s| sign::key(scheme, s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            scheme,
            keys,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// The same verifier with another timestamp tolerance.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Verifier {
        self.tolerance = tolerance;
        self
    }

    /// Checks one request: its headers, its exact body, and the time (unix seconds) to judge
    /// its timestamp against.
    pub fn verify<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let (sig_header, ts_header) = match self.scheme {
            Scheme::Standard => (STD_SIGNATURE, Some(STD_TIMESTAMP)),
            Scheme::Hookrelay => (SIGNATURE, Some(TIMESTAMP)),
            Scheme::BodyHex => (SIGNATURE, None),
        };
        let id = match self.scheme {
            Scheme::Standard => single(headers, STD_ID)?.to_string(),
            Scheme::Hookrelay | Scheme::BodyHex => String::new(),
        };
        let timestamp = ts_header.map(|name| timestamp(headers, name)).transpose()?;
        let sent = headers.values(sig_header);
        if sent.is_empty() {
            return Err(VerifyError::MissingHeader(sig_header));
        }
        let candidates = candidates(self.scheme, sig_header, &sent)?;
        let message = Message {
            id: &id,
            event: "",
            timestamp: timestamp.unwrap_or_default(),
            body,
        };
        let matched = self.keys.iter().position(|key| {
            let mac = sign::mac(self.scheme, key, &message);
            candidates
                .iter()
                .any(|tag| mac.clone().verify_slice(tag).is_ok())
        });
        let secret = matched.ok_or(VerifyError::BadSignature)?;
        if let Some(ts) = timestamp {
            check_age(ts, now, self.tolerance)?;
        }
        Ok(Verified { secret, timestamp })
    }
}

/// The one value of a header that must appear exactly once.
fn single<'h, H: HeaderSource + ?Sized>(
    headers: &'h H,
    name: &'static str,
) -> Result<&'h str, VerifyError> {
    match headers.values(name).as_slice() {
        [] => Err(VerifyError::MissingHeader(name)),
        [one] => Ok(one.trim()),
        _ => Err(VerifyError::DuplicateHeader(name)),
    }
}

fn timestamp<H: HeaderSource + ?Sized>(
    headers: &H,
    name: &'static str,
) -> Result<i64, VerifyError> {
    let value = single(headers, name)?;
    let bad = || VerifyError::BadTimestamp {
        header: name,
        value: value.chars().take(40).collect(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse().map_err(|_| bad())
}

/// Decodes the signatures a header carries. Entries of other Standard Webhooks versions are
/// skipped; a header with no usable entry is malformed.
fn candidates(
    scheme: Scheme,
    header: &'static str,
    values: &[&str],
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let malformed = |reason: String| VerifyError::MalformedSignature { header, reason };
    let entries: Vec<&str> = values
        .iter()
        .flat_map(|v| match scheme {
            Scheme::Standard => v.split_ascii_whitespace().collect::<Vec<_>>(),
            Scheme::Hookrelay | Scheme::BodyHex => v.split(',').map(str::trim).collect(),
        })
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(malformed("the header is empty".into()));
    }
    let mut decoded = Vec::new();
    let mut first_problem = None;
    for entry in &entries {
        match decode(scheme, entry) {
            Ok(Some(tag)) => decoded.push(tag),
            Ok(None) => {}
            Err(reason) => {
                first_problem.get_or_insert(reason);
            }
        }
    }
    if decoded.is_empty() {
        return Err(malformed(first_problem.unwrap_or_else(|| {
            "no v1 signature (expected \"v1,<base64>\")".into()
        })));
    }
    Ok(decoded)
}

/// One signature's 32 bytes; `Ok(None)` for a Standard Webhooks entry of another version.
fn decode(scheme: Scheme, entry: &str) -> Result<Option<Vec<u8>>, String> {
    let (bytes, form) = match scheme {
        Scheme::Hookrelay => {
            let hex_part = entry
                .strip_prefix("sha256=")
                .ok_or("expected \"sha256=<64 hex digits>\"")?;
            (hex::decode(hex_part).ok(), "sha256=<64 hex digits>")
        }
        Scheme::BodyHex => (hex::decode(entry).ok(), "64 hex digits"),
        Scheme::Standard => {
            let Some((version, encoded)) = entry.split_once(',') else {
                return Err("expected \"v1,<base64>\"".into());
            };
            if version != "v1" {
                return Ok(None);
            }
            match BASE64.decode(encoded) {
                Ok(bytes) => (Some(bytes), "v1,<base64 of 32 bytes>"),
                Err(e) => return Err(format!("the v1 signature is not valid base64 ({e})")),
            }
        }
    };
    match bytes {
        Some(bytes) if bytes.len() == 32 => Ok(Some(bytes)),
        Some(bytes) => Err(format!(
            "expected {form}, got {} bytes (truncated?)",
            bytes.len()
        )),
        None => Err(format!("expected {form}")),
    }
}

fn check_age(timestamp: i64, now: i64, tolerance: Duration) -> Result<(), VerifyError> {
    let tolerance = tolerance.as_secs();
    let age = i128::from(now) - i128::from(timestamp);
    let clamp = |n: i128| u64::try_from(n).unwrap_or(u64::MAX);
    if age > i128::from(tolerance) {
        return Err(VerifyError::StaleTimestamp {
            age: clamp(age),
            tolerance,
        });
    }
    if -age > i128::from(tolerance) {
        return Err(VerifyError::FutureTimestamp {
            ahead: clamp(-age),
            tolerance,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
