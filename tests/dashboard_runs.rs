//! The dashboard's runs pages: a real gateway with its run workers and a mock node, its pages in
//! a real headless Chromium (a tenant's page, a run launched from the form generated from its
//! template, watched live to its end over SSE, its artifact downloaded, the list filtered, a run
//! canceled), and over plain HTTP what no one may get around (someone else's tenant and runs,
//! CSRF, the tier's refusals, the list's pages).

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::*;
use exoclaw::mock::{MockNode, MockOptions};
use serde_json::{json, Value};

/// 2026-12-02T00:00:00Z: runs are counted by calendar month.
const T0: u64 = 1_796_083_200_000 + 86_400_000;

/// The key typed into the launch form in BYOK mode.
const FORM_KEY: &str = "sk-typed-into-the-form-42";

const TOP: &str = r#"auth: { require_key: true }
tiers:
  workshop: { requests_per_minute: 1000, max_tenants: 1 }
  tier1:    { requests_per_minute: 1000, max_tenants: 2, runs_per_month: 1000,
              max_concurrent_runs: 2 }
  tier2:    { requests_per_minute: 1000, max_tenants: 2, runs_per_month: 1000 }
stripe: { upgrade_url: "https://exoclaw.example/upgrade" }
dashboard: { session_ttl: 1h }
templates:
  summarize:
    name: Summarize a document
    description: A short summary for the audience you name.
    agent: main
    instructions: "Summarize for {{audience}}: {{text}}"
    inputs:
      text: { label: Document, description: "Paste the text to summarize.", required: true,
              max_len: 2000, multiline: true }
      audience: { label: Audience, max_len: 40 }
    timeout: 20s
    max_attempts: 1
  draft:
    name: Draft
    agent: writer
    instructions: "Draft: {{text}}"
    inputs: { text: { required: true } }
    tiers: [tier2]
runs: { workers: 2, lease: 3s, poll_interval: 50ms, backoff: { base: 1s, max: 8s } }
"#;

/// Codex mode: runs use the owner's stored Codex token, so the form asks for no key.
fn codex_top() -> String {
    TOP.replace(
        "auth: { require_key: true }",
        "auth: { mode: codex, require_key: true }",
    )
}

async fn gateway(top: &str, node: &MockNode) -> Gateway {
    Gateway::start(Setup::nodes(&[node.addr()]).top(top).clock_starting_at(T0)).await
}

/// A gateway key's calls to the API (with the test provider key, for BYOK).
fn api(gw: &Gateway, key: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, gw.url(path))
        .header("x-gateway-key", key)
}

async fn api_json(gw: &Gateway, key: &str, path: &str) -> Value {
    api(gw, key, reqwest::Method::GET, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn create_tenant(gw: &Gateway, key: &str, name: &str) -> String {
    let created = api(gw, key, reqwest::Method::POST, "/api/tenants")
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let v: Value = created.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn submit(gw: &Gateway, key: &str, tenant: &str, text: &str) -> String {
    let answer = api(gw, key, reqwest::Method::POST, "/api/runs")
        .json(&json!({
            "tenant_id": tenant, "template": "summarize", "input": { "text": text }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "run accepted");
    let v: Value = answer.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Polls the API (10 s at most) until run `id` is `status`.
async fn wait_status(gw: &Gateway, key: &str, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = api_json(gw, key, &format!("/api/runs/{id}")).await;
        if run["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "run never {status}: {run}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn count_runs(gw: &Gateway) -> i64 {
    gw.db()
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

/// The node requests of run `id` (their session names it).
fn node_calls(node: &MockNode, id: &str) -> Vec<exoclaw::mock::SeenRequest> {
    node.seen()
        .into_iter()
        .filter(|r| {
            r.headers
                .get("x-openclaw-session-key")
                .is_some_and(|k| k.to_str().unwrap().contains(&format!("/run/{id}:")))
        })
        .collect()
}

/// Signs the browser in with `key` through the sign-in form.
async fn sign_in(browser: &Browser, gw: &Gateway, key: &str) {
    browser.goto(&gw.url("/signin")).await;
    browser.fill("#key", key).await;
    browser.click("#signin-submit").await;
    browser.wait_for_path("/dashboard").await;
}

/// Waits (10 s at most) until the browser is on a run's page; returns the run's id.
async fn wait_for_run_page(browser: &Browser) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.client.current_url().await.unwrap();
        if let Some(id) = url.path().strip_prefix("/dashboard/runs/") {
            return id.to_owned();
        }
        assert!(Instant::now() < deadline, "at {url}, not a run's page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the status filter `status` and waits for the list it links to.
async fn filter_by(browser: &Browser, status: &str) {
    browser.click(&format!("#filter-{status}")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.client.current_url().await.unwrap();
        if url.query() == Some(&format!("status={status}")) && browser.has("#run-list").await {
            return;
        }
        assert!(Instant::now() < deadline, "at {url}, not the {status} runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves a screenshot with the element `css` scrolled into view.
async fn shot_of(browser: &Browser, css: &str, step: &str) {
    browser
        .client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView(); return null;",
            vec![json!(css)],
        )
        .await
        .unwrap();
    browser.shot(step).await;
}

async fn assert_fits_a_phone(browser: &Browser, page: &str) {
    let (width, scrolled) = browser.overflow().await;
    assert!(
        scrolled <= width,
        "the {page} is wider than a phone: {scrolled} > {width}"
    );
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

/// The value of the last hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.rfind("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

/// The value of the hidden field `name` of a page's first form that has one.
fn hidden_of(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker).expect("the field") + marker.len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// A cookie-keeping client signed in with `key` through the sign-in form.
async fn signed_in(gw: &Gateway, key: &str) -> reqwest::Client {
    let browser = cookie_client();
    let form = get_text(&browser, &gw.url("/signin")).await;
    let answer = browser
        .post(gw.url("/signin"))
        .form(&[("key", key), ("csrf", &csrf_of(&form))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "signed in");
    browser
}

async fn get_text(browser: &reqwest::Client, url: &str) -> String {
    browser.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_run_is_launched_from_the_tenant_page_watched_to_its_end_and_its_output_downloaded() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(TOP, &node).await;
    let (_, key) = gw.create_key("ana", Some("tier1")).await;
    let browser = Browser::start("runs-launch").await;
    sign_in(&browser, &gw, &key).await;

    // A tenant made on the dashboard; its name links to its page.
    browser.fill("#tenant-name", "Shop").await;
    browser.click("#create-tenant-submit").await;
    browser
        .wait_for_text("#tenants .rows", |t| t.contains("Shop"))
        .await;
    let tenant = api_json(&gw, &key, "/api/tenants").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.click(&format!("#tenant-{tenant} a.title")).await;
    browser
        .wait_for_path(&format!("/dashboard/tenants/{tenant}"))
        .await;
    assert_eq!(browser.text("#tenant-title").await, "Shop");
    assert_eq!(browser.text("#tenant-runtime").await, "pool openclaw");
    for (link, page) in [("skills", "skills"), ("telegram", "telegram")] {
        let href = browser
            .find(&format!("#tenant-{link}"))
            .await
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(href, format!("/dashboard/tenants/{tenant}/{page}"));
    }
    assert!(browser.has("#no-runs").await);

    // The launch form is the template's inputs; a template of another tier has none.
    assert!(!browser.has("#launch-draft").await, "draft is tier2's");
    let text = browser.find("#input-summarize-text").await;
    assert_eq!(text.tag_name().await.unwrap(), "textarea");
    assert_eq!(
        text.attr("maxlength").await.unwrap().as_deref(),
        Some("2000")
    );
    assert!(text.attr("required").await.unwrap().is_some());
    assert!(browser
        .text("label[for='input-summarize-text']")
        .await
        .contains("Document"));
    assert_eq!(
        browser.text("#input-summarize-text-hint").await,
        "Paste the text to summarize."
    );
    let audience = browser.find("#input-summarize-audience").await;
    assert_eq!(audience.tag_name().await.unwrap(), "input");
    assert_eq!(
        audience.attr("maxlength").await.unwrap().as_deref(),
        Some("40")
    );
    assert!(audience.attr("required").await.unwrap().is_none());
    let key_field = browser.find("#provider-key-summarize").await;
    assert_eq!(
        key_field.attr("type").await.unwrap().as_deref(),
        Some("password"),
        "BYOK mode asks for the provider key"
    );
    assert_fits_a_phone(&browser, "tenant page").await;
    browser.shot("tenant").await;

    // The API refuses blank text: the page says why, keeps what was typed, but not the key.
    browser.fill("#input-summarize-text", "   ").await;
    browser.fill("#input-summarize-audience", "kids").await;
    browser.fill("#provider-key-summarize", FORM_KEY).await;
    browser.click("#launch-summarize-submit").await;
    let refusal = browser
        .wait_for_text("#page-error", |t| !t.is_empty())
        .await;
    assert!(refusal.contains("`input.text` is required"), "{refusal}");
    let kept = browser.find("#input-summarize-audience").await;
    assert_eq!(kept.prop("value").await.unwrap().as_deref(), Some("kids"));
    let key_field = browser.find("#provider-key-summarize").await;
    assert_eq!(key_field.prop("value").await.unwrap().as_deref(), Some(""));
    assert!(!browser.client.source().await.unwrap().contains(FORM_KEY));
    assert_eq!(count_runs(&gw), 0);
    shot_of(&browser, "#page-error", "refused").await;

    // Launched: the run's page follows it to its end.
    browser
        .fill("#input-summarize-text", "the quarterly report")
        .await;
    browser.fill("#provider-key-summarize", FORM_KEY).await;
    browser.click("#launch-summarize-submit").await;
    let id = wait_for_run_page(&browser).await;
    browser
        .wait_for_text("#run-status", |s| s == "succeeded")
        .await;
    let output = browser.text("#run-output").await;
    assert!(
        output.contains("You asked: Summarize for kids: the quarterly report"),
        "{output}"
    );
    let download = browser
        .find("a[data-artifact='output.md']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        download,
        format!("/dashboard/runs/{id}/artifacts/output.md")
    );
    assert!(browser.has("a[data-artifact='response.json']").await);
    assert!(
        !browser.has("#run-cancel").await,
        "a finished run has no cancel"
    );
    assert_ne!(browser.text("#run-finished").await, "not yet");
    assert_fits_a_phone(&browser, "run page").await;
    browser.shot("succeeded").await;
    shot_of(&browser, "#run-output-card", "succeeded-output").await;

    // The key typed into the form went to the node as the API's Authorization key does, and
    // nowhere else: not the database, not the log.
    let calls = node_calls(&node, &id);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].headers["authorization"],
        format!("Bearer {FORM_KEY}")
    );
    for file in ["exoclaw.db", "exoclaw.db-wal"] {
        let bytes = std::fs::read(gw.dir.path().join("data").join(file)).unwrap_or_default();
        let stored = bytes
            .windows(FORM_KEY.len())
            .any(|w| w == FORM_KEY.as_bytes());
        assert!(!stored, "the provider key is in {file}");
    }
    assert!(!gw.log().contains(FORM_KEY));

    // The download, fetched with the browser's session, is the API's artifact.
    let fetched = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then((r) => r.text().then((body) =>
               done([r.status, r.headers.get('content-disposition'), body])));",
            vec![json!(download)],
        )
        .await
        .unwrap();
    assert_eq!(fetched[0], 200);
    assert_eq!(fetched[1], "attachment; filename=\"output.md\"");
    let from_api = api(
        &gw,
        &key,
        reqwest::Method::GET,
        &format!("/api/runs/{id}/artifacts/output.md"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        from_api.headers()["content-disposition"],
        "attachment; filename=\"output.md\""
    );
    let stored = from_api.text().await.unwrap();
    assert_eq!(fetched[2].as_str().unwrap(), stored);
    assert_eq!(output, stored.trim_end(), "the page shows what was stored");

    // A second run dies at the node; the list, filtered by status, shows each where it is.
    node.fail_next(1);
    let dead = submit(&gw, &key, &tenant, "doomed").await;
    wait_status(&gw, &key, &dead, "dead").await;
    browser.click("#to-tenant").await;
    browser
        .wait_for_path(&format!("/dashboard/tenants/{tenant}"))
        .await;
    assert!(browser.has(&format!("#run-{id}")).await);
    assert!(browser.has(&format!("#run-{dead}")).await);
    filter_by(&browser, "dead").await;
    assert!(browser.has(&format!("#run-{dead}")).await);
    assert!(!browser.has(&format!("#run-{id}")).await);
    assert_eq!(browser.text(&format!("#run-{dead} .status")).await, "dead");
    shot_of(&browser, "#runs", "filtered").await;
    filter_by(&browser, "succeeded").await;
    assert!(browser.has(&format!("#run-{id}")).await);
    assert!(!browser.has(&format!("#run-{dead}")).await);
    filter_by(&browser, "canceled").await;
    assert!(browser.has("#no-runs").await);
    // The dead run's page shows the node's error.
    browser
        .goto(&gw.url(&format!("/dashboard/runs/{dead}")))
        .await;
    assert_eq!(browser.text("#run-status").await, "dead");
    assert!(browser.text("#run-error").await.contains("agent_crashed"));
    browser.close().await;
}

#[tokio::test]
async fn the_run_page_follows_a_run_live_and_cancels_one() {
    let (node, gate) = holding_node().await;
    let gw = gateway(&codex_top(), &node).await;
    let (_, key) = gw.create_key("bo", Some("tier1")).await;
    let stored = bare_client()
        .put(gw.url("/api/oauth/codex"))
        .header("x-gateway-key", &key)
        .json(&json!({ "token": "codex-token-of-bo" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let tenant = create_tenant(&gw, &key, "Lab").await;
    // The first run holds the tenant's agent: a run launched after it waits in the queue.
    let first = submit(&gw, &key, &tenant, "first").await;
    wait_status(&gw, &key, &first, "running").await;

    let browser = Browser::start("runs-live").await;
    sign_in(&browser, &gw, &key).await;
    browser
        .goto(&gw.url(&format!("/dashboard/tenants/{tenant}")))
        .await;
    assert!(
        !browser.has("#provider-key-summarize").await,
        "codex mode asks for no provider key"
    );
    browser.fill("#input-summarize-text", "second").await;
    browser.click("#launch-summarize-submit").await;
    let id = wait_for_run_page(&browser).await;
    assert_eq!(browser.text("#run-status").await, "queued");
    assert!(browser.has("#run-cancel").await);
    browser.shot("queued").await;
    // A mark in this page's memory: a reload would wipe it.
    browser
        .client
        .execute("window.exoclawSamePage = 'yes'; return null;", vec![])
        .await
        .unwrap();
    let same_page = || async {
        browser
            .client
            .execute("return window.exoclawSamePage || 'reloaded';", vec![])
            .await
            .unwrap()
    };

    // The first run ends, this one starts (and holds), then ends: the page shows each step.
    gate.add_permits(1);
    browser
        .wait_for_text("#run-status", |s| s == "running")
        .await;
    assert_eq!(browser.text("#run-attempt").await, "1");
    // The start time comes with the status event, written as the server writes times.
    browser
        .wait_for_text("#run-started", |t| t == "2026-12-02 00:00 UTC")
        .await;
    shot_of(&browser, "#run-output-card", "running").await;
    gate.add_permits(1);
    browser
        .wait_for_text("#run-status", |s| s == "succeeded")
        .await;
    browser
        .wait_for_text("#run-output", |t| {
            t.contains("You asked: Summarize for : second")
        })
        .await;
    // The parts that changed at the end came from the server, still without a reload.
    browser.find("a[data-artifact='output.md']").await;
    assert!(!browser.has("#run-cancel").await);
    assert_eq!(same_page().await, "yes", "the page was never reloaded");
    shot_of(&browser, "#run-output-card", "live-succeeded").await;

    // A running run canceled from its page.
    browser
        .goto(&gw.url(&format!("/dashboard/tenants/{tenant}")))
        .await;
    browser.fill("#input-summarize-text", "stop me").await;
    browser.click("#launch-summarize-submit").await;
    let third = wait_for_run_page(&browser).await;
    assert_ne!(third, id);
    browser
        .wait_for_text("#run-status", |s| s == "running")
        .await;
    browser.click("#run-cancel").await;
    browser.client.accept_alert().await.unwrap();
    browser
        .wait_for_text("#run-status", |s| s == "canceled")
        .await;
    wait_status(&gw, &key, &third, "canceled").await;
    browser
        .wait_for_text("#run-actions", |t| !t.contains("Cancel"))
        .await;
    assert_fits_a_phone(&browser, "run page").await;
    browser.shot("canceled").await;
    gate.add_permits(10);
    browser.close().await;
}

#[tokio::test]
async fn someone_elses_pages_are_not_found_and_launches_need_the_forms_token() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(TOP, &node).await;
    let (_, ana_key) = gw.create_key("ana", Some("tier1")).await;
    let (_, bo_key) = gw.create_key("bo", Some("tier1")).await;
    let tenant = create_tenant(&gw, &ana_key, "Acme").await;
    let run = submit(&gw, &ana_key, &tenant, "report").await;
    wait_status(&gw, &ana_key, &run, "succeeded").await;
    let ana = signed_in(&gw, &ana_key).await;
    let bo = signed_in(&gw, &bo_key).await;

    // Ana's own: her run's events are the API's stream, her artifact a download.
    let events = ana
        .get(gw.url(&format!("/dashboard/runs/{run}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let stream = events.text().await.unwrap();
    assert!(
        stream.contains("event: status")
            && stream.contains("\"succeeded\"")
            && stream.contains("event: done"),
        "{stream}"
    );
    let download = ana
        .get(gw.url(&format!("/dashboard/runs/{run}/artifacts/response.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"response.json\""
    );
    assert_eq!(download.headers()["x-content-type-options"], "nosniff");
    let from_api = api(
        &gw,
        &ana_key,
        reqwest::Method::GET,
        &format!("/api/runs/{run}/artifacts/response.json"),
    )
    .send()
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_eq!(download.bytes().await.unwrap(), from_api);

    // Bo gets the 404 page for each of Ana's, as for what does not exist.
    let bo_csrf = csrf_of(&get_text(&bo, &gw.url("/dashboard")).await);
    for path in [
        format!("/dashboard/tenants/{tenant}"),
        format!("/dashboard/runs/{run}"),
        format!("/dashboard/runs/{run}/events"),
        format!("/dashboard/runs/{run}/artifacts/output.md"),
        "/dashboard/tenants/ten_nothere".to_owned(),
        "/dashboard/runs/run_nothere".to_owned(),
    ] {
        let page = bo.get(gw.url(&path)).send().await.unwrap();
        assert_eq!(page.status(), 404, "{path}");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("<html") && html.contains("Not found"),
            "{path}"
        );
        assert!(!html.contains("Acme"), "{path}");
    }
    let launch = |client: &reqwest::Client, tenant: &str, form: Vec<(&str, String)>| {
        client
            .post(gw.url(&format!("/dashboard/tenants/{tenant}/runs")))
            .form(&form)
            .send()
    };
    let fields = |csrf: &str, key: &str, text: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("template", "summarize".to_owned()),
            ("input.text", text.to_owned()),
            ("input.audience", String::new()),
            ("provider_key", key.to_owned()),
        ]
    };
    let into_anas = launch(&bo, &tenant, fields(&bo_csrf, PROVIDER_KEY, "mine now"))
        .await
        .unwrap();
    assert_eq!(into_anas.status(), 404);
    let cancel = bo
        .post(gw.url(&format!("/dashboard/runs/{run}/cancel")))
        .form(&[("csrf", &bo_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 404);
    assert_eq!(count_runs(&gw), 1);

    // Ana's launch without her form's token is refused, and starts nothing.
    let tenant_page = get_text(&ana, &gw.url(&format!("/dashboard/tenants/{tenant}"))).await;
    let csrf = csrf_of(&tenant_page);
    let zeros = "0".repeat(64);
    for forged in ["", "0000", zeros.as_str()] {
        let answer = launch(&ana, &tenant, fields(forged, PROVIDER_KEY, "sneaky"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "csrf {forged:?}");
    }
    let mut no_token = fields("", PROVIDER_KEY, "sneaky");
    no_token.remove(0);
    assert_eq!(launch(&ana, &tenant, no_token).await.unwrap().status(), 403);
    assert_eq!(count_runs(&gw), 1);

    // The API's refusals come back as the page with its message: no provider key (a 400 here:
    // a page's 401 would count as a failed sign-in), a text longer than the template allows.
    let no_key = launch(&ana, &tenant, fields(&csrf, "", "report"))
        .await
        .unwrap();
    assert_eq!(no_key.status(), 400);
    assert!(no_key.text().await.unwrap().contains("provider key"));
    let too_long = launch(
        &ana,
        &tenant,
        fields(&csrf, PROVIDER_KEY, &"x".repeat(2001)),
    )
    .await
    .unwrap();
    assert_eq!(too_long.status(), 400);
    let html = too_long.text().await.unwrap();
    assert!(html.contains("at most 2000 are allowed"), "{html}");
    assert!(html.contains("id=\"page-error\""));
    assert_eq!(count_runs(&gw), 1);

    // Launched: 303 to the run's page; the form's idempotency key makes a second post of the
    // same form the same run.
    let mut form = fields(&csrf, PROVIDER_KEY, "again");
    form.push((
        "idempotency_key",
        hidden_of(&tenant_page, "idempotency_key"),
    ));
    let launched = launch(&ana, &tenant, form.clone()).await.unwrap();
    assert_eq!(launched.status(), 303);
    let location = launched.headers()["location"].to_str().unwrap().to_owned();
    let second = location
        .strip_prefix("/dashboard/runs/")
        .unwrap()
        .to_owned();
    let twice = launch(&ana, &tenant, form).await.unwrap();
    assert_eq!(twice.status(), 303);
    assert_eq!(twice.headers()["location"], location.as_str());
    assert_eq!(count_runs(&gw), 2);
    let run_page = ana.get(gw.url(&location)).send().await.unwrap();
    assert_eq!(run_page.status(), 200);
    assert!(run_page
        .text()
        .await
        .unwrap()
        .contains("Summarize a document"));
    wait_status(&gw, &ana_key, &second, "succeeded").await;

    // A status the API does not know is its 400.
    let bogus = ana
        .get(gw.url(&format!("/dashboard/tenants/{tenant}?status=lost")))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
    assert!(bogus.text().await.unwrap().contains("`status` is one of"));

    // The list pages on the API's cursor, newest first.
    for n in 0..10 {
        submit(&gw, &ana_key, &tenant, &format!("job {n}")).await;
    }
    let all = api_json(
        &gw,
        &ana_key,
        &format!("/api/runs?tenant_id={tenant}&limit=100"),
    )
    .await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 12);
    let rows = |html: &str| -> Vec<String> {
        html.split("id=\"run-run_")
            .skip(1)
            .map(|rest| format!("run_{}", rest.split('"').next().unwrap()))
            .collect()
    };
    let first_page = get_text(&ana, &gw.url(&format!("/dashboard/tenants/{tenant}"))).await;
    assert_eq!(rows(&first_page), ids[..10]);
    assert!(!first_page.contains("id=\"runs-newest\""));
    let older = first_page
        .split("id=\"runs-older\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(older.contains("cursor="), "{older}");
    let second_page = get_text(&ana, &gw.url(&older)).await;
    assert_eq!(rows(&second_page), ids[10..]);
    assert!(second_page.contains("id=\"runs-newest\""));
    assert!(!second_page.contains("id=\"runs-older\""));
}

#[tokio::test]
async fn a_tier_without_runs_is_refused_on_the_page_with_where_to_upgrade() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(TOP, &node).await;
    let (_, key) = gw.create_key("wendy", Some("workshop")).await;
    let tenant = create_tenant(&gw, &key, "Trial").await;
    let wendy = signed_in(&gw, &key).await;
    let page = get_text(&wendy, &gw.url(&format!("/dashboard/tenants/{tenant}"))).await;
    let answer = wendy
        .post(gw.url(&format!("/dashboard/tenants/{tenant}/runs")))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("template", "summarize"),
            ("input.text", "hello"),
            ("provider_key", PROVIDER_KEY),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 402);
    let html = answer.text().await.unwrap();
    assert!(
        html.contains("does not include agent runs")
            && html.contains("Upgrade at https://exoclaw.example/upgrade"),
        "{html}"
    );
    assert!(html.contains("id=\"upgrade\" href=\"https://exoclaw.example/upgrade\""));
    // What was typed is still in the form.
    assert!(html.contains(">hello</textarea>"), "{html}");
    assert_eq!(count_runs(&gw), 0);
}
