//! The dashboard: a real gateway, its pages in a real headless Chromium (sign up, sign in,
//! tenants, sign out), and over plain HTTP what a browser must not be able to get around (the
//! cookie's flags, CSRF, the Content-Security-Policy, expiry, revoked keys, closed sign-up, the
//! sign-up limit per address).

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::*;
use exoclaw::mock::{MockNode, MockOptions};

/// 2026-12-02T00:00:00Z.
const T0: u64 = 1_796_083_200_000 + 86_400_000;

const TOP: &str = r#"auth: { require_key: true }
tiers:
  workshop: { requests_per_minute: 1000, max_tenants: 2 }
  tier1:    { requests_per_minute: 1000, monthly_requests: 10000, max_tenants: 3,
              runs_per_month: 1000, price: "$99 / month",
              checkout_url: "https://buy.stripe.com/test_tier1" }
stripe: { upgrade_url: "https://exoclaw.example/upgrade" }
dashboard: { session_ttl: 1h, signups_per_hour: 3 }
"#;

async fn gateway(top: &str) -> (Gateway, MockNode) {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top).clock_starting_at(T0)).await;
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

/// The value of the hidden `csrf` field of the page's first form.
fn csrf_of(html: &str) -> String {
    let at = html.rfind("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn a_customer_signs_up_manages_tenants_and_signs_out_in_a_browser() {
    let (gw, _node) = gateway(TOP).await;
    let browser = Browser::start("signup").await;
    browser.goto(&gw.url("/")).await;
    browser.shot("landing").await;
    browser.click("#cta-signup").await;
    browser.wait_for_path("/signup").await;
    browser.fill("#user", "ana").await;
    browser.click("#signup-submit").await;
    let key = browser.text("#new-key").await;
    assert!(key.starts_with("exo_"), "{key}");
    let checkout = browser
        .find("#checkout-tier1")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        checkout,
        "https://buy.stripe.com/test_tier1?client_reference_id=ana"
    );
    browser.shot("signed-up").await;
    // The key works on the API at once.
    let ana = Customer::from_key(&gw, &key);
    assert_eq!(ana.get_json("/api/subscriptions/me").await["user"], "ana");

    // The dashboard: the subscription, then a tenant created and renamed.
    browser.click("#to-dashboard").await;
    browser.wait_for_path("/dashboard").await;
    assert_eq!(browser.text("#sub-tier").await, "workshop");
    browser.fill("#tenant-name", "Shop").await;
    browser.click("#create-tenant-submit").await;
    let row = browser
        .wait_for_text("#tenants .rows", |t| t.contains("Shop"))
        .await;
    assert!(row.contains("ten_"), "{row}");
    let tenants = ana.get_json("/api/tenants").await;
    let id = tenants["data"][0]["id"].as_str().unwrap().to_owned();
    browser.click(&format!("#tenant-{id} summary")).await;
    browser.fill(&format!("#rename-{id}"), "Corner shop").await;
    browser
        .click(&format!("#tenant-{id} form:first-of-type button"))
        .await;
    browser
        .wait_for_text("#tenants .rows", |t| t.contains("Corner shop"))
        .await;
    // The tier allows two: a third is refused with the API's own message.
    browser.fill("#tenant-name", "Second").await;
    browser.click("#create-tenant-submit").await;
    browser
        .wait_for_text("#tenants .rows", |t| t.contains("Second"))
        .await;
    browser.fill("#tenant-name", "Third").await;
    browser.click("#create-tenant-submit").await;
    let refusal = browser
        .wait_for_text("#page-error", |t| !t.is_empty())
        .await;
    assert!(refusal.contains("allows 2 tenant(s)"), "{refusal}");
    let (width, scrolled) = browser.overflow().await;
    assert!(
        scrolled <= width,
        "the dashboard is wider than a phone: {scrolled} > {width}"
    );
    browser.shot("dashboard").await;

    // Signing out ends the session: the dashboard sends the browser to sign in.
    browser.click("#signout").await;
    browser.wait_for_path("/").await;
    assert!(browser.has("#nav-signin").await);
    browser.goto(&gw.url("/dashboard")).await;
    browser.wait_for_path("/signin").await;
    // And the key signs back in.
    browser.fill("#key", &key).await;
    browser.click("#signin-submit").await;
    browser.wait_for_path("/dashboard").await;
    browser
        .wait_for_text("#tenants .rows", |t| t.contains("Corner shop"))
        .await;
    browser.close().await;
}

#[tokio::test]
async fn pages_are_locked_down_and_sessions_end_when_they_should() {
    let (gw, _node) = gateway(TOP).await;
    let (key_id, key) = gw.create_key("bo", Some("tier1")).await;
    let browser = cookie_client();

    // Every page carries the strict policy; an asset too.
    for path in [
        "/",
        "/pricing",
        "/signin",
        "/assets/app.css",
        "/dashboard/nope",
    ] {
        let response = browser.get(gw.url(path)).send().await.unwrap();
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let missing = browser.get(gw.url("/dashboard/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("<html"));
    // The pricing page is built from the tiers.
    let pricing = browser
        .get(gw.url("/pricing"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pricing.contains("$99 / month") && pricing.contains("10000 requests a month"));

    // Not signed in: the dashboard sends to /signin.
    let page = browser.get(gw.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/signin");

    // A sign-in form posted without its token (another site's form) is refused.
    let forged = browser
        .post(gw.url("/signin"))
        .form(&[("key", key.as_str()), ("csrf", &"0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // With it: the session cookie is strict and secret.
    let form = browser
        .get(gw.url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let signed_in = browser
        .post(gw.url("/signin"))
        .form(&[("key", key.as_str()), ("csrf", &csrf_of(&form))])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for flag in [
        "exoclaw_session=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let token = cookie["exoclaw_session=".len()..][..64].to_owned();
    let stored: i64 = gw
        .db()
        .query_row(
            "SELECT COUNT(*) FROM dashboard_sessions WHERE token_hash = ?1",
            [&token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0, "the token itself is not stored");
    let dashboard = browser.get(gw.url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), 200);
    let html = dashboard.text().await.unwrap();
    assert!(html.contains("Hello, bo"));
    assert!(!html.contains(&key), "the key is never shown again");

    // A signed-in form without the session's token is refused, and changes nothing.
    let forged = browser
        .post(gw.url("/dashboard/tenants"))
        .form(&[("name", "Sneaky"), ("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let tenants: i64 = gw
        .db()
        .query_row("SELECT COUNT(*) FROM tenants", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tenants, 0);

    // The session lasts `session_ttl` on the clock.
    gw.advance_clock(59 * 60 * 1000).await;
    assert_eq!(
        browser
            .get(gw.url("/dashboard"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.advance_clock(2 * 60 * 1000).await;
    assert_eq!(
        browser
            .get(gw.url("/dashboard"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );

    // Revoking the key signs its browsers out at their next page.
    let form = browser
        .get(gw.url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    browser
        .post(gw.url("/signin"))
        .form(&[("key", key.as_str()), ("csrf", &csrf_of(&form))])
        .send()
        .await
        .unwrap();
    assert_eq!(
        browser
            .get(gw.url("/dashboard"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let revoked = gw.cli(&["keys", "revoke", &key_id]);
    assert!(revoked.status.success(), "{revoked:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while browser
        .get(gw.url("/dashboard"))
        .send()
        .await
        .unwrap()
        .status()
        == 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "still signed in after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn wrong_keys_count_as_failed_logins_and_sign_up_is_limited_or_closed() {
    let (gw, _node) = gateway(TOP).await;
    let browser = cookie_client();
    let form = browser
        .get(gw.url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&form);
    let wrong = browser
        .post(gw.url("/signin"))
        .form(&[
            ("key", "exo_0000000000000000000000000000000000000000000000"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not an active gateway key"));

    // Sign-ups: three an hour from one address, then 429; names are checked and unique.
    let signup = |user: &'static str| {
        let browser = browser.clone();
        let url = gw.url("/signup");
        async move {
            let form = browser
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            browser
                .post(&url)
                .form(&[("user", user), ("csrf", &csrf_of(&form))])
                .send()
                .await
                .unwrap()
        }
    };
    let bad = signup("A").await;
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("Choose a name of 3 to 64"));
    for user in ["cy", "cyd", "dee", "eve", "fay"] {
        let response = signup(user).await;
        match user {
            "cy" => assert_eq!(response.status(), 400),
            "fay" => assert_eq!(response.status(), 429, "the fourth of the hour"),
            _ => assert_eq!(response.status(), 200, "{user}"),
        }
    }
    gw.advance_clock(61 * 60 * 1000).await;
    let taken = signup("cyd").await;
    assert_eq!(taken.status(), 400);
    assert!(taken.text().await.unwrap().contains("taken"));

    // Closed by the operator: the page says so, and nothing is made.
    let (closed, _node) = gateway(&TOP.replace(
        "dashboard: { session_ttl: 1h, signups_per_hour: 3 }",
        "dashboard: { signup: false }",
    ))
    .await;
    let page = bare_client()
        .get(closed.url("/signup"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("Sign-up is closed"));
    let landing = bare_client()
        .get(closed.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!landing.contains("cta-signup"));
}

/// Codex mode with a chat template and the bot, a skills inventory on the node's pool.
fn agent_top(api_base: &str) -> String {
    format!(
        r#"auth: {{ mode: codex, require_key: true }}
tiers:
  workshop: {{ requests_per_minute: 1000 }}
  tier1:    {{ requests_per_minute: 1000, max_tenants: 3, runs_per_month: 1000 }}
templates:
  chat: {{ name: Chat, agent: main, instructions: "{{{{message}}}}", inputs: {{ message: {{ required: true }} }} }}
telegram: {{ bot_username: exoclaw_bot, template: chat, api_base: "{api_base}" }}
"#
    )
}

/// Signs `browser` in with `key` through the sign-in form.
async fn sign_in(browser: &Browser, gw: &Gateway, key: &str) {
    browser.goto(&gw.url("/signin")).await;
    browser.fill("#key", key).await;
    browser.click("#signin-submit").await;
    browser.wait_for_path("/dashboard").await;
}

#[tokio::test]
async fn a_customer_switches_skills_and_pairs_a_phone_in_a_browser() {
    let inventory = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/skills/list-newest.json"
    );
    let node = MockNode::start(MockOptions {
        skills: Some(std::fs::read(inventory).unwrap().into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let fake = exoclaw::telegram::fake::FakeBotApi::start().await;
    let pool = format!(
        "    skills_inventory: {{ url: \"http://{}/skills.json\", ttl: 60s }}\n",
        node.addr()
    );
    let gw = Gateway::start(
        Setup::nodes(&[node.addr()])
            .top(&agent_top(&fake.base_url()))
            .pool(&pool)
            .env("TELEGRAM_BOT_TOKEN", "123456:AAE-dashboard-test-token")
            .env("TELEGRAM_WEBHOOK_SECRET", "dashboard-secret")
            .clock_starting_at(T0),
    )
    .await;
    let (_, key) = gw.create_key("sam", Some("tier1")).await;
    let customer = Customer::from_key(&gw, &key);
    let tenant = customer.tenant("Shop").await;
    let browser = Browser::start("skills").await;
    sign_in(&browser, &gw, &key).await;

    // Skills: the basic pack is on at first look; weather is ready, github needs `gh`.
    browser
        .goto(&gw.url(&format!("/dashboard/tenants/{tenant}/skills")))
        .await;
    let weather = browser.text("#skill-weather").await;
    assert!(weather.contains("✅ ready"), "{weather}");
    let github = browser.text("#skill-github").await;
    assert!(github.contains("⚠️ needs gh"), "{github}");
    browser.click("#disable-weather").await;
    browser.find("#enable-weather").await;
    let view = customer
        .get_json(&format!("/api/runtime/skills?tenantId={tenant}"))
        .await;
    let weather = view["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "weather")
        .unwrap()
        .clone();
    assert_eq!(weather["policy"]["enabled"], false, "{weather}");
    browser.click("#pack-ops").await;
    browser.find("#disable-github").await;
    browser.click("#remediate-hide").await;
    let github = browser
        .wait_for_text("#skill-github", |t| t.contains("hidden"))
        .await;
    assert!(github.contains("⚠️"), "{github}");
    let (width, scrolled) = browser.overflow().await;
    assert!(
        scrolled <= width,
        "wider than a phone: {scrolled} > {width}"
    );
    browser.shot("skills").await;

    // Telegram: a code with its deep link and QR code, redeemed by a phone, then unpaired.
    browser
        .goto(&gw.url(&format!("/dashboard/tenants/{tenant}/telegram")))
        .await;
    assert!(browser.has("#no-pairings").await);
    browser.click("#make-code").await;
    let code = browser.text("#code").await;
    assert_eq!(code.len(), 8, "{code}");
    let link = browser.find("#deep-link").await.attr("href").await.unwrap();
    assert_eq!(
        link.as_deref(),
        Some(&*format!("https://t.me/exoclaw_bot?start={code}"))
    );
    browser.find("#qr svg").await;
    browser.shot("pairing-code").await;
    let update = serde_json::json!({
        "update_id": 5_000_001,
        "message": { "message_id": 1, "date": 1_764_633_600, "text": format!("/start {code}"),
                     "from": { "id": 4242, "is_bot": false, "first_name": "Ada", "username": "ada" },
                     "chat": { "id": 4242, "type": "private" } }
    });
    let delivered = bare_client()
        .post(gw.url("/api/webhooks/telegram"))
        .header("x-telegram-bot-api-secret-token", "dashboard-secret")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        browser
            .goto(&gw.url(&format!("/dashboard/tenants/{tenant}/telegram")))
            .await;
        if browser.has("#pairings li").await {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never paired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = browser.text("#pairings li").await;
    assert!(row.contains("Ada (@ada)"), "{row}");
    browser.shot("paired").await;
    browser.click("#pairings li button").await;
    browser.client.accept_alert().await.unwrap();
    browser.find("#no-pairings").await;
    let pairings = customer
        .get_json(&format!("/api/telegram/pairings?tenant_id={tenant}"))
        .await;
    assert_eq!(pairings["data"].as_array().unwrap().len(), 0);

    // Someone else's tenant is not found on either page.
    let (_, other) = gw.create_key("zoe", Some("tier1")).await;
    let stranger = Browser::start("skills-stranger").await;
    sign_in(&stranger, &gw, &other).await;
    for page in ["skills", "telegram"] {
        stranger
            .goto(&gw.url(&format!("/dashboard/tenants/{tenant}/{page}")))
            .await;
        assert_eq!(stranger.text("h1").await, "Not found", "{page}");
    }
    stranger.close().await;
    browser.close().await;
}
