//! The usage ledger over real HTTP: one row per request (rejections included), token counts for
//! JSON and streams, the injected `include_usage` and its hidden chunk, rows surviving SIGTERM,
//! dropped rows counted while the writer is stalled, and the usage views.

mod common;

use std::time::Duration;

use common::{chat_body, client, Gateway, Setup, ADMIN_TOKEN};
use exoclaw::mock::openai::ChatRequest;
use exoclaw::mock::{MockNode, MockOptions};
use serde_json::Value;

const KEYS_ON: &str = "auth: { mode: byok, require_key: true }\n";

/// The usage the mock node reports for `chat_body(..)`.
fn expected_usage() -> (u64, u64) {
    let req = ChatRequest::parse(chat_body(false).to_string().as_bytes()).unwrap();
    (req.prompt_tokens, req.answer_words().len() as u64)
}

#[derive(Debug)]
struct Row {
    user: String,
    endpoint: String,
    status: i64,
    prompt: Option<i64>,
    completion: Option<i64>,
    total: Option<i64>,
    tokens_est: i64,
    streamed: bool,
    reported: bool,
    error_type: Option<String>,
    ip_hash: Option<String>,
    model: Option<String>,
    node: Option<String>,
}

fn rows(gw: &Gateway) -> Vec<Row> {
    let conn = gw.db();
    let mut stmt = conn
        .prepare(
            "SELECT user_id, endpoint, status, prompt_tokens, completion_tokens, total_tokens,
                    tokens_est, streamed, tokens_reported, error_type, ip_hash, model, node
             FROM requests ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            user: r.get(0)?,
            endpoint: r.get(1)?,
            status: r.get(2)?,
            prompt: r.get(3)?,
            completion: r.get(4)?,
            total: r.get(5)?,
            tokens_est: r.get(6)?,
            streamed: r.get(7)?,
            reported: r.get(8)?,
            error_type: r.get(9)?,
            ip_hash: r.get(10)?,
            model: r.get(11)?,
            node: r.get(12)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[tokio::test]
async fn every_request_gets_one_row_with_exact_tokens_for_json_and_streams() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = format!(
        "{KEYS_ON}tiers:\n  workshop: {{ requests_per_minute: 50 }}\n  tiny: {{ requests_per_minute: 1 }}\n"
    );
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(&top)).await;
    let (_, ana) = gw.create_key("ana", None).await;
    let (_, tiny) = gw.create_key("tiny", Some("tiny")).await;
    let c = client();
    let send = |key: &str, body: Value| {
        c.post(gw.url("/v1/chat/completions"))
            .header("x-gateway-key", key)
            .json(&body)
            .send()
    };

    assert_eq!(send(&ana, chat_body(false)).await.unwrap().status(), 200);
    let stream = send(&ana, chat_body(true)).await.unwrap();
    assert_eq!(stream.status(), 200);
    stream.text().await.unwrap();
    assert_eq!(
        send("exo_forged", chat_body(false)).await.unwrap().status(),
        401
    );
    assert_eq!(send(&tiny, chat_body(false)).await.unwrap().status(), 200);
    assert_eq!(send(&tiny, chat_body(false)).await.unwrap().status(), 429);
    assert_eq!(
        c.get(gw.url("/nowhere")).send().await.unwrap().status(),
        404
    );
    assert_eq!(c.get(gw.url("/health")).send().await.unwrap().status(), 200);

    gw.wait_for_rows(6).await; // /health is not a user request and gets no row
    let rows = rows(&gw);
    let (prompt, completion) = expected_usage();
    for row in [&rows[0], &rows[1]] {
        assert_eq!((row.user.as_str(), row.status), ("ana", 200));
        assert_eq!(row.prompt, Some(prompt as i64), "{row:?}");
        assert_eq!(row.completion, Some(completion as i64), "{row:?}");
        assert_eq!(row.total, Some((prompt + completion) as i64));
        assert_eq!(row.tokens_est, (prompt + completion) as i64);
        assert!(row.reported, "tokens came from the node's usage");
        assert_eq!(row.model.as_deref(), Some("gpt-4o"));
        assert_eq!(row.node.as_deref(), Some("node-0"));
        assert_eq!(row.endpoint, "/v1/chat/completions");
    }
    assert!(!rows[0].streamed && rows[1].streamed);
    assert_eq!(rows[2].status, 401);
    assert_eq!(rows[2].error_type.as_deref(), Some("authentication_error"));
    assert_eq!(rows[2].total, None);
    assert_eq!(rows[4].status, 429);
    assert_eq!(rows[4].error_type.as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(rows[5].status, 404);
    let hash = rows[0].ip_hash.clone().unwrap();
    assert_eq!(hash.len(), 32);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(rows
        .iter()
        .all(|r| r.ip_hash.as_deref() == Some(hash.as_str())));
    assert!(!hash.contains("127.0.0.1"));
}

#[tokio::test]
async fn include_usage_is_injected_and_its_chunk_hidden_unless_the_client_asked() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let c = client();

    let plain = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(true))
        .send()
        .await;
    let text = plain.unwrap().text().await.unwrap();
    let sent: Value = serde_json::from_slice(&node.seen()[0].body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "injected for the node"
    );
    assert_eq!(
        sent["messages"],
        chat_body(true)["messages"],
        "the rest is untouched"
    );
    let framing = |i: usize| {
        let headers = &node.seen()[i].headers;
        (
            headers
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_owned()),
            headers.get("transfer-encoding").is_some(),
        )
    };
    assert_eq!(
        framing(0),
        (Some(node.seen()[0].body.len().to_string()), false),
        "the rewritten body goes with its own length, not chunked"
    );
    assert!(
        !text.contains("\"choices\":[]"),
        "usage chunk hidden: {text}"
    );
    assert!(!text.contains("prompt_tokens"));
    assert!(text.ends_with("data: [DONE]\n\n"));

    let mut asked = chat_body(true);
    asked["stream_options"] = serde_json::json!({ "include_usage": true });
    let text = c
        .post(gw.url("/v1/chat/completions"))
        .json(&asked)
        .send()
        .await;
    let text = text.unwrap().text().await.unwrap();
    assert!(
        text.contains("\"choices\":[]") && text.contains("prompt_tokens"),
        "{text}"
    );
    let asked_bytes = serde_json::to_vec(&asked).unwrap();
    assert_eq!(node.seen()[1].body, asked_bytes, "forwarded as sent");
    assert_eq!(framing(1), (Some(asked_bytes.len().to_string()), false));
    c.post(gw.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        node.seen()[2].body,
        serde_json::to_vec(&chat_body(false)).unwrap(),
        "a JSON chat completion is not rewritten"
    );
    assert!(!framing(2).1, "nor sent chunked");

    gw.wait_for_rows(3).await;
    let rows = rows(&gw);
    let (prompt, completion) = expected_usage();
    for row in &rows[..2] {
        assert!(row.reported && row.streamed);
        assert_eq!(row.total, Some((prompt + completion) as i64));
    }
}

#[tokio::test]
async fn a_stream_cut_by_the_node_records_an_estimate() {
    let (node, _gate) = common::holding_node().await;
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    use futures_util::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(node); // the node dies mid-stream
    while let Some(Ok(_)) = body.next().await {}

    gw.wait_for_rows(1).await;
    let row = &rows(&gw)[0];
    assert!(
        !row.reported,
        "no usage arrived: the tokens are an estimate"
    );
    assert!(row.total.unwrap() > 0 && row.tokens_est > 0, "{row:?}");
    assert!(row.streamed);
}

#[tokio::test]
async fn rows_survive_a_graceful_stop() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    // A long flush interval keeps the rows in memory until the stop flushes them.
    let top = "auth: { require_key: false }\nledger: { flush_interval: 60s, batch_size: 10000 }\n";
    let mut gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top)).await;
    for _ in 0..20 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send();
        assert_eq!(r.await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: i64 = gw
        .db()
        .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, 0, "rows are still queued in memory");
    let status = gw.terminate();
    assert!(status.success(), "graceful exit: {status:?}\n{}", gw.log());
    let after: i64 = gw
        .db()
        .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        after,
        20,
        "no accepted row is lost on SIGTERM\n{}",
        gw.log()
    );
}

#[tokio::test]
async fn a_stalled_writer_drops_rows_and_counts_them_while_requests_succeed() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = "auth: { require_key: false }\nledger: { queue_capacity: 4, batch_size: 2, flush_interval: 10ms }\n";
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top)).await;
    let stats = || async {
        let r = client()
            .get(gw.admin_url("/admin/ledger"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    };

    // Another process holds the database's write lock: the writer cannot commit.
    let blocker = gw.db();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..30 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send();
        assert_eq!(
            r.await.unwrap().status(),
            200,
            "request {i} succeeds despite the stall"
        );
    }
    let stalled = stats().await;
    assert!(stalled["dropped"].as_u64().unwrap() > 0, "{stalled}");
    assert_eq!(stalled["written"], 0);
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);

    // Every request sent is either a row in the database or counted as dropped: rows are
    // counted in the database itself, not taken from the writer's own `written`.
    let sent = 30;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats().await;
        let dropped = s["dropped"].as_u64().unwrap();
        let in_db: i64 = gw
            .db()
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
            .unwrap();
        if in_db as u64 + dropped == sent && s["queued"] == 0 {
            assert!(
                in_db > 0,
                "the writer recovered and wrote the rows it held: {s}"
            );
            assert_eq!(s["written"], in_db, "the writer counts what it wrote: {s}");
            break;
        }
        assert!(
            in_db as u64 + dropped <= sent,
            "{in_db} rows + {dropped} dropped for {sent} requests: {s}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{in_db} rows + {dropped} dropped for {sent} requests: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn usage_shows_per_user_totals_in_the_cli_and_the_admin_api() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    for user in ["ana", "ana", "ana", "bob"] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-user-id", user)
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    gw.wait_for_rows(4).await;
    let (prompt, completion) = expected_usage();

    let out = gw.cli(&["usage", "--since", "5m", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let users: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users[0]["user_id"], "ana");
    assert_eq!(users[0]["requests"], 3);
    assert_eq!(users[0]["total_tokens"], 3 * (prompt + completion));
    assert_eq!(users[0]["errors"], 0);
    assert_eq!(users[1]["user_id"], "bob");

    let table = gw.cli(&["usage", "--since", "5m"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("USER") && table.contains("ana") && table.contains("bob"),
        "{table}"
    );

    let admin = client()
        .get(gw.admin_url("/admin/usage?since=5m"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let admin: Value = admin.json().await.unwrap();
    assert_eq!(admin["users"], users);
}

/// The Responses API through the gateway: a JSON answer and a stream, each recorded with the
/// node's `usage` (`input_tokens` / `output_tokens`), the stream passed to the client whole.
#[tokio::test]
async fn responses_api_answers_and_streams_are_counted_from_their_usage() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let c = client();
    let ask = |stream: bool| {
        serde_json::json!({
            "model": "gpt-4o",
            "input": [{ "role": "user", "content": "What is a claw?" }],
            "stream": stream,
        })
    };
    let expected = ChatRequest::parse_responses(ask(false).to_string().as_bytes()).unwrap();
    let (input, output) = (expected.prompt_tokens, expected.answer_words().len() as u64);

    let answer: Value = c
        .post(gw.url("/v1/responses"))
        .json(&ask(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["usage"]["input_tokens"], input);

    let stream = c
        .post(gw.url("/v1/responses"))
        .json(&ask(true))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.unwrap();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(
        text.contains("event: response.completed\n") && text.contains("\"output_tokens\""),
        "the client gets the usage event too: {text}"
    );
    assert_eq!(
        node.seen()[1].body,
        serde_json::to_vec(&ask(true)).unwrap(),
        "a Responses request is forwarded as sent"
    );

    gw.wait_for_rows(2).await;
    let rows = rows(&gw);
    for (row, streamed) in rows.iter().zip([false, true]) {
        assert_eq!(row.endpoint, "/v1/responses");
        assert_eq!(row.status, 200);
        assert!(row.reported, "usage from the node: {row:?}");
        assert_eq!(row.streamed, streamed);
        assert_eq!(row.prompt, Some(input as i64));
        assert_eq!(row.completion, Some(output as i64));
        assert_eq!(row.total, Some((input + output) as i64));
    }
}
