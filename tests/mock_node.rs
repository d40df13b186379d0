//! The mock OpenClaw node as a gateway sees it: a real `MockNode` on loopback, talked to over
//! HTTP. Token auth and probes, agent and session routing reported in `x-mock-*` headers,
//! `/v1/models/{id}`, and the official OpenAI Python SDK streaming from it.

mod common;

use common::bare_client;
use exoclaw::mock::{MockNode, MockOptions};
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};

const TOKEN: &str = "node-token-42";

async fn node(token: Option<&str>) -> MockNode {
    MockNode::start(MockOptions {
        token: token.map(str::to_owned),
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

fn url(node: &MockNode, path: &str) -> String {
    format!("http://{}{path}", node.addr())
}

fn chat(model: &str, user: Option<&str>) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{ "role": "user", "content": "Hello" }],
    });
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    body
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .to_str()
        .unwrap()
}

/// The agent, session key and turn count the mock reports for a request.
fn session_of(response: &Response) -> (String, String, u64) {
    (
        header(response, "x-mock-agent").to_owned(),
        header(response, "x-mock-session").to_owned(),
        header(response, "x-mock-session-turns").parse().unwrap(),
    )
}

async fn error_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].clone())
}

#[tokio::test]
async fn token_guards_every_path_but_the_probes() {
    let node = node(Some(TOKEN)).await;
    let c = bare_client();
    let models = url(&node, "/v1/models");

    let (status, error) = error_of(send(c.get(&models)).await).await;
    assert_eq!(status, 401);
    assert_eq!(error["type"], "authentication_error");
    assert_eq!(error["code"], "missing_api_key");
    let (status, error) = error_of(send(c.get(&models).bearer_auth("wrong")).await).await;
    assert_eq!(status, 401);
    assert_eq!(error["code"], "invalid_api_key");
    let (status, _) = error_of(send(c.get(&models).header("authorization", TOKEN)).await).await;
    assert_eq!(status, 401, "the token without `Bearer ` is not enough");
    assert_eq!(send(c.get(&models).bearer_auth(TOKEN)).await.status(), 200);

    let refused = send(
        c.post(url(&node, "/v1/chat/completions"))
            .header("x-openclaw-session-key", "refused-room")
            .json(&chat("openclaw", None)),
    )
    .await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("x-mock-session").is_none());
    assert_eq!(
        node.session_turns("refused-room"),
        0,
        "a refusal is no turn"
    );

    for (path, status) in [
        ("/health", "live"),
        ("/healthz", "live"),
        ("/ready", "ready"),
        ("/readyz", "ready"),
    ] {
        let probe = send(c.get(url(&node, path))).await;
        assert_eq!(probe.status(), 200, "{path} wants no token");
        let body: Value = probe.json().await.unwrap();
        assert_eq!(body, json!({ "ok": true, "status": status }), "{path}");
    }

    let seen = node.seen();
    assert_eq!(seen.len(), 5, "refused requests are seen, probes are not");
    assert_eq!(seen[4].path, "/v1/chat/completions");
    assert_eq!(node.health_probes(), 4);
}

#[tokio::test]
async fn ready_probes_answer_503_until_the_node_is_ready() {
    let node = node(None).await;
    let c = bare_client();
    node.set_ready(false);
    for path in ["/ready", "/readyz"] {
        let probe = send(c.get(url(&node, path))).await;
        assert_eq!(probe.status(), 503, "{path}");
        let body: Value = probe.json().await.unwrap();
        assert_eq!(body, json!({ "ok": false, "status": "not_ready" }));
    }
    assert_eq!(
        send(c.get(url(&node, "/health"))).await.status(),
        200,
        "a node that is not ready is still live"
    );
    node.set_ready(true);
    assert_eq!(send(c.get(url(&node, "/readyz"))).await.status(), 200);
}

#[tokio::test]
async fn each_user_has_a_session_and_its_turns_add_up() {
    let node = node(None).await;
    let c = bare_client();
    let completions = url(&node, "/v1/chat/completions");

    let first = send(c.post(&completions).json(&chat("openclaw", Some("alice")))).await;
    let other = send(c.post(&completions).json(&chat("openclaw", Some("bob")))).await;
    let again = send(c.post(&completions).json(&chat("openclaw", Some("alice")))).await;

    let alice = "agent:main:openai-user:alice";
    assert_eq!(session_of(&first), ("main".into(), alice.into(), 1));
    assert_eq!(
        session_of(&other),
        ("main".into(), "agent:main:openai-user:bob".into(), 1)
    );
    assert_eq!(session_of(&again), ("main".into(), alice.into(), 2));
    assert_eq!(node.session_turns(alice), 2);
    assert_eq!(node.session_turns("agent:main:openai-user:bob"), 1);
}

#[tokio::test]
async fn requests_without_header_or_user_each_open_a_new_session() {
    let node = node(None).await;
    let c = bare_client();
    let completions = url(&node, "/v1/chat/completions");
    let one = session_of(&send(c.post(&completions).json(&chat("openclaw", None))).await);
    let two = session_of(&send(c.post(&completions).json(&chat("openclaw", None))).await);
    assert_ne!(one.1, two.1);
    assert!(one.1.starts_with("agent:main:"), "{one:?}");
    assert_eq!((one.2, two.2), (1, 1));
}

#[tokio::test]
async fn session_header_wins_over_user_in_both_apis_and_streams() {
    let node = node(None).await;
    let c = bare_client();
    let with_key = |request: RequestBuilder| request.header("x-openclaw-session-key", "team-room");

    let chat_answer = send(
        with_key(c.post(url(&node, "/v1/chat/completions"))).json(&chat("openclaw", Some("alice"))),
    )
    .await;
    assert_eq!(session_of(&chat_answer).1, "team-room");
    let streamed = send(with_key(c.post(url(&node, "/v1/responses"))).json(&json!({
        "model": "openclaw", "input": "Hello", "stream": true, "user": "alice",
    })))
    .await;
    assert_eq!(header(&streamed, "content-type"), "text/event-stream");
    assert_eq!(
        session_of(&streamed),
        ("main".into(), "team-room".into(), 2)
    );
    assert!(streamed
        .text()
        .await
        .unwrap()
        .contains("event: response.completed\n"));
    assert_eq!(node.session_turns("team-room"), 2);
    assert_eq!(node.session_turns("agent:main:openai-user:alice"), 0);
}

#[tokio::test]
async fn model_or_header_names_the_agent_and_the_model_is_echoed() {
    let node = node(None).await;
    let c = bare_client();
    let completions = url(&node, "/v1/chat/completions");

    let beta = send(
        c.post(&completions)
            .json(&chat("openclaw/beta", Some("u1"))),
    )
    .await;
    assert_eq!(
        session_of(&beta),
        ("beta".into(), "agent:beta:openai-user:u1".into(), 1)
    );
    let answer: Value = beta.json().await.unwrap();
    assert_eq!(answer["model"], "openclaw/beta");

    let by_header = send(
        c.post(&completions)
            .header("x-openclaw-agent-id", "ops")
            .json(&chat("openclaw/beta", None)),
    )
    .await;
    assert_eq!(header(&by_header, "x-mock-agent"), "ops");

    let responses = send(c.post(url(&node, "/v1/responses")).json(&json!({
        "model": "agent:gamma", "input": "Hello",
    })))
    .await;
    assert_eq!(header(&responses, "x-mock-agent"), "gamma");
    let answer: Value = responses.json().await.unwrap();
    assert_eq!(answer["model"], "agent:gamma");
}

#[tokio::test]
async fn models_are_found_by_id() {
    let node = node(None).await;
    let c = bare_client();
    let found = send(c.get(url(&node, "/v1/models/gpt-4o-mini"))).await;
    assert_eq!(found.status(), 200);
    let model: Value = found.json().await.unwrap();
    assert_eq!(model["id"], "gpt-4o-mini");
    assert_eq!(model["object"], "model");

    let (status, error) = error_of(send(c.get(url(&node, "/v1/models/nope"))).await).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "model_not_found");
    assert!(error["message"].as_str().unwrap().contains("nope"));
}

/// The official OpenAI Python SDK streams a Responses API answer (through its
/// `responses.stream()` helper, which checks every event) and a chat completion from the mock,
/// with the node's token and extra headers. It needs `python3` with the `openai` package, which
/// `.ci/run` installs; without them this test fails rather than passing unchecked.
#[tokio::test]
async fn official_python_sdk_streams_responses_and_chat() {
    let node = node(Some(TOKEN)).await;
    let headers = r#"{"x-openclaw-session-key": "sdk-room"}"#.to_owned();
    let out = common::run_python_sdk(url(&node, "/v1"), TOKEN, headers).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    let answer = "Hello! I am the ExoClaw demo node. You asked: Plan my week";
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!("responses: {answer}"), format!("chat: {answer}")],
        "{stderr}"
    );
    assert_eq!(
        node.session_turns("sdk-room"),
        2,
        "the SDK sent the extra headers with both requests"
    );
}
