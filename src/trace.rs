//! An event's journey: the W3C trace context the application's transaction wrote with the
//! event (`SET LOCAL hookrelay.traceparent`, checked by the database), a new span for every
//! attempt whose id is the parent id the receiver gets in `traceparent`, and the worker's
//! OpenTelemetry spans (fan-out claim, attempts) exported over OTLP/HTTP.
//!
//! The exporter is opentelemetry-otlp's; spans go through a batch processor on the worker's
//! tokio runtime and are flushed when the worker stops.

use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    span_processor_with_async_runtime::BatchSpanProcessor, IdGenerator, RandomIdGenerator,
    SdkTracer, SdkTracerProvider, Span,
};
use opentelemetry_sdk::Resource;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::pipeline::claim::Job;
use crate::pipeline::deliver::Attempt;

/// Errors from setting up span export.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "--otlp-endpoint {0:?} is not an http:// or https:// URL: give the collector's OTLP/HTTP \
         address, such as http://127.0.0.1:4318 (spans go to /v1/traces under it)"
    )]
    Endpoint(String),
    #[error("cannot export spans over OTLP/HTTP: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The trace context an event was written with, as the database kept it (valid or `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTrace {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// What an attempt sends: `traceparent` with the event's trace id and this attempt's span id,
/// and `tracestate` as the application set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// Adds `traceparent` and `tracestate` to a request's headers. The database checked both
    /// as W3C values (printable ASCII), so a value HTTP refuses only comes from a row written
    /// around its checks: it is left out.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        let pairs = [
            ("traceparent", Some(&self.traceparent)),
            ("tracestate", self.tracestate.as_ref()),
        ];
        for (name, value) in pairs {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

/// A parsed `traceparent`: version 00, ids not all zero. The database admits nothing else;
/// parsing again keeps a row written with its checks bypassed from reaching a receiver.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if parts.next().is_some()
        || version != "00"
        || trace.len() != 32
        || parent.len() != 16
        || flags.len() != 2
        || ![trace, parent, flags].into_iter().all(lower_hex)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(parent).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some((
        trace_id,
        span_id,
        TraceFlags::new(flags),
    ))
}

/// `traceparent` for a request: version 00, with the flags as they came.
pub fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace_id}-{span_id}-{:02x}", flags.to_u8())
}

impl EventTrace {
    /// The application's span as the remote parent of the worker's spans.
    fn parent(&self) -> Option<SpanContext> {
        let (trace_id, span_id, flags) = parse_traceparent(self.traceparent.as_deref()?)?;
        let state = self
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }
}

/// Span export, or none. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    export: Option<(SdkTracerProvider, SdkTracer)>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.export.is_some())
            .finish()
    }
}

/// True when the standard variables ask for span export without `--otlp-endpoint`.
fn endpoint_in_environment() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The traces URL for `--otlp-endpoint`: like `OTEL_EXPORTER_OTLP_ENDPOINT`, a base to which
/// `/v1/traces` is added (unless it is already there).
pub fn traces_url(endpoint: &str) -> Result<String, TraceError> {
    let trimmed = endpoint.trim();
    let url = url::Url::parse(trimmed).map_err(|_| TraceError::Endpoint(trimmed.into()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TraceError::Endpoint(trimmed.into()));
    }
    let base = trimmed.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    })
}

impl Telemetry {
    /// Exports to `endpoint`, or where the standard `OTEL_EXPORTER_OTLP_*` variables say;
    /// no export when neither is set. Must be called inside the worker's tokio runtime.
    pub fn start(endpoint: Option<&str>) -> Result<Self, TraceError> {
        let url = endpoint
            .filter(|e| !e.trim().is_empty())
            .map(traces_url)
            .transpose()?;
        if url.is_none() && !endpoint_in_environment() {
            return Ok(Telemetry::default());
        }
        // The exporter's client speaks TLS to https:// collectors with the same provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Some(url) = url {
            use opentelemetry_otlp::WithExportConfig;
            builder = builder.with_endpoint(url);
        }
        let exporter = builder.build()?;
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|s| !s.trim().is_empty()) {
            // Resource::builder() has read it.
        } else {
            resource = resource.with_service_name("hookrelay");
        }
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("hookrelay");
        Ok(Telemetry {
            export: Some((provider, tracer)),
        })
    }

    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Sends the spans still queued and stops the exporter. Blocking work, so it runs off the
    /// runtime's threads (the batch processor's task needs them to finish).
    pub async fn shutdown(&self) {
        let Some((provider, _)) = self.export.clone() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "could not send the last spans to the OTLP endpoint");
        }
    }

    /// Starts the span of one attempt: a child of the event's trace when it has one. Its id
    /// is the parent id sent in `traceparent`, so the receiver's spans hang under it.
    pub fn start_attempt(&self, job: &Job) -> AttemptSpan {
        let parent = job.trace.parent();
        let span = self.export.as_ref().map(|(_, tracer)| {
            let cx = match &parent {
                Some(sc) => Context::new().with_remote_span_context(sc.clone()),
                None => Context::new(),
            };
            tracer
                .span_builder("hookrelay.attempt")
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("hookrelay.endpoint", job.target.name.clone()),
                    KeyValue::new(
                        "hookrelay.event_id",
                        crate::pipeline::payload::event_id(&job.event.id),
                    ),
                    KeyValue::new("hookrelay.event", job.event.event.clone()),
                    KeyValue::new("hookrelay.delivery_id", job.delivery_id),
                    KeyValue::new("hookrelay.attempt", i64::from(job.attempt)),
                    KeyValue::new("http.request.method", "POST"),
                ])
                .start_with_context(tracer, &cx)
        });
        // Without export, the attempt still gets a span id of its own.
        let sent = match (&span, &parent) {
            (Some(span), _) => Some(span.span_context().clone()),
            (None, Some(p)) => Some(SpanContext::new(
                p.trace_id(),
                RandomIdGenerator::default().new_span_id(),
                p.trace_flags(),
                false,
                TraceState::default(),
            )),
            (None, None) => None,
        };
        let headers = sent.filter(|_| job.target.trace_context).map(|sc| {
            // The application's flags, not the sampler's verdict on the worker's span.
            let flags = parent
                .as_ref()
                .map_or(sc.trace_flags(), |p| p.trace_flags());
            TraceHeaders {
                traceparent: format_traceparent(sc.trace_id(), sc.span_id(), flags),
                tracestate: parent.and(job.trace.tracestate.clone()),
            }
        });
        AttemptSpan { span, headers }
    }

    /// Records a fan-out claim as a span of its own, linked to the traces of the events it
    /// took.
    pub fn claimed(&self, started: SystemTime, events: usize, jobs: &[Job]) {
        let Some((_, tracer)) = self.export.as_ref().filter(|_| events > 0) else {
            return;
        };
        let links = jobs
            .iter()
            .filter_map(|j| j.trace.parent())
            .take(128)
            .map(opentelemetry::trace::Link::with_context)
            .collect();
        let mut span = tracer
            .span_builder("hookrelay.fan_out")
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_links(links)
            .with_attributes([
                KeyValue::new("hookrelay.events_claimed", events as i64),
                KeyValue::new("hookrelay.deliveries", jobs.len() as i64),
            ])
            .start(tracer);
        span.end();
    }
}

/// An attempt's span (when exporting) and the headers the attempt sends.
pub struct AttemptSpan {
    span: Option<Span>,
    headers: Option<TraceHeaders>,
}

impl AttemptSpan {
    /// The `traceparent`/`tracestate` to send; `None` when the event has no trace context
    /// (and nothing is exported) or the endpoint has `trace_context` off.
    pub fn headers(&self) -> Option<TraceHeaders> {
        self.headers.clone()
    }

    /// Ends the span with what the attempt came to.
    pub fn end(self, result: &Attempt, outcome: &str) {
        let Some(mut span) = self.span else {
            return;
        };
        if let Some(status) = result.status {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        span.set_attribute(KeyValue::new(
            "hookrelay.duration_ms",
            result.duration.as_secs_f64() * 1000.0,
        ));
        span.set_attribute(KeyValue::new("hookrelay.outcome", outcome.to_string()));
        if let Some(error) = &result.error {
            span.set_attribute(KeyValue::new("error.type", error.code.as_str()));
            span.set_status(Status::error(error.code.as_str()));
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_with_its_flags() {
        let (trace, span, flags) = parse_traceparent(PARENT).unwrap();
        assert_eq!(format_traceparent(trace, span, flags), PARENT);
        let odd = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        let (t, s, f) = parse_traceparent(odd).unwrap();
        assert_eq!(format_traceparent(t, s, f), odd);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn otlp_endpoints_are_bases_for_v1_traces() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example.com/v1/traces/").unwrap(),
            "https://otel.example.com/v1/traces"
        );
        for bad in ["127.0.0.1:4318", "grpc://x:4317", "not a url"] {
            let err = traces_url(bad).unwrap_err().to_string();
            assert!(
                err.contains("--otlp-endpoint") && err.contains("http://"),
                "{err}"
            );
        }
    }
}
