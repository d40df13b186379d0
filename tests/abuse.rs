//! The gateway under abuse, over real sockets: clients that hang up while queued, idle and slow
//! connections, oversized heads, one address opening too many connections, and junk that would
//! fill the ledger.

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, client, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A keep-alive `GET /v1/models` as raw bytes.
const MODELS_REQUEST: &[u8] =
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-User-ID: a\r\nAuthorization: Bearer sk-1\r\n\r\n";

fn chat_request(user: &str) -> String {
    let body = chat_body(false).to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-User-ID: {user}\r\n\
         Authorization: Bearer sk-1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn queued_requests_whose_clients_hang_up_never_reach_the_node() {
    let (node, gate) = common::holding_node().await;
    let yaml = format!(
        "pools:\n  openclaw:\n    queue: {{ max_waiting: 100, timeout: 30s }}\n    nodes:\n      \
         - {{ name: mini, addr: \"{}\", max_inflight: 1 }}\n",
        node.addr()
    );
    let gw = Gateway::start(Setup::pools(&yaml)).await;
    // A stream holds the only slot.
    let held = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "holder")
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);

    let mut queued = Vec::new();
    for i in 0..20 {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(chat_request(&format!("gone-{i}")).as_bytes())
            .await
            .unwrap();
        queued.push(stream);
    }
    // Every one of them is waiting for the slot...
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gw, "exoclaw_admission_waiting").await < 20.0 {
        assert!(Instant::now() < deadline, "the 20 requests did not queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...when their clients reset the connections.
    for stream in queued {
        stream.set_zero_linger().unwrap();
        drop(stream);
    }
    gw.wait_for_rows(20).await;
    gate.add_permits(1);
    held.text().await.unwrap();
    gw.wait_for_rows(21).await;
    let reached: Vec<String> = node
        .seen()
        .iter()
        .map(|r| r.headers["x-forwarded-user"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        reached,
        ["holder"],
        "no request of a client gone reached the node"
    );
    let after = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "next")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "no stale place holds the queue up");
}

/// One value of a Prometheus series on the admin listener (0 when absent).
async fn metric(gw: &Gateway, series: &str) -> f64 {
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads whatever the gateway sends until it closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// A gateway whose public listener has small connection limits, in front of a mock node.
async fn guarded_gateway(node: &MockNode) -> Gateway {
    Gateway::start(Setup::nodes(&[node.addr()]).server(
        "  keepalive_timeout: 1s\n  request_head_timeout: 1s\n  max_request_head: 4KiB\n  \
         max_connections_per_client: 8\n",
    ))
    .await
}

#[tokio::test]
async fn idle_connections_close_after_the_keepalive_timeout() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = guarded_gateway(&node).await;
    // Connections that never send a byte.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // A keep-alive connection that sent one request and then idles.
    let mut used = TcpStream::connect(gw.addr).await.unwrap();
    used.write_all(MODELS_REQUEST).await.unwrap();
    let mut head = [0u8; 12];
    used.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    for mut stream in silent {
        let (_, after) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert!(
            after < Duration::from_secs(5),
            "a silent connection lived {after:?}"
        );
    }
    let (_, after) = read_until_closed(&mut used, Duration::from_secs(10)).await;
    assert!(
        after < Duration::from_secs(5),
        "an idle keep-alive lived {after:?}"
    );
}

#[tokio::test]
async fn a_head_sent_too_slowly_gets_408_and_is_closed() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = guarded_gateway(&node).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: each read is quick, the whole head never arrives in time.
    let drip = async {
        for byte in b"GET /v1/models HTTP/1.1\r\nX-Slow: "
            .iter()
            .cycle()
            .take(100)
        {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), drip).await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(node.seen().is_empty());
}

#[tokio::test]
async fn an_oversized_head_gets_431_and_a_large_body_still_passes() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = guarded_gateway(&node).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let huge = "a".repeat(10 * 1024);
    let request = format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("request_header_too_large"), "{answer}");
    assert!(node.seen().is_empty());

    // The cap is on the head only: a 64 KiB prompt, even behind `Expect: 100-continue` (curl
    // sends it for large bodies), goes through.
    let mut body = chat_body(false);
    body["messages"][0]["content"] = serde_json::json!("x".repeat(64 * 1024));
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "big")
        .header("expect", "100-continue")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = guarded_gateway(&node).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(MODELS_REQUEST).await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(stream);
    }
    let mut ninth = TcpStream::connect(gw.addr).await.unwrap();
    let (answer, _) = read_until_closed(&mut ninth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");

    // A closed connection gives its place back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client()
            .get(gw.url("/v1/models"))
            .header("x-user-id", "a")
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a request on a keep-alive connection and reads its whole answer; returns the status.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> u16 {
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head[9..12].parse().unwrap()
}

/// One anonymous connection sending 404s with 30 KB paths as fast as it can: the ledger keeps
/// a bounded sample of short rows, and counts the rest.
#[tokio::test]
async fn junk_from_one_address_cannot_fill_the_ledger() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let size_before = db_bytes(&gw);
    let junk = format!("GET /x/{} HTTP/1.1\r\nHost: x\r\n\r\n", "j".repeat(30_000));
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    const SENT: usize = 1_000;
    for _ in 0..SENT {
        assert_eq!(exchange(&mut stream, junk.as_bytes()).await, 404);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let suppressed = loop {
        let suppressed = metric(&gw, "exoclaw_ledger_rows_suppressed_total").await as usize;
        let written: usize = gw
            .db()
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize;
        if suppressed + written == SENT {
            break suppressed;
        }
        assert!(
            Instant::now() < deadline,
            "{written} written + {suppressed} counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (rows, longest): (i64, i64) = gw
        .db()
        .query_row(
            "SELECT COUNT(*), MAX(LENGTH(CAST(endpoint AS BLOB))) FROM requests",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        (1..=120).contains(&rows),
        "{rows} rows for {SENT} junk requests from one address"
    );
    assert_eq!(suppressed, SENT - rows as usize);
    assert!(longest <= 256, "an endpoint of {longest} bytes was stored");
    let grown = db_bytes(&gw).saturating_sub(size_before);
    assert!(grown < 2 << 20, "the database grew by {grown} bytes");
}

/// The database and its WAL, in bytes.
fn db_bytes(gw: &Gateway) -> u64 {
    let path = gw.db_path();
    let wal = path.with_extension("db-wal");
    [path, wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// A stream still running when the grace period of a SIGTERM ends is cut; its row is written
/// anyway, with the tokens estimated from what passed.
#[tokio::test]
async fn a_stream_cut_by_the_end_of_the_grace_period_leaves_its_row() {
    let (node, gate) = common::holding_node().await;
    let mut gw = Gateway::start(Setup::nodes(&[node.addr()])).await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", "streamer")
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    use futures_util::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    // SIGTERM: the stream is held past the 1 s grace period, then cut.
    let status = gw.terminate();
    assert!(status.success(), "{status:?}");
    let row: (String, u16, bool, bool, i64, Option<String>) = gw
        .db()
        .query_row(
            "SELECT user_id, status, streamed, tokens_reported, tokens_est, error_type \
             FROM requests",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("the cut stream's row is there");
    assert_eq!(
        (row.0.as_str(), row.1, row.2, row.3),
        ("streamer", 200, true, false)
    );
    assert!(row.4 > 0, "tokens estimated: {row:?}");
    drop(gate);
}
