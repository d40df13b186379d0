//! Live reload over real HTTP: a tier's new limit applies to the next request, an invalid edit
//! keeps the running config, nodes are added and removed live, and SIGHUP reloads.

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, client, free_addr, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions};

fn with_tier_limit(config: &str, from: u32, to: u32) -> String {
    config.replace(
        &format!("requests_per_minute: {from} }}"),
        &format!("requests_per_minute: {to} }}"),
    )
}

async fn limit_header(gw: &Gateway, user: &str) -> (u16, String) {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-user-id", user)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    let limit = r.headers()["x-ratelimit-limit-requests"]
        .to_str()
        .unwrap()
        .to_owned();
    (r.status().as_u16(), limit)
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_new_tier_limit_applies_to_the_next_request_and_a_bad_edit_changes_nothing() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 2 } }\n";
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top).manual_clock()).await;
    assert_eq!(limit_header(&gw, "ana").await, (200, "2".into()));
    assert_eq!(limit_header(&gw, "ana").await, (200, "2".into()));
    assert_eq!(limit_header(&gw, "ana").await.0, 429);

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let raised = with_tier_limit(&original, 2, 5);
    std::fs::write(gw.config_path(), &raised).unwrap();
    until("the reload", async || {
        limit_header(&gw, "bob").await.1 == "5"
    })
    .await;
    // Ana's used share of her window carries over: she had used all of it, so she is still
    // refused under the new limit (a reset bucket would let her through at once)...
    assert_eq!(limit_header(&gw, "ana").await, (429, "5".into()));
    // ...and refills at the new rate: one request every 12 s at 5/min, where 2/min would make
    // her wait 30 s.
    gw.advance_clock(12_000).await;
    assert_eq!(limit_header(&gw, "ana").await, (200, "5".into()));
    assert_eq!(limit_header(&gw, "ana").await, (429, "5".into()));

    // An invalid edit: the running config stays, the log names the key, the failure is counted.
    std::fs::write(
        gw.config_path(),
        raised.replace("threads: 1", "threads: 1\n  thredas: 2"),
    )
    .unwrap();
    until("the refusal", async || gw.log().contains("server.thredas")).await;
    assert_eq!(limit_header(&gw, "carl").await.1, "5");
    let metrics = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("exoclaw_config_reloads_total{result=\"invalid\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("exoclaw_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn nodes_are_added_and_removed_live() {
    let a = MockNode::start(MockOptions::default()).await.unwrap();
    let b = MockNode::start(MockOptions::default()).await.unwrap();
    let pools = |nodes: &[&MockNode]| {
        let list: String = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "      - {{ name: n{i}-{}, addr: \"{}\" }}\n",
                    n.addr().port(),
                    n.addr()
                )
            })
            .collect();
        format!("pools:\n  openclaw:\n    strategy: round_robin\n    nodes:\n{list}")
    };
    let gw = Gateway::start(Setup::pools(&pools(&[&a]))).await;
    let send = async || {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send();
        assert_eq!(r.await.unwrap().status(), 200);
    };
    send().await;
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let with_both = config.replace(&pools(&[&a]), &pools(&[&a, &b]));
    std::fs::write(gw.config_path(), &with_both).unwrap();
    until("node b taking traffic", async || {
        send().await;
        !b.seen().is_empty()
    })
    .await;

    let only_b = config.replace(&pools(&[&a]), &pools(&[&b]));
    std::fs::write(gw.config_path(), &only_b).unwrap();
    until("node a leaving", async || {
        let before = a.seen().len();
        for _ in 0..4 {
            send().await;
        }
        a.seen().len() == before
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_adds_a_node_keeps_the_health_of_the_others() {
    let live = MockNode::start(MockOptions::default()).await.unwrap();
    let added = MockNode::start(MockOptions::default()).await.unwrap();
    let dead = free_addr();
    // No health checks: only request failures change a node's health, and nothing brings an
    // ejected node back, so whatever the reload does to its state shows.
    let pools = |extra: &str| {
        format!(
            "pools:\n  openclaw:\n    strategy: round_robin\n    \
             health_check: {{ enabled: false, failures: 1 }}\n    nodes:\n      \
             - {{ name: dead, addr: \"{dead}\" }}\n      \
             - {{ name: live, addr: \"{}\" }}\n{extra}",
            live.addr()
        )
    };
    let gw = Gateway::start(Setup::pools(&pools(""))).await;
    let node = |nodes: &serde_json::Value, name: &str| {
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
    };
    until("the dead node's ejection", async || {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the live node answers");
        node(&gw.admin_nodes().await, "dead").unwrap()["healthy"] == false
    })
    .await;
    let before = node(&gw.admin_nodes().await, "dead").unwrap();
    assert_eq!(before["ejections"], 1, "{before}");

    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let with_added = config.replace(
        &pools(""),
        &pools(&format!(
            "      - {{ name: added, addr: \"{}\" }}\n",
            added.addr()
        )),
    );
    assert_ne!(config, with_added);
    std::fs::write(gw.config_path(), with_added).unwrap();
    until("the reload", async || {
        node(&gw.admin_nodes().await, "added").is_some()
    })
    .await;
    let after = node(&gw.admin_nodes().await, "dead").unwrap();
    assert_eq!(after["healthy"], false, "{after}");
    for counter in ["errors", "ejections", "last_error"] {
        assert_eq!(after[counter], before[counter], "{counter}: {after}");
    }
}

#[tokio::test]
async fn sighup_reloads_when_file_watching_is_off() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 7 } }\n";
    let gw = Gateway::start(
        Setup::nodes(&[node.addr()])
            .top(top)
            .server("  watch_config: false\n"),
    )
    .await;
    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(gw.config_path(), with_tier_limit(&original, 7, 9)).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        limit_header(&gw, "ana").await.1,
        "7",
        "no watching: nothing changed yet"
    );
    gw.signal("-HUP");
    until("the SIGHUP reload", async || {
        limit_header(&gw, "ana").await.1 == "9"
    })
    .await;
}

/// A weight the load balancer cannot hold (it panicked the watcher, which then ignored every
/// later edit and SIGHUP while the gateway kept serving the old config): the edit is refused and
/// counted, the gateway keeps serving, and the next good edit — by file, then by SIGHUP — applies.
#[tokio::test]
async fn a_refused_edit_leaves_the_watcher_alive_for_the_next_one() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 50 } }\n";
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top)).await;
    assert_eq!(limit_header(&gw, "ana").await, (200, "50".into()));

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let node_line = format!("addr: \"{}\" }}", node.addr());
    let heavy = original.replace(
        &node_line,
        &format!("addr: \"{}\", weight: 4294967296 }}", node.addr()),
    );
    assert_ne!(heavy, original);
    std::fs::write(gw.config_path(), &heavy).unwrap();
    // The watcher reacts: a refusal with the key's path (or, before the bounds, a panic).
    until("the watcher's reaction to the huge weight", async || {
        let log = gw.log();
        log.contains("pools.openclaw.nodes[0].weight") || log.contains("panicked")
    })
    .await;
    assert_eq!(limit_header(&gw, "bob").await, (200, "50".into()));

    std::fs::write(
        gw.config_path(),
        with_tier_limit(&heavy, 50, 60).replace(", weight: 4294967296", ""),
    )
    .unwrap();
    until("the good edit after the refused one", async || {
        limit_header(&gw, "carl").await.1 == "60"
    })
    .await;
    std::fs::write(gw.config_path(), with_tier_limit(&original, 50, 70)).unwrap();
    gw.signal("-HUP");
    until("the SIGHUP reload after the refused one", async || {
        limit_header(&gw, "dana").await.1 == "70"
    })
    .await;

    let log = gw.log();
    assert!(
        log.contains("pools.openclaw.nodes[0].weight") && log.contains("at most"),
        "the refusal names the key and its bound: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let metrics = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("exoclaw_config_reloads_total{result=\"invalid\"} 1"),
        "{metrics}"
    );
}
