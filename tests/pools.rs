//! Node pools over real HTTP with three mock nodes: failover when a node dies mid-load,
//! consistent hashing, weights, model routing with a 2 MiB body, and all nodes down.

mod common;

use std::collections::HashMap;

use common::{chat_body, client, free_addr, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions};
use serde_json::{json, Value};

async fn nodes(n: usize) -> Vec<MockNode> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(MockNode::start(MockOptions::default()).await.unwrap());
    }
    nodes
}

fn pool_yaml(name: &str, strategy: &str, nodes: &[(&MockNode, usize)], extra: &str) -> String {
    let list: String = nodes
        .iter()
        .enumerate()
        .map(|(i, (node, weight))| {
            format!(
                "      - {{ name: {name}-{i}, addr: \"{}\", weight: {weight} }}\n",
                node.addr()
            )
        })
        .collect();
    format!("  {name}:\n    strategy: {strategy}\n{extra}    nodes:\n{list}")
}

async fn chat_as(gw: &Gateway, user: &str) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", user)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Which node served each user, from what the nodes saw.
fn placement(nodes: &[&MockNode]) -> HashMap<String, usize> {
    let mut by_user = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for seen in node.seen() {
            let user = seen.headers["x-forwarded-user"]
                .to_str()
                .unwrap()
                .to_owned();
            let previous = by_user.insert(user.clone(), i);
            assert!(
                previous.is_none() || previous == Some(i),
                "{user} served by two nodes"
            );
        }
    }
    by_user
}

#[tokio::test]
async fn consistent_hashing_keeps_users_and_a_dead_node_costs_no_request() {
    let mut mocks = nodes(3).await;
    let yaml = format!(
        "pools:\n{}",
        pool_yaml(
            "openclaw",
            "consistent_hash",
            &[(&mocks[0], 1), (&mocks[1], 1), (&mocks[2], 1)],
            "    health_check: { interval: 200ms, failures: 1, successes: 1 }\n"
        )
    );
    let gw = Gateway::start(Setup::pools(&yaml)).await;
    let users: Vec<String> = (0..30).map(|i| format!("trainee-{i}")).collect();
    for round in 0..2 {
        for user in &users {
            assert_eq!(chat_as(&gw, user).await, 200, "round {round}");
        }
    }
    let before = placement(&[&mocks[0], &mocks[1], &mocks[2]]);
    assert_eq!(
        before.len(),
        30,
        "each user stuck to one node over two rounds"
    );
    assert!(
        (0..3).all(|i| before.values().any(|n| *n == i)),
        "all nodes used"
    );

    // Kill node 1 mid-load: every request still succeeds (failover on the refused connect).
    let dead = mocks.remove(1);
    let dead_addr = dead.addr();
    drop(dead);
    let survivors = [&mocks[0], &mocks[1]];
    let seen_before: Vec<usize> = survivors.iter().map(|m| m.seen().len()).collect();
    for user in &users {
        assert_eq!(chat_as(&gw, user).await, 200, "{user} after the node died");
    }
    // Only the dead node's users moved.
    for (i, node) in survivors.iter().enumerate() {
        for seen in &node.seen()[seen_before[i]..] {
            let user = seen.headers["x-forwarded-user"].to_str().unwrap();
            let was = before[user];
            let now_index = if i == 0 { 0 } else { 2 };
            assert!(
                was == now_index || was == 1,
                "{user} moved from a live node"
            );
        }
    }
    let report: Value = gw.admin_nodes().await;
    let dead_report = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["addr"] == dead_addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(dead_report["healthy"], false, "{report}");
    assert!(dead_report["ejections"].as_u64().unwrap() >= 1);
    assert!(dead_report["errors"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn round_robin_honours_weights() {
    let mocks = nodes(3).await;
    let yaml = format!(
        "pools:\n{}",
        pool_yaml(
            "openclaw",
            "round_robin",
            &[(&mocks[0], 1), (&mocks[1], 2), (&mocks[2], 3)],
            ""
        )
    );
    let gw = Gateway::start(Setup::pools(&yaml)).await;
    for i in 0..300 {
        assert_eq!(chat_as(&gw, &format!("u{i}")).await, 200);
    }
    let counts: Vec<usize> = mocks.iter().map(|m| m.seen().len()).collect();
    for (count, weight) in counts.iter().zip([1, 2, 3]) {
        let expected = 300 * weight / 6;
        assert!(
            count.abs_diff(expected) <= 10,
            "{counts:?} for weights 1:2:3"
        );
    }
}

#[tokio::test]
async fn a_model_routes_to_its_pool_even_in_a_2_mib_body() {
    let mocks = nodes(2).await;
    let yaml = format!(
        "pools:\n{}{}routes:\n  - {{ model_prefix: gemma, pool: noclaw }}\n  - {{ pool: openclaw }}\n",
        pool_yaml("openclaw", "round_robin", &[(&mocks[0], 1)], ""),
        pool_yaml("noclaw", "round_robin", &[(&mocks[1], 1)], ""),
    );
    let gw = Gateway::start(Setup::pools(&yaml)).await;
    // The official SDKs put `messages` before `model`: the model is at the very end.
    let big_prompt = "lorem ipsum ".repeat(2 * 1024 * 1024 / 12);
    let body = |model: &str, stream: bool| {
        format!(
            r#"{{"messages":[{{"role":"user","content":"{big_prompt}"}}],"stream":{stream},"model":"{model}"}}"#
        )
    };
    for (model, stream, target) in [
        ("gemma3:27b", false, 1),
        ("gpt-4o", false, 0),
        ("gemma3:27b", true, 1),
    ] {
        let payload = body(model, stream);
        assert!(payload.len() > 2 * 1024 * 1024 - 100);
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        let text = r.text().await.unwrap();
        if stream {
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert!(!text.contains("\"choices\":[]"), "usage chunk hidden");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["model"], model);
        }
        let seen = mocks[target].seen();
        let last = seen.last().unwrap();
        let sent: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(sent["model"], model, "{model} reached pool {target}");
        assert_eq!(
            sent["messages"][0]["content"].as_str().unwrap().len(),
            big_prompt.len()
        );
    }
    assert_eq!(mocks[0].seen().len(), 1);
    assert_eq!(mocks[1].seen().len(), 2);

    // Small bodies route the same way.
    let small = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({ "model": "gemma3:27b", "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(mocks[1].seen().len(), 3);
}

#[tokio::test]
async fn all_nodes_down_gives_503_json_with_retry_after() {
    let yaml = format!(
        "pools:\n  openclaw:\n    health_check: {{ interval: 100ms, failures: 1 }}\n    nodes:\n      \
         - {{ name: a, addr: \"{}\" }}\n      - {{ name: b, addr: \"{}\" }}\n",
        free_addr(),
        free_addr()
    );
    let gw = Gateway::start(Setup::pools(&yaml)).await;
    // First request: both connects refused → 502 after trying both nodes.
    let first = chat_as(&gw, "ana").await;
    assert!(first == 502 || first == 503, "{first}");
    // Once both are ejected, the gateway answers 503 without trying.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            assert!(r.headers().contains_key("retry-after"));
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["type"], "no_healthy_node");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never 503");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_full_node_admits_waiting_requests_by_tier_priority() {
    let (node, gate) = common::holding_node().await;
    let top = "auth: { require_key: true }
tiers:
  workshop: { requests_per_minute: 50 }
  tier1: { requests_per_minute: 50, priority: 0 }
  tier2: { requests_per_minute: 100, priority: 1 }
default_tier: workshop
";
    let yaml = format!(
        "pools:\n  openclaw:\n    queue: {{ max_waiting: 10, timeout: 5s }}\n    nodes:\n      \
         - {{ name: mini, addr: \"{}\", max_inflight: 1 }}\n",
        node.addr()
    );
    let gw = std::sync::Arc::new(Gateway::start(Setup::pools(&yaml).top(top)).await);
    let (_, holder) = gw.create_key("holder", None).await;
    let mut keys = Vec::new();
    for (user, tier) in [
        ("w1", None),
        ("t1", Some("tier1")),
        ("w2", None),
        ("p1", Some("tier2")),
    ] {
        keys.push((user, gw.create_key(user, tier).await.1));
    }

    // The holder's stream occupies the only slot until the gate opens.
    let held = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &holder)
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let mut waiting = Vec::new();
    for (user, key) in keys {
        let gw = gw.clone();
        waiting.push(tokio::spawn(async move {
            let r = client()
                .post(gw.url("/v1/chat/completions"))
                .header("x-gateway-key", key)
                .json(&chat_body(false))
                .send()
                .await
                .unwrap();
            (user, r.status().as_u16())
        }));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    assert_eq!(
        node.seen().len(),
        1,
        "everyone else waits while the node is full"
    );
    gate.add_permits(1);
    held.text().await.unwrap();
    for task in waiting {
        let (user, status) = task.await.unwrap();
        assert_eq!(status, 200, "{user}");
    }
    let order: Vec<String> = node
        .seen()
        .iter()
        .map(|r| r.headers["x-forwarded-user"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        ["holder", "p1", "w1", "t1", "w2"],
        "tier2 first, then arrival order"
    );
}

#[tokio::test]
async fn waiting_past_the_queue_timeout_gives_503_with_retry_after() {
    let (node, gate) = common::holding_node().await;
    let yaml = format!(
        "pools:\n  openclaw:\n    queue: {{ max_waiting: 10, timeout: 400ms }}\n    nodes:\n      \
         - {{ name: mini, addr: \"{}\", max_inflight: 1 }}\n",
        node.addr()
    );
    let gw = Gateway::start(Setup::pools(&yaml)).await;
    let held = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() >= std::time::Duration::from_millis(350));
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "nodes_busy");
    gate.add_permits(1);
    held.text().await.unwrap();
}

#[tokio::test]
async fn a_tls_node_is_reached_with_its_sni_and_verified_against_the_pools_ca() {
    let certified = rcgen::generate_simple_self_signed(vec!["node.test".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let node = MockNode::start_tls(MockOptions::default(), &cert_pem, &key_pem)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert_pem).unwrap();

    let pool = |ca: &str| {
        format!(
            "pools:\n  openclaw:\n{ca}    health_check: {{ interval: 100ms, failures: 1 }}\n    \
             nodes:\n      - {{ name: tls-node, addr: \"{}\", tls: true, sni: node.test }}\n",
            node.addr()
        )
    };
    let trusted = pool(&format!("    tls_ca_file: \"{}\"\n", ca_file.display()));
    let gw = Gateway::start(Setup::pools(&trusted)).await;
    assert_eq!(chat_as(&gw, "ana").await, 200, "{}", gw.log());
    assert_eq!(node.seen().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(node.health_probes() > 0, "health checks speak TLS too");
    let report: Value = gw.admin_nodes().await;
    assert_eq!(report["nodes"][0]["healthy"], true, "{report}");

    // Without the pool's CA the certificate is not trusted: no request reaches the node.
    let untrusted = Gateway::start(Setup::pools(&pool(""))).await;
    let status = chat_as(&untrusted, "ana").await;
    assert!(status == 502 || status == 503, "{status}");
    assert_eq!(node.seen().len(), 1);
}

#[test]
fn a_bad_ca_file_is_named_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let config = dir.path().join("exoclaw.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: \"127.0.0.1:8787\" }}\npools:\n  openclaw:\n    tls_ca_file: \"{}\"\n    \
             nodes: [ {{ name: a, addr: \"127.0.0.1:1\", tls: true }} ]\n",
            ca_file.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(common::EXOCLAW)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pools.openclaw.tls_ca_file"), "{stderr}");
}

#[tokio::test]
async fn killing_a_node_under_concurrent_load_fails_no_request_after_failover() {
    let mut mocks = nodes(3).await;
    let yaml = format!(
        "pools:\n{}",
        pool_yaml(
            "openclaw",
            "consistent_hash",
            &[(&mocks[0], 1), (&mocks[1], 1), (&mocks[2], 1)],
            "    health_check: { interval: 200ms, failures: 2, successes: 1 }\n"
        )
    );
    let gw = std::sync::Arc::new(Gateway::start(Setup::pools(&yaml)).await);
    let started = std::time::Instant::now();
    // Requests run until 40 have started well after the kill (bounded at 15 s): a busy machine
    // sends fewer per second, and the test must still see enough of them after the failover.
    let killed_at_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let after_kill = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (gw, killed_at_ms, after_kill) = (gw.clone(), killed_at_ms.clone(), after_kill.clone());
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0;
            while started.elapsed() < std::time::Duration::from_secs(15)
                && after_kill.load(std::sync::atomic::Ordering::SeqCst) < 40
            {
                let at = started.elapsed();
                let status = chat_as(&gw, &format!("load-{w}-{}", i % 10)).await;
                let killed = killed_at_ms.load(std::sync::atomic::Ordering::SeqCst);
                if killed != u64::MAX && at.as_millis() as u64 > killed + 50 {
                    after_kill.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                results.push((at, status));
                i += 1;
            }
            results
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let killed_at = started.elapsed();
    drop(mocks.remove(1));
    killed_at_ms.store(
        killed_at.as_millis() as u64,
        std::sync::atomic::Ordering::SeqCst,
    );
    let mut after = 0;
    for worker in workers {
        for (at, status) in worker.await.unwrap() {
            if at > killed_at + std::time::Duration::from_millis(50) {
                after += 1;
                assert_eq!(
                    status, 200,
                    "a request started {at:?} in (node killed at {killed_at:?})"
                );
            }
        }
    }
    assert!(
        after > 20,
        "load kept flowing after the kill ({after} requests)"
    );
}

/// `exoclaw mock-node` as a process of its own, so it can die the hard way (SIGKILL).
struct NodeProcess {
    addr: std::net::SocketAddr,
    child: std::process::Child,
}

impl NodeProcess {
    fn start(addr: std::net::SocketAddr) -> NodeProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(common::EXOCLAW)
            .args(["mock-node", "--threads", "1", "--listen", &addr.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn exoclaw mock-node");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains(&addr.to_string()), "{first}");
        NodeProcess { addr, child }
    }

    /// SIGKILL, without waiting: the next request races the dying process, as in production.
    fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn all_nodes_healthy(gw: &Gateway) -> bool {
    let nodes: Value = gw.admin_nodes().await;
    nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["healthy"] == true)
}

/// Three keep-alive nodes; one is killed with SIGKILL between two requests. The gateway's
/// pooled connection to it breaks on the next request for it, which must be sent again (fresh
/// connection, then another node) rather than answered 502. 20 repetitions of 200
/// back-to-back requests on one keep-alive client connection: not one may fail.
#[tokio::test]
async fn a_node_killed_between_requests_fails_no_request() {
    let mut processes: Vec<NodeProcess> = (0..3).map(|_| NodeProcess::start(free_addr())).collect();
    let list: String = processes
        .iter()
        .enumerate()
        .map(|(i, p)| format!("      - {{ name: n{i}, addr: \"{}\" }}\n", p.addr))
        .collect();
    let yaml = format!(
        "pools:\n  openclaw:\n    strategy: consistent_hash\n    \
         health_check: {{ interval: 100ms, failures: 3, successes: 1 }}\n    nodes:\n{list}"
    );
    let top =
        "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 1000000 } }\n";
    let gw = Gateway::start(Setup::pools(&yaml).top(top)).await;
    let keep_alive = client();
    let mut failed = Vec::new();
    for repetition in 0..20 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_nodes_healthy(&gw).await {
            assert!(std::time::Instant::now() < deadline, "nodes came back");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let victim = repetition % 3;
        let kill_at = 40 + (repetition * 37) % 120;
        for i in 0..200 {
            if i == kill_at {
                processes[victim].kill();
            }
            let status = keep_alive
                .post(gw.url("/v1/chat/completions"))
                .header("x-user-id", format!("user-{}", i % 12))
                .json(&chat_body(false))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if status.as_ref().ok() != Some(&200) {
                failed.push((repetition, i, format!("{status:?}")));
            }
        }
        let addr = processes[victim].addr;
        let _ = processes[victim].child.wait();
        processes[victim] = NodeProcess::start(addr);
    }
    assert!(
        failed.is_empty(),
        "{} failed requests, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    let nodes: Value = gw.admin_nodes().await;
    let errors: u64 = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["errors"].as_u64().unwrap())
        .sum();
    assert!(errors >= 20, "each kill counted against its node: {nodes}");
}
