//! The shared Telegram bot end to end: a real gateway, a mock node over TCP, a SQLite file, a
//! fake Bot API that records every call (and answers 429 when told), and an injected clock for
//! code expiry, leases and `retry_after`.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use exoclaw::billing::stripe_signature::sign;
use exoclaw::mock::{MockNode, MockOptions};
use exoclaw::telegram::fake::FakeBotApi;
use exoclaw::telegram::pairing::PairingCode;
use exoclaw::telegram::store;
use serde_json::{json, Value};

/// 2026-12-02T00:00:00Z: runs and requests are counted by calendar month.
const T0: u64 = 1_796_083_200_000 + 86_400_000;
const SECRET: &str = "webhook-secret_for-tests";
const BOT_TOKEN: &str = "123456:AAE-the-bot-token-of-the-tests";
const UPGRADE: &str = "https://exoclaw.example/upgrade";

fn top(api_base: &str) -> String {
    format!(
        r#"auth: {{ mode: codex, require_key: true }}
tiers:
  workshop: {{ requests_per_minute: 1000 }}
  tier1:    {{ requests_per_minute: 1000, monthly_requests: 10000, max_tenants: 2,
              runs_per_month: 1000, max_concurrent_runs: 2 }}
stripe: {{ upgrade_url: "{UPGRADE}", past_due_grace: 1d }}
templates:
  chat:
    name: Chat
    agent: main
    instructions: "{{{{message}}}}"
    inputs: {{ message: {{ required: true, max_len: 4000 }} }}
    timeout: 20s
    max_attempts: 3
runs: {{ workers: 2, lease: 3s, poll_interval: 50ms, backoff: {{ base: 1s, max: 8s }} }}
telegram:
  bot_username: exoclaw_bot
  template: chat
  api_base: "{api_base}"
"#
    )
}

struct Harness {
    gw: Gateway,
    fake: FakeBotApi,
}

async fn start(node: &MockNode) -> Harness {
    start_with(node, "").await
}

/// A gateway whose bot talks to a fresh fake; `pool` is extra YAML for the `openclaw` pool.
async fn start_with(node: &MockNode, pool: &str) -> Harness {
    let fake = FakeBotApi::start().await;
    let setup = Setup::nodes(&[node.addr()])
        .top(&top(&fake.base_url()))
        .pool(pool)
        .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .env("TELEGRAM_WEBHOOK_SECRET", SECRET)
        .clock_starting_at(T0);
    Harness {
        gw: Gateway::start(setup).await,
        fake,
    }
}

static NEXT_UPDATE: AtomicI64 = AtomicI64::new(700_000_000);

/// A private message from Telegram user `user` (whose chat id is the same number).
fn message(user: i64, text: &str) -> Value {
    json!({
        "update_id": NEXT_UPDATE.fetch_add(1, Ordering::SeqCst),
        "message": {
            "message_id": 1,
            "from": { "id": user, "is_bot": false, "first_name": "Ada", "username": "ada" },
            "chat": { "id": user, "type": "private", "first_name": "Ada" },
            "date": 1_764_633_600,
            "text": text
        }
    })
}

/// Delivers an update as Telegram does, with `secret` in the secret header (None: without it).
async fn deliver(gw: &Gateway, secret: Option<&str>, update: &Value) -> reqwest::Response {
    let mut request = bare_client()
        .post(gw.url("/api/webhooks/telegram"))
        .header("content-type", "application/json")
        .body(update.to_string());
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.send().await.unwrap()
}

/// Delivers `text` from `user` with the right secret; the webhook answers 200.
async fn say(gw: &Gateway, user: i64, text: &str) -> Value {
    let update = message(user, text);
    let response = deliver(gw, Some(SECRET), &update).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    update
}

/// Waits (10 s at most) until chat `chat` has received `n` messages; returns them all.
async fn received(fake: &FakeBotApi, chat: i64, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let texts = fake.delivered_texts(chat);
        if texts.len() >= n {
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "chat {chat} received {} of {n} messages: {texts:?}",
            texts.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Says `text` and waits for the one reply it gets. A second passes first on the clock: the bot
/// sends a chat one message a second.
async fn ask(h: &Harness, user: i64, text: &str) -> String {
    h.gw.advance_clock(1_000).await;
    let before = h.fake.delivered_texts(user).len();
    say(&h.gw, user, text).await;
    let texts = received(&h.fake, user, before + 1).await;
    texts[before].clone()
}

/// A pairing code of `tenant`, made as its owner's request makes one.
fn pairing_code(gw: &Gateway, tenant: &str, owner: &str, now_ms: u64) -> String {
    let code = PairingCode::generate().unwrap();
    let created = store::create_code(&mut gw.db(), &code.hash(), tenant, owner, now_ms).unwrap();
    assert!(matches!(created, store::CodeCreated::Created { .. }));
    code.as_str().to_owned()
}

/// A customer on tier1 with a Codex token and a tenant `Shop`, and Telegram user `user` paired
/// with it.
async fn paired(h: &Harness, owner: &str, user: i64) -> (Customer, String) {
    let customer = Customer::new(&h.gw, owner, "tier1").await;
    customer.store_codex_token().await;
    let tenant = customer.tenant("Shop").await;
    let code = pairing_code(&h.gw, &tenant, owner, T0);
    let answer = ask(h, user, &format!("/start {code}")).await;
    assert!(
        answer.starts_with("✅ You are paired with “Shop”"),
        "{answer}"
    );
    (customer, tenant)
}

fn count(gw: &Gateway, sql: &str) -> i64 {
    gw.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Lets the bot finish what it is doing (half a second), for asserting nothing more happens.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_wrong_secret_changes_nothing_and_a_redelivered_update_is_processed_once() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let h = start(&node).await;
    let update = message(501, "hello");
    for secret in [
        None,
        Some(""),
        Some("wrong-secret"),
        Some("webhook-secret_for-test"),
    ] {
        let response = deliver(&h.gw, secret, &update).await;
        assert_eq!(response.status(), 401, "secret {secret:?}");
        assert_eq!(
            error_field(response, "code").await,
            "invalid_webhook_secret"
        );
    }
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM telegram_inbox"), 0);
    // The right secret, twice: Telegram redelivers when it did not see the 200 in time.
    for _ in 0..2 {
        let response = deliver(&h.gw, Some(SECRET), &update).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({ "ok": true })
        );
    }
    let texts = received(&h.fake, 501, 1).await;
    settle().await;
    assert_eq!(h.fake.delivered_texts(501).len(), 1, "one reply: {texts:?}");
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM telegram_inbox"), 1);
    // Garbage with the right secret is refused with the field at fault.
    let bad = deliver(&h.gw, Some(SECRET), &json!({ "update_id": "seven" })).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(error_field(bad, "code").await, "invalid_update");
    // The token went only into the Bot API's path, never into the log or the metrics.
    assert!(h.fake.calls().iter().all(|c| c.token == BOT_TOKEN));
    assert!(!h.gw.log().contains(BOT_TOKEN));
    assert!(!h.gw.log().contains(SECRET));
    let metrics = client()
        .get(h.gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "exoclaw_telegram_updates_total{result=\"unauthorized\"} 4",
        "exoclaw_telegram_updates_total{result=\"accepted\"} 1",
        "exoclaw_telegram_updates_total{result=\"duplicate\"} 1",
        "exoclaw_telegram_updates_total{result=\"invalid\"} 1",
        "exoclaw_telegram_messages_total{result=\"sent\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(!metrics.contains(BOT_TOKEN));
}

#[tokio::test]
async fn pairing_works_once_with_a_valid_code_and_never_without_one() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let h = start(&node).await;
    let owner = Customer::new(&h.gw, "olga", "tier1").await;
    owner.store_codex_token().await;
    let tenant = owner.tenant("Shop").await;

    // A stranger is told how to pair, whatever they write, and nothing reaches a node.
    for text in ["hello", "/skills", "/status", "/help", "/start"] {
        let answer = ask(&h, 601, text).await;
        assert!(answer.contains("not paired"), "{text}: {answer}");
        assert!(answer.contains("/start CODE"), "{text}: {answer}");
    }
    // A wrong code, and a guess shaped like a code.
    let answer = ask(&h, 601, "/start nonsense").await;
    assert!(answer.contains("not a valid pairing code"), "{answer}");
    let answer = ask(&h, 601, "ABCDEFGH").await;
    assert!(answer.contains("not a valid pairing code"), "{answer}");
    // An expired code: made, then an hour and a minute pass.
    let expired = pairing_code(&h.gw, &tenant, "olga", T0);
    h.gw.advance_clock(61 * 60 * 1000).await;
    let answer = ask(&h, 601, &format!("/start {expired}")).await;
    assert!(answer.contains("expired"), "{answer}");
    let now = T0 + 61 * 60 * 1000;
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM telegram_pairings"), 0);

    // The happy path: the deep link's `/start CODE`, or the code alone (lower case too).
    let code = pairing_code(&h.gw, &tenant, "olga", now);
    let answer = ask(&h, 601, &format!("/start {code}")).await;
    assert!(
        answer.starts_with("✅ You are paired with “Shop”"),
        "{answer}"
    );
    let second = pairing_code(&h.gw, &tenant, "olga", now);
    let answer = ask(&h, 602, &second.to_lowercase()).await;
    assert!(answer.starts_with("✅"), "{answer}");
    let pairings: Vec<(i64, String, String)> = {
        let db = h.gw.db();
        let mut stmt = db
            .prepare("SELECT telegram_user_id, tenant_id, owner FROM telegram_pairings ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        pairings,
        vec![
            (601, tenant.clone(), "olga".to_owned()),
            (602, tenant.clone(), "olga".to_owned())
        ]
    );
    // A used code pairs nobody else.
    let answer = ask(&h, 603, &format!("/start {code}")).await;
    assert!(answer.contains("already used"), "{answer}");
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM telegram_pairings"), 2);
    assert!(
        node.seen().iter().all(|r| !r.path.starts_with("/v1/")),
        "nothing of the pairing reached a node"
    );

    // Guessing is limited per Telegram user: after five wrong codes even a right one waits.
    for _ in 0..5 {
        ask(&h, 604, "/start WRONGCDE").await;
    }
    let good = pairing_code(&h.gw, &tenant, "olga", now);
    let answer = ask(&h, 604, &format!("/start {good}")).await;
    assert!(answer.contains("Too many wrong codes"), "{answer}");
    h.gw.advance_clock(11 * 60 * 1000).await;
    let answer = ask(&h, 604, &format!("/start {good}")).await;
    assert!(answer.starts_with("✅"), "after the window: {answer}");

    // In a group the bot runs nothing and answers only commands addressed to it.
    let group = |text: &str| {
        let mut update = message(602, text);
        update["message"]["chat"] = json!({ "id": -4001, "type": "group", "title": "Team" });
        update
    };
    for text in ["hello everyone", "/help@other_bot", "/help@exoclaw_bot"] {
        h.gw.advance_clock(1_000).await;
        assert_eq!(
            deliver(&h.gw, Some(SECRET), &group(text)).await.status(),
            200
        );
    }
    let texts = received(&h.fake, -4001, 1).await;
    settle().await;
    assert_eq!(h.fake.delivered_texts(-4001).len(), 1, "{texts:?}");
    assert!(texts[0].contains("private chats"), "{}", texts[0]);
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM runs"), 0);

    // /unpair: the user is a stranger again.
    let answer = ask(&h, 601, "/unpair").await;
    assert!(answer.contains("no longer paired with “Shop”"), "{answer}");
    let answer = ask(&h, 601, "hello again").await;
    assert!(answer.contains("not paired"), "{answer}");
}

#[tokio::test]
async fn a_paired_users_messages_are_runs_of_the_tenant_in_one_session() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let h = start(&node).await;
    let (owner, tenant) = paired(&h, "ana", 701).await;

    let answer = ask(&h, 701, "What is the capital of France?").await;
    assert_eq!(
        answer,
        "Hello! I am the ExoClaw demo node. You asked: What is the capital of France?"
    );
    let answer = ask(&h, 701, "And of Spain?").await;
    assert!(answer.ends_with("You asked: And of Spain?"), "{answer}");

    // Both are runs of the tenant, listed and accounted like API runs.
    let runs = owner
        .get_json(&format!("/api/runs?tenant_id={tenant}"))
        .await;
    let runs = runs["data"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs
        .iter()
        .all(|r| r["status"] == "succeeded" && r["template"] == "chat"));
    let keys: Vec<&str> = runs
        .iter()
        .map(|r| r["idempotency_key"].as_str().unwrap())
        .collect();
    assert!(keys.iter().all(|k| k.starts_with("telegram-")), "{keys:?}");
    let rows = count(
        &h.gw,
        "SELECT COUNT(*) FROM requests WHERE user_id = 'ana' AND run_id IS NOT NULL",
    );
    assert_eq!(rows, 2, "each run's node call is in the ledger");
    // One session per tenant and Telegram user: the agent remembers the conversation.
    let sessions: Vec<String> = node
        .seen()
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .map(|r| {
            r.headers["x-openclaw-session-key"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0], sessions[1]);
    assert!(
        sessions[0].contains(&format!("tenant/{tenant}/telegram/701")),
        "{}",
        sessions[0]
    );
    // The codex token went to the node; the bot token went nowhere near it.
    assert!(node.seen().iter().all(|r| r
        .headers
        .iter()
        .all(|(_, v)| !v.to_str().unwrap_or("").contains(BOT_TOKEN))));

    // Commands of a paired user.
    let help = ask(&h, 701, "/help").await;
    assert!(
        help.contains("/skills") && help.contains("/unpair"),
        "{help}"
    );
    let status = ask(&h, 701, "/status").await;
    assert!(status.contains("Plan: tier1"), "{status}");
    assert!(status.contains("of 10000 this month"), "{status}");
    assert!(status.contains("up to 1000 a month"), "{status}");
    let unknown = ask(&h, 701, "/dance").await;
    assert!(unknown.contains("I do not know /dance"), "{unknown}");
    // Not a text: said so, and no run.
    let mut photo = message(701, "");
    photo["message"].as_object_mut().unwrap().remove("text");
    h.gw.advance_clock(1_000).await;
    assert_eq!(deliver(&h.gw, Some(SECRET), &photo).await.status(), 200);
    let texts = received(&h.fake, 701, 7).await;
    assert!(texts[6].contains("only read text"), "{}", texts[6]);
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM runs"), 2);
}

#[tokio::test]
async fn skills_show_the_tenants_enabled_skills_with_their_readiness() {
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
    let pool = format!(
        "    skills_inventory: {{ url: \"http://{}/skills.json\", ttl: 60s }}\n",
        node.addr()
    );
    let h = start_with(&node, &pool).await;
    let (owner, tenant) = paired(&h, "sam", 801).await;
    let enable = owner
        .request(reqwest::Method::PATCH, "/api/runtime/skills")
        .json(&json!({ "tenantId": tenant, "policies": [{ "name": "github", "enabled": true }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status(), 200, "{}", enable.text().await.unwrap());
    let skills = ask(&h, 801, "/skills").await;
    let line = |name: &str| {
        skills
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} in {skills}"))
            .to_owned()
    };
    assert!(skills.starts_with("Skills of “Shop”"), "{skills}");
    assert!(line("weather").starts_with("✅"), "{skills}");
    assert!(line("github").starts_with("⚠️"), "{skills}");
    assert!(line("github").ends_with("needs gh"), "{skills}");
    assert!(
        !skills.contains("nano-pdf"),
        "a skill the policy does not enable is not listed: {skills}"
    );
}

#[tokio::test]
async fn a_long_answer_arrives_split_and_complete_and_a_429_waits_its_retry_after() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let h = start(&node).await;
    paired(&h, "lea", 901).await;
    let paragraphs: Vec<String> = (0..12)
        .map(|i| {
            let words = "lorem ipsum dolor sit amet ".repeat(40);
            format!("Paragraph {i}: {}", words.trim_end())
        })
        .collect();
    let long = paragraphs.join("\n\n");
    assert!(long.chars().count() > 3 * 4096);
    node.set_answer(Some(&long));
    h.fake.rate_limit_next_message(30);
    let before = h.fake.delivered_texts(901).len();
    h.gw.advance_clock(1_000).await;
    say(&h.gw, 901, "Tell me everything").await;

    // The first part met a 429: nothing is delivered until 30 s have passed on the clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.fake.calls().iter().any(|c| c.status == 429) {
        assert!(Instant::now() < deadline, "the answer was never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settle().await;
    assert_eq!(h.fake.delivered_texts(901).len(), before);
    h.gw.advance_clock(29_000).await;
    settle().await;
    assert_eq!(
        h.fake.delivered_texts(901).len(),
        before,
        "retried too early"
    );
    // Then the parts go one a second (the pacer's per-chat rate), in order.
    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while delivered.join("\n\n").len() < long.len() - 10 {
        assert!(
            Instant::now() < deadline,
            "only {} parts arrived",
            delivered.len()
        );
        h.gw.advance_clock(1_000).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivered = h.fake.delivered_texts(901)[before..].to_vec();
    }
    assert!(delivered.len() >= 4, "{} parts", delivered.len());
    for part in &delivered {
        assert!(part.encode_utf16().count() <= 4096, "a part too long");
        assert!(
            part.starts_with("Paragraph "),
            "cut at a paragraph: {:.40}",
            part
        );
    }
    assert_eq!(
        delivered.join("\n\n"),
        long,
        "complete, in order, nothing twice"
    );
    let tries = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "sendMessage" && c.status == 429)
        .count();
    assert_eq!(tries, 1);
    // Each part is one outbox row, marked sent.
    assert_eq!(
        count(&h.gw, "SELECT COUNT(*) FROM telegram_outbox WHERE reply_id LIKE 'run_%' AND sent_ms IS NOT NULL"),
        delivered.len() as i64
    );
}

#[tokio::test]
async fn a_lapsed_subscription_answers_with_the_upgrade_url_and_runs_nothing() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let h = start(&node).await;
    paired(&h, "max", 1001).await;
    let t = (T0 / 1000) as i64;
    let events = [
        json!({ "id": "evt_1", "type": "checkout.session.completed", "created": t,
                "data": { "object": { "id": "cs_1", "client_reference_id": "max",
                  "customer": "cus_1", "subscription": "sub_1", "metadata": { "tier": "tier1" } } } }),
        json!({ "id": "evt_2", "type": "customer.subscription.updated", "created": t + 1,
                "data": { "object": { "id": "sub_1", "customer": "cus_1", "status": "canceled" } } }),
    ];
    for event in events {
        let payload = event.to_string();
        let signature: String = sign(t, payload.as_bytes(), STRIPE_SECRET)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let response = bare_client()
            .post(h.gw.url("/api/webhooks/stripe"))
            .header("stripe-signature", format!("t={t},v1={signature}"))
            .header("content-type", "application/json")
            .body(payload)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let answer = ask(&h, 1001, "Are you there?").await;
    assert!(answer.starts_with("⚠️"), "{answer}");
    assert!(answer.contains(UPGRADE), "{answer}");
    let status = ask(&h, 1001, "/status").await;
    assert!(
        status.contains("no longer active") && status.contains(UPGRADE),
        "{status}"
    );
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM runs"), 0);
    assert!(node.seen().iter().all(|r| !r.path.starts_with("/v1/")));
}

#[tokio::test]
async fn killed_after_accepting_a_message_the_reply_is_sent_exactly_once_after_restart() {
    let (node, release) = holding_node().await;
    let mut h = start(&node).await;
    paired(&h, "kim", 1101).await;
    say(&h.gw, 1101, "Survive a crash").await;
    // The run is at the node, which holds its answer; the chat shows "typing…".
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.seen().iter().any(|r| r.path.starts_with("/v1/")) {
        assert!(Instant::now() < deadline, "the run never reached the node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.fake.calls().iter().any(|c| {
        c.method == "sendChatAction" && c.body["action"] == "typing" && c.body["chat_id"] == 1101
    }) {
        assert!(Instant::now() < deadline, "no typing while the run works");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replies_before = h.fake.delivered_texts(1101).len();

    h.gw.kill_and_restart().await;
    // The dead process's lease lapses; the run is claimed again and this time answered.
    release.add_permits(100);
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.fake.delivered_texts(1101).len() == replies_before {
        assert!(Instant::now() < deadline, "no reply after the restart");
        h.gw.advance_clock(2_000).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let texts = h.fake.delivered_texts(1101);
    assert!(
        texts[replies_before].ends_with("You asked: Survive a crash"),
        "{texts:?}"
    );
    settle().await;
    h.gw.advance_clock(10_000).await;
    settle().await;
    assert_eq!(
        h.fake.delivered_texts(1101).len(),
        replies_before + 1,
        "exactly one reply"
    );
    assert_eq!(count(&h.gw, "SELECT COUNT(*) FROM runs"), 1, "one run");
}
