//! The operators' pages on the admin listener: a real gateway and its pages in a real headless
//! Chromium (sign in with the admin token, usage that updates by itself, nodes, a key made and
//! revoked, the run queue, the last config reload), and over plain HTTP what must hold without
//! a browser: a session or the way to sign in, wrong tokens refused and counted, CSRF on every
//! form, the cookie's flags, the Content-Security-Policy, sign-out and expiry on the server,
//! and the JSON API answering as before.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::*;
use exoclaw::mock::{MockNode, MockOptions};
use serde_json::{json, Value};

const TOP: &str = r#"auth: { require_key: true, failed_auth_per_minute: 3 }
tiers:
  workshop: { requests_per_minute: 1000, max_tenants: 2, runs_per_month: 100 }
  tier1:    { requests_per_minute: 1000, monthly_requests: 10000 }
templates:
  summarize:
    name: Summarize
    agent: main
    instructions: "Summarize: {{text}}"
    inputs: { text: { required: true } }
runs: { workers: 0 }
"#;

/// A gateway with a live node and a node nobody listens on, checked every 200 ms; its run
/// workers are off, so submitted runs wait in the queue.
async fn gateway() -> (Gateway, MockNode) {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(
        Setup::nodes(&[node.addr(), free_addr()])
            .top(TOP)
            .pool("    health_check: { interval: 200ms, failures: 1, successes: 1 }\n")
            .manual_clock(),
    )
    .await;
    (gw, node)
}

/// A client that keeps cookies and does not follow redirects, as a browser would show them.
fn cookie_client() -> reqwest::Client {
    exoclaw::http_client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The value of the last hidden `csrf` field of the page.
fn csrf_of(html: &str) -> String {
    let at = html.rfind("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

/// A chat completion with gateway key `key`; returns the status.
async fn chat(gw: &Gateway, key: &str) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", key)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Submits a run for `key`'s tenant; returns its id.
async fn submit_run(gw: &Gateway, key: &str, tenant: &str) -> String {
    let response = client()
        .post(gw.url("/api/runs"))
        .header("x-gateway-key", key)
        .json(&json!({ "tenant_id": tenant, "template": "summarize", "input": { "text": "hi" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "run accepted");
    let v: Value = response.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Waits (10 s at most) until the ledger counts `n` requests of `user` in the last hour.
async fn wait_for_usage(gw: &Gateway, user: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let usage = admin_json(gw, "/admin/usage?since=1h").await;
        let counted = usage["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user_id"] == user)
            .map_or(0, |u| u["requests"].as_u64().unwrap());
        if counted == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{usage}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_json(gw: &Gateway, path: &str) -> Value {
    client()
        .get(gw.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_watches_usage_nodes_keys_runs_and_reloads_in_a_browser() {
    let (gw, _node) = gateway().await;
    let (_, ana) = gw.create_key("ana", None).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, &ana).await, 200);
    }
    wait_for_usage(&gw, "ana", 2).await;
    // Another customer's run waits in the queue.
    let (_, cy) = gw.create_key("cy", None).await;
    let tenant: Value = client()
        .post(gw.url("/api/tenants"))
        .header("x-gateway-key", &cy)
        .json(&json!({ "name": "Shop" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let run = submit_run(&gw, &cy, &tenant).await;

    // Not signed in: the overview sends the browser to sign in; a wrong token is refused.
    let browser = Browser::start("admin").await;
    browser.goto(&gw.admin_url("/")).await;
    browser.wait_for_path("/signin").await;
    browser.fill("#token", "not-the-token").await;
    browser.click("#signin-submit").await;
    let refusal = browser
        .wait_for_text("#form-error", |t| !t.is_empty())
        .await;
    assert!(refusal.contains("not the admin token"), "{refusal}");
    browser.shot("signin-refused").await;
    browser.fill("#token", ADMIN_TOKEN).await;
    browser.click("#signin-submit").await;
    browser.wait_for_path("/").await;

    // Usage per user, then more traffic shows up without a reload.
    let requests = "#usage tr[data-row='ana'] td.f-requests";
    assert_eq!(browser.text(requests).await, "2");
    browser
        .client
        .execute("window.stillTheSamePage = true; return null;", vec![])
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(chat(&gw, &ana).await, 200);
    }
    browser.wait_for_text(requests, |t| t == "5").await;
    let same = browser
        .client
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the table refreshed without a page load");
    let tokens = browser
        .text("#usage tr[data-row='ana'] td.f-total_tokens")
        .await;
    assert!(tokens.parse::<u64>().unwrap() > 0, "{tokens}");
    assert!(browser.text("#usage-status").await.starts_with("Updated"));
    assert!(browser
        .text("#last-reload")
        .await
        .contains("not reloaded since the gateway started"));
    let (width, scrolled) = browser.overflow().await;
    assert!(scrolled <= width, "usage: {scrolled} > {width}");
    browser.shot("usage").await;

    // Nodes: the live one up, the one nobody listens on down.
    browser.click("#nav-nodes").await;
    browser.wait_for_path("/nodes").await;
    browser
        .wait_for_text("#pool-openclaw tr[data-row='node-1'] td.f-healthy", |t| {
            t == "down"
        })
        .await;
    assert_eq!(
        browser
            .text("#pool-openclaw tr[data-row='node-0'] td.f-healthy")
            .await,
        "up"
    );
    let (width, scrolled) = browser.overflow().await;
    assert!(scrolled <= width, "nodes: {scrolled} > {width}");
    browser.shot("nodes").await;

    // Keys: one made and shown once, then revoked; the gateway refuses it at once.
    browser.click("#nav-keys").await;
    browser.wait_for_path("/keys").await;
    browser.fill("#key-user", "bob").await;
    browser.click("#create-key-submit").await;
    let bob = browser.text("#new-key").await;
    assert!(bob.starts_with("exo_"), "{bob}");
    let bob_id = browser.text("#new-key-id").await;
    browser.shot("key-created").await;
    assert_eq!(chat(&gw, &bob).await, 200, "the new key works");
    browser.click("#back-to-keys").await;
    browser.wait_for_path("/keys").await;
    let listed = browser
        .text(&format!("#keys tr[data-row='{bob_id}']"))
        .await;
    assert!(listed.contains("bob"), "{listed}");
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(&bob), "the key is never shown again");
    browser.click(&format!("#revoke-{bob_id}")).await;
    browser.client.accept_alert().await.unwrap();
    let notice = browser
        .wait_for_text("#page-notice", |t| !t.is_empty())
        .await;
    assert!(
        notice.contains(&bob_id) && notice.contains("revoked"),
        "{notice}"
    );
    assert!(browser
        .text(&format!("#keys tr[data-row='{bob_id}'] .f-state"))
        .await
        .contains("revoked"));
    assert_eq!(chat(&gw, &bob).await, 401, "a revoked key is refused");
    assert_eq!(chat(&gw, &ana).await, 200, "other keys still work");
    let (width, scrolled) = browser.overflow().await;
    assert!(scrolled <= width, "keys: {scrolled} > {width}");
    browser.shot("keys").await;

    // The run queue: the waiting run, canceled, then queued again.
    browser.click("#nav-runs").await;
    browser.wait_for_path("/runs").await;
    assert!(browser.text("#count-queued").await.contains("1 queued"));
    browser.click(&format!("#cancel-{run}")).await;
    let notice = browser
        .wait_for_text("#page-notice", |t| !t.is_empty())
        .await;
    assert!(notice.contains(&run), "{notice}");
    assert_eq!(
        browser
            .text(&format!("#runs tr[data-row='{run}'] .f-status"))
            .await,
        "canceled"
    );
    assert_eq!(
        admin_json(&gw, &format!("/admin/runs/{run}")).await["status"],
        "canceled"
    );
    browser.shot("run-canceled").await;
    browser.click(&format!("#retry-{run}")).await;
    browser
        .wait_for_text("#page-notice", |t| t.contains("queued again"))
        .await;
    assert_eq!(
        admin_json(&gw, &format!("/admin/runs/{run}")).await["status"],
        "queued"
    );
    let (width, scrolled) = browser.overflow().await;
    assert!(scrolled <= width, "runs: {scrolled} > {width}");
    browser.shot("runs").await;

    // The last reload: a SIGHUP that applies, then an edit that is refused.
    gw.signal("-HUP");
    gw.wait_for_log_line("config reloaded").await;
    browser.click("#nav-usage").await;
    browser.wait_for_path("/").await;
    let reload = browser.text("#last-reload").await;
    assert!(
        reload.contains("reloaded") && reload.contains("SIGHUP"),
        "{reload}"
    );
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(
        gw.config_path(),
        config.replace("threads: 1", "threads: 1\n  thredas: 2"),
    )
    .unwrap();
    gw.wait_for_log_line("config reload refused").await;
    browser.goto(&gw.admin_url("/")).await;
    let reload = browser.text("#last-reload").await;
    assert!(reload.contains("reload refused"), "{reload}");
    assert!(browser
        .text("#reload-error")
        .await
        .contains("server.thredas"));
    browser.shot("reload-refused").await;

    // Signing out ends the session: the pages send the browser to sign in again.
    browser.click("#signout").await;
    browser.wait_for_path("/signin").await;
    browser.goto(&gw.admin_url("/keys")).await;
    browser.wait_for_path("/signin").await;
    browser.close().await;
}

#[tokio::test]
async fn pages_need_a_session_forms_need_their_token_and_the_json_api_is_unchanged() {
    let (gw, _node) = gateway().await;
    let (ana_id, ana) = gw.create_key("ana", None).await;
    let browser = cookie_client();

    // Without a session every page and its JSON send the browser to sign in; posting does
    // nothing.
    for path in [
        "/",
        "/usage.json",
        "/nodes",
        "/nodes.json",
        "/keys",
        "/runs",
    ] {
        let page = browser.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(page.status(), 303, "{path}");
        assert_eq!(page.headers()["location"], "/signin", "{path}");
    }
    let anonymous = browser
        .post(gw.admin_url("/keys"))
        .form(&[("user", "mallory"), ("csrf", &"0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);

    // The sign-in page: strict policy, its own form token, and nothing inline.
    let form = browser.get(gw.admin_url("/signin")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(form.headers()["x-content-type-options"], "nosniff");
    let form = form.text().await.unwrap();
    assert!(
        !form.contains("<script>") && !form.contains("style="),
        "nothing inline"
    );
    let csrf = csrf_of(&form);

    // A sign-in without the form's token (another site's form) is refused, even with the token.
    let forged = browser
        .post(gw.admin_url("/signin"))
        .form(&[("token", ADMIN_TOKEN), ("csrf", &"0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("set-cookie").is_none());

    // Wrong tokens: 401 each, and past `failed_auth_per_minute` (3) even the right one waits.
    for _ in 0..3 {
        let wrong = browser
            .post(gw.admin_url("/signin"))
            .form(&[("token", "guess"), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        assert!(wrong.headers().get("set-cookie").is_none());
        assert!(wrong.text().await.unwrap().contains("not the admin token"));
    }
    let blocked = browser
        .post(gw.admin_url("/signin"))
        .form(&[("token", ADMIN_TOKEN), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    assert!(blocked.headers().get("set-cookie").is_none());
    gw.advance_clock(2 * 60 * 1000).await;

    // The right token: a strict, secret session cookie.
    let signed_in = browser
        .post(gw.admin_url("/signin"))
        .form(&[("token", ADMIN_TOKEN), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for flag in [
        "exoclaw_admin=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let session = cookie["exoclaw_admin=".len()..][..64].to_owned();
    let overview = browser.get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(overview.status(), 200);
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = overview.text().await.unwrap();
    assert!(html.contains("Live usage"));
    let csrf = csrf_of(&html);
    let usage: Value = browser
        .get(gw.admin_url("/usage.json?since=1h"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["since"], "1h");
    assert!(usage["users"].is_array(), "{usage}");

    // Forms without the session's token are refused and change nothing.
    let forged = browser
        .post(gw.admin_url("/keys"))
        .form(&[("user", "mallory"), ("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let forged = browser
        .post(gw.admin_url(&format!("/keys/{ana_id}/revoke")))
        .form(&[("csrf", &"0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let tenant: Value = client()
        .post(gw.url("/api/tenants"))
        .header("x-gateway-key", &ana)
        .json(&json!({ "name": "Shop" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = submit_run(&gw, &ana, tenant["id"].as_str().unwrap()).await;
    let forged = browser
        .post(gw.admin_url(&format!("/runs/{run}/cancel")))
        .form::<[(&str, &str); 0]>(&[])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let forged = browser
        .post(gw.admin_url(&format!("/runs/{run}/retry")))
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "refused before the run's state is looked at"
    );
    let keys = admin_json(&gw, "/admin/keys").await.to_string();
    assert!(!keys.contains("mallory"), "{keys}");
    assert_eq!(chat(&gw, &ana).await, 200, "not revoked");
    assert_eq!(
        admin_json(&gw, &format!("/admin/runs/{run}")).await["status"],
        "queued"
    );

    // With it: a refused key shows the API's own reason; a key is made and shown once.
    let refused = browser
        .post(gw.admin_url("/keys"))
        .form(&[("user", "carl"), ("tier", "gold"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("`gold` is not a tier"));
    let made = browser
        .post(gw.admin_url("/keys"))
        .form(&[("user", "carl"), ("tier", "tier1"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    assert_eq!(made.headers()["cache-control"], "no-store");
    let made = made.text().await.unwrap();
    let at = made.find("id=\"new-key\">").unwrap() + "id=\"new-key\">".len();
    let carl = made[at..].split('<').next().unwrap().to_owned();
    assert_eq!(chat(&gw, &carl).await, 200);
    let keys_page = browser
        .get(gw.admin_url("/keys"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(keys_page.contains("carl") && !keys_page.contains(&carl));

    // The JSON API answers as before: the bearer token, never the cookie.
    let with_cookie_only = browser
        .get(gw.admin_url("/admin/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie_only.status(), 401);
    assert_eq!(
        error_field(with_cookie_only, "code").await,
        "invalid_admin_token"
    );
    let unknown = client()
        .get(gw.admin_url("/admin/nope"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/json");
    let metrics = bare_client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("exoclaw_"));
    assert_eq!(
        admin_json(&gw, "/admin/reload").await,
        json!({ "last_reload": null })
    );
    gw.signal("-HUP");
    gw.wait_for_log_line("config reloaded").await;
    let reload = admin_json(&gw, "/admin/reload").await;
    assert_eq!(reload["last_reload"]["trigger"], "SIGHUP", "{reload}");
    assert_eq!(reload["last_reload"]["result"], "ok", "{reload}");

    // Signing out needs the token too, and ends the session on the server.
    let forged = browser
        .post(gw.admin_url("/signout"))
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let out = browser
        .post(gw.admin_url("/signout"))
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let replayed = bare_client()
        .get(gw.admin_url("/"))
        .header("cookie", format!("exoclaw_admin={session}"))
        .send()
        .await
        .unwrap();
    assert!(
        replayed.url().path() == "/signin",
        "the old cookie no longer opens a page"
    );

    // A session lasts 12 hours on the gateway's clock.
    let form = browser
        .get(gw.admin_url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    browser
        .post(gw.admin_url("/signin"))
        .form(&[("token", ADMIN_TOKEN), ("csrf", &csrf_of(&form))])
        .send()
        .await
        .unwrap();
    let status = |browser: reqwest::Client| {
        let url = gw.admin_url("/runs");
        async move { browser.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(browser.clone()).await, 200);
    gw.advance_clock(12 * 60 * 60 * 1000 - 1000).await;
    assert_eq!(status(browser.clone()).await, 200);
    gw.advance_clock(2000).await;
    assert_eq!(status(browser.clone()).await, 303);
}

#[tokio::test]
async fn without_an_admin_token_the_pages_say_what_to_set_and_sign_in_nobody() {
    let gw = Gateway::start(Setup::nodes(&[free_addr()]).env("EXOCLAW_ADMIN_TOKEN", "")).await;
    let browser = cookie_client();
    let form = browser
        .get(gw.admin_url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("The admin pages are off: set EXOCLAW_ADMIN_TOKEN"),
        "{form}"
    );
    let refused = browser
        .post(gw.admin_url("/signin"))
        .form(&[("token", ""), ("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("set-cookie").is_none());
    assert_eq!(
        browser
            .get(gw.admin_url("/"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
}
