//! Telegram pairing from the owner's side, and the operator's `exoclaw telegram` commands, end
//! to end: a real gateway in codex mode with a chat template, its SQLite file, an injected clock
//! for code expiry, and the fake Bot API (`exoclaw::telegram::fake`) for the commands.
//!
//! One test goes the whole way through the bot (the deep link's `/start` through the webhook,
//! the worker's answer at the fake); the others redeem a code the API made straight through
//! `telegram::store::redeem_code` on the gateway's database, as the worker does, which is quicker
//! and says exactly who paired when.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use exoclaw::telegram::fake::FakeBotApi;
use exoclaw::telegram::pairing::{PairingCode, Redeemer, CODE_ALPHABET};
use exoclaw::telegram::store::{self, Redeemed};
use serde_json::{json, Value};

/// 2026-12-01T00:00:00Z plus a day.
const T0: u64 = 1_796_083_200_000 + 86_400_000;
const HOUR_MS: u64 = 3_600_000;
const BOT_TOKEN: &str = "123456:AAH-test_bot_token_value";
const WEBHOOK_SECRET: &str = "webhook-secret_0123456789";
const WEBHOOK_URL: &str = "https://gw.example/api/webhooks/telegram";

/// Codex mode (the bot needs it) and a chat template with a `message` input; `TELEGRAM` is
/// replaced by the bot's section, or nothing.
const TOP: &str = r#"auth: { mode: codex, require_key: true }
tiers:
  workshop: { requests_per_minute: 1000 }
  tier1: { requests_per_minute: 1000, max_tenants: 3 }
templates:
  chat:
    name: Chat
    agent: main
    instructions: "{{message}}"
    inputs: { message: { required: true } }
TELEGRAM"#;

fn telegram_section(bot: &str, api_base: &str, extra: &str) -> String {
    format!(
        "telegram: {{ bot_username: {bot}, template: chat, api_base: \"{api_base}\"{extra} }}\n"
    )
}

/// A gateway whose bot is `exoclaw_test_bot`, with its token and secret in the environment
/// and the Bot API at `fake`.
async fn gateway(fake: &FakeBotApi) -> Gateway {
    let top = TOP.replace(
        "TELEGRAM",
        &telegram_section("exoclaw_test_bot", &fake.base_url(), ""),
    );
    Gateway::start(
        Setup::nodes(&[free_addr()])
            .top(&top)
            .clock_starting_at(T0)
            .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
            .env("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET),
    )
    .await
}

/// What the pairing tests ask of a customer.
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

    async fn new_code(&self, tenant: &str) -> (u16, Value) {
        let body = json!({ "tenant_id": tenant });
        self.call(reqwest::Method::POST, "/api/telegram/pairing", Some(body))
            .await
    }

    async fn pairings(&self, tenant: &str) -> (u16, Value) {
        let path = format!("/api/telegram/pairings?tenant_id={tenant}");
        self.call(reqwest::Method::GET, &path, None).await
    }

    async fn delete_pairing(&self, id: &str) -> (u16, Value) {
        let path = format!("/api/telegram/pairings/{id}");
        self.call(reqwest::Method::DELETE, &path, None).await
    }

    /// A fresh code of `tenant`, as its owner is shown it.
    async fn code(&self, tenant: &str) -> String {
        let (status, body) = self.new_code(tenant).await;
        assert_eq!(status, 201, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }
}

/// Redeems `code` for Telegram user `user`, as the worker does when they send it.
fn redeem(gw: &Gateway, code: &str, user: i64, first_name: &str) -> Redeemed {
    let redeemer = Redeemer {
        telegram_user_id: user,
        chat_id: user,
        username: Some("grace"),
        first_name,
    };
    let hash = PairingCode::parse(code).unwrap().hash();
    store::redeem_code(&mut gw.db(), &hash, &redeemer, T0 + 1_000).unwrap()
}

fn code_rows(gw: &Gateway, tenant: &str) -> i64 {
    gw.db()
        .query_row(
            "SELECT COUNT(*) FROM telegram_pairing_codes WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn an_owner_gets_a_one_time_code_and_its_deep_link_with_three_pending_at_most() {
    let fake = FakeBotApi::start().await;
    let gw = gateway(&fake).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;

    let response = ana
        .post("/api/telegram/pairing")
        .json(&json!({ "tenant_id": tenant }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let made: Value = response.json().await.unwrap();
    let code = made["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8, "{made}");
    assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{made}");
    assert_eq!(
        made,
        json!({
            "object": "telegram_pairing_code",
            "tenant_id": tenant,
            "code": code,
            "deep_link": format!("https://t.me/exoclaw_test_bot?start={code}"),
            "expires_ms": T0 + HOUR_MS,
            "bot_username": "exoclaw_test_bot",
        })
    );
    // Only the code's hash is stored.
    let stored: String = gw
        .db()
        .query_row(
            "SELECT code_hash FROM telegram_pairing_codes WHERE tenant_id = ?1",
            [&tenant],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, PairingCode::parse(&code).unwrap().hash().0);

    let second = ana.code(&tenant).await;
    let third = ana.code(&tenant).await;
    assert!(code != second && second != third && code != third);
    let (status, refused) = ana.new_code(&tenant).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_pending_codes");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 is the limit"), "{message}");
    assert!(message.contains("60 minutes"), "{message}");
    assert_eq!(code_rows(&gw, &tenant), 3, "the refused code is not stored");

    // A redeemed code frees its slot, and so does expiry.
    assert!(matches!(
        redeem(&gw, &second, 7, "Grace"),
        Redeemed::Paired { .. }
    ));
    ana.code(&tenant).await;
    assert_eq!(ana.new_code(&tenant).await.0, 409);
    gw.advance_clock(HOUR_MS).await;
    let (status, later) = ana.new_code(&tenant).await;
    assert_eq!(status, 201, "{later}");
    assert_eq!(later["expires_ms"], T0 + 2 * HOUR_MS);
}

#[tokio::test]
async fn a_redeemed_code_is_listed_as_a_pairing_until_the_owner_deletes_it() {
    let fake = FakeBotApi::start().await;
    let gw = gateway(&fake).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    assert_eq!(
        ana.pairings(&tenant).await,
        (200, json!({ "object": "list", "data": [] }))
    );

    let code = ana.code(&tenant).await;
    let Redeemed::Paired { pairing, .. } = redeem(&gw, &code, 4242, "Grace") else {
        panic!("the code the API made did not pair");
    };
    assert_eq!(pairing.tenant_id, tenant);
    let (status, listed) = ana.pairings(&tenant).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["data"],
        json!([{
            "id": pairing.id,
            "object": "telegram_pairing",
            "telegram_user_id": 4242,
            "username": "grace",
            "first_name": "Grace",
            "tenant_id": tenant,
            "created_ms": T0 + 1_000,
        }])
    );

    let id = pairing.id.to_string();
    assert_eq!(
        ana.delete_pairing(&id).await,
        (
            200,
            json!({ "id": pairing.id, "object": "telegram_pairing", "deleted": true })
        )
    );
    assert_eq!(store::pairing_of_user(&gw.db(), 4242).unwrap(), None);
    assert_eq!(ana.pairings(&tenant).await.1["data"], json!([]));
    let (status, again) = ana.delete_pairing(&id).await;
    assert_eq!(status, 404, "{again}");
    assert_eq!(again["error"]["code"], "pairing_not_found");
    assert_eq!(ana.delete_pairing("not-a-number").await.0, 404);
}

/// Sends `text` from Telegram user `user` through the webhook, as Telegram does, and waits (10 s
/// at most) for the bot's answer in their chat. A second passes first on the clock: the bot
/// sends a chat one message a second.
async fn chat(gw: &Gateway, fake: &FakeBotApi, update_id: i64, user: i64, text: &str) -> String {
    gw.advance_clock(1_000).await;
    let before = fake.delivered_texts(user).len();
    let update = json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": { "id": user, "is_bot": false, "first_name": "Grace", "username": "grace" },
            "chat": { "id": user, "type": "private", "first_name": "Grace" },
            "date": 1_796_169_600,
            "text": text
        }
    });
    let response = bare_client()
        .post(gw.url("/api/webhooks/telegram"))
        .header("x-telegram-bot-api-secret-token", WEBHOOK_SECRET)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let texts = fake.delivered_texts(user);
        if texts.len() > before {
            return texts[before].clone();
        }
        assert!(Instant::now() < deadline, "no answer to {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_bot_pairs_whoever_opens_the_deep_link_and_forgets_them_when_the_owner_deletes_it() {
    let fake = FakeBotApi::start().await;
    let gw = gateway(&fake).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    let (status, made) = ana.new_code(&tenant).await;
    assert_eq!(status, 201, "{made}");
    // The deep link opens the bot with `/start <code>`.
    let link = made["deep_link"].as_str().unwrap();
    let start = link.split_once("?start=").unwrap().1;

    let answer = chat(&gw, &fake, 9_001, 4242, &format!("/start {start}")).await;
    assert!(answer.starts_with("✅ You are paired with"), "{answer}");
    let (_, listed) = ana.pairings(&tenant).await;
    assert_eq!(listed["data"][0]["telegram_user_id"], 4242, "{listed}");
    assert_eq!(listed["data"][0]["username"], "grace", "{listed}");

    let id = listed["data"][0]["id"].to_string();
    assert_eq!(ana.delete_pairing(&id).await.0, 200);
    let answer = chat(&gw, &fake, 9_002, 4242, "hello").await;
    assert!(answer.contains("not paired"), "{answer}");
}

#[tokio::test]
async fn another_users_tenant_or_pairing_answers_404_as_if_it_did_not_exist() {
    let fake = FakeBotApi::start().await;
    let gw = gateway(&fake).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let bob = Customer::new(&gw, "bob", "tier1").await;
    let tenant = ana.tenant("Acme").await;
    bob.tenant("Bob's").await;
    let code = ana.code(&tenant).await;
    let Redeemed::Paired { pairing, .. } = redeem(&gw, &code, 4242, "Grace") else {
        panic!("not paired");
    };

    let (status, made) = bob.new_code(&tenant).await;
    assert_eq!(status, 404, "{made}");
    assert_eq!(made["error"]["code"], "tenant_not_found");
    assert_eq!(code_rows(&gw, &tenant), 1, "no code made for bob");
    let (status, absent) = bob.new_code("ten_000000000000000000000000").await;
    assert_eq!(
        (status, &absent["error"]["code"]),
        (404, &made["error"]["code"])
    );

    let (status, listed) = bob.pairings(&tenant).await;
    assert_eq!(status, 404, "{listed}");
    assert_eq!(listed["error"]["code"], "tenant_not_found");

    let id = pairing.id.to_string();
    let (status, not_his) = bob.delete_pairing(&id).await;
    assert_eq!(status, 404, "{not_his}");
    assert_eq!(ana.pairings(&tenant).await.1["data"][0]["id"], pairing.id);
    assert_eq!(ana.delete_pairing(&id).await.0, 200);
    assert_eq!(
        bob.delete_pairing(&id).await,
        (404, not_his),
        "someone else's pairing and a missing one answer alike"
    );
}

#[tokio::test]
async fn deleting_a_tenant_unpairs_its_users_and_withdraws_its_codes() {
    let fake = FakeBotApi::start().await;
    let gw = gateway(&fake).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let (doomed, kept) = (ana.tenant("Doomed").await, ana.tenant("Kept").await);
    let code = ana.code(&doomed).await;
    assert!(matches!(
        redeem(&gw, &code, 1, "One"),
        Redeemed::Paired { .. }
    ));
    let pending = ana.code(&doomed).await;
    let code = ana.code(&kept).await;
    assert!(matches!(
        redeem(&gw, &code, 2, "Two"),
        Redeemed::Paired { .. }
    ));

    let (status, deleted) = ana
        .call(
            reqwest::Method::DELETE,
            &format!("/api/tenants/{doomed}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");

    assert_eq!(store::pairing_of_user(&gw.db(), 1).unwrap(), None);
    assert_eq!(code_rows(&gw, &doomed), 0);
    assert_eq!(
        redeem(&gw, &pending, 3, "Three"),
        Redeemed::Unknown,
        "a code of the deleted tenant pairs nobody"
    );
    assert_eq!(ana.pairings(&doomed).await.0, 404);
    let other = store::pairing_of_user(&gw.db(), 2).unwrap().unwrap();
    assert_eq!(other.tenant_id, kept, "the other tenant keeps its pairing");
}

#[tokio::test]
async fn without_a_bot_no_code_is_made_and_pairings_can_still_be_seen() {
    let top = TOP.replace("TELEGRAM", "");
    let gw = Gateway::start(Setup::nodes(&[free_addr()]).top(&top)).await;
    let ana = Customer::new(&gw, "ana", "tier1").await;
    let tenant = ana.tenant("Acme").await;

    let (status, refused) = ana.new_code(&tenant).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "telegram_not_configured");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("no Telegram bot"), "{message}");
    assert_eq!(code_rows(&gw, &tenant), 0);
    assert_eq!(
        ana.pairings(&tenant).await,
        (200, json!({ "object": "list", "data": [] }))
    );
}

// ---- exoclaw telegram … ----

/// A config whose bot is `bot` (the fake's is `exoclaw_bot`), with the Bot API at `fake`.
fn cli_config(fake: &FakeBotApi, bot: &str, extra: &str) -> tempfile::TempDir {
    let top = TOP.replace("TELEGRAM", &telegram_section(bot, &fake.base_url(), extra));
    write_config(&Setup::nodes(&[free_addr()]).top(&top)).0
}

/// Runs `exoclaw telegram <args>` with exactly the Telegram variables in `env`, on a blocking
/// thread: the fake answers on this test's runtime meanwhile.
async fn telegram_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(EXOCLAW);
    command
        .arg("telegram")
        .args(args)
        .arg("--config")
        .arg(dir.join("exoclaw.yaml"))
        .current_dir(dir)
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("TELEGRAM_WEBHOOK_SECRET")
        .envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output().expect("run exoclaw"))
        .await
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !shown.contains("test_bot_token_value"),
        "the token printed: {shown}"
    );
    assert!(
        !shown.contains(WEBHOOK_SECRET),
        "the secret printed: {shown}"
    );
    output
}

const BOTH: &[(&str, &str)] = &[
    ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
    ("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET),
];

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one line a failed command leaves on stderr.
fn failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[tokio::test]
async fn set_webhook_sends_the_url_the_secret_and_message_updates_only() {
    let fake = FakeBotApi::start().await;
    let dir = cli_config(&fake, "exoclaw_bot", "");

    let set = telegram_cli(dir.path(), &["set-webhook", "--url", WEBHOOK_URL], BOTH).await;
    assert!(set.status.success(), "{set:?}");
    assert!(stdout(&set).contains(WEBHOOK_URL), "{}", stdout(&set));
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].token.as_str(), calls[0].method.as_str()),
        (BOT_TOKEN, "setWebhook")
    );
    assert_eq!(
        calls[0].body,
        json!({ "url": WEBHOOK_URL, "secret_token": WEBHOOK_SECRET,
                "allowed_updates": ["message"] })
    );

    let plain = "http://gw.example/api/webhooks/telegram";
    let refused = telegram_cli(dir.path(), &["set-webhook", "--url", plain], BOTH).await;
    let why = failure(&refused);
    assert!(why.contains("only over HTTPS"), "{why}");
    assert_eq!(fake.calls().len(), 1, "nothing sent for a plain-http URL");
    let local = "http://127.0.0.1:8787/api/webhooks/telegram";
    let loopback = telegram_cli(dir.path(), &["set-webhook", "--url", local], BOTH).await;
    assert!(loopback.status.success(), "{loopback:?}");
    assert_eq!(fake.calls()[1].body["url"], local);

    let deleted = telegram_cli(dir.path(), &["delete-webhook"], BOTH).await;
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(stdout(&deleted).contains("Webhook deleted"));
    let last = fake.calls().pop().unwrap();
    assert_eq!(
        (last.token.as_str(), last.method.as_str()),
        (BOT_TOKEN, "deleteWebhook")
    );
}

#[tokio::test]
async fn info_shows_the_bot_and_its_webhook_readably() {
    let fake = FakeBotApi::start().await;
    let dir = cli_config(&fake, "exoclaw_bot", "");
    fake.answer_next(
        200,
        json!({ "ok": true, "result": { "id": 777, "is_bot": true, "first_name": "ExoClaw",
                                        "username": "exoclaw_bot" } }),
    );
    fake.answer_next(
        200,
        json!({ "ok": true, "result": {
            "url": WEBHOOK_URL, "has_custom_certificate": false, "pending_update_count": 5,
            "last_error_date": 1_796_083_200,
            "last_error_message": "Wrong response from the webhook: 502 Bad Gateway",
            "allowed_updates": ["message"] } }),
    );
    let info = telegram_cli(dir.path(), &["info"], &BOTH[..1]).await;
    assert!(info.status.success(), "{info:?}");
    let text = stdout(&info);
    for line in [
        "Bot:             @exoclaw_bot (ExoClaw, id 777)",
        &format!("Webhook:         {WEBHOOK_URL}"),
        "Pending updates: 5",
        "Allowed updates: message",
        "Last error:      Wrong response from the webhook: 502 Bad Gateway (2026-12-01 00:00 UTC)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(methods, ["getMe", "getWebhookInfo"]);
    assert!(String::from_utf8_lossy(&info.stderr).trim().is_empty());

    // A token of another bot than the config names: said, since deep links would be wrong.
    let other = cli_config(&fake, "another_bot", "");
    let info = telegram_cli(other.path(), &["info"], &BOTH[..1]).await;
    assert!(info.status.success(), "{info:?}");
    assert!(stdout(&info).contains("Webhook:         none (set one with"));
    let warning = String::from_utf8_lossy(&info.stderr);
    assert!(
        warning.contains("`another_bot`") && warning.contains("@exoclaw_bot"),
        "{warning}"
    );
}

#[tokio::test]
async fn a_missing_token_or_secret_fails_naming_its_variable_and_never_the_token() {
    let fake = FakeBotApi::start().await;
    let dir = cli_config(&fake, "exoclaw_bot", "");
    let url = ["set-webhook", "--url", WEBHOOK_URL];

    for args in [&["info"][..], &["delete-webhook"], &url] {
        let why = failure(&telegram_cli(dir.path(), args, &[]).await);
        assert!(why.contains("TELEGRAM_BOT_TOKEN"), "{why}");
        assert!(why.contains("not set"), "{why}");
    }
    let empty = [("TELEGRAM_BOT_TOKEN", "")];
    let why = failure(&telegram_cli(dir.path(), &["info"], &empty).await);
    assert!(
        why.contains("TELEGRAM_BOT_TOKEN") && why.contains("empty"),
        "{why}"
    );
    let malformed = [("TELEGRAM_BOT_TOKEN", "not-a-token-test_bot_token_value")];
    let why = failure(&telegram_cli(dir.path(), &["info"], &malformed).await);
    assert!(why.contains("TELEGRAM_BOT_TOKEN"), "{why}");

    let why = failure(&telegram_cli(dir.path(), &url, &BOTH[..1]).await);
    assert!(
        why.contains("TELEGRAM_WEBHOOK_SECRET") && why.contains("not set"),
        "{why}"
    );
    let bad_secret = [BOTH[0], ("TELEGRAM_WEBHOOK_SECRET", "has a space")];
    let why = failure(&telegram_cli(dir.path(), &url, &bad_secret).await);
    assert!(why.contains("1-256 characters"), "{why}");
    assert!(!why.contains("has a space"), "{why}");
    assert!(
        fake.calls().is_empty(),
        "no call without a usable token and secret"
    );

    // Telegram's refusal is told, its echo of the token scrubbed.
    fake.answer_next(
        401,
        json!({ "ok": false, "error_code": 401,
                "description": format!("Unauthorized: {BOT_TOKEN}") }),
    );
    let why = failure(&telegram_cli(dir.path(), &["info"], &BOTH[..1]).await);
    assert!(
        why.contains("telegram getMe: refused (401): Unauthorized"),
        "{why}"
    );

    // The variables are the ones the config names.
    let renamed = cli_config(
        &fake,
        "exoclaw_bot",
        ", bot_token_env: OUR_BOT_TOKEN, webhook_secret_env: OUR_BOT_SECRET",
    );
    let why = failure(&telegram_cli(renamed.path(), &url, BOTH).await);
    assert!(why.contains("OUR_BOT_TOKEN"), "{why}");
    let ours = [
        ("OUR_BOT_TOKEN", BOT_TOKEN),
        ("OUR_BOT_SECRET", WEBHOOK_SECRET),
    ];
    let set = telegram_cli(renamed.path(), &url, &ours).await;
    assert!(set.status.success(), "{set:?}");
    assert_eq!(
        fake.calls().pop().unwrap().body["secret_token"],
        WEBHOOK_SECRET
    );
}
