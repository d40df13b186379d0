//! A mock OpenClaw node: an OpenAI-compatible HTTP server for `exoclaw demo`, tests and benches.
//!
//! It answers `/v1/chat/completions` (JSON, or SSE with `stream: true`, honouring
//! `stream_options.include_usage`), `/v1/responses` (JSON, or SSE ending in
//! `response.completed` with `usage`), `/v1/embeddings`, `/v1/models` and `/healthz`, with
//! realistic `usage` numbers. It is not a model: the answer echoes the question.
//!
//! For tests it records every request it receives (headers and body, exactly as the gateway
//! forwarded them; `skip_recording` turns that off for long runs), can pace streamed events,
//! and can hold a stream after its first event until the test releases it. A request header `x-mock-delay-ms: N` delays the response head by N ms.
//! Dropping a `MockNode` closes its listener and every open connection, like a node dying.
//! `start_tls` serves the same over TLS, for testing nodes reached with TLS and SNI.
//! `standalone` runs it as its own process (`exoclaw mock-node`).

pub mod openai;
pub mod standalone;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// How the mock behaves.
#[derive(Clone, Default)]
pub struct MockOptions {
    /// Pause between two streamed events (0: as fast as possible).
    pub event_delay: Duration,
    /// When set, a stream sends its first event, then waits for one permit before the rest.
    pub hold_after_first_event: Option<Arc<Semaphore>>,
    /// Keep no copy of the requests, so `seen()` and `health_probes()` stay empty. A mock that
    /// answers for hours (`exoclaw mock-node`, the comparative benchmark) would otherwise grow
    /// by every request it serves.
    pub skip_recording: bool,
}

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A running mock node on loopback. Dropping it stops it.
pub struct MockNode {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: JoinHandle<()>,
}

struct Shared {
    options: MockOptions,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

type Body = BoxBody<Bytes, Infallible>;

impl MockNode {
    /// Starts a mock node on an ephemeral loopback port, on the current tokio runtime.
    pub async fn start(options: MockOptions) -> std::io::Result<MockNode> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(MockNode::serve_on(listener, options))
    }

    /// Serves on an already bound listener (the demo binds before the runtime exists).
    pub fn serve_on(listener: TcpListener, options: MockOptions) -> MockNode {
        MockNode::serve(listener, options, None)
    }

    /// Starts a mock node that speaks TLS with the given PEM certificate chain and key.
    pub async fn start_tls(
        options: MockOptions,
        cert_pem: &str,
        key_pem: &str,
    ) -> std::io::Result<MockNode> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let certs =
            rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?
            .ok_or_else(|| invalid("no private key in PEM".into()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Ok(MockNode::serve(listener, options, Some(acceptor)))
    }

    fn serve(
        listener: TcpListener,
        options: MockOptions,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> MockNode {
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            options,
            seen: seen.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, shared, tls));
        MockNode { addr, seen, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order, except health probes (`GET /healthz`).
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|r| r.path != "/healthz").cloned().collect())
            .unwrap_or_default()
    }

    /// How many health probes (`GET /healthz`) arrived.
    pub fn health_probes(&self) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|r| r.path == "/healthz").count())
            .unwrap_or_default()
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    // Connections live in this set, so aborting the loop closes them all.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // A stream is many small writes (head, then one event each): without this, Nagle holds
        // each behind the peer's delayed ACK, and every stream takes 40 ms more than it should.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(json(
                StatusCode::BAD_REQUEST,
                &openai::error("body read failed", "invalid_request_error"),
            ))
        }
    };
    if !shared.options.skip_recording {
        if let Ok(mut seen) = shared.seen.lock() {
            seen.push(SeenRequest {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
        }
    }
    let delay_ms = parts
        .headers
        .get("x-mock-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let now = unix_now();
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (&Method::GET, "/v1/models") => json(StatusCode::OK, &openai::models(now)),
        (&Method::POST, "/v1/embeddings") => match openai::embeddings(&body) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(m) => json(
                StatusCode::BAD_REQUEST,
                &openai::error(&m, "invalid_request_error"),
            ),
        },
        (&Method::POST, "/v1/chat/completions") => match openai::ChatRequest::parse(&body) {
            Ok(chat) if chat.stream => stream_events(
                openai::chat_stream_events(&completion_id(), now, &chat),
                &shared.options,
            ),
            Ok(chat) => json(
                StatusCode::OK,
                &openai::chat_completion(&completion_id(), now, &chat),
            ),
            Err(m) => json(
                StatusCode::BAD_REQUEST,
                &openai::error(&m, "invalid_request_error"),
            ),
        },
        (&Method::POST, "/v1/responses") => match openai::ChatRequest::parse_responses(&body) {
            Ok(req) if req.stream => stream_events(
                openai::response_stream_events(&response_id(), now, &req),
                &shared.options,
            ),
            Ok(req) => json(StatusCode::OK, &openai::response(&response_id(), now, &req)),
            Err(m) => json(
                StatusCode::BAD_REQUEST,
                &openai::error(&m, "invalid_request_error"),
            ),
        },
        (_, path) => json(
            StatusCode::NOT_FOUND,
            &openai::error(&format!("mock node has no {path}"), "not_found"),
        ),
    };
    Ok(response)
}

/// Streams SSE frames, one per event, paced and held as `options` say.
fn stream_events(frames: Vec<String>, options: &MockOptions) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let options = options.clone();
    tokio::spawn(async move {
        for (i, frame) in frames.into_iter().enumerate() {
            if i > 0 && !options.event_delay.is_zero() {
                tokio::time::sleep(options.event_delay).await;
            }
            if tx.send(Bytes::from(frame)).await.is_err() {
                return; // the gateway hung up
            }
            if i == 0 {
                if let Some(gate) = &options.hold_after_first_event {
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                }
            }
        }
    });
    let events = stream::unfold(rx, |mut rx| async move {
        let frame = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(frame)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(events)))
        .expect("static response parts are valid")
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("static response parts are valid")
}

fn response_id() -> String {
    format!("resp_{}", &crate::proxy::headers::new_request_id()[4..28])
}

fn completion_id() -> String {
    format!(
        "chatcmpl-{}",
        &crate::proxy::headers::new_request_id()[4..28]
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
