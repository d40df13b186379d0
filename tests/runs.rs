//! Tenants, templates and queued agent runs, end to end: a real gateway with its run workers, a
//! mock node over TCP, a SQLite file, and an injected clock for leases and backoff.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exoclaw::mock::{MockNode, MockOptions};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// 2026-12-01T00:00:00Z plus a day: runs are counted by calendar month.
const T0: u64 = 1_796_083_200_000 + 86_400_000;

const TOP: &str = r#"auth: { require_key: true }
tiers:
  workshop: { requests_per_minute: 1000 }
  solo:     { requests_per_minute: 1000, max_tenants: 1 }
  tier1:    { requests_per_minute: 1000, monthly_requests: 10000, max_tenants: 1,
              runs_per_month: 1000, max_concurrent_runs: 2 }
  tier2:    { requests_per_minute: 1000, max_tenants: 3, runs_per_month: unlimited,
              max_concurrent_runs: 4, priority: 1 }
stripe: { upgrade_url: "https://exoclaw.example/upgrade" }
templates:
  summarize:
    name: Summarize a document
    agent: main
    instructions: "Summarize for {{audience}}: {{text}}"
    inputs: { text: { required: true, max_len: 2000 }, audience: {} }
    timeout: 20s
    max_attempts: 3
  draft:
    name: Draft
    agent: writer
    instructions: "Draft: {{text}}"
    inputs: { text: { required: true } }
    tiers: [tier2]
runs: { workers: 4, lease: 3s, poll_interval: 50ms, backoff: { base: 1s, max: 8s } }
artifacts: { retention: 1d, prune_interval: 100ms }
"#;

async fn gateway(node: &MockNode) -> Gateway {
    gateway_with(node, TOP).await
}

async fn gateway_with(node: &MockNode, top: &str) -> Gateway {
    Gateway::start(Setup::nodes(&[node.addr()]).top(top).clock_starting_at(T0)).await
}

/// Codex mode: the gateway sends each user's stored Codex token, so runs carry no BYOK key
/// and survive a restart.
fn codex_top() -> String {
    TOP.replace(
        "auth: { require_key: true }",
        "auth: { mode: codex, require_key: true }",
    )
}

/// Waits (5 s at most) for the ledger row of run `id`'s node call; returns (user, total tokens,
/// tokens reported by the node).
async fn run_row(gw: &Gateway, id: &str) -> (String, i64, bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = gw.db().query_row(
            "SELECT user_id, total_tokens, tokens_reported FROM requests WHERE run_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        );
        if let Ok(row) = row {
            return row;
        }
        assert!(Instant::now() < deadline, "no ledger row for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the runs tests ask of a customer.
impl Customer {
    async fn submit(&self, tenant: &str, text: &str) -> String {
        self.submit_template(tenant, "summarize", text).await
    }

    async fn submit_template(&self, tenant: &str, template: &str, text: &str) -> String {
        let input = match template {
            "summarize" => json!({ "text": text, "audience": "kids" }),
            _ => json!({ "text": text }),
        };
        let response = self
            .post("/api/runs")
            .json(&json!({ "tenant_id": tenant, "template": template, "input": input }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "run accepted");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["status"], "queued");
        assert_eq!(location, format!("/api/runs/{}", v["id"].as_str().unwrap()));
        v["id"].as_str().unwrap().to_owned()
    }

    async fn run(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/runs/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "run {id}");
        response.json().await.unwrap()
    }

    /// Polls the run until `done` holds (10 s at most).
    async fn wait_run(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = self.run(id).await;
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run never {what}: {run}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_run(id, status, |r| r["status"] == status).await
    }

    async fn artifact(&self, id: &str, name: &str) -> reqwest::Response {
        self.get(&format!("/api/runs/{id}/artifacts/{name}"))
            .send()
            .await
            .unwrap()
    }
}

async fn plain_node() -> MockNode {
    MockNode::start(MockOptions::default()).await.unwrap()
}

async fn wait_until_node_saw(node: &MockNode, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while node_calls(node, id) == 0 {
        assert!(Instant::now() < deadline, "the node never saw {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The node requests that belong to run `id` (their session names it).
fn node_calls(node: &MockNode, id: &str) -> usize {
    node.seen()
        .iter()
        .filter(|r| {
            r.headers
                .get("x-openclaw-session-key")
                .is_some_and(|k| k.to_str().unwrap().contains(&format!("/run/{id}:")))
        })
        .count()
}

#[tokio::test]
async fn a_run_goes_from_queued_to_succeeded_with_its_artifacts_and_a_ledger_row() {
    let node = plain_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;

    let id = ana.submit(&tenant, "the quarterly report").await;
    let run = ana.wait_status(&id, "succeeded").await;
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["tenant_id"], tenant.as_str());
    assert!(run["finished_ms"].as_u64().is_some(), "{run}");

    // The node got the rendered template as agent `main`, in a session of this tenant and run.
    let seen = node.seen();
    let call = seen.last().unwrap();
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["model"], "openclaw/main");
    assert_eq!(
        body["messages"][0]["content"],
        "Summarize for kids: the quarterly report"
    );
    let session = call.headers["x-openclaw-session-key"].to_str().unwrap();
    assert!(
        session.starts_with(&format!("exoclaw:ana/tenant/{tenant}/run/{id}:")),
        "{session}"
    );
    assert_eq!(call.headers["authorization"], PROVIDER_KEY_HEADER);

    // Artifacts: the text, and the node's whole answer.
    let listed: Value = ana.get_json(&format!("/api/runs/{id}/artifacts")).await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["output.md", "response.json"]);
    let output = ana.artifact(&id, "output.md").await;
    assert_eq!(output.status(), 200);
    assert!(output.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let text = output.text().await.unwrap();
    assert!(text.contains("the quarterly report"), "{text}");
    let response: Value = ana
        .artifact(&id, "response.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(response["choices"][0]["message"]["content"], text.as_str());
    assert!(response["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // The node call is a ledger row of the owner, tagged with the run, with the node's tokens.
    let (user, tokens, reported) = run_row(&gw, &id).await;
    assert_eq!(user, "ana");
    assert_eq!(tokens, response["usage"]["total_tokens"].as_i64().unwrap());
    assert!(reported);
}

#[tokio::test]
async fn a_failing_node_is_retried_after_backoff_and_then_succeeds() {
    let node = plain_node().await;
    node.fail_next(1);
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let id = ana.submit(&tenant, "retry me").await;

    let backing_off = ana
        .wait_run(&id, "backing off", |r| {
            r["status"] == "queued" && r["attempts"] == 1
        })
        .await;
    assert_eq!(backing_off["error"]["code"], "agent_crashed");
    let next = backing_off["next_attempt_ms"].as_u64().expect("a backoff");
    assert!((T0 + 500..=T0 + 1_000).contains(&next), "{backing_off}");
    // The clock stands still: the backoff does not end by itself.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ana.run(&id).await["status"], "queued");
    assert_eq!(node_calls(&node, &id), 1);

    gw.advance_clock(1_000).await;
    let run = ana.wait_status(&id, "succeeded").await;
    assert_eq!(run["attempts"], 2);
    assert_eq!(node_calls(&node, &id), 2);
}

#[tokio::test]
async fn a_permanently_failing_node_ends_the_run_dead_after_its_attempts() {
    let node = plain_node().await;
    node.fail_next(u32::MAX);
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let id = ana.submit(&tenant, "doomed").await;

    for attempt in 1..=2 {
        ana.wait_run(&id, "backing off", |r| {
            r["attempts"] == attempt && r["status"] == "queued"
        })
        .await;
        gw.advance_clock(10_000).await;
    }
    let run = ana.wait_status(&id, "dead").await;
    assert_eq!(run["attempts"], 3);
    assert_eq!(run["error"]["code"], "agent_crashed");
    assert_eq!(node_calls(&node, &id), 3);
    // Nothing stored for a run that never answered.
    assert_eq!(ana.artifact(&id, "output.md").await.status(), 404);

    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("exoclaw_runs_finished_total{status=\"dead\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_queued_run_and_a_running_run_are_canceled() {
    let (node, gate) = holding_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    // Same tenant, same agent: the second waits for the first.
    let running = ana.submit(&tenant, "first").await;
    let queued = ana.submit(&tenant, "second").await;
    ana.wait_status(&running, "running").await;
    assert_eq!(ana.run(&queued).await["status"], "queued");

    let answer = ana
        .post(&format!("/api/runs/{queued}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let canceled: Value = answer.json().await.unwrap();
    assert_eq!(canceled["status"], "canceled", "at once: {canceled}");

    let answer = ana
        .post(&format!("/api/runs/{running}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let run = ana.wait_status(&running, "canceled").await;
    assert_eq!(run["attempts"], 1);
    // The node's stream is released after the cancel: the run stays canceled.
    gate.add_permits(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ana.run(&running).await["status"], "canceled");
    assert_eq!(
        node_calls(&node, &queued),
        0,
        "a canceled queued run never ran"
    );
    // A finished run cannot be canceled again.
    let again = ana
        .post(&format!("/api/runs/{running}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_run_is_watched_live_over_sse_to_its_end() {
    let (node, gate) = holding_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let id = ana.submit(&tenant, "watch this").await;
    ana.wait_status(&id, "running").await;

    let response = ana
        .get(&format!("/api/runs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut released = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("event: done") {
        assert!(Instant::now() < deadline, "no end of stream: {text}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("events keep coming")
            .expect("the stream stays open until done")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        if !released && text.contains("event: status") {
            // The watcher is told the run is running while the node still holds its answer
            // (its first event carries no text); the rest streams after the release.
            assert!(
                text.contains("\"running\"") && !text.contains("succeeded"),
                "{text}"
            );
            assert!(!text.contains("event: output"), "{text}");
            gate.add_permits(1);
            released = true;
        }
    }
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert_eq!(events[0]["event"], "status");
    assert_eq!(events[0]["status"], "running");
    let streamed: String = events
        .iter()
        .filter(|e| e["event"] == "output")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let last_status = events
        .iter()
        .rev()
        .find(|e| e["event"] == "status")
        .unwrap();
    assert_eq!(last_status["status"], "succeeded");
    let stored = ana.artifact(&id, "output.md").await.text().await.unwrap();
    assert_eq!(streamed, stored, "what was watched is what was stored");
}

#[tokio::test]
async fn runs_interrupted_by_kill_9_finish_after_restart_and_none_twice() {
    let (node, gate) = holding_node().await;
    let mut gw = gateway_with(&node, &codex_top()).await;
    let bo = Customer::new(&gw, "bo", "tier2").await;
    bo.store_codex_token().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let tenant = bo.tenant(name).await;
        ids.push(bo.submit(&tenant, &format!("job {name}")).await);
    }
    for id in &ids {
        bo.wait_status(id, "running").await;
    }
    gw.kill_and_restart().await;
    // The runs are still "running" under leases nobody renews; the clock runs past them.
    for id in &ids {
        assert_eq!(bo.run(id).await["status"], "running");
    }
    gate.add_permits(100);
    gw.advance_clock(4_000).await;
    for id in &ids {
        bo.wait_run(id, "queued again", |r| r["status"] != "running")
            .await;
    }
    gw.advance_clock(10_000).await;
    for id in &ids {
        let run = bo.wait_status(id, "succeeded").await;
        assert_eq!(run["attempts"], 2, "{run}");
        assert_eq!(run["byok"], false);
        assert_eq!(node_calls(&node, id), 2, "one call per attempt");
        let listed: Value = bo.get_json(&format!("/api/runs/{id}/artifacts")).await;
        assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let succeeded: i64 = gw
        .db()
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(succeeded, 3);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_run_and_refuses_a_different_one() {
    let node = plain_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let body = json!({
        "tenant_id": tenant, "template": "summarize",
        "input": { "text": "once" }, "idempotency_key": "order-42",
    });
    let first = ana.post("/api/runs").json(&body).send().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = ana.post("/api/runs").json(&body).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    let mut other = body.clone();
    other["input"]["text"] = json!("twice");
    let clash = ana.post("/api/runs").json(&other).send().await.unwrap();
    assert_eq!(clash.status(), 409);
    assert_eq!(error_field(clash, "code").await, "idempotency_key_reused");

    ana.wait_status(first["id"].as_str().unwrap(), "succeeded")
        .await;
    let listed: Value = ana.get_json(&format!("/api/runs?tenant_id={tenant}")).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "one run: {listed}"
    );
}

#[tokio::test]
async fn a_tenants_runs_on_one_agent_run_one_at_a_time_in_order() {
    let (node, gate) = holding_node().await;
    let gw = gateway(&node).await;
    let bo = Customer::new(&gw, "bo", "tier2").await;
    let tenant = bo.tenant("Acme").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(bo.submit(&tenant, &format!("step {n}")).await);
    }
    bo.wait_status(&ids[0], "running").await;
    wait_until_node_saw(&node, &ids[0]).await;
    // Another agent of the same tenant is another lane: it runs beside them.
    let other_lane = bo.submit_template(&tenant, "draft", "aside").await;
    bo.wait_status(&other_lane, "running").await;
    wait_until_node_saw(&node, &other_lane).await;
    let queued_behind = |from: usize| {
        let ids = ids[from..].to_vec();
        let bo = &bo;
        async move {
            for later in ids {
                assert_eq!(
                    bo.run(&later).await["status"],
                    "queued",
                    "in order, one at a time"
                );
            }
        }
    };
    queued_behind(1).await;
    // The node's held streams are released in the order they arrived.
    gate.add_permits(1);
    bo.wait_status(&ids[0], "succeeded").await;
    bo.wait_status(&ids[1], "running").await;
    queued_behind(2).await;
    gate.add_permits(2);
    bo.wait_status(&other_lane, "succeeded").await;
    bo.wait_status(&ids[1], "succeeded").await;
    gate.add_permits(1);
    bo.wait_status(&ids[2], "succeeded").await;
    let started: Vec<u64> = futures_util::future::join_all(ids.iter().map(|id| bo.run(id)))
        .await
        .iter()
        .map(|r| r["started_ms"].as_u64().unwrap())
        .collect();
    assert!(started.windows(2).all(|w| w[0] <= w[1]), "{started:?}");
}

#[tokio::test]
async fn one_tenants_hundred_queued_runs_do_not_starve_anothers_one() {
    let (node, gate) = holding_node().await;
    let gw = gateway(&node).await;
    let bo = Customer::new(&gw, "bo", "tier2").await;
    let cy = Customer::new(&gw, "cy", "tier2").await;
    let busy = bo.tenant("busy").await;
    let mut busy_runs = Vec::new();
    for n in 0..100 {
        busy_runs.push(bo.submit(&busy, &format!("bulk {n}")).await);
    }
    let small = cy.tenant("small").await;
    let lone = cy.submit(&small, "just one").await;
    // B's run starts while nearly all of A's still wait.
    cy.wait_status(&lone, "running").await;
    let finished_before: usize = {
        let mut n = 0;
        for id in &busy_runs[..5] {
            if bo.run(id).await["status"] == "succeeded" {
                n += 1;
            }
        }
        n
    };
    assert!(
        finished_before <= 2,
        "{finished_before} of A's runs went first"
    );
    gate.add_permits(200);
    cy.wait_status(&lone, "succeeded").await;
}

#[tokio::test]
async fn tier_limits_answer_402_with_the_tier_and_the_upgrade_link() {
    let node = plain_node().await;
    let gw = gateway(&node).await;

    let trainee = Customer::new(&gw, "trainee", "workshop").await;
    let refused = trainee
        .post("/api/tenants")
        .json(&json!({ "name": "mine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_limit_reached");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`workshop`") && message.contains("https://exoclaw.example/upgrade"),
        "{message}"
    );

    let ana = Customer::new(&gw, "ana", "tier1").await;
    ana.tenant("one").await;
    let second = ana
        .post("/api/tenants")
        .json(&json!({ "name": "two" }))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 402);
    assert_eq!(error_field(second, "code").await, "tenant_limit_reached");

    let solo = Customer::new(&gw, "solo", "solo").await;
    let tenant = solo.tenant("no runs").await;
    let run = solo
        .post("/api/runs")
        .json(&json!({ "tenant_id": tenant, "template": "summarize", "input": { "text": "x" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 402);
    assert_eq!(error_field(run, "code").await, "runs_not_in_tier");

    // A template limited to tier2, and input that does not fit the template.
    let ana_tenant: Value = ana.get_json("/api/tenants").await;
    let ana_tenant = ana_tenant["data"][0]["id"].as_str().unwrap().to_owned();
    let templates: Value = ana.get_json("/api/templates").await;
    let ids: Vec<&str> = templates["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["summarize"], "tier1 does not see `draft`");
    let draft = ana
        .post("/api/runs")
        .json(&json!({ "tenant_id": ana_tenant, "template": "draft", "input": { "text": "x" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(draft.status(), 402);
    let bad = ana
        .post("/api/runs")
        .json(&json!({ "tenant_id": ana_tenant, "template": "summarize", "input": { "colour": "red" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let message = error_field(bad, "message").await;
    assert!(message.contains("input.colour"), "{message}");
}

#[tokio::test]
async fn a_byok_runs_key_is_found_nowhere_on_disk() {
    let node = plain_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let canary = "sk-canary-9f3b7c1e-only-in-memory";
    let response = ana
        .post("/api/runs")
        .header("authorization", format!("Bearer {canary}"))
        .json(
            &json!({ "tenant_id": tenant, "template": "summarize", "input": { "text": "secret" } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let run: Value = response.json().await.unwrap();
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["byok"], true);
    ana.wait_status(id, "succeeded").await;
    let call = node.seen().into_iter().last().unwrap();
    assert_eq!(
        call.headers["authorization"],
        format!("Bearer {canary}").as_str()
    );

    run_row(&gw, id).await;
    let mut files = vec![gw.dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            checked += 1;
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "the key is in {}",
                path.display()
            );
        }
    }
    assert!(
        checked >= 4,
        "the database, its WAL, the log and the artifacts: {checked}"
    );
}

#[tokio::test]
async fn a_queued_byok_run_whose_key_was_lost_in_a_restart_fails_clearly() {
    let (node, gate) = holding_node().await;
    let mut gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let first = ana.submit(&tenant, "holds the lane").await;
    ana.wait_status(&first, "running").await;
    let waiting = ana.submit(&tenant, "waits with its key").await;
    gate.add_permits(100);
    gw.kill_and_restart().await;
    let run = ana.wait_status(&waiting, "failed").await;
    assert_eq!(run["error"]["code"], "byok_key_lost");
    assert!(run["error"]["message"]
        .as_str()
        .unwrap()
        .contains("submit the run again"));
}

#[tokio::test]
async fn another_users_tenant_run_and_artifacts_answer_404() {
    let node = plain_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let eve = Customer::new(&gw, "eve", "tier2").await;
    let tenant = ana.tenant("Acme").await;
    let id = ana.submit(&tenant, "private").await;
    ana.wait_status(&id, "succeeded").await;

    let attempts = [
        eve.get(&format!("/api/tenants/{tenant}")),
        eve.request(reqwest::Method::PATCH, &format!("/api/tenants/{tenant}"))
            .json(&json!({ "name": "mine now" })),
        eve.request(reqwest::Method::DELETE, &format!("/api/tenants/{tenant}")),
        eve.get(&format!("/api/runs/{id}")),
        eve.post(&format!("/api/runs/{id}/cancel")),
        eve.get(&format!("/api/runs/{id}/events")),
        eve.get(&format!("/api/runs/{id}/artifacts")),
        eve.get(&format!("/api/runs/{id}/artifacts/output.md")),
        eve.get(&format!("/api/runs?tenant_id={tenant}")),
        eve.post("/api/runs").json(&json!({
            "tenant_id": tenant, "template": "summarize", "input": { "text": "x" },
        })),
    ];
    for attempt in attempts {
        let response = attempt.send().await.unwrap();
        let url = response.url().to_string();
        assert_eq!(response.status(), 404, "{url}");
        assert_eq!(error_type(response).await, "not_found", "{url}");
    }
    let eves: Value = eve.get_json("/api/runs").await;
    assert!(eves["data"].as_array().unwrap().is_empty());
    assert_eq!(ana.run(&id).await["status"], "succeeded", "untouched");
    // A path that tries to climb out of the run's artifacts is not found either.
    let climbing = ana
        .get(&format!("/api/runs/{id}/artifacts/..%2F..%2Fexoclaw.db"))
        .send()
        .await
        .unwrap();
    assert_eq!(climbing.status(), 404);
}

#[tokio::test]
async fn operators_list_retry_and_cancel_runs_from_the_cli_and_the_admin_api() {
    let node = plain_node().await;
    node.fail_next(u32::MAX);
    // Codex mode: a BYOK run's key is gone once it ends, so only a Codex run can be retried.
    let gw = gateway_with(&node, &codex_top()).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    ana.store_codex_token().await;
    let tenant = ana.tenant("Acme").await;
    let id = ana.submit(&tenant, "operator").await;
    for attempt in 1..=2 {
        ana.wait_run(&id, "backing off", |r| {
            r["attempts"] == attempt && r["status"] == "queued"
        })
        .await;
        gw.advance_clock(10_000).await;
    }
    ana.wait_status(&id, "dead").await;

    let listed = gw.cli(&["runs", "list", "--status", "dead"]);
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&id) && text.contains("agent_crashed"),
        "{text}"
    );

    node.fail_next(0);
    let retried = gw.cli(&["runs", "retry", &id]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    // The command queued it at the real time; the gateway's test clock catches up.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    gw.set_clock(now + 1_000).await;
    let run = ana.wait_status(&id, "succeeded").await;
    assert_eq!(run["attempts"], 1, "attempts start over");

    let admin: Value = client()
        .get(gw.admin_url("/admin/runs?status=succeeded"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["runs"][0]["id"], id.as_str());
    assert_eq!(admin["runs"][0]["owner"], "ana");
    assert_eq!(admin["counts"]["succeeded"], 1);

    let shown = gw.cli(&["runs", "show", &id]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "succeeded");
    let again = gw.cli(&["runs", "cancel", &id]);
    assert!(!again.status.success(), "a finished run is not canceled");
}

#[tokio::test]
async fn tenants_are_created_renamed_listed_and_deleted_with_their_runs() {
    let (node, _gate) = holding_node().await;
    let gw = gateway(&node).await;
    let bo = Customer::new(&gw, "bo", "tier2").await;
    let tenant = bo.tenant("Old name").await;
    let renamed: Value = bo
        .request(reqwest::Method::PATCH, &format!("/api/tenants/{tenant}"))
        .json(&json!({ "name": "  New name  " }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "New name");
    assert_eq!(renamed["runtime"]["pool"], "openclaw");
    let running = bo.submit(&tenant, "in flight").await;
    let queued = bo.submit(&tenant, "waiting").await;
    bo.wait_status(&running, "running").await;

    let deleted = bo
        .request(reqwest::Method::DELETE, &format!("/api/tenants/{tenant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["runs_canceled"], 2);
    bo.wait_status(&running, "canceled").await;
    assert_eq!(bo.run(&queued).await["status"], "canceled");
    let gone = bo
        .get(&format!("/api/tenants/{tenant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let listed: Value = bo.get_json("/api/tenants").await;
    assert!(listed["data"].as_array().unwrap().is_empty());

    // An operator pins a tenant to another pool: its runs go there.
    let pinned = bo.tenant("Dedicated").await;
    let out = gw.cli(&["tenants", "pin", &pinned, "--pool", "elsewhere"]);
    assert!(!out.status.success(), "an unknown pool is refused");
    let out = gw.cli(&["tenants", "pin", &pinned, "--pool", "openclaw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = bo.get_json(&format!("/api/tenants/{pinned}")).await;
    assert_eq!(shown["runtime"]["dedicated"], true);
}

#[tokio::test]
async fn a_graceful_stop_puts_an_unfinished_run_back_without_counting_the_attempt() {
    let (node, gate) = holding_node().await;
    let mut gw = gateway_with(&node, &codex_top()).await;
    let bo = Customer::new(&gw, "bo", "tier1").await;
    bo.store_codex_token().await;
    let tenant = bo.tenant("Acme").await;
    let id = bo.submit(&tenant, "long job").await;
    bo.wait_status(&id, "running").await;
    wait_until_node_saw(&node, &id).await;
    // The node never answers within the grace period (1 s in these tests).
    gw.restart().await;
    assert!(
        gw.log()
            .contains("putting unfinished runs back in the queue"),
        "{}",
        gw.log()
    );
    gate.add_permits(100);
    let run = bo.wait_status(&id, "succeeded").await;
    assert_eq!(
        run["attempts"], 1,
        "the interrupted attempt does not count: {run}"
    );
    assert_eq!(node_calls(&node, &id), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_a_running_run_finish_within_the_grace_period() {
    let (node, gate) = holding_node().await;
    let mut gw = gateway_with(&node, &codex_top()).await;
    let bo = Customer::new(&gw, "bo", "tier1").await;
    bo.store_codex_token().await;
    let tenant = bo.tenant("Acme").await;
    let id = bo.submit(&tenant, "short job").await;
    bo.wait_status(&id, "running").await;
    wait_until_node_saw(&node, &id).await;
    // The node answers 300 ms into the stop, well within the grace period (1 s).
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gate.add_permits(1);
    });
    let status = tokio::task::block_in_place(|| gw.terminate());
    releaser.await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        gw.log().contains("running runs get the grace period"),
        "{}",
        gw.log()
    );
    let (state, attempts): (String, i64) = gw
        .db()
        .query_row(
            "SELECT status, attempts FROM runs WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("succeeded", 1), "{}", gw.log());
}

#[tokio::test]
async fn old_runs_artifacts_are_pruned_after_the_retention() {
    let node = plain_node().await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let id = ana.submit(&tenant, "keep me a day").await;
    ana.wait_status(&id, "succeeded").await;
    assert_eq!(ana.artifact(&id, "output.md").await.status(), 200);
    // Not yet: an hour later the files are still there.
    gw.advance_clock(3_600_000).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ana.artifact(&id, "output.md").await.status(), 200);
    gw.advance_clock(86_400_000).await;
    gw.wait_for_log_line("old runs' artifacts pruned").await;
    assert_eq!(ana.artifact(&id, "output.md").await.status(), 404);
    let listed = ana.get_json(&format!("/api/runs/{id}/artifacts")).await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");
    assert_eq!(
        ana.run(&id).await["status"],
        "succeeded",
        "the run itself stays"
    );
    let run_dir = gw.dir.path().join("data/artifacts/runs").join(&id);
    assert!(!run_dir.exists(), "{}", run_dir.display());
}
