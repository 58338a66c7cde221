//! Receiver-side verification on arbitrary requests: any headers, secrets, body and clock.
//! It must never panic, and its verdict must be one line that repeats no secret the request
//! did not itself carry.
//!
//! Secrets are made distinctive so that finding one in a message means it leaked rather than
//! that it happens to spell a word of the message: `whsec_` base64 for the standard scheme,
//! and wrapped in U+0001 (which messages only ever show escaped) for the others.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hookrelay_verify::sign::Scheme;
use hookrelay_verify::verify::Verifier;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Request {
    scheme: u8,
    secrets: Vec<Vec<u8>>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    now: i64,
    tolerance_secs: u32,
}

const SCHEMES: [Scheme; 3] = [Scheme::Hookrelay, Scheme::BodyHex, Scheme::Standard];

fuzz_target!(|request: Request| {
    let scheme = SCHEMES[usize::from(request.scheme) % SCHEMES.len()];
    let secrets: Vec<String> = request
        .secrets
        .iter()
        .map(|bytes| match scheme {
            Scheme::Standard => format!("whsec_{}", BASE64.encode(bytes)),
            _ => format!("\u{1}{}\u{1}", String::from_utf8_lossy(bytes)),
        })
        .collect();
    let Ok(verifier) = Verifier::new(scheme, &secrets) else {
        return;
    };
    let verifier = verifier.with_tolerance(Duration::from_secs(request.tolerance_secs.into()));
    let verdict = verifier.verify(&request.headers[..], &request.body, request.now);
    let Err(error) = verdict else {
        return;
    };
    let text = error.to_string();
    assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
    for secret in &secrets {
        let carried = request
            .headers
            .iter()
            .any(|(name, value)| name.contains(secret.as_str()) || value.contains(secret.as_str()));
        assert!(carried || !text.contains(secret.as_str()), "{text:?}");
    }
});
