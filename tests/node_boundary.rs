//! The node boundary, tried as an attacker with a valid key would: only what the gateway
//! decides reaches a node — its own session key, its own forwarding headers, the node's token,
//! normalised `/v1/*` paths — and nothing a client forges.

mod common;

use std::time::Duration;

use common::{chat_body, client, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions, SeenRequest};
use exoclaw::proxy::session::session_key;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The session key and body `user` the node received for its `n`th request.
fn session_of(seen: &SeenRequest) -> (Vec<String>, Option<String>) {
    let keys = seen
        .headers
        .get_all("x-openclaw-session-key")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
    (keys, body["user"].as_str().map(str::to_owned))
}

/// Sends raw bytes (paths a URL library would normalise before sending) and returns the status.
async fn raw_status(gw: &Gateway, request: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the gateway answers")
            .unwrap();
        assert!(n > 0, "connection closed before a response head");
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn forged_session_agent_and_scope_headers_and_user_never_reach_the_node() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let forged = [
        ("X-OpenClaw-Session-Key", "agent:main:openai-user:ana"),
        ("x-openclaw-session-key", "main"),
        ("X-OPENCLAW-SCOPES", "operator.admin"),
        ("x-openclaw-agent-id", "ops"),
        ("X-Openclaw-Model", "expensive"),
        ("x-openclaw-message-channel", "telegram"),
    ];
    let requests = [
        ("/v1/chat/completions", chat_body(false)),
        ("/v1/chat/completions", chat_body(true)),
        (
            "/v1/responses",
            json!({ "model": "openclaw", "input": "hi", "stream": true }),
        ),
    ];
    let mut turns = Vec::new();
    for (path, body) in &requests {
        let mut body = body.clone();
        body["user"] = json!("agent:main:openai-user:ana");
        let mut request = client()
            .post(gw.url(path))
            .header("x-user-id", "bob")
            .json(&body);
        for (name, value) in forged {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        turns.push(response.headers()["x-mock-session-turns"].to_owned());
        response.bytes().await.unwrap();
    }
    // All three landed in bob's one session (chat, streaming chat, Responses alike); ana's
    // session was never touched.
    assert_eq!(turns, ["1", "2", "3"]);
    assert_eq!(node.session_turns("agent:main:openai-user:ana"), 0);
    assert_eq!(node.session_turns("main"), 0);
    let seen = node.seen();
    assert_eq!(seen.len(), requests.len());
    let bobs = session_key("bob", Some("agent:main:openai-user:ana"));
    for request in &seen {
        let (keys, user) = session_of(request);
        assert_eq!(keys, std::slice::from_ref(&bobs), "{}", request.path);
        assert_eq!(user.as_deref(), Some(bobs.as_str()), "{}", request.path);
        for name in [
            "x-openclaw-scopes",
            "x-openclaw-agent-id",
            "x-openclaw-model",
            "x-openclaw-message-channel",
        ] {
            assert!(
                !request.headers.contains_key(name),
                "{name} reached the node"
            );
        }
    }
    assert!(bobs.starts_with("exoclaw:bob/"), "{bobs}");
}

#[tokio::test]
async fn two_users_get_two_sessions_and_each_keeps_their_own() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let mut reported = Vec::new();
    for user in ["ana", "bob", "ana"] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-user-id", user)
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let header = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
        reported.push((header("x-mock-session"), header("x-mock-session-turns")));
    }
    // What the node itself says: ana's second request continues her session.
    assert_eq!(reported[0].0, reported[2].0);
    assert_ne!(reported[0].0, reported[1].0);
    let turns: Vec<&str> = reported.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(turns, ["1", "1", "2"]);
    let keys: Vec<Vec<String>> = node.seen().iter().map(|r| session_of(r).0).collect();
    assert_eq!(keys[0], [session_key("ana", None)]);
    assert_eq!(keys[1], [session_key("bob", None)]);
    assert_eq!(
        keys[2], keys[0],
        "ana's second request lands in her session"
    );
    assert_ne!(keys[0], keys[1]);
    let no_user = session_of(&node.seen()[0]).1;
    assert_eq!(no_user, None, "a body without `user` gets none");
}

#[tokio::test]
async fn a_per_request_pool_names_no_session_and_drops_the_user_field() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).pool("    session: per_request\n")).await;
    let mut body = chat_body(false);
    body["user"] = json!("agent:main:openai-user:ana");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "bob")
        .header("x-openclaw-session-key", "main")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (keys, user) = session_of(&node.seen()[0]);
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(user, None);
}

#[tokio::test]
async fn anonymous_callers_never_share_a_session() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    for _ in 0..2 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-mock-session-turns"], "1");
    }
    for seen in node.seen() {
        assert!(session_of(&seen).0.is_empty());
    }
}

#[tokio::test]
async fn a_pool_may_allow_an_agent_header_but_never_scopes_or_sessions() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(
        Setup::nodes(&[node.addr()]).pool("    allow_openclaw_headers: [X-OpenClaw-Agent-Id]\n"),
    )
    .await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "bob")
        .header("x-openclaw-agent-id", "beta")
        .header("x-openclaw-scopes", "operator.admin")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = &node.seen()[0];
    assert_eq!(seen.headers["x-openclaw-agent-id"], "beta");
    assert!(!seen.headers.contains_key("x-openclaw-scopes"));

    std::fs::write(
        gw.config_path(),
        std::fs::read_to_string(gw.config_path())
            .unwrap()
            .replace("[X-OpenClaw-Agent-Id]", "[x-openclaw-scopes]"),
    )
    .unwrap();
    let check = gw.cli(&["check"]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("pools.openclaw.allow_openclaw_headers[0]"),
        "{stderr}"
    );
}

#[tokio::test]
async fn dot_segments_in_every_form_answer_400_and_reach_no_node() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    for path in [
        "/v1/../tools/invoke",
        "/v1/%2e%2e/tools/invoke",
        "/v1/%2E%2E/hooks/agent",
        "/v1/.%2e/admin",
        "/v1/%2e./admin",
        "/v1\\..\\tools/invoke",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-User-ID: bob\r\nAuthorization: Bearer sk-1\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        assert_eq!(raw_status(&gw, &request).await, 400, "{path}");
    }
    let upgrade = "GET /v1/%2e%2e/ws HTTP/1.1\r\nHost: x\r\nX-User-ID: bob\r\n\
                   Authorization: Bearer sk-1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert_eq!(raw_status(&gw, upgrade).await, 400);
    let upgrade_in_v1 = upgrade.replace("/v1/%2e%2e/ws", "/v1/ws");
    assert_eq!(raw_status(&gw, &upgrade_in_v1).await, 400);
    assert!(node.seen().is_empty(), "{:?}", node.seen());

    // A harmless `.` segment is resolved, and the node gets the normalised path.
    let current = "GET /v1/./models HTTP/1.1\r\nHost: x\r\nX-User-ID: bob\r\n\
                   Authorization: Bearer sk-1\r\n\r\n";
    assert_eq!(raw_status(&gw, current).await, 200);
    assert_eq!(node.seen()[0].path, "/v1/models");
}

#[tokio::test]
async fn forwarding_headers_are_the_gateways_own() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "bob")
        .header("x-forwarded-for", "10.9.9.9")
        .header("x-real-ip", "10.9.9.9")
        .header("forwarded", "for=10.9.9.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "admin.internal")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = &node.seen()[0];
    let all = |name: &str| -> Vec<&str> {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("forwarded"), ["for=127.0.0.1;proto=http"]);
    assert!(all("x-real-ip").is_empty());
    assert!(all("x-forwarded-host").is_empty());
}

#[tokio::test]
async fn a_gateway_key_never_reaches_a_node_in_any_header() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw =
        Gateway::start(Setup::nodes(&[node.addr()]).top("auth: { require_key: true }\n")).await;
    let (_, key) = gw.create_key("bob", None).await;
    // A second Authorization value is refused, not forwarded.
    let twice = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Gateway-Key: {key}\r\n\
         Authorization: Bearer sk-bob\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    assert_eq!(raw_status(&gw, &twice).await, 400);
    assert!(node.seen().is_empty());

    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &key)
        .header("x-note", format!("my key is {key}"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = &node.seen()[0];
    for (name, value) in &seen.headers {
        assert!(
            !value.to_str().unwrap_or("").contains(&key),
            "{name} carried the gateway key"
        );
    }
    assert_eq!(seen.headers["authorization"], common::PROVIDER_KEY_HEADER);
}

#[tokio::test]
async fn a_node_token_goes_to_the_node_and_the_byok_key_to_its_own_header() {
    const TOKEN: &str = "node-token-7f3a9c1e5b";
    let node = MockNode::start(MockOptions {
        token: Some(TOKEN.to_owned()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = Gateway::start(
        Setup::nodes(&[node.addr()])
            .pool(
                "    auth_token_env: TEST_NODE_TOKEN\n    byok_header: x-provider-authorization\n",
            )
            .env("TEST_NODE_TOKEN", TOKEN),
    )
    .await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "bob")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = r.text().await.unwrap();
    let seen = &node.seen()[0];
    assert_eq!(seen.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(
        seen.headers["x-provider-authorization"],
        common::PROVIDER_KEY_HEADER
    );
    // Health checks carry the token too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.probes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no health probe arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let probe = node.probes().remove(0);
    assert_eq!(probe.headers["authorization"], format!("Bearer {TOKEN}"));

    // No client response, log line or ledger row holds the token.
    assert!(!answer.contains(TOKEN));
    let admin = client()
        .get(gw.admin_url("/admin/nodes"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!admin.contains(TOKEN), "{admin}");
    gw.wait_for_rows(1).await;
    let db = std::fs::read(gw.db_path()).unwrap();
    let wal = std::fs::read(gw.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    }
    assert!(!gw.log().contains(TOKEN));
}

#[tokio::test]
async fn check_names_a_missing_node_token_and_a_byok_conflict() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let with_pool = |extra: &str| config.replace("    nodes:\n", &format!("{extra}    nodes:\n"));

    std::fs::write(
        gw.config_path(),
        with_pool(
            "    auth_token_env: UNSET_NODE_TOKEN_VAR\n    byok_header: x-provider-authorization\n",
        ),
    )
    .unwrap();
    let check = gw.cli(&["check"]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("pools.openclaw.auth_token_env") && stderr.contains("UNSET_NODE_TOKEN_VAR"),
        "{stderr}"
    );

    std::fs::write(gw.config_path(), with_pool("    auth_token_env: PATH\n")).unwrap();
    let check = gw.cli(&["check"]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("pools.openclaw.byok_header"), "{stderr}");
}

#[tokio::test]
async fn only_token_endpoints_answered_2xx_get_token_estimates() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let c = client();
    for path in ["/v1/models", "/v1/nope"] {
        let r = c
            .get(gw.url(path))
            .header("x-user-id", "bob")
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    gw.wait_for_rows(2).await;
    type Row = (String, u16, Option<i64>, Option<i64>, i64);
    let rows: Vec<Row> = gw
        .db()
        .prepare(
            "SELECT endpoint, status, prompt_tokens, completion_tokens, tokens_est \
             FROM requests ORDER BY endpoint",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("/v1/models", 200));
    assert_eq!((rows[1].0.as_str(), rows[1].1), ("/v1/nope", 404));
    for row in &rows {
        assert_eq!((row.2, row.3, row.4), (None, None, 0), "{row:?}");
    }
}

/// The official OpenAI Python SDK through the gateway: `client.responses.stream()` checks
/// every event of the Responses stream, so the gateway must pass it through untouched; chat
/// streams too. Both requests land in the user's own session on a node that requires its token.
#[tokio::test]
async fn the_official_python_sdk_streams_through_the_gateway() {
    let node = MockNode::start(MockOptions {
        token: Some("node-secret".to_owned()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = Gateway::start(
        Setup::nodes(&[node.addr()])
            .top("auth: { require_key: true }\n")
            .pool("    auth_token_env: SDK_NODE_TOKEN\n    byok_header: x-provider-authorization\n")
            .env("SDK_NODE_TOKEN", "node-secret"),
    )
    .await;
    let (_, key) = gw.create_key("ana", None).await;
    let headers = format!(r#"{{"x-gateway-key": "{key}", "x-openclaw-session-key": "main"}}"#);
    let out = common::run_python_sdk(gw.url("/v1"), "sk-ana-own-key", headers).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    let answer = "Hello! I am the ExoClaw demo node. You asked: Plan my week";
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!("responses: {answer}"), format!("chat: {answer}")],
        "{stderr}"
    );
    assert_eq!(node.session_turns(&session_key("ana", None)), 2);
    assert_eq!(
        node.session_turns("main"),
        0,
        "the client's session key was dropped"
    );
    for seen in node.seen() {
        assert_eq!(
            seen.headers["x-provider-authorization"],
            "Bearer sk-ana-own-key"
        );
    }
}
