//! Runtime skills end to end: a real gateway whose pool reads its skills inventory from the mock
//! node (`/skills.json`, real-shaped JSON of `openclaw skills list --json`), a tenant's policy in
//! SQLite, and an injected clock for the inventory's TTL.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use exoclaw::mock::{MockNode, MockOptions};
use serde_json::{json, Value};

const NEWEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/skills/list-newest.json"
);
const OLDER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/skills/list-older.json"
);

const T0: u64 = 1_796_083_200_000 + 86_400_000;

fn top() -> &'static str {
    r#"auth: { require_key: true }
tiers:
  workshop: { requests_per_minute: 1000 }
  tier1: { requests_per_minute: 1000, max_tenants: 2, runs_per_month: 100 }
skills:
  packs:
    basic: [weather, web-search, summarize]
    ops: [shell-readonly, github, uptime]
"#
}

async fn node_with(inventory: &str) -> MockNode {
    MockNode::start(MockOptions {
        skills: Some(std::fs::read(inventory).unwrap().into()),
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

async fn gateway(node: &MockNode) -> Gateway {
    let pools = format!(
        "pools:\n  openclaw:\n    skills_inventory: {{ url: \"http://{addr}/skills.json\", ttl: 60s }}\n    \
         nodes: [ {{ name: n, addr: \"{addr}\" }} ]\n  bare:\n    nodes: [ {{ name: b, addr: \"{addr}\" }} ]\nroutes:\n  - {{ pool: openclaw }}\n",
        addr = node.addr()
    );
    Gateway::start(Setup::pools(&pools).top(top()).clock_starting_at(T0)).await
}

/// What the skills tests ask of a customer.
impl Customer {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn view(&self, tenant: &str, hidden: bool) -> Value {
        let path = format!("/api/runtime/skills?tenantId={tenant}&includeHidden={hidden}");
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn skill<'a>(view: &'a Value, name: &str) -> Option<&'a Value> {
    view["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
}

fn names(view: &Value) -> Vec<String> {
    view["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_tenant_sees_its_runtimes_skills_merged_with_its_policy_bootstrapped_with_basic() {
    let node = node_with(NEWEST).await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;

    let view = ana.view(&tenant, false).await;
    assert_eq!(view["runtime"], "openclaw");
    assert_eq!(view["inventory"]["stale"], false, "{view}");
    assert_eq!(names(&view).len(), 12, "every skill of the runtime: {view}");
    // The first look bootstrapped `basic`: its skills are enabled and ready.
    for name in ["weather", "web-search", "summarize"] {
        let s = skill(&view, name).unwrap();
        assert_eq!(s["policy"]["enabled"], true, "{s}");
        assert_eq!(s["effectiveReady"], true, "{s}");
    }
    // Installed and ready, but not enabled for the tenant yet.
    let shell = skill(&view, "shell-readonly").unwrap();
    assert_eq!(
        (&shell["ready"], &shell["effectiveReady"]),
        (&json!(true), &json!(false))
    );
    // Not ready on the node: a missing binary, and a skill the agent's filter blocks.
    let github = skill(&view, "github").unwrap();
    assert_eq!(github["ready"], false);
    assert_eq!(github["missing"]["bins"], json!(["gh"]));
    assert_eq!(skill(&view, "uptime").unwrap()["ready"], false);
    assert_eq!(skill(&view, "weather").unwrap()["emoji"], "🌤️");

    // The tenant's policy: disallow one, enable one, hide one.
    let (status, patched) = ana
        .call(
            reqwest::Method::PATCH,
            "/api/runtime/skills",
            Some(json!({ "tenantId": tenant, "policies": [
                { "name": "weather", "allowed": false },
                { "name": "shell-readonly", "enabled": true },
                { "name": "github", "hidden": true },
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let view = ana.view(&tenant, false).await;
    assert_eq!(skill(&view, "weather").unwrap()["effectiveReady"], false);
    assert_eq!(skill(&view, "weather").unwrap()["policy"]["allowed"], false);
    assert_eq!(
        skill(&view, "shell-readonly").unwrap()["effectiveReady"],
        true
    );
    assert!(skill(&view, "github").is_none(), "hidden");
    assert_eq!(view["hidden"], 1);
    assert!(skill(&ana.view(&tenant, true).await, "github").is_some());

    // A second look does not bootstrap again: the disallowed `weather` stays disallowed.
    assert_eq!(
        skill(&ana.view(&tenant, false).await, "weather").unwrap()["policy"]["allowed"],
        false
    );
    let (status, refused) = ana
        .call(
            reqwest::Method::PATCH,
            "/api/runtime/skills",
            Some(json!({ "tenantId": tenant, "policies": [{ "name": "x", "colour": "red" }] })),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
}

#[tokio::test]
async fn packs_diagnostics_and_both_remediations() {
    let node = node_with(NEWEST).await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    ana.view(&tenant, false).await;

    let (_, packs) = ana
        .call(reqwest::Method::GET, "/api/runtime/skills/packs", None)
        .await;
    assert_eq!(
        packs["packs"]["ops"],
        json!(["shell-readonly", "github", "uptime"])
    );
    ana.call(
        reqwest::Method::PATCH,
        "/api/runtime/skills",
        Some(json!({ "tenantId": tenant, "policies": [{ "name": "github", "allowed": false }] })),
    )
    .await;
    let (status, applied) = ana
        .call(
            reqwest::Method::POST,
            "/api/runtime/skills/packs",
            Some(json!({ "tenantId": tenant, "pack": "ops" })),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        applied["keptDisallowed"],
        json!(["github"]),
        "a pack never lifts a disallow"
    );
    let view = ana.view(&tenant, false).await;
    assert_eq!(
        skill(&view, "shell-readonly").unwrap()["effectiveReady"],
        true
    );
    assert_eq!(skill(&view, "github").unwrap()["policy"]["allowed"], false);
    let (status, _) = ana
        .call(
            reqwest::Method::POST,
            "/api/runtime/skills/packs",
            Some(json!({ "tenantId": tenant, "pack": "nope" })),
        )
        .await;
    assert_eq!(status, 404);

    let (status, diagnosis) = ana
        .call(
            reqwest::Method::GET,
            &format!("/api/runtime/skills/diagnostics?tenantId={tenant}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{diagnosis}");
    let unavailable: Vec<&str> = diagnosis["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in ["github", "image-gen", "imsg", "uptime", "nano-pdf", "sag"] {
        assert!(unavailable.contains(&name), "{name}: {diagnosis}");
    }
    assert!(!unavailable.contains(&"weather"));
    let text = diagnosis["summary"].to_string();
    assert!(
        text.contains("gh") && text.contains("OPENAI_API_KEY") && text.contains("darwin"),
        "{text}"
    );

    // hide_unavailable (the default): unavailable skills disabled and hidden.
    let (status, _) = ana
        .call(
            reqwest::Method::POST,
            "/api/runtime/skills/remediate",
            Some(json!({ "tenantId": tenant })),
        )
        .await;
    assert_eq!(status, 200);
    let view = ana.view(&tenant, false).await;
    for name in ["github", "image-gen", "uptime"] {
        assert!(skill(&view, name).is_none(), "{name} hidden: {view}");
    }
    let all = ana.view(&tenant, true).await;
    assert_eq!(skill(&all, "uptime").unwrap()["policy"]["enabled"], false);

    // enable_ready: every ready, allowed skill enabled and shown.
    let (status, _) = ana
        .call(
            reqwest::Method::POST,
            "/api/runtime/skills/remediate",
            Some(json!({ "tenantId": tenant, "strategy": "enable_ready" })),
        )
        .await;
    assert_eq!(status, 200);
    let view = ana.view(&tenant, false).await;
    let ready: Vec<String> = view["skills"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ready"] == true)
        .map(|s| {
            assert_eq!(s["effectiveReady"], true, "{s}");
            s["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(ready.contains(&"web-search".to_owned()), "{ready:?}");
    let (status, _) = ana
        .call(
            reqwest::Method::POST,
            "/api/runtime/skills/remediate",
            Some(json!({ "tenantId": tenant, "strategy": "delete_everything" })),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_failing_source_serves_the_last_good_inventory_marked_stale() {
    let node = node_with(NEWEST).await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    assert_eq!(names(&ana.view(&tenant, true).await).len(), 12);

    // An older OpenClaw's field set, after the TTL: served as is.
    node.set_skills(Some(std::fs::read(OLDER).unwrap()));
    gw.advance_clock(61_000).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let view = loop {
        let view = ana.view(&tenant, true).await;
        if names(&view).len() == 4 {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the older inventory never came: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["inventory"]["stale"], false);
    assert_eq!(skill(&view, "broken").unwrap()["ready"], false);

    // The source fails: the last good inventory is served, marked stale with the reason's kind.
    node.set_skills(None);
    gw.advance_clock(61_000).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let view = loop {
        let view = ana.view(&tenant, true).await;
        if view["inventory"]["stale"] == true {
            break view;
        }
        assert!(Instant::now() < deadline, "never marked stale: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(names(&view).len(), 4, "the last good inventory");
    assert!(view["inventory"]["staleKind"].is_string(), "{view}");
    assert!(
        view["inventory"].get("staleReason").is_none(),
        "operators' detail stays out"
    );

    // A malformed inventory is refused naming the field; the last good one is still served.
    node.set_skills(Some(
        br#"{"skills": [{"name": "ok"}, {"name": 5}]}"#.to_vec(),
    ));
    gw.advance_clock(61_000).await;
    let line = gw.wait_for_log_line("skills[1].name").await;
    assert!(line.contains("skills"), "{line}");
    assert_eq!(names(&ana.view(&tenant, true).await).len(), 4);
}

#[tokio::test]
async fn another_owners_tenant_answers_404_and_a_runtime_without_a_source_503() {
    let node = node_with(NEWEST).await;
    let gw = gateway(&node).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let eve = Customer::new(&gw, "eve", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let attempts = [
        (
            reqwest::Method::GET,
            format!("/api/runtime/skills?tenantId={tenant}"),
            None,
        ),
        (
            reqwest::Method::PATCH,
            "/api/runtime/skills".to_owned(),
            Some(
                json!({ "tenantId": tenant, "policies": [{ "name": "weather", "enabled": false }] }),
            ),
        ),
        (
            reqwest::Method::POST,
            "/api/runtime/skills/packs".to_owned(),
            Some(json!({ "tenantId": tenant, "pack": "basic" })),
        ),
        (
            reqwest::Method::GET,
            format!("/api/runtime/skills/diagnostics?tenantId={tenant}"),
            None,
        ),
        (
            reqwest::Method::POST,
            "/api/runtime/skills/remediate".to_owned(),
            Some(json!({ "tenantId": tenant })),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = eve.call(method, &path, body).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["type"], "not_found");
    }
    // Eve's attempts changed nothing of Ana's.
    let view = ana.view(&tenant, false).await;
    assert_eq!(skill(&view, "weather").unwrap()["policy"]["enabled"], true);

    // A tenant pinned to a pool with no inventory source gets a clear 503.
    let out = gw.cli(&["tenants", "pin", &tenant, "--pool", "bare"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, answer) = ana
        .call(
            reqwest::Method::GET,
            &format!("/api/runtime/skills?tenantId={tenant}"),
            None,
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "skills_inventory_not_configured");
}

/// `exoclaw mock-node --skills FILE` serves the file at `/skills.json`.
#[test]
fn the_standalone_mock_node_serves_a_skills_inventory() {
    let mut child = Command::new(EXOCLAW)
        .args(["mock-node", "--listen", "127.0.0.1:0", "--skills", NEWEST])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("an address in {first:?}"))
        .to_owned();
    let out = Command::new("curl")
        .args(["-s", &format!("http://{addr}/skills.json")])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let served: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(served["skills"].as_array().unwrap().len(), 12);
}
