//! Signing and verifying agree: whatever the secrets, id, timestamp and body, the headers
//! hookrelay signs verify with each secret that signed them, and a changed body or timestamp
//! never does.

#![no_main]

use arbitrary::Arbitrary;
use hookrelay_verify::sign::{self, Message, Scheme};
use hookrelay_verify::verify::{Verifier, VerifyError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Delivery {
    scheme: u8,
    secret: String,
    previous: Option<String>,
    /// The event id is always `evt_<uuid>`.
    id: [u8; 16],
    event: String,
    /// Unix seconds at sending time: never negative.
    timestamp: u32,
    body: Vec<u8>,
    flip: usize,
}

const SCHEMES: [Scheme; 3] = [Scheme::Hookrelay, Scheme::BodyHex, Scheme::Standard];

fuzz_target!(|d: Delivery| {
    let scheme = SCHEMES[usize::from(d.scheme) % SCHEMES.len()];
    let id = hookrelay::pipeline::payload::event_id(&uuid::Uuid::from_bytes(d.id));
    let timestamp = i64::from(d.timestamp);
    let message = Message {
        id: &id,
        event: &d.event,
        timestamp,
        body: &d.body,
    };
    let mut secrets = vec![d.secret.as_str()];
    secrets.extend(d.previous.as_deref());
    let headers = match sign::headers(scheme, &secrets, &message) {
        Ok(headers) => headers,
        Err(_) => {
            // Only a standard-webhooks secret that is not whsec_ base64 can fail to sign.
            assert_eq!(scheme, Scheme::Standard);
            assert!(secrets.iter().any(|s| sign::standard_key(s).is_err()));
            return;
        }
    };
    for (index, secret) in secrets.iter().enumerate() {
        let verifier = Verifier::new(scheme, &[secret]).expect("a secret that signed verifies");
        let verified = verifier
            .verify(&headers[..], &d.body, timestamp)
            .unwrap_or_else(|e| panic!("secret {index} signed but does not verify: {e}"));
        assert_eq!(verified.secret, 0);
    }
    let both = Verifier::new(scheme, &secrets).unwrap();
    assert_eq!(
        both.verify(&headers[..], &d.body, timestamp)
            .unwrap()
            .secret,
        0
    );

    if !d.body.is_empty() {
        let mut changed = d.body.clone();
        let at = d.flip % changed.len();
        changed[at] ^= 0x01;
        assert_eq!(
            both.verify(&headers[..], &changed, timestamp),
            Err(VerifyError::BadSignature)
        );
    }
    if scheme != Scheme::BodyHex {
        let stamp = if scheme == Scheme::Standard {
            "webhook-timestamp"
        } else {
            "X-Webhook-Timestamp"
        };
        let later = (timestamp + 1).to_string();
        let moved: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == stamp {
                        later.clone()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        assert_eq!(
            both.verify(&moved[..], &d.body, timestamp),
            Err(VerifyError::BadSignature)
        );
    }
});
