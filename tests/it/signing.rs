//! Signatures end to end: real deliveries from a running worker, checked by recomputing the
//! HMACs here and by the README's receiver snippets run in Node, Python and Ruby (and the Django
//! document's Node function), in every scheme and during a secret rotation.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hookrelay::sign::{self, Scheme};
use hookrelay::verify::Verifier;
use serde_json::json;

use crate::snippets::{Case, ALL_SCHEMES, DJANGO_NODE};
use crate::support::{binary, hmac_hex, Receiver, Request, TestDb};

const SCHEMES: [(&str, Scheme); 3] = [
    ("hookrelay", Scheme::Hookrelay),
    ("body-hex", Scheme::BodyHex),
    ("standard", Scheme::Standard),
];

/// Adds an endpoint with SQL, as an operator may.
async fn endpoint(db: &TestDb, name: &str, url: &str, scheme: &str, secret: &str) {
    db.client
        .execute(
            "INSERT INTO hookrelay.endpoints (name, url, secret, signature_scheme) \
             VALUES ($1, $2, $3, $4)",
            &[&name, &url, &secret, &scheme],
        )
        .await
        .expect("insert endpoint");
}

/// Emits one event (with non-ASCII text, so encodings matter) and returns the `n` requests
/// the receiver got for it, by path.
async fn deliver(db: &TestDb, receiver: &Receiver, n: usize) -> Vec<Request> {
    let before = receiver.requests().len();
    let worker = db.start_worker(db.config());
    db.emit(
        "order.paid",
        json!({"id": "42", "customer": "Zoë Ångström", "note": "✓ \"paid\" \\ 100%"}),
    )
    .await;
    let got = receiver.wait_for(before + n, Duration::from_secs(15)).await;
    worker.stop().await;
    assert_eq!(got.len(), before + n, "every endpoint got the event");
    let mut new = got[before..].to_vec();
    new.sort_by(|a, b| a.path.cmp(&b.path));
    new
}

/// The signatures a request carries, split as the scheme separates them.
fn signatures(scheme: Scheme, request: &Request) -> Vec<String> {
    match scheme {
        Scheme::Standard => request
            .header("webhook-signature")
            .split(' ')
            .map(String::from)
            .collect(),
        _ => request
            .header("x-webhook-signature")
            .split(',')
            .map(String::from)
            .collect(),
    }
}

/// The signature `secret` gives this request, computed here from the scheme's definition.
fn expected(scheme: Scheme, secret: &str, request: &Request) -> String {
    let body = &request.body;
    match scheme {
        Scheme::Hookrelay => {
            let ts = request.header("x-webhook-timestamp");
            let msg = [ts.as_bytes(), b".", body].concat();
            format!("sha256={}", hmac_hex(secret.as_bytes(), &msg))
        }
        Scheme::BodyHex => hmac_hex(secret.as_bytes(), body),
        Scheme::Standard => {
            let key = BASE64
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            let id = request.header("webhook-id");
            let ts = request.header("webhook-timestamp");
            let msg = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
            format!(
                "v1,{}",
                BASE64.encode(hex::decode(hmac_hex(&key, &msg)).unwrap())
            )
        }
    }
}

/// The same body and event, correctly signed an hour ago: only the timestamp check refuses it.
fn stale(scheme: Scheme, secret: &str, case: &Case) -> Case {
    let id = case.headers["x-webhook-event-id"].clone();
    let msg = sign::Message {
        id: &id,
        event: "order.paid",
        timestamp: chrono::Utc::now().timestamp() - 3600,
        body: &case.body,
    };
    let mut old = case.clone();
    for (name, value) in sign::headers(scheme, &[secret], &msg).unwrap() {
        old.headers.insert(name.to_ascii_lowercase(), value);
    }
    old
}

#[tokio::test]
async fn readme_snippets_verify_real_deliveries_in_every_scheme() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let mut secrets = Vec::new();
    for (name, scheme) in SCHEMES {
        let secret = sign::generate_secret(scheme);
        endpoint(&db, name, &receiver.url(&format!("/{name}")), name, &secret).await;
        secrets.push(secret);
    }
    let requests = deliver(&db, &receiver, 3).await;
    // Sorted by path: body-hex, hookrelay, standard.
    let order = [1, 0, 2];
    let mut cases = Vec::new();
    for (request, i) in requests.iter().zip(order) {
        let (name, scheme) = SCHEMES[i];
        let secret = &secrets[i];
        assert_eq!(request.path, format!("/{name}"));
        assert_eq!(
            signatures(scheme, request),
            [expected(scheme, secret, request)]
        );
        let case = Case::from_request(name, secret, request);
        let wrong = sign::generate_secret(scheme);
        cases.push((case.clone(), true, "the delivery"));
        cases.push((case.tampered(), false, "a changed body"));
        cases.push((case.with_secret(&wrong), false, "another secret"));
        if scheme != Scheme::BodyHex {
            cases.push((stale(scheme, secret, &case), false, "an hour-old timestamp"));
        }
    }
    for language in ALL_SCHEMES {
        language.assert_verdicts(&cases);
    }
}

#[tokio::test]
async fn the_django_documents_node_function_verifies_hookrelay_deliveries_as_written() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let secret = "your-signing-secret";
    endpoint(&db, "crm", &receiver.url("/crm"), "hookrelay", secret).await;
    let request = &deliver(&db, &receiver, 1).await[0];
    let case = Case::from_request("hookrelay", secret, request);
    DJANGO_NODE.assert_verdicts(&[
        (case.clone(), true, "the delivery"),
        (case.tampered(), false, "a changed body"),
        (case.with_secret("secret_123"), false, "another secret"),
    ]);
}

fn rotate(db: &TestDb, name: &str, secret: &str) -> String {
    let out = std::process::Command::new(binary())
        .args(["endpoint", "rotate-secret", name, "--secret", secret])
        .args(["--grace", "1h"])
        .env("HOOKRELAY_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text
}

/// One endpoint per scheme, each rotated from an old to a new secret, the command printing
/// neither; returns each (old, new).
async fn rotated_endpoints(db: &TestDb, receiver: &Receiver) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (name, scheme) in SCHEMES {
        let old = sign::generate_secret(scheme);
        let new = sign::generate_secret(scheme);
        endpoint(db, name, &receiver.url(&format!("/{name}")), name, &old).await;
        let said = rotate(db, name, &new);
        assert!(!said.contains(&new) && !said.contains(&old), "{said}");
        assert!(said.contains(&sign::fingerprint(&old)) && said.contains("until"));
        pairs.push((old, new));
    }
    pairs
}

/// During the grace period a request carries both signatures, the new secret's first, and
/// each secret verifies it on its own.
fn assert_signed_by_both(
    name: &str,
    scheme: Scheme,
    (old, new): &(String, String),
    request: &Request,
) {
    // Both signatures, the new secret's first, each one valid on its own.
    assert_eq!(
        signatures(scheme, request),
        [
            expected(scheme, new, request),
            expected(scheme, old, request)
        ],
        "{name}"
    );
    let now = chrono::Utc::now().timestamp();
    for (secret, index) in [(old, 0), (new, 0)] {
        let verifier = Verifier::new(scheme, &[secret]).unwrap();
        assert_eq!(
            verifier
                .verify(&request.headers, &request.body, now)
                .unwrap()
                .secret,
            index
        );
    }
}

/// After the grace period only the new secret signs, and the old one no longer verifies.
fn assert_signed_by_new_only(scheme: Scheme, (old, new): &(String, String), request: &Request) {
    assert_eq!(
        signatures(scheme, request),
        [expected(scheme, new, request)]
    );
    let verifier = Verifier::new(scheme, &[old]).unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(verifier
        .verify(&request.headers, &request.body, now)
        .is_err());
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_either_verifies() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let pairs = rotated_endpoints(&db, &receiver).await;
    let requests = deliver(&db, &receiver, 3).await;
    let order = [1, 0, 2];
    let mut cases = Vec::new();
    for (request, i) in requests.iter().zip(order) {
        let (name, scheme) = SCHEMES[i];
        assert_signed_by_both(name, scheme, &pairs[i], request);
        let (old, new) = &pairs[i];
        let case = Case::from_request(name, new, request);
        cases.push((case.clone(), true, "the new secret"));
        cases.push((case.with_secret(old), true, "the old secret"));
        let wrong = sign::generate_secret(scheme);
        cases.push((case.with_secret(&wrong), false, "a third secret"));
        cases.push((case.with_secret(old).tampered(), false, "a changed body"));
    }
    for language in ALL_SCHEMES {
        language.assert_verdicts(&cases);
    }

    // Once the grace period is over by the database's clock, only the new secret signs.
    db.client
        .execute(
            "UPDATE hookrelay.endpoints \
             SET previous_secret_expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let requests = deliver(&db, &receiver, 3).await;
    for (request, i) in requests.iter().zip(order) {
        assert_signed_by_new_only(SCHEMES[i].1, &pairs[i], request);
    }
}
