//! One attempt of a run, as a call to its node through the gateway's own proxy.
//!
//! The worker is a trusted internal client of the proxy (see `proxy::run_caller`): it posts a
//! streaming chat completion to the proxy's listener over loopback, with the internal secret and
//! the run's owner, id, session and pinned pool. From there the call takes the path every
//! client's request takes — pool, health, admission priority, node token, BYOK or Codex
//! credentials, the ledger row (tagged with the run) and exact token accounting. Dropping the
//! call's future closes the connection, and the proxy drops the node request with it: that is
//! how a canceled run stops.
//!
//! Not for: what a run does with the answer (`worker`), or parsing it (`output`).

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::byok::ProviderKey;
use super::output::{self, NodeOutput, OutputAssembler};
use super::queue::{Run, RunError};
use crate::headers;
use crate::http_client::error_chain;
use crate::tenants;

/// Largest error body read from a failed call.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest answer a run keeps (the text, and the body of a non-streamed answer): a run's output
/// is stored and shown whole, so a node that never stops cannot fill the disk or the memory.
pub const MAX_OUTPUT: usize = 8 << 20;

fn too_large(max: usize) -> CallError {
    CallError::Fail(run_error(
        "output_too_large",
        format!("the node's answer is longer than the {max} bytes a run keeps"),
    ))
}

/// Why an attempt failed, and whether another attempt could succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Worth another attempt (after backoff): a node down or busy, a timeout, a cut stream.
    Retry(RunError),
    /// No attempt will do better: the request itself is refused (bad credentials, no quota).
    Fail(RunError),
}

pub fn run_error(code: &str, message: impl Into<String>) -> RunError {
    RunError {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// Calls nodes through the proxy at `proxy`.
pub struct NodeClient {
    client: reqwest::Client,
    url: String,
    secret: Arc<str>,
    /// The most of an answer a run keeps (`MAX_OUTPUT`).
    max_output: usize,
}

impl NodeClient {
    /// `listen` is the proxy's listen address; an unspecified one (`0.0.0.0`) is reached over
    /// loopback.
    pub fn new(listen: SocketAddr, secret: Arc<str>) -> Result<NodeClient, String> {
        let client = crate::http_client::builder()
            // Never through an HTTP proxy from the environment: this is loopback.
            .no_proxy()
            .pool_idle_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the run workers' HTTP client: {e}"))?;
        Ok(NodeClient {
            client,
            url: format!("http://{}/v1/chat/completions", loopback(listen)),
            secret,
            max_output: MAX_OUTPUT,
        })
    }

    /// One attempt: streams the answer, handing each piece of text to `on_text` as it comes.
    pub async fn call(
        &self,
        run: &Run,
        byok: Option<&ProviderKey>,
        mut on_text: impl FnMut(String),
    ) -> Result<NodeOutput, CallError> {
        let body = json!({
            "model": format!("openclaw/{}", run.agent),
            "messages": [{ "role": "user", "content": run.prompt }],
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let mut request = self
            .client
            .post(&self.url)
            .header(headers::INTERNAL_SECRET, &*self.secret)
            .header(headers::RUN_ID, &run.id)
            .header(headers::RUN_USER, &run.owner)
            .header(headers::RUN_TIER, &run.tier)
            .header(
                headers::RUN_SESSION,
                run.session
                    .clone()
                    .unwrap_or_else(|| tenants::run_session(&run.tenant_id, &run.id)),
            )
            .header(headers::REQUEST_ID, headers::new_request_id())
            .json(&body);
        if let Some(pool) = &run.pool {
            request = request.header(headers::RUN_POOL, pool);
        }
        if let Some(key) = byok {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| {
            CallError::Retry(run_error(
                "gateway_unreachable",
                format!(
                    "the gateway's proxy could not be reached: {}",
                    without_url(e)
                ),
            ))
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_capped(response).await;
            return Err(classify_failure(status, &body));
        }
        let streamed = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !streamed {
            if response
                .content_length()
                .is_some_and(|len| len > self.max_output as u64)
            {
                return Err(too_large(self.max_output));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| CallError::Retry(run_error("node_stream_cut", without_url(e))))?;
            if body.len() > self.max_output {
                return Err(too_large(self.max_output));
            }
            let answer = output::from_json_body(&body)
                .map_err(|e| CallError::Retry(run_error("invalid_node_answer", e.to_string())))?;
            on_text(answer.text.clone());
            return Ok(answer);
        }
        let mut assembler = OutputAssembler::new();
        let mut stream = response.bytes_stream();
        let mut received = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                CallError::Retry(run_error(
                    "node_stream_cut",
                    format!("the node's answer was cut short: {}", without_url(e)),
                ))
            })?;
            // The stream's bytes bound the text (events wrap each piece in JSON).
            received += chunk.len();
            if received > 2 * self.max_output {
                return Err(too_large(self.max_output));
            }
            for text in assembler.push(&chunk) {
                on_text(text);
            }
        }
        assembler
            .finish()
            .map_err(|e| CallError::Retry(run_error("node_stream_cut", e.to_string())))
    }
}

/// The proxy's address as a worker dials it.
fn loopback(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if listen.ip().is_unspecified() {
        addr.set_ip(match listen {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// A client error's text, with its causes, without the URL (loopback noise).
fn without_url(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

async fn read_capped(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    body
}

/// Maps a failed answer (the gateway's or the node's) to a run error: the OpenAI-shaped error's
/// code and message when there is one; retried when another attempt may do better.
pub fn classify_failure(status: u16, body: &[u8]) -> CallError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .filter(|c| c.len() <= 64)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http_{status}"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(500).collect::<String>())
        .unwrap_or_else(|| format!("the node answered HTTP {status}"));
    let error = run_error(&code, message);
    match status {
        408 | 409 | 425 | 429 | 500..=599 => CallError::Retry(error),
        _ => CallError::Fail(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_the_gateways_code_and_say_whether_to_retry() {
        let body = br#"{"error":{"message":"No healthy node in pool `openclaw`.","type":"upstream_error","code":"no_healthy_node"}}"#;
        match classify_failure(503, body) {
            CallError::Retry(e) => assert_eq!(e.code, "no_healthy_node"),
            other => panic!("{other:?}"),
        }
        let quota = br#"{"error":{"message":"Monthly quota reached.","type":"insufficient_quota","code":"quota_exceeded"}}"#;
        match classify_failure(402, quota) {
            CallError::Fail(e) => {
                assert_eq!(
                    (e.code.as_str(), e.message.as_str()),
                    ("quota_exceeded", "Monthly quota reached.")
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify_failure(429, b""), CallError::Retry(e) if e.code == "http_429"));
        assert!(
            matches!(classify_failure(401, b"<html>"), CallError::Fail(e) if e.code == "http_401")
        );
    }

    /// A run of the mock node's agent (which echoes the prompt), as a worker would send it.
    fn run_asking(prompt: &str) -> Run {
        Run {
            id: "run_cap".into(),
            tenant_id: "ten_0123456789abcdef0123".into(),
            owner: "ana".into(),
            template: "t".into(),
            agent: "main".into(),
            input: "{}".into(),
            prompt: prompt.into(),
            idempotency_key: None,
            priority: 0,
            max_attempts: 1,
            timeout_ms: 10_000,
            byok: false,
            pool: None,
            tier: "tier1".into(),
            session: None,
            status: crate::runs::queue::RunStatus::Running,
            attempts: 1,
            created_ms: 0,
            started_ms: Some(0),
            finished_ms: None,
            available_ms: 0,
            last_error: None,
            cancel_requested: false,
            seq: 1,
        }
    }

    #[tokio::test]
    async fn an_answer_longer_than_a_run_keeps_fails_the_run_for_good() {
        // The mock node stands in for the proxy here: it answers the same stream.
        let node = crate::mock::MockNode::start(crate::mock::MockOptions::default())
            .await
            .unwrap();
        let mut client = NodeClient::new(node.addr(), Arc::from("secret")).unwrap();
        let short = client.call(&run_asking("hello"), None, |_| {}).await;
        assert!(short.is_ok(), "{short:?}");
        client.max_output = 200;
        let mut streamed = String::new();
        let long = client
            .call(&run_asking(&"words ".repeat(200)), None, |t| {
                streamed.push_str(&t)
            })
            .await;
        match long {
            Err(CallError::Fail(e)) => assert_eq!(e.code, "output_too_large", "{e:?}"),
            other => panic!("{other:?}"),
        }
        assert!(
            streamed.len() <= 2 * 200,
            "stopped reading: {} bytes",
            streamed.len()
        );
    }

    #[test]
    fn an_unspecified_listen_address_is_dialled_on_loopback() {
        assert_eq!(
            loopback("0.0.0.0:8787".parse().unwrap()),
            "127.0.0.1:8787".parse().unwrap()
        );
        assert_eq!(
            loopback("[::]:8787".parse().unwrap()),
            "[::1]:8787".parse().unwrap()
        );
        assert_eq!(
            loopback("100.64.0.1:8787".parse().unwrap()),
            "100.64.0.1:8787".parse().unwrap()
        );
    }
}
