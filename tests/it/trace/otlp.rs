//! The worker's spans over OTLP/HTTP, decoded by a collector on 127.0.0.1 with the protobuf
//! types of opentelemetry-proto.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::{APP_SPAN, PARENT, TRACE_ID};
use crate::support::{Receiver, Reply, TestDb};

/// A collector that keeps every span it is sent, with the path it was sent to.
struct Collector {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.push((uri.path().to_string(), span));
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { addr, spans }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

/// Each attempt span is in the app's trace, under the app's span, and is the parent the
/// receiver was sent; it names the endpoint and event.
fn each_attempt_continues_the_apps_trace(
    got: &[crate::support::Request],
    attempts: &[&Span],
    event_id: uuid::Uuid,
) {
    for (request, span) in got.iter().zip(attempts) {
        let header: Vec<&str> = request.header("traceparent").split('-').collect();
        // The app's trace id == the receiver's == the span's.
        assert_eq!(header[1], TRACE_ID);
        assert_eq!(hex::encode(&span.trace_id), TRACE_ID);
        // The span hangs under the app's span; the receiver's parent is the span.
        assert_eq!(hex::encode(&span.parent_span_id), APP_SPAN);
        assert_eq!(header[2], hex::encode(&span.span_id));
        assert_eq!(
            attribute(span, "hookrelay.endpoint"),
            Some(Value::StringValue("crm".into()))
        );
        assert_eq!(
            attribute(span, "hookrelay.event_id"),
            Some(Value::StringValue(format!("evt_{event_id}")))
        );
        assert!(
            attribute(span, "hookrelay.duration_ms").is_some(),
            "{span:?}"
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
}

/// Both attempts carry their status; the failed one its error type.
fn the_failed_attempt_says_why(attempts: &[&Span]) {
    let statuses: Vec<Option<Value>> = attempts
        .iter()
        .map(|s| attribute(s, "http.response.status_code"))
        .collect();
    assert!(
        statuses.contains(&Some(Value::IntValue(503))),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&Some(Value::IntValue(200))),
        "{statuses:?}"
    );
    let failed = attempts
        .iter()
        .find(|s| attribute(s, "http.response.status_code") == Some(Value::IntValue(503)))
        .unwrap();
    assert_eq!(
        attribute(failed, "error.type"),
        Some(Value::StringValue("http_status".into()))
    );
}

#[tokio::test]
async fn attempt_spans_are_exported_as_children_of_the_apps_span() {
    let db = TestDb::new().await;
    let collector = Collector::start().await;
    let receiver = Receiver::with(|_, n| Reply::status(if n == 0 { 503 } else { 200 })).await;
    db.endpoint("crm", &receiver.url("/"), "whsec-otlp-secret")
        .await;
    let event_id: uuid::Uuid = db
        .client
        .query_one(
            "SELECT hookrelay.emit('order.paid', '{\"id\": 7}', traceparent => $1)",
            &[&PARENT],
        )
        .await
        .unwrap()
        .get(0);
    let mut config = db.config();
    config.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let worker = db.start_worker(config);
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    // Stopping flushes the spans still queued.
    worker.stop().await;
    let spans = collector.spans();
    assert!(
        spans.iter().all(|(path, _)| path == "/v1/traces"),
        "{spans:?}"
    );
    let attempts: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "hookrelay.attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{spans:?}");
    each_attempt_continues_the_apps_trace(&got, &attempts, event_id);
    the_failed_attempt_says_why(&attempts);
    // The fan-out claim that took the event, linked to its trace.
    let claim = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "hookrelay.fan_out")
        .expect("a fan-out span");
    assert!(claim
        .links
        .iter()
        .any(|l| hex::encode(&l.trace_id) == TRACE_ID && hex::encode(&l.span_id) == APP_SPAN));
}
