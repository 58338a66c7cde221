//! A fast HTTP sink on 127.0.0.1, written with hyper: answers 200 at once, counts requests,
//! and (when asked) notes when each event id arrived, by the same clock the producer uses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct State {
    count: AtomicU64,
    record: AtomicBool,
    arrivals: Mutex<Vec<(String, Instant)>>,
}

/// A running sink.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<State>,
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = req
        .headers()
        .get("x-webhook-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Read the body, as a real receiver would, so the connection stays reusable.
    let _ = req.into_body().collect().await;
    let now = Instant::now();
    if state.record.load(Ordering::Relaxed) {
        if let Some(id) = id {
            state.arrivals.lock().unwrap().push((id, now));
        }
    }
    state.count.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::new())))
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Sink { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.state.count.store(0, Ordering::Relaxed);
        self.state.arrivals.lock().unwrap().clear();
    }

    /// Start or stop noting arrival times by event id.
    pub fn record_arrivals(&self, on: bool) {
        self.state.record.store(on, Ordering::Relaxed);
    }

    pub fn arrivals(&self) -> Vec<(String, Instant)> {
        self.state.arrivals.lock().unwrap().clone()
    }
}
