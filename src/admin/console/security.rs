//! What keeps the console safe: the token check (constant-time, never logged), the CSRF token
//! every form carries, and the security headers on every response.
//!
//! A token is given once as `?token=…` (the console then sets an HttpOnly, SameSite=Strict
//! cookie holding a digest of it, not the token, and redirects to the same page without it) or
//! on every request as `Authorization: Bearer …`.

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The cookie that keeps a browser signed in.
pub const COOKIE: &str = "hookrelay_console";

/// The Content-Security-Policy of every response: nothing inline, nothing from elsewhere, no
/// framing, forms post only here.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// This process's secrets: the digest of the token (when one is required) and the CSRF token.
pub struct Keys {
    session: Option<[u8; 32]>,
    csrf: String,
}

fn digest(token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hookrelay console session\0");
    h.update(token.as_bytes());
    h.finalize().into()
}

impl Keys {
    /// Keys for a console that requires `token` (none: open to whoever reaches loopback).
    pub fn new(token: Option<&str>) -> Keys {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).expect("the operating system's random numbers");
        Keys {
            session: token.map(digest),
            csrf: hex::encode(random),
        }
    }

    /// The CSRF token forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// True when `given` is this process's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.csrf.as_bytes()).into()
    }

    fn token_matches(&self, expected: &[u8; 32], given: &str) -> bool {
        digest(given).ct_eq(expected).into()
    }

    fn cookie_matches(&self, expected: &[u8; 32], value: &str) -> bool {
        hex::decode(value)
            .map(|v| v.ct_eq(expected).into())
            .unwrap_or(false)
    }
}

/// Adds the security headers to a response.
pub fn harden(headers: &mut HeaderMap) {
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not no-referrer: under it browsers send `Origin: null` with the console's own form
        // posts, which the cross-site check must refuse. same-origin sends nothing elsewhere.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// What a request presented.
enum Presented<'a> {
    Nothing,
    Bearer(&'a str),
    Cookie(&'a str),
    Query(String),
}

fn presented(request: &Request) -> Presented<'_> {
    let headers = request.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Presented::Bearer(bearer.trim());
    }
    if let Some(token) = request.uri().query().and_then(query_token) {
        return Presented::Query(token);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    match cookie {
        Some(value) => Presented::Cookie(value),
        None => Presented::Nothing,
    }
}

fn query_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// A POST from another site (its browser says so) is refused whatever it carries.
fn cross_site(request: &Request) -> bool {
    if request.method() != Method::POST {
        return false;
    }
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site == "cross-site" || site == "same-site" {
            return true;
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => url::Url::parse(origin)
            .ok()
            .and_then(|u| {
                let h = u.host_str()?.to_string();
                Some(match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                })
            })
            .is_none_or(|o| !o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// Middleware around every route: refuses cross-site POSTs and requests without the token
/// (when one is required), and hardens every response.
pub async fn guard(State(keys): State<Arc<Keys>>, request: Request, next: Next) -> Response {
    let mut response = match check(&keys, &request) {
        Verdict::Pass => next.run(request).await,
        Verdict::Answer(answer) => answer,
    };
    harden(response.headers_mut());
    response
}

/// What [`check`] decided.
enum Verdict {
    /// On to the page.
    Pass,
    /// Answered here: a refusal, or the sign-in redirect.
    Answer(Response),
}

fn check(keys: &Keys, request: &Request) -> Verdict {
    if cross_site(request) {
        return Verdict::Answer(refuse(
            StatusCode::FORBIDDEN,
            "This request came from another site and was refused. Use the console's own forms.",
        ));
    }
    let Some(expected) = &keys.session else {
        return Verdict::Pass;
    };
    let ok = match presented(request) {
        Presented::Nothing => false,
        Presented::Bearer(t) => keys.token_matches(expected, t),
        Presented::Cookie(c) => keys.cookie_matches(expected, c),
        Presented::Query(t) => {
            if !keys.token_matches(expected, &t) {
                false
            } else {
                return Verdict::Answer(signed_in(expected, request));
            }
        }
    };
    if ok {
        Verdict::Pass
    } else {
        Verdict::Answer(refuse(
            StatusCode::UNAUTHORIZED,
            "This console needs its token. Open it as http://ADDRESS/?token=YOUR_TOKEN once \
             (or send Authorization: Bearer YOUR_TOKEN); the token is the --token \
             (HOOKRELAY_CONSOLE_TOKEN) the console was started with.",
        ))
    }
}

/// Sets the session cookie and sends the browser to the same page without the token in it.
fn signed_in(session: &[u8; 32], request: &Request) -> Response {
    let rest: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k != "token")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut location = request.uri().path().to_string();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(rest)
                .finish(),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex::encode(session)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, v);
    }
    response
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    let page = super::layout::bare(status.canonical_reason().unwrap_or("Refused"), why);
    (status, page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves_and_cookies_hold_a_digest_not_the_token() {
        let keys = Keys::new(Some("a-long-enough-console-token"));
        let expected = keys.session.unwrap();
        assert!(keys.token_matches(&expected, "a-long-enough-console-token"));
        assert!(!keys.token_matches(&expected, "a-long-enough-console-tokem"));
        assert!(!keys.token_matches(&expected, ""));
        let cookie = hex::encode(expected);
        assert!(!cookie.contains("console-token"));
        assert!(keys.cookie_matches(&expected, &cookie));
        assert!(!keys.cookie_matches(&expected, "zz"));
        assert!(keys.csrf_matches(&keys.csrf.clone()));
        assert!(!keys.csrf_matches("0"));
    }
}
