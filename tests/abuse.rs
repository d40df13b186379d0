//! The gateway under abuse, over real sockets: clients that hang up while queued, idle and slow
//! connections, oversized heads, one address opening too many connections, and junk that would
//! fill the ledger.

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, client, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let node = MockNode::start(MockOptions {
        hold_after_first_event: Some(gate.clone()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
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
        stream.set_linger(Some(Duration::ZERO)).unwrap();
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
