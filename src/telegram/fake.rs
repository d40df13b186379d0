//! A fake Telegram Bot API for tests: an HTTP server on a loopback port that records every call
//! (token, method, JSON body) and answers like Telegram, or with what a test scripts (a 429
//! with `retry_after`, a refusal, a garbled page).
//!
//! Public, like `mock`, so the integration tests of the webhook and the worker can point
//! `telegram.api_base` at it. Not for anything but tests: it checks no token and keeps every
//! call in memory.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The token from the path (`/bot<token>/<method>`).
    pub token: String,
    pub method: String,
    /// The JSON body (`null` when there was none or it was not JSON).
    pub body: Value,
    /// The HTTP status the fake answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<RecordedCall>>,
    /// Answers for the next calls: (only for this method, or any; status, body).
    script: Mutex<VecDeque<(Option<String>, u16, String)>>,
    next_message_id: Mutex<i64>,
}

/// The running fake; dropping it stops the server.
pub struct FakeBotApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeBotApi {
    /// Starts the fake on an ephemeral loopback port.
    pub async fn start() -> FakeBotApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeBotApi { addr, shared, task }
    }

    /// What `telegram.api_base` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.shared.calls).clone()
    }

    /// The texts of the `sendMessage` calls so far, per chat id.
    pub fn sent_texts(&self, chat_id: i64) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "sendMessage" && c.body["chat_id"] == chat_id)
            .filter_map(|c| c.body["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// The texts Telegram accepted (`sendMessage` answered 200) per chat id, in order.
    pub fn delivered_texts(&self, chat_id: i64) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "sendMessage" && c.status == 200)
            .filter(|c| c.body["chat_id"] == chat_id)
            .filter_map(|c| c.body["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// The next call, whatever its method, is answered with `status` and `body`.
    pub fn answer_next(&self, status: u16, body: Value) {
        self.answer_raw_next(status, &body.to_string());
    }

    /// The next call is answered with `status` and a body that need not be JSON.
    pub fn answer_raw_next(&self, status: u16, body: &str) {
        lock(&self.shared.script).push_back((None, status, body.to_owned()));
    }

    /// The next call is answered 429 with `retry_after` seconds, as Telegram's flood control.
    pub fn rate_limit_next(&self, retry_after: u64) {
        self.answer_next(429, too_many_requests(retry_after));
    }

    /// The next `sendMessage` (other methods pass) is answered 429 with `retry_after` seconds.
    pub fn rate_limit_next_message(&self, retry_after: u64) {
        let body = too_many_requests(retry_after).to_string();
        lock(&self.shared.script).push_back((Some("sendMessage".to_owned()), 429, body));
    }
}

fn too_many_requests(retry_after: u64) -> Value {
    json!({"ok": false, "error_code": 429,
           "description": format!("Too Many Requests: retry after {retry_after}"),
           "parameters": {"retry_after": retry_after}})
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set, so aborting the loop closes them all.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let (token, method) = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or(("", ""));
    let mut call = RecordedCall {
        token: token.to_owned(),
        method: method.to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: 200,
    };
    let scripted = {
        let mut script = lock(&shared.script);
        let position = script
            .iter()
            .position(|(only, _, _)| only.as_deref().is_none_or(|m| m == method));
        position.and_then(|i| script.remove(i))
    };
    let (status, body) = match scripted {
        Some((_, status, body)) => (status, body),
        None => (
            200,
            json!({"ok": true, "result": result(&call, &shared)}).to_string(),
        ),
    };
    call.status = status;
    lock(&shared.calls).push(call);
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid"))
}

/// What Telegram would answer a successful call.
fn result(call: &RecordedCall, shared: &Shared) -> Value {
    match call.method.as_str() {
        "sendMessage" => {
            let mut next = lock(&shared.next_message_id);
            *next += 1;
            json!({"message_id": *next, "date": 1_760_000_000,
                   "chat": {"id": call.body["chat_id"], "type": "private"},
                   "text": call.body["text"]})
        }
        "getMe" => json!({"id": 123_456, "is_bot": true, "first_name": "ExoClaw",
                          "username": "exoclaw_bot"}),
        "getWebhookInfo" => json!({"url": "", "has_custom_certificate": false,
                                   "pending_update_count": 0}),
        _ => json!(true),
    }
}
