//! The request path over real HTTP: a real `exoclaw` process in front of a real mock node.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chat_body, client, error_type, free_addr, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions};
use futures_util::StreamExt;

async fn gateway_for(node: &MockNode, server_extra: &str, pool_extra: &str) -> Gateway {
    Gateway::start(
        Setup::nodes(&[node.addr()])
            .server(server_extra)
            .pool(pool_extra),
    )
    .await
}

#[tokio::test]
async fn first_stream_event_reaches_client_while_node_holds_the_rest() {
    let (node, gate) = common::holding_node().await;
    let gw = gateway_for(&node, "", "").await;

    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("first event must arrive while the node holds the rest")
            .expect("stream still open")
            .unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(received.starts_with("data: {"), "{received}");
    assert!(
        !received.contains("[DONE]"),
        "the node has not sent the rest yet"
    );

    gate.add_permits(1);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("rest of the stream arrives once released")
    {
        received.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(received.ends_with("data: [DONE]\n\n"), "{received}");
    assert!(received.matches("data: ").count() > 5);
}

#[tokio::test]
async fn content_type_of_the_node_is_kept_for_json_sse_and_node_errors() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway_for(&node, "", "").await;
    let c = client();

    let json = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(json.headers()["content-type"], "application/json");
    let v: serde_json::Value = json.json().await.unwrap();
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let sse = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    assert!(sse.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    let models = c.get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
    let embeddings = c
        .post(gw.url("/v1/embeddings"))
        .json(&serde_json::json!({"input": "hi", "model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(embeddings.status(), 200);

    // The node's own error passes through untouched: status, type and body.
    let bad = c
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/json");
    assert_eq!(error_type(bad).await, "invalid_request_error");
}

#[tokio::test]
async fn a_dead_node_gets_a_502_json_error() {
    let dead = free_addr();
    let gw = Gateway::start(Setup::nodes(&[dead])).await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(error_type(response).await, "upstream_error");
}

#[tokio::test]
async fn a_slow_node_gets_a_504_json_error() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway_for(&node, "", "    read_timeout: 300ms\n").await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-delay-ms", "3000")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(error_type(response).await, "upstream_timeout");
}

#[tokio::test]
async fn bodies_over_the_cap_get_413_whether_declared_or_chunked() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway_for(&node, "  max_request_body: 1KiB\n", "").await;
    let c = client();

    let declared = c
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(error_type(declared).await, "request_too_large");
    assert!(
        node.seen().is_empty(),
        "a declared oversized body never reaches the node"
    );

    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 512]))),
    );
    let chunked = c
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);
    assert_eq!(error_type(chunked).await, "request_too_large");

    let small = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200, "bodies under the cap still pass");
}

#[tokio::test]
async fn request_id_round_trips_or_is_generated() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway_for(&node, "", "").await;
    let c = client();

    let kept = c
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "trace-abc_123")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc_123");
    assert_eq!(node.seen()[0].headers["x-request-id"], "trace-abc_123");

    let replaced = c
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "no spaces allowed")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    let generated = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(generated.starts_with("req_"), "{generated}");
    assert_eq!(node.seen()[1].headers["x-request-id"], generated.as_str());

    for path in ["/health", "/nowhere"] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert!(r.headers().contains_key("x-request-id"), "{path}");
    }
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_node() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw =
        Gateway::start(Setup::nodes(&[node.addr()]).top("auth: { require_key: true }\n")).await;
    let (_, key) = gw.create_key("alice", None).await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "alice")
        .header("x-forwarded-user", "admin")
        .header("x-codex-token", "oauth_stolen")
        .header("x-exoclaw-internal", "guess")
        .header("x-exoclaw-run-user", "bob")
        .header("x-exoclaw-run", "run_forged")
        .header("x-exoclaw-run-session", "tenant/ten_x/run/run_forged")
        .header("x-gateway-key", &key)
        .header("authorization", "Bearer sk-alice-own-key")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = &node.seen()[0];
    let forwarded: Vec<_> = seen.headers.get_all("x-forwarded-user").iter().collect();
    assert_eq!(forwarded, ["alice"]);
    assert!(!seen.headers.contains_key("x-codex-token"));
    assert!(!seen.headers.contains_key("x-gateway-key"));
    assert!(!seen.headers.contains_key("x-exoclaw-internal"));
    assert!(seen
        .headers
        .keys()
        .all(|h| !h.as_str().starts_with("x-exoclaw-run")));
    let session = seen.headers["x-openclaw-session-key"].to_str().unwrap();
    assert!(session.starts_with("exoclaw:alice:"), "{session}");
    assert_eq!(seen.headers["authorization"], "Bearer sk-alice-own-key");
}

#[tokio::test]
async fn health_answers_locally_and_unknown_paths_get_404_json() {
    let gw = Gateway::start(Setup::nodes(&[free_addr()])).await;
    let c = client();
    for path in ["/health", "/healthz"] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["gateway"], "exoclaw");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    }
    let missing = c.get(gw.url("/admin/secret")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(error_type(missing).await, "not_found");
}

#[tokio::test]
async fn serve_creates_and_migrates_the_database() {
    let gw = Gateway::start(Setup::nodes(&[free_addr()])).await;
    let path = gw.db_path();
    let conn = rusqlite::Connection::open(&path).expect("the ledger file exists");
    let version = exoclaw::ledger::migrations::current_version(&conn).unwrap();
    assert_eq!(
        version,
        exoclaw::ledger::migrations::MIGRATIONS.last().unwrap().0
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_node() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let (dead, live) = (free_addr(), node.addr());
    // No health checks: the dead node's only errors are the refused connections of requests.
    let gw =
        Gateway::start(Setup::nodes(&[dead, live]).pool("    health_check: { enabled: false }\n"))
            .await;
    let c = client();
    // The pool hashes users onto nodes: with 20 users, some land on the dead node (all 20 on
    // the live one has odds of 1 in a million).
    let users = 20;
    for i in 0..users {
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .header("x-user-id", format!("user-{i}"))
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "user-{i} must fail over to the live node");
    }
    assert_eq!(node.seen().len(), users);
    let nodes = gw.admin_nodes().await;
    let dead = &nodes["nodes"][0];
    assert_eq!(dead["name"], "node-0", "{nodes}");
    assert!(
        dead["errors"].as_u64().unwrap() >= 1,
        "a request was sent to the dead node and retried: {nodes}"
    );
    assert!(
        dead["last_error"].as_str().unwrap().starts_with("connect"),
        "{nodes}"
    );
}

#[tokio::test]
async fn one_request_line_per_request_at_the_configured_level() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway_for(&node, "", "").await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "ana")
        .header("x-request-id", "trace-log-1")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let line = gw.wait_for_log_line("trace-log-1").await;
    for field in [
        "exoclaw::request",
        "user=ana",
        "node=node-0",
        "status=200",
        "latency_ms=",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }

    let quiet = gateway_for(&node, "  request_log: off\n", "").await;
    let r = client()
        .post(quiet.url("/v1/chat/completions"))
        .header("x-request-id", "trace-log-2")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    r.text().await.unwrap();
    // The request's ledger row is recorded just before its log line would be; a line logged
    // after that (a key created through the admin API) comes after it in the log's queue.
    quiet.wait_for_rows(1).await;
    quiet.create_key("log-marker", None).await;
    quiet.wait_for_log_line("gateway key created").await;
    assert!(
        !quiet.log().contains("trace-log-2"),
        "request_log: off writes no request line"
    );
}

/// A node that answers the first request of each connection and keeps it alive, then reads
/// the second one and closes the connection without a word: what the gateway sees when a node
/// dies (or drops an idle keep-alive connection) between two requests.
async fn node_dropping_reused_connections(
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                for request in 0.. {
                    let mut read = Vec::new();
                    // The head, then as many body bytes as Content-Length says.
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        read.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&read).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if read.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    if request > 0 {
                        return; // the reused connection dies without an answer
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = r#"{"id":"c","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, answered)
}

#[tokio::test]
async fn a_reused_connection_that_breaks_before_any_answer_is_retried_fresh() {
    let (addr, answered) = node_dropping_reused_connections().await;
    let gw = Gateway::start(Setup::nodes(&[addr])).await;
    let c = client();
    for i in 0..5 {
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "request {i} is sent again on a fresh connection"
        );
    }
    // Each request answered once (health probes come on connections of their own).
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) >= 5);
    let nodes: serde_json::Value = gw.admin_nodes().await;
    let node = &nodes["nodes"][0];
    assert!(node["errors"].as_u64().unwrap() >= 2, "{node}");
    assert!(
        node["last_error"]
            .as_str()
            .unwrap()
            .contains("reused connection"),
        "{node}"
    );
}
