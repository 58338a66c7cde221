//! Delivery: one signed HTTP POST per attempt, and what came back, classified.
//!
//! 2xx is success. Anything else is a failed attempt with a stable error code: a non-2xx
//! answer (`http_status`, redirects included, since they are never followed; `gone` for
//! `410 Gone`), a `timeout` (covering name resolution, connect, headers and body), a `connect`
//! failure, or another `network` error. Some attempts are refused before anything is sent: a
//! receiver on a non-public address (`blocked_address`, see [`guard`](crate::pipeline::guard)) or a body
//! above the size limit (`payload_too_large`).
//!
//! Only `http` and `https` are spoken, TLS certificates are always verified (nothing here
//! turns verification off), proxies from the environment are ignored (a proxy would resolve
//! names itself, past the guard), and at most `excerpt_bytes` of a response body are read.

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::pipeline::claim::Job;
use crate::pipeline::guard::{AllowList, Blocked, GuardedResolver};
use crate::pipeline::payload;
use crate::pipeline::retry::human_duration;
use crate::sign;
use crate::trace::Telemetry;

/// Stable error codes, stored as text in `hookrelay.attempts.error_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No complete answer within the endpoint's timeout: no response headers in time, or a
    /// body still arriving when the time ran out.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect,
    /// The receiver answered with a status other than 2xx.
    HttpStatus,
    /// The connection failed after it was made (reset, malformed answer).
    Network,
    /// The request could not be signed (a malformed secret); retrying cannot help.
    Signing,
    /// The request could not be built (a malformed URL); retrying cannot help.
    InvalidRequest,
    /// The worker stopped before recording a result (logged by the claim that found it).
    LeaseExpired,
    /// The receiver's address is not public and no `--allow-network` opens it.
    BlockedAddress,
    /// The body is larger than `--max-payload-bytes`; it was not sent.
    PayloadTooLarge,
    /// The receiver answered `410 Gone`: the endpoint is disabled.
    Gone,
    /// The event's stored JSON could not be read into a payload; retrying cannot help.
    PayloadInvalid,
}

impl ErrorCode {
    /// The text stored in the attempts table.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::Timeout => "timeout",
            ErrorCode::Connect => "connect",
            ErrorCode::HttpStatus => "http_status",
            ErrorCode::Network => "network",
            ErrorCode::Signing => "signing",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::LeaseExpired => "lease_expired",
            ErrorCode::BlockedAddress => "blocked_address",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Gone => "gone",
            ErrorCode::PayloadInvalid => "payload_invalid",
        }
    }

    /// True when another attempt cannot succeed either (until an operator changes something:
    /// the endpoint, `--allow-network`, or `--max-payload-bytes`).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ErrorCode::Signing
                | ErrorCode::InvalidRequest
                | ErrorCode::PayloadInvalid
                | ErrorCode::BlockedAddress
                | ErrorCode::PayloadTooLarge
                | ErrorCode::Gone
        )
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptError {
    pub code: ErrorCode,
    pub message: String,
}

/// What one attempt did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// `None` for a 2xx answer.
    pub error: Option<AttemptError>,
    /// The start of the response body, capped.
    pub excerpt: Option<String>,
    /// A `Retry-After` the receiver asked for with a 429 or 503.
    pub retry_after: Option<Duration>,
}

/// Settings for the HTTP client.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Request timeout for endpoints without their own.
    pub default_timeout: Duration,
    /// Bytes of each response body kept in the attempts table.
    pub excerpt_bytes: usize,
    /// Idle keep-alive connections kept per host.
    pub idle_per_host: usize,
    /// Non-public networks receivers may be on (everything public always is).
    pub allow: AllowList,
    /// Largest body sent; larger ones end `payload_too_large` without being sent.
    pub max_payload_bytes: usize,
}

/// Errors from building the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Sends attempts; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    config: SenderConfig,
    telemetry: Telemetry,
}

impl Sender {
    /// A client that never follows redirects, keeps connections alive, and connects only to
    /// addresses the guard allows.
    pub fn new(config: SenderConfig) -> Result<Self, DeliverError> {
        // Fails only when a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(crate::USER_AGENT)
            .pool_max_idle_per_host(config.idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy()
            .dns_resolver(GuardedResolver::new(config.allow.clone()))
            .build()?;
        Ok(Sender {
            client,
            config,
            telemetry: Telemetry::default(),
        })
    }

    /// The same sender, exporting attempt spans to `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Where this sender's spans go.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Makes one attempt of `job`. Never fails: every problem is an [`Attempt`] error.
    pub async fn send(&self, job: &Job) -> Attempt {
        let started_at = Utc::now();
        let clock = Instant::now();
        let timeout = job.target.timeout.unwrap_or(self.config.default_timeout);
        let request = self
            .request(job, started_at.timestamp())
            .and_then(|request| {
                // Names are checked by the resolver as the connection is made; literals here.
                self.config
                    .allow
                    .check_url(request.url())
                    .map_err(|b| AttemptError {
                        code: ErrorCode::BlockedAddress,
                        message: b.to_string(),
                    })?;
                Ok(request)
            });
        let mut attempt = match request {
            Ok(request) => {
                let answered = AtomicU16::new(0);
                match tokio::time::timeout(timeout, self.exchange(request, &answered)).await {
                    Ok(result) => result,
                    Err(_) => timed_out(timeout, answered.into_inner()),
                }
            }
            Err(error) => Attempt {
                error: Some(error),
                ..Attempt::none()
            },
        };
        attempt.started_at = started_at;
        attempt.duration = clock.elapsed();
        attempt
    }

    fn request(&self, job: &Job, timestamp: i64) -> Result<reqwest::Request, AttemptError> {
        let body = payload::body_for(&job.event, &job.target.shaping);
        if body.len() > self.config.max_payload_bytes {
            return Err(AttemptError {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "the payload is {} bytes, above the {} allowed (--max-payload-bytes): not sent",
                    body.len(),
                    self.config.max_payload_bytes
                ),
            });
        }
        let id = payload::event_id(&job.event.id);
        let message = sign::Message {
            id: &id,
            event: &job.event.event,
            timestamp,
            body: &body,
        };
        let signed =
            sign::headers(job.target.scheme, &job.target.secrets(), &message).map_err(|e| {
                AttemptError {
                    code: ErrorCode::Signing,
                    message: e.to_string(),
                }
            })?;
        let mut headers = static_headers(&job.target.headers)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(trace) = &job.trace_headers {
            trace.insert_into(&mut headers);
        }
        for (name, value) in signed {
            let value = HeaderValue::from_str(&value).map_err(|_| AttemptError {
                code: ErrorCode::InvalidRequest,
                message: format!("header {name} has characters HTTP does not allow"),
            })?;
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("signing uses valid header names"),
                value,
            );
        }
        self.client
            .post(&job.target.url)
            .headers(headers)
            .body(body)
            .build()
            .map_err(|e| AttemptError {
                code: ErrorCode::InvalidRequest,
                message: describe(&e),
            })
    }

    /// Sends `request` and reads the answer. `answered` gets the status as soon as the
    /// response headers are in, so that a timeout can say which part was too slow.
    async fn exchange(&self, request: reqwest::Request, answered: &AtomicU16) -> Attempt {
        let mut response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(e) => return failed(classify(&e), describe(&e)),
        };
        let status = response.status();
        answered.store(status.as_u16(), Ordering::Relaxed);
        let retry_after = match status.as_u16() {
            429 | 503 => response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now())),
            _ => None,
        };
        let mut kept = Vec::new();
        let mut body_error = None;
        while kept.len() < self.config.excerpt_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        let error = if status == reqwest::StatusCode::GONE {
            Some(AttemptError {
                code: ErrorCode::Gone,
                message: "HTTP 410 Gone: the receiver says this endpoint is gone; hookrelay \
                          disabled it and cancelled its pending deliveries"
                    .into(),
            })
        } else if !status.is_success() {
            Some(AttemptError {
                code: ErrorCode::HttpStatus,
                message: format!("HTTP {status}"),
            })
        } else {
            body_error.map(|e| AttemptError {
                code: classify(&e),
                message: describe(&e),
            })
        };
        Attempt {
            status: Some(status.as_u16()),
            error,
            excerpt: excerpt(&kept, self.config.excerpt_bytes),
            retry_after,
            ..Attempt::none()
        }
    }
}

/// Header names hookrelay sets itself or that frame the request, in lower case. The SQL
/// function `hookrelay.is_reserved_header` holds the same list; a test reads it back from the
/// database and compares.
pub const RESERVED_HEADERS: [&str; 15] = [
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-connection",
    "user-agent",
    "traceparent",
    "tracestate",
];

/// Prefixes of the signature and id headers the signing schemes send, in lower case.
pub const RESERVED_PREFIXES: [&str; 2] = ["x-webhook-", "webhook-"];

/// True for header names an endpoint's static headers may not use: [`RESERVED_HEADERS`] and
/// those starting with one of [`RESERVED_PREFIXES`], in any case. The endpoints trigger
/// (`hookrelay.is_reserved_header`) refuses the same names.
pub fn is_reserved_header(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    RESERVED_HEADERS.contains(&lower.as_str())
        || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// An endpoint's static headers as a header map. Reserved names are skipped even though the
/// endpoints trigger refuses them, so a row written with the trigger disabled still cannot
/// replace a signature.
fn static_headers(list: &[(String, String)]) -> Result<HeaderMap, AttemptError> {
    let mut headers = HeaderMap::with_capacity(list.len() + 8);
    for (name, value) in list {
        if is_reserved_header(name) {
            tracing::warn!(header = %name, "skipping a static header that hookrelay sets itself");
            continue;
        }
        let invalid = || AttemptError {
            code: ErrorCode::InvalidRequest,
            // The value may be a token: name the header only.
            message: format!("static header {name:?} is not a valid HTTP header"),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

impl Attempt {
    /// Whether the receiver answered `410 Gone`, which disables its endpoint.
    pub fn is_gone(&self) -> bool {
        self.error.as_ref().map(|e| e.code) == Some(ErrorCode::Gone)
    }

    /// An attempt that did nothing yet, to fill in.
    pub fn none() -> Attempt {
        Attempt {
            started_at: Utc::now(),
            duration: Duration::ZERO,
            status: None,
            error: None,
            excerpt: None,
            retry_after: None,
        }
    }
}

/// The attempt when the endpoint's timeout ran out: before the response headers were complete
/// (`status` 0: the receiver said nothing, or too slowly), or while the body was arriving.
fn timed_out(timeout: Duration, status: u16) -> Attempt {
    let within = human_duration(timeout);
    let Some(status) = reqwest::StatusCode::from_u16(status).ok() else {
        return failed(
            ErrorCode::Timeout,
            format!(
                "timed out after {within} before the response headers were complete: the \
                 receiver did not answer in time, or answered too slowly"
            ),
        );
    };
    Attempt {
        status: Some(status.as_u16()),
        ..failed(
            ErrorCode::Timeout,
            format!(
                "timed out after {within} while reading the response body: HTTP {status} \
                 arrived, but the body was too slow"
            ),
        )
    }
}

fn failed(code: ErrorCode, message: String) -> Attempt {
    Attempt {
        error: Some(AttemptError { code, message }),
        ..Attempt::none()
    }
}

/// The guard's refusal behind a client error, when the resolver refused the name.
fn blocked_in(e: &reqwest::Error) -> Option<&Blocked> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(blocked) = err.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        current = err.source();
    }
    None
}

fn classify(e: &reqwest::Error) -> ErrorCode {
    if blocked_in(e).is_some() {
        ErrorCode::BlockedAddress
    } else if e.is_timeout() {
        ErrorCode::Timeout
    } else if e.is_connect() {
        ErrorCode::Connect
    } else if e.is_builder() {
        ErrorCode::InvalidRequest
    } else {
        ErrorCode::Network
    }
}

/// The error and its causes on one line, without the URL (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    if let Some(blocked) = blocked_in(e) {
        return blocked.to_string();
    }
    let mut out = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        current = err.source();
    }
    if let Some(url) = e.url() {
        out = out.replace(url.as_str(), "<url>");
    }
    out
}

/// The first `cap` bytes of a body as text; NUL bytes, which PostgreSQL text cannot hold,
/// become U+FFFD.
pub fn excerpt(body: &[u8], cap: usize) -> Option<String> {
    if body.is_empty() || cap == 0 {
        return None;
    }
    let mut end = body.len().min(cap);
    let text = loop {
        // Cut at a character boundary rather than leave half a character.
        match std::str::from_utf8(&body[..end]) {
            Ok(text) => break text.to_string(),
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => end = e.valid_up_to(),
            Err(_) => break String::from_utf8_lossy(&body[..end]).into_owned(),
        }
    };
    Some(text.replace('\0', "\u{FFFD}"))
}

/// Parses `Retry-After`: delay seconds, or an HTTP date (taken relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
