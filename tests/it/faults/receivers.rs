//! Receivers that misbehave, each ending in the right attempt record (error code, status,
//! message, excerpt) and the right schedule (retry time, dead, or delivered). One table, one
//! event, one endpoint per fault; the receivers are raw TCP servers writing exact bytes, so
//! each fault is exactly what the table says.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookrelay::config::WorkerConfig;
use hookrelay::pipeline::retry::RetrySchedule;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{free_addr, Receiver, TestDb};

const SECRET: &str = "receiver-faults-secret-0123";
const HUGE: usize = 50 << 20;
const EXCERPT: usize = 1000;

/// What a raw receiver does once it has read a request.
#[derive(Clone)]
enum Fault {
    /// Writes these bytes, then closes cleanly.
    Answer(&'static str),
    /// Never answers.
    Hang,
    /// Starts a 200 answer, then resets the connection (RST) halfway through the body.
    ResetMidResponse,
    /// Resets the connection (RST) without answering.
    ResetAtOnce,
    /// Writes this answer one byte every 50 ms.
    Trickle(&'static str),
    /// Writes this answer's head at once, then its body one byte every 50 ms.
    SlowBody(&'static str),
    /// A 200 with a 50 MB body, written as fast as the client reads; counts bytes written.
    Huge(Arc<AtomicUsize>),
    /// Writes bytes that are not HTTP, then closes.
    Garbage,
}

/// Reads one request: headers, then as many body bytes as Content-Length says.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return true;
            }
        }
    }
}

async fn act(mut stream: TcpStream, fault: Fault) {
    if !read_request(&mut stream).await {
        return;
    }
    match fault {
        Fault::Answer(bytes) => {
            let _ = stream.write_all(bytes.as_bytes()).await;
            let _ = stream.shutdown().await;
            // Drain until the client closes, so closing never turns into a reset.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Fault::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        Fault::ResetMidResponse => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nthe first part";
            let _ = stream.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.set_zero_linger().unwrap();
            drop(stream); // RST, not FIN
        }
        Fault::ResetAtOnce => {
            stream.set_zero_linger().unwrap();
            drop(stream);
        }
        Fault::Trickle(bytes) => {
            for byte in bytes.as_bytes() {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Fault::SlowBody(answer) => {
            let (head, body) = answer.split_at(answer.find("\r\n\r\n").unwrap() + 4);
            let _ = stream.write_all(head.as_bytes()).await;
            for byte in body.as_bytes() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
            }
        }
        Fault::Huge(written) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b'x'; 64 << 10];
            while written.load(Ordering::SeqCst) < HUGE {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        }
        Fault::Garbage => {
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http at all\r\n\r\n")
                .await;
        }
    }
}

/// A raw TCP receiver on 127.0.0.1 doing `fault` to every request.
async fn raw(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(act(stream, fault.clone()));
        }
    });
    addr
}

/// What should follow the attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Delivered,
    /// Dead, and the endpoint disabled (410 Gone).
    Gone,
    /// Pending, retried this many seconds after the attempt started (a range).
    RetryIn(f64, f64),
}

struct Case {
    name: &'static str,
    addr: SocketAddr,
    timeout_ms: Option<i32>,
    code: Option<&'static str>,
    status: Option<i32>,
    /// Words the error message must contain (any one of them).
    error: &'static [&'static str],
    excerpt: Option<&'static str>,
    next: Next,
}

/// The schedule's only step, ±20 % jitter.
const SCHEDULED: Next = Next::RetryIn(24.0, 36.5);

/// Every fault, served on its own port: what its attempt must record and what comes next.
/// Redirects point at `elsewhere`; the huge answer counts what it wrote in `written`.
async fn cases(elsewhere: &Receiver, written: &Arc<AtomicUsize>) -> Vec<Case> {
    let moved: &'static str = Box::leak(
        format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {}\r\nContent-Length: 5\r\n\r\nmoved",
            elsewhere.url("/elsewhere")
        )
        .into_boxed_str(),
    );
    let refused = free_addr();
    let answer = |bytes| raw(Fault::Answer(bytes));
    vec![
        Case {
            name: "status-500",
            addr: answer("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops").await,
            timeout_ms: None,
            code: Some("http_status"),
            status: Some(500),
            error: &["HTTP 500 Internal Server Error"],
            excerpt: Some("oops"),
            next: SCHEDULED,
        },
        Case {
            name: "status-503-retry-after",
            addr: answer(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 600\r\nContent-Length: 4\r\n\r\nbusy",
            )
            .await,
            timeout_ms: None,
            code: Some("http_status"),
            status: Some(503),
            error: &["HTTP 503 Service Unavailable"],
            excerpt: Some("busy"),
            next: Next::RetryIn(599.0, 602.0),
        },
        Case {
            name: "status-429",
            addr: answer(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 90\r\nContent-Length: 4\r\n\r\nslow",
            )
            .await,
            timeout_ms: None,
            code: Some("http_status"),
            status: Some(429),
            error: &["HTTP 429 Too Many Requests"],
            excerpt: Some("slow"),
            next: Next::RetryIn(89.0, 92.0),
        },
        Case {
            name: "status-410",
            addr: answer("HTTP/1.1 410 Gone\r\nContent-Length: 4\r\n\r\ngone").await,
            timeout_ms: None,
            code: Some("gone"),
            status: Some(410),
            error: &["410 Gone"],
            excerpt: Some("gone"),
            next: Next::Gone,
        },
        Case {
            name: "status-301",
            addr: answer(moved).await,
            timeout_ms: None,
            code: Some("http_status"),
            status: Some(301),
            error: &["HTTP 301 Moved Permanently"],
            excerpt: Some("moved"),
            next: SCHEDULED,
        },
        Case {
            name: "hang",
            addr: raw(Fault::Hang).await,
            timeout_ms: Some(500),
            code: Some("timeout"),
            status: None,
            error: &["timed out after 500 ms before the response headers were complete"],
            excerpt: None,
            next: SCHEDULED,
        },
        Case {
            name: "refused",
            addr: refused,
            timeout_ms: None,
            code: Some("connect"),
            status: None,
            error: &["Connection refused"],
            excerpt: None,
            next: SCHEDULED,
        },
        Case {
            name: "reset-mid-response",
            addr: raw(Fault::ResetMidResponse).await,
            timeout_ms: None,
            code: Some("network"),
            status: Some(200),
            error: &["error decoding response body", "Connection reset by peer"],
            excerpt: Some("the first part"),
            next: SCHEDULED,
        },
        Case {
            name: "reset-before-answering",
            addr: raw(Fault::ResetAtOnce).await,
            timeout_ms: None,
            code: Some("network"),
            status: None,
            error: &["Connection reset by peer", "connection closed before message completed"],
            excerpt: None,
            next: SCHEDULED,
        },
        Case {
            name: "trickle",
            addr: raw(Fault::Trickle(
                "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789",
            ))
            .await,
            timeout_ms: Some(500),
            code: Some("timeout"),
            status: None,
            error: &["timed out after 500 ms before the response headers were complete"],
            excerpt: None,
            next: SCHEDULED,
        },
        Case {
            name: "slow-body",
            addr: raw(Fault::SlowBody(
                "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789",
            ))
            .await,
            timeout_ms: Some(500),
            code: Some("timeout"),
            status: Some(200),
            error: &["timed out after 500 ms while reading the response body: HTTP 200 OK arrived, but the body was too slow"],
            excerpt: None,
            next: SCHEDULED,
        },
        Case {
            name: "huge-response",
            addr: raw(Fault::Huge(written.clone())).await,
            timeout_ms: None,
            code: None,
            status: Some(200),
            error: &[],
            excerpt: None,
            next: Next::Delivered,
        },
        Case {
            name: "not-http",
            addr: raw(Fault::Garbage).await,
            timeout_ms: None,
            code: Some("network"),
            status: None,
            error: &["invalid HTTP version parsed"],
            excerpt: None,
            next: SCHEDULED,
        },
    ]
}

/// One endpoint per case, named after it, with the case's own timeout.
async fn add_endpoints(db: &TestDb, cases: &[Case]) {
    for case in cases {
        let id = db
            .endpoint(case.name, &format!("http://{}/hooks", case.addr), SECRET)
            .await;
        db.client
            .execute(
                "UPDATE hookrelay.endpoints SET timeout_ms = $2 WHERE id = $1",
                &[&id, &case.timeout_ms],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn every_receiver_fault_ends_in_the_right_record_and_schedule() {
    let elsewhere = Receiver::ok().await;
    let written = Arc::new(AtomicUsize::new(0));
    let cases = cases(&elsewhere, &written).await;

    let db = TestDb::new().await;
    add_endpoints(&db, &cases).await;
    db.emit("order.paid", json!({"id": "1"})).await;
    let config = WorkerConfig {
        retry_schedule: RetrySchedule::parse("30s").unwrap(),
        request_timeout: Duration::from_secs(2),
        excerpt_bytes: EXCERPT,
        ..db.config()
    };
    let worker = db.start_worker(config);
    let settled = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE attempts = 1 AND locked_until IS NULL",
            cases.len() as i64,
            Duration::from_secs(20),
        )
        .await;
    worker.stop().await;
    assert_eq!(
        settled,
        cases.len() as i64,
        "every fault's attempt was recorded"
    );

    for case in &cases {
        check(&db, case).await;
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was not followed"
    );
    let read = written.load(Ordering::SeqCst);
    assert!(
        read < HUGE / 2,
        "the 50 MB answer was read only up to the cap, yet {read} bytes were written"
    );
}

/// The attempt and delivery rows of `case`'s endpoint: what was recorded, and what comes next.
async fn check(db: &TestDb, case: &Case) {
    let name = case.name;
    let row = db
        .client
        .query_one(
            "SELECT a.error_code, a.status, a.error, a.response_excerpt, a.duration_ms,
                    d.state, extract(epoch FROM d.next_attempt_at - a.started_at)::float8,
                    d.last_error_code, ep.active, d.last_status
             FROM hookrelay.endpoints ep
             JOIN hookrelay.deliveries d ON d.endpoint_id = ep.id
             JOIN hookrelay.attempts a ON a.delivery_id = d.id
             WHERE ep.name = $1",
            &[&name],
        )
        .await
        .unwrap();
    let code: Option<String> = row.get(0);
    let status: Option<i32> = row.get(1);
    let error: Option<String> = row.get(2);
    let excerpt: Option<String> = row.get(3);
    let duration_ms: i32 = row.get(4);
    assert_eq!(code.as_deref(), case.code, "{name}: error code ({error:?})");
    assert_eq!(
        row.get::<_, Option<String>>(7),
        code,
        "{name}: last_error_code"
    );
    assert_eq!(status, case.status, "{name}: status ({error:?})");
    assert_eq!(row.get::<_, Option<i32>>(9), status, "{name}: last_status");
    let message = error.clone().unwrap_or_default();
    assert!(
        case.error.is_empty() == error.is_none()
            && (case.error.is_empty() || case.error.iter().any(|w| message.contains(w))),
        "{name}: error message {error:?}, wanted one of {:?}",
        case.error
    );
    assert!(
        !message.contains("127.0.0.1"),
        "{name}: the URL stays out of the message"
    );
    if name == "huge-response" {
        let excerpt = excerpt.unwrap();
        assert_eq!(excerpt.len(), EXCERPT, "{name}: the excerpt is capped");
        assert!(excerpt.bytes().all(|b| b == b'x'));
        assert!(duration_ms < 2000, "{name}: took {duration_ms} ms");
    } else {
        assert_eq!(excerpt.as_deref(), case.excerpt, "{name}: excerpt");
    }
    if case.timeout_ms.is_some() {
        assert!(
            (450..1500).contains(&duration_ms),
            "{name}: gave up after {duration_ms} ms"
        );
    }
    check_next(case, &row);
}

/// What comes after the attempt: delivered, dead with the endpoint off, or a retry within
/// the case's window.
fn check_next(case: &Case, row: &tokio_postgres::Row) {
    let name = case.name;
    let state: String = row.get(5);
    let retry_in: Option<f64> = row.get(6);
    match case.next {
        Next::Delivered => assert_eq!((state.as_str(), retry_in), ("delivered", None), "{name}"),
        Next::Gone => {
            assert_eq!((state.as_str(), retry_in), ("dead", None), "{name}");
            assert!(!row.get::<_, bool>(8), "{name}: the endpoint is disabled");
        }
        Next::RetryIn(low, high) => {
            assert_eq!(state, "pending", "{name}");
            let retry_in = retry_in.unwrap();
            assert!(
                (low..high).contains(&retry_in),
                "{name}: next attempt {retry_in:.1} s after this one, wanted {low}..{high}"
            );
        }
    }
}
