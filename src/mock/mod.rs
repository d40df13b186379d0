//! A mock OpenClaw node: an OpenAI-compatible HTTP server for `exoclaw demo`, tests and benches.
//!
//! It answers `/v1/chat/completions` (JSON, or SSE with `stream: true`, honouring
//! `stream_options.include_usage`), `/v1/responses` (JSON, or the full SSE event sequence ending
//! in `response.completed` with `usage`), `/v1/embeddings`, `/v1/models`, `/v1/models/{id}`, with
//! realistic `usage` numbers. It is not a model: the answer echoes the question.
//!
//! Where a gateway in front of it can tell, it behaves like an OpenClaw gateway (port 18789):
//! - probes `/health`, `/healthz` (live) and `/ready`, `/readyz` (ready, or 503 after
//!   `set_ready(false)`) answer without auth;
//! - with `MockOptions::token`, every other path wants `Authorization: Bearer <token>` and
//!   answers 401 with an OpenAI-shaped error otherwise;
//! - chat completions and responses are routed to an agent and a session as OpenClaw does
//!   (`session`), and every such answer reports them in `x-mock-agent`, `x-mock-session` and
//!   `x-mock-session-turns`, so a test can see which session a request landed in.
//!
//! For tests it records every request it receives except probes (headers and body, exactly as
//! the gateway forwarded them, refused ones included; `skip_recording` turns that off for long
//! runs), can pace streamed events, and can hold a stream after its first event until the test
//! releases it. A request header `x-mock-delay-ms: N` delays the response head by N ms;
//! `fail_next(n)` makes the next `n` API requests answer 500, like a node whose agent crashed;
//! `set_answer` scripts the answer instead of the echo.
//! With `MockOptions::skills`, `GET /skills.json` answers that skills inventory (the JSON of
//! `openclaw skills list --json`, as a small service beside a node would), without auth;
//! `set_skills` changes it or takes it away (503), like a source that fails.
//! Dropping a `MockNode` closes its listener and every open connection, like a node dying.
//! `start_tls` serves the same over TLS, for testing nodes reached with TLS and SNI.
//! `standalone` runs it as its own process (`exoclaw mock-node`).

pub mod openai;
pub mod session;
pub mod standalone;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use session::{SessionRoute, SessionTurns};

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
    /// The node's gateway token: when set, every path but the probes wants
    /// `Authorization: Bearer <token>`, as an OpenClaw gateway with a token does.
    pub token: Option<String>,
    /// The skills inventory served at `/skills.json`.
    pub skills: Option<Bytes>,
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
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What the connections of one mock node share.
struct Shared {
    options: MockOptions,
    seen: Mutex<Vec<SeenRequest>>,
    ready: AtomicBool,
    sessions: SessionTurns,
    /// API requests still to fail with a 500 (`fail_next`).
    failures_left: AtomicU32,
    /// What `/skills.json` answers (None: 503).
    skills: Mutex<Option<Bytes>>,
    /// The answer every chat and response gives instead of the echo (`set_answer`).
    answer: Mutex<Option<String>>,
}

/// The probe paths of an OpenClaw gateway: answered without auth, never in `seen()`.
const LIVE_PATHS: [&str; 2] = ["/health", "/healthz"];
const READY_PATHS: [&str; 2] = ["/ready", "/readyz"];

fn is_probe(path: &str) -> bool {
    LIVE_PATHS.contains(&path) || READY_PATHS.contains(&path)
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
        let shared = Arc::new(Shared {
            skills: Mutex::new(options.skills.clone()),
            answer: Mutex::new(None),
            options,
            seen: Mutex::new(Vec::new()),
            ready: AtomicBool::new(true),
            sessions: SessionTurns::default(),
            failures_left: AtomicU32::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone(), tls));
        MockNode { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order, except probes (`/health`, `/healthz`, `/ready`,
    /// `/readyz`). Requests refused for want of the token are here too.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .map(|s| s.iter().filter(|r| !is_probe(&r.path)).cloned().collect())
            .unwrap_or_default()
    }

    /// How many probes (`/health`, `/healthz`, `/ready`, `/readyz`) arrived.
    pub fn health_probes(&self) -> usize {
        self.probes().len()
    }

    /// The probes (`/health`, `/healthz`, `/ready`, `/readyz`) received so far, in order.
    pub fn probes(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .map(|s| s.iter().filter(|r| is_probe(&r.path)).cloned().collect())
            .unwrap_or_default()
    }

    /// Makes `/ready` and `/readyz` answer 503 (`false`) or 200 (`true`, the start state), like
    /// an OpenClaw node that is up but not ready to take turns.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Relaxed);
    }

    /// Replaces the inventory `/skills.json` serves; None makes it answer 503.
    pub fn set_skills(&self, skills: Option<Vec<u8>>) {
        if let Ok(mut served) = self.shared.skills.lock() {
            *served = skills.map(Bytes::from);
        }
    }

    /// Makes every chat completion and response answer `text` (kept exactly, line breaks
    /// included) instead of echoing the question; None goes back to the echo.
    pub fn set_answer(&self, text: Option<&str>) {
        if let Ok(mut answer) = self.shared.answer.lock() {
            *answer = text.map(str::to_owned);
        }
    }

    /// Makes the next `n` API requests (not probes) answer 500 with an OpenAI-shaped error;
    /// `u32::MAX` fails them all from now on, `0` stops failing.
    pub fn fail_next(&self, n: u32) {
        self.shared.failures_left.store(n, Ordering::SeqCst);
    }

    /// The turns the session `key` has had so far (0: none).
    pub fn session_turns(&self, key: &str) -> u64 {
        self.shared.sessions.turns(key)
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

/// A request's life: read it, record it, delay it if asked, then answer a probe without auth, or
/// check the token and answer the API.
async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "body read failed",
                "invalid_request_error",
                None,
            ))
        }
    };
    shared.record(&parts, &body);
    if let Some(ms) = delay_ms(&parts.headers) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(answer) = probe(&parts, &shared) {
        return Ok(answer);
    }
    if parts.method == Method::GET && parts.uri.path() == "/skills.json" {
        let served = shared.skills.lock().ok().and_then(|s| s.clone());
        return Ok(match served {
            Some(body) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Full::new(body).boxed())
                .expect("static response parts are valid"),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no skills inventory here",
                "server_error",
                None,
            ),
        });
    }
    if let Some(refusal) = refuse_without_token(&parts.headers, shared.options.token.as_deref()) {
        return Ok(refusal);
    }
    let failing = shared
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
            0 => None,
            u32::MAX => Some(u32::MAX),
            n => Some(n - 1),
        })
        .is_ok();
    if failing {
        return Ok(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the agent crashed (mock fault)",
            "server_error",
            Some("agent_crashed"),
        ));
    }
    Ok(answer_api(&parts, &body, &shared))
}

impl Shared {
    fn scripted_answer(&self) -> Option<String> {
        self.answer.lock().ok().and_then(|a| a.clone())
    }

    fn record(&self, parts: &Parts, body: &Bytes) {
        if self.options.skip_recording {
            return;
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(SeenRequest {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
        }
    }

    /// Routes a chat or Responses request to its agent and session, and counts the turn.
    fn take_turn(&self, headers: &HeaderMap, request: &openai::ChatRequest) -> SessionTurn {
        let route = SessionRoute::resolve(headers, &request.model, request.user.as_deref());
        let turns = self.sessions.record_turn(&route.session_key);
        SessionTurn { route, turns }
    }
}

fn delay_ms(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-mock-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// The answer to a probe path, or `None` when the request is not a probe.
fn probe(parts: &Parts, shared: &Shared) -> Option<Response<Body>> {
    let path = parts.uri.path();
    if !matches!(parts.method, Method::GET | Method::HEAD) || !is_probe(path) {
        return None;
    }
    let answer = if LIVE_PATHS.contains(&path) {
        json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "status": "live"}),
        )
    } else if shared.ready.load(Ordering::Relaxed) {
        json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "status": "ready"}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"ok": false, "status": "not_ready"}),
        )
    };
    Some(answer)
}

/// The 401 an OpenAI client understands, unless the node has no token or the request carries
/// exactly `Authorization: Bearer <token>` (then `None`: let it through).
fn refuse_without_token(headers: &HeaderMap, token: Option<&str>) -> Option<Response<Body>> {
    let token = token?;
    let (message, code) = match headers.get(http::header::AUTHORIZATION) {
        None => (
            "missing gateway token: send `Authorization: Bearer <token>`",
            "missing_api_key",
        ),
        Some(given) => {
            let expected = format!("Bearer {token}");
            if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return None;
            }
            ("invalid gateway token", "invalid_api_key")
        }
    };
    let mut refusal = error(
        StatusCode::UNAUTHORIZED,
        message,
        "authentication_error",
        Some(code),
    );
    refusal
        .headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    Some(refusal)
}

/// The OpenAI-compatible API, for a caller already let in.
fn answer_api(parts: &Parts, body: &Bytes, shared: &Shared) -> Response<Body> {
    let now = unix_now();
    let options = &shared.options;
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/v1/models") => json(StatusCode::OK, &openai::models(now)),
        (&Method::GET, path) if path.starts_with("/v1/models/") => {
            let id = &path["/v1/models/".len()..];
            match openai::model(id, now) {
                Some(model) => json(StatusCode::OK, &model),
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("The model `{id}` does not exist"),
                    "invalid_request_error",
                    Some("model_not_found"),
                ),
            }
        }
        (&Method::POST, "/v1/embeddings") => match openai::embeddings(body) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(m) => bad_request(&m),
        },
        (&Method::POST, "/v1/chat/completions") => match openai::ChatRequest::parse(body) {
            Ok(mut chat) => {
                chat.answer = shared.scripted_answer();
                let turn = shared.take_turn(&parts.headers, &chat);
                let answer = if chat.stream {
                    stream_events(
                        openai::chat_stream_events(&completion_id(), now, &chat),
                        options,
                    )
                } else {
                    json(
                        StatusCode::OK,
                        &openai::chat_completion(&completion_id(), now, &chat),
                    )
                };
                turn.report(answer)
            }
            Err(m) => bad_request(&m),
        },
        (&Method::POST, "/v1/responses") => match openai::ChatRequest::parse_responses(body) {
            Ok(mut req) => {
                req.answer = shared.scripted_answer();
                let turn = shared.take_turn(&parts.headers, &req);
                let answer = if req.stream {
                    stream_events(
                        openai::response_stream_events(&response_id(), now, &req),
                        options,
                    )
                } else {
                    json(StatusCode::OK, &openai::response(&response_id(), now, &req))
                };
                turn.report(answer)
            }
            Err(m) => bad_request(&m),
        },
        (_, path) => error(
            StatusCode::NOT_FOUND,
            &format!("mock node has no {path}"),
            "not_found",
            None,
        ),
    }
}

/// The agent and session a request landed in, and the session's turns with this one.
struct SessionTurn {
    route: SessionRoute,
    turns: u64,
}

impl SessionTurn {
    /// Adds `x-mock-agent`, `x-mock-session` and `x-mock-session-turns` to the answer. A key that
    /// is no valid header value (a `user` with control characters) is left out, not mangled.
    fn report(self, mut answer: Response<Body>) -> Response<Body> {
        let headers = answer.headers_mut();
        let values = [
            (session::AGENT_REPORT_HEADER, self.route.agent),
            (session::SESSION_REPORT_HEADER, self.route.session_key),
            (session::TURNS_REPORT_HEADER, self.turns.to_string()),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        answer
    }
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

fn bad_request(message: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        None,
    )
}

/// The one way the mock answers an error: an OpenAI-shaped body with `status`.
fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response<Body> {
    json(status, &openai::error(message, kind, code))
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("static response parts are valid")
}

fn response_id() -> String {
    format!("resp_{}", &crate::headers::new_request_id()[4..28])
}

fn completion_id() -> String {
    format!("chatcmpl-{}", &crate::headers::new_request_id()[4..28])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
