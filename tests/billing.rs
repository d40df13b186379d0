//! Tiers and Stripe over real HTTP: signed webhooks (the known vector, rolled secrets, forged,
//! expired and malformed signatures), duplicate, out-of-order and same-second deliveries (a
//! cancellation wins a tie), many webhooks at once while the proxy carries traffic, a checkout's
//! tier applying to the next request, monthly quotas with 402 and a month rollover on an
//! injected clock, and counts surviving a restart.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{chat_body, client, Gateway, Setup, STRIPE_SECRET};
use exoclaw::billing::stripe_signature::sign;
use exoclaw::mock::{MockNode, MockOptions};
use futures_util::future::join_all;
use serde_json::{json, Value};

const TIERS: &str = "auth: { mode: byok, require_key: true }
tiers:
  workshop: { requests_per_minute: 50, monthly_requests: null }
  tier1: { requests_per_minute: 60, monthly_requests: 3 }
  tier2: { requests_per_minute: 100, monthly_requests: 50000, priority: 1 }
default_tier: workshop
stripe: { upgrade_url: \"https://exoclaw.example/upgrade\", past_due_grace: 1d }
";

/// 2026-11-30 23:00:00 UTC: one hour before a month boundary.
const NOV_30_23H_MS: u64 = 1_796_079_600_000;

async fn gateway(node: &MockNode) -> Gateway {
    let setup = Setup::nodes(&[node.addr()])
        .top(TIERS)
        .clock_starting_at(NOV_30_23H_MS);
    Gateway::start(setup).await
}

/// Sends a webhook signed `t=now` with `secrets` (one v1 per secret).
async fn webhook(gw: &Gateway, body: &Value, secrets: &[&str], t: i64) -> reqwest::Response {
    let payload = body.to_string();
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(&format!(",v1={}", hex(sign(t, payload.as_bytes(), secret))));
    }
    client()
        .post(gw.url("/api/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .unwrap()
}

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> i64 {
    (NOV_30_23H_MS / 1000) as i64
}

fn checkout(id: &str, user: &str, tier: &str, created: i64) -> Value {
    checkout_of("sub_1", id, user, tier, created)
}

/// A checkout that starts subscription `sub`.
fn checkout_of(sub: &str, id: &str, user: &str, tier: &str, created: i64) -> Value {
    json!({
        "id": id, "type": "checkout.session.completed", "created": created,
        "data": { "object": {
            "id": format!("cs_{id}"), "client_reference_id": user, "customer": "cus_1",
            "subscription": sub, "metadata": { "tier": tier } } }
    })
}

fn subscription(id: &str, status: &str, created: i64) -> Value {
    json!({
        "id": id, "type": "customer.subscription.updated", "created": created,
        "data": { "object": { "id": "sub_1", "customer": "cus_1", "status": status } }
    })
}

fn deleted(id: &str, created: i64) -> Value {
    json!({
        "id": id, "type": "customer.subscription.deleted", "created": created,
        "data": { "object": { "id": "sub_1", "customer": "cus_1", "status": "canceled" } }
    })
}

async fn limit_of(gw: &Gateway, key: &str) -> String {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", key)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-ratelimit-limit-requests"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn me(gw: &Gateway, key: &str) -> Value {
    let r = client()
        .get(gw.url("/api/subscriptions/me"))
        .header("x-gateway-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_known_vector_and_rolled_secrets_verify() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    gw.set_clock(1_700_000_100_000).await;
    let r = client()
        .post(gw.url("/api/webhooks/stripe"))
        .header(
            "stripe-signature",
            "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990",
        )
        .body(r#"{"id":"evt_test_webhook","object":"event"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["outcome"], "ignored",
        "no type: acknowledged, nothing to change"
    );

    // A rolled secret: Stripe signs with the old and the new one; any match passes.
    let body = json!({ "id": "evt_rolled", "type": "ping", "created": 1_700_000_000 });
    let r = webhook(
        &gw,
        &body,
        &["whsec_old_secret", STRIPE_SECRET],
        1_700_000_050,
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn forged_expired_and_malformed_signatures_change_nothing() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    let event = checkout("evt_1", "ana", "tier2", now_secs());

    let forged = webhook(&gw, &event, &["whsec_attacker"], now_secs()).await;
    assert_eq!(forged.status(), 400);
    let v: Value = forged.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no v1 signature matches"));
    let expired = webhook(&gw, &event, &[STRIPE_SECRET], now_secs() - 301).await;
    assert_eq!(expired.status(), 400);
    for header in ["", "t=abc,v1=00", "v1=deadbeef", "t=1796079600"] {
        let r = client()
            .post(gw.url("/api/webhooks/stripe"))
            .header("stripe-signature", header)
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "header {header:?}");
    }
    let missing = client()
        .post(gw.url("/api/webhooks/stripe"))
        .body(event.to_string())
        .send();
    assert_eq!(missing.await.unwrap().status(), 400);
    assert_eq!(limit_of(&gw, &key).await, "50", "still the workshop tier");

    // The same event, properly signed, is processed: refusals recorded nothing.
    let ok = webhook(&gw, &event, &[STRIPE_SECRET], now_secs()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["outcome"], "applied");
}

#[tokio::test]
async fn a_checkout_sets_the_tier_of_the_next_request_and_duplicates_change_nothing() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    assert_eq!(limit_of(&gw, &key).await, "50");

    let event = checkout("evt_checkout", "ana", "tier2", now_secs());
    assert_eq!(
        webhook(&gw, &event, &[STRIPE_SECRET], now_secs())
            .await
            .status(),
        200
    );
    assert_eq!(
        limit_of(&gw, &key).await,
        "100",
        "tier2 applies to the next request"
    );
    let plan = me(&gw, &key).await;
    assert_eq!(
        (plan["tier"].as_str(), plan["status"].as_str()),
        (Some("tier2"), Some("active"))
    );

    // Canceled later; then the checkout is delivered again: it changes nothing.
    let cancel = subscription("evt_cancel", "canceled", now_secs() + 10);
    assert_eq!(
        webhook(&gw, &cancel, &[STRIPE_SECRET], now_secs())
            .await
            .status(),
        200
    );
    assert_eq!(
        limit_of(&gw, &key).await,
        "50",
        "canceled → back to the default tier"
    );
    let again = webhook(&gw, &event, &[STRIPE_SECRET], now_secs()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["outcome"], "duplicate");
    assert_eq!(limit_of(&gw, &key).await, "50");
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_state() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    // Stripe delivers the cancellation first, then the checkout that came before it.
    let cancel = subscription("evt_cancel", "canceled", now_secs() + 60);
    assert_eq!(
        webhook(&gw, &cancel, &[STRIPE_SECRET], now_secs())
            .await
            .status(),
        200
    );
    let event = checkout("evt_co", "ana", "tier2", now_secs());
    let late = webhook(&gw, &event, &[STRIPE_SECRET], now_secs()).await;
    assert_eq!(late.status(), 200);
    assert_eq!(late.json::<Value>().await.unwrap()["outcome"], "stale");
    assert_eq!(limit_of(&gw, &key).await, "50");
    assert_eq!(me(&gw, &key).await["status"], "canceled");
}

/// Delivers a checkout, then `first` and `second` (both at the same second, later than the
/// checkout); returns the outcome of each of the two.
async fn same_second(gw: &Gateway, first: &Value, second: &Value) -> [String; 2] {
    let t = now_secs();
    let co = checkout("evt_co", "ana", "tier2", t - 60);
    assert_eq!(webhook(gw, &co, &[STRIPE_SECRET], t).await.status(), 200);
    let mut outcomes = [String::new(), String::new()];
    for (event, outcome) in [first, second].into_iter().zip(&mut outcomes) {
        let r = webhook(gw, event, &[STRIPE_SECRET], t).await;
        assert_eq!(r.status(), 200);
        *outcome = r.json::<Value>().await.unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    outcomes
}

#[tokio::test]
async fn at_the_same_second_a_deletion_is_not_undone_by_a_later_delivered_update() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    let t = now_secs();
    let outcomes = same_second(
        &gw,
        &deleted("evt_deleted", t),
        &subscription("evt_active", "active", t),
    )
    .await;
    assert_eq!(outcomes, ["applied", "stale"]);
    assert_eq!(me(&gw, &key).await["status"], "canceled");
    assert_eq!(limit_of(&gw, &key).await, "50", "back to the default tier");
}

#[tokio::test]
async fn at_the_same_second_a_deletion_delivered_after_an_update_cancels() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    let t = now_secs();
    let outcomes = same_second(
        &gw,
        &subscription("evt_active", "active", t),
        &deleted("evt_deleted", t),
    )
    .await;
    assert_eq!(outcomes, ["applied", "applied"]);
    assert_eq!(me(&gw, &key).await["status"], "canceled");
    assert_eq!(limit_of(&gw, &key).await, "50", "back to the default tier");
}

#[tokio::test]
async fn a_failed_payment_keeps_the_tier_for_the_grace_period_only() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    let t = now_secs();
    webhook(
        &gw,
        &checkout("evt_co", "ana", "tier2", t),
        &[STRIPE_SECRET],
        t,
    )
    .await;
    let failed = json!({
        "id": "evt_failed", "type": "invoice.payment_failed", "created": t + 1,
        "data": { "object": { "id": "in_1", "subscription": "sub_1" } }
    });
    assert_eq!(
        webhook(&gw, &failed, &[STRIPE_SECRET], t).await.status(),
        200
    );
    assert_eq!(me(&gw, &key).await["status"], "past_due");
    assert_eq!(
        limit_of(&gw, &key).await,
        "100",
        "within the 1-day grace period"
    );
    gw.advance_clock(86_400_000 + 5_000).await;
    assert_eq!(
        limit_of(&gw, &key).await,
        "50",
        "grace over: back to the default tier"
    );
}

#[tokio::test]
async fn the_monthly_quota_gives_402_then_rolls_over_and_survives_a_restart() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let mut gw = gateway(&node).await;
    let (_, key) = gw.create_key("comped", Some("tier1")).await;
    let send = |gw: &Gateway| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-gateway-key", key.clone())
            .json(&chat_body(false))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(send(&gw).await.unwrap().status(), 200);
    }
    assert_eq!(me(&gw, &key).await["requests_this_month"], 2);

    // Counts survive a restart (a graceful stop saves them).
    gw.restart().await;
    gw.set_clock(NOV_30_23H_MS).await;
    assert_eq!(send(&gw).await.unwrap().status(), 200);
    let refused = send(&gw).await.unwrap();
    assert_eq!(refused.status(), 402);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tier1") && message.contains("3 requests"),
        "{message}"
    );
    assert!(
        message.contains("https://exoclaw.example/upgrade"),
        "{message}"
    );
    assert!(message.contains("2026-12-01"), "{message}");
    let plan = me(&gw, &key).await;
    assert_eq!(
        (
            plan["requests_this_month"].as_u64(),
            plan["remaining"].as_u64()
        ),
        (Some(3), Some(0))
    );

    // The month rolls over by itself.
    gw.advance_clock(3_600_000).await;
    assert_eq!(send(&gw).await.unwrap().status(), 200);
    let plan = me(&gw, &key).await;
    assert_eq!(plan["month"], "2026-12");
    assert_eq!(plan["requests_this_month"], 1);
}

/// Chat traffic during the concurrency tests: enough tasks to keep the ledger writer, the quota
/// counters and the key `last used` flush busy while webhooks arrive.
const TRAFFIC_TASKS: usize = 4;

/// Runs `work` while `TRAFFIC_TASKS` tasks send chat completions through the gateway to its mock
/// node, each under its own key in the unlimited `load` tier. Every task has one answer before
/// `work` starts and keeps sending until it ends. Returns `work`'s output and each task's
/// statuses.
async fn under_traffic<T>(gw: &Gateway, work: impl Future<Output = T>) -> (T, Vec<Vec<u16>>) {
    let mut keys = Vec::new();
    for i in 0..TRAFFIC_TASKS {
        keys.push(gw.create_key(&format!("traffic-{i}"), Some("load")).await.1);
    }
    let stop = AtomicBool::new(false);
    let started = tokio::sync::Barrier::new(TRAFFIC_TASKS + 1);
    let traffic = join_all(keys.into_iter().map(|key| {
        let (stop, started) = (&stop, &started);
        async move {
            let mut statuses = Vec::new();
            loop {
                let r = client()
                    .post(gw.url("/v1/chat/completions"))
                    .header("x-gateway-key", &key)
                    .json(&chat_body(false))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
                if statuses.len() == 1 {
                    started.wait().await;
                } else if stop.load(Ordering::Relaxed) {
                    return statuses;
                }
            }
        }
    }));
    let work = async {
        started.wait().await;
        let output = work.await;
        stop.store(true, Ordering::Relaxed);
        output
    };
    tokio::join!(work, traffic)
}

/// A gateway with an extra unlimited `load` tier for the traffic keys.
async fn loaded_gateway(node: &MockNode) -> Gateway {
    let tiers = TIERS.replace(
        "tiers:\n",
        "tiers:\n  load: { requests_per_minute: 1000000, monthly_requests: null }\n",
    );
    let setup = Setup::nodes(&[node.addr()])
        .top(&tiers)
        .clock_starting_at(NOV_30_23H_MS);
    Gateway::start(setup).await
}

/// Sends every event at once; returns each delivery's status and `outcome`.
async fn deliver_at_once(gw: &Gateway, events: &[Value]) -> Vec<(u16, String)> {
    join_all(events.iter().map(|event| async move {
        let r = webhook(gw, event, &[STRIPE_SECRET], now_secs()).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let outcome = body["outcome"].as_str().unwrap_or("").to_owned();
        (status, outcome)
    }))
    .await
}

fn assert_traffic_went_through(statuses: &[Vec<u16>]) {
    for (task, answers) in statuses.iter().enumerate() {
        assert!(
            answers.len() >= 2,
            "traffic task {task} sent while the webhooks ran"
        );
        assert!(
            answers.iter().all(|s| *s == 200),
            "traffic task {task}: {answers:?}"
        );
    }
}

#[tokio::test]
async fn fifty_distinct_events_at_once_under_traffic_all_apply_exactly_once() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = loaded_gateway(&node).await;
    let events: Vec<Value> = (0..50)
        .map(|i| {
            let sub = format!("sub_many_{i}");
            checkout_of(
                &sub,
                &format!("evt_many_{i}"),
                &format!("user-{i}"),
                "tier2",
                now_secs(),
            )
        })
        .collect();
    let (answers, traffic) = under_traffic(&gw, deliver_at_once(&gw, &events)).await;

    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 50 deliveries failed: {failed:?}",
        failed.len()
    );
    assert!(answers.iter().all(|(_, outcome)| outcome == "applied"));
    assert_traffic_went_through(&traffic);
    let db = gw.db();
    let recorded: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM stripe_events
             WHERE event_id LIKE 'evt_many_%' AND outcome = 'applied'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 50, "each event recorded once, as applied");
    let mut stmt = db
        .prepare(
            "SELECT subscription_id, user_id, tier, status FROM stripe_subscriptions
             WHERE subscription_id LIKE 'sub_many_%'",
        )
        .unwrap();
    let mut plans: Vec<(String, String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    plans.sort();
    let mut expected: Vec<_> = (0..50)
        .map(|i| {
            (
                format!("sub_many_{i}"),
                format!("user-{i}"),
                "tier2".to_owned(),
                "active".to_owned(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(plans, expected);
}

#[tokio::test]
async fn fifty_deliveries_of_one_event_at_once_under_traffic_apply_it_once() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = loaded_gateway(&node).await;
    let (_, key) = gw.create_key("ana", None).await;
    let event = checkout("evt_once", "ana", "tier2", now_secs());
    let events = vec![event; 50];
    let (answers, traffic) = under_traffic(&gw, deliver_at_once(&gw, &events)).await;

    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 50 deliveries failed: {failed:?}",
        failed.len()
    );
    let applied = answers.iter().filter(|(_, o)| o == "applied").count();
    let duplicates = answers.iter().filter(|(_, o)| o == "duplicate").count();
    assert_eq!((applied, duplicates), (1, 49));
    assert_traffic_went_through(&traffic);
    let db = gw.db();
    let recorded: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM stripe_events WHERE event_id = 'evt_once'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 1);
    let plan: (String, String, String) = db
        .query_row(
            "SELECT user_id, tier, status FROM stripe_subscriptions WHERE subscription_id = 'sub_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(plan, ("ana".into(), "tier2".into(), "active".into()));
    assert_eq!(limit_of(&gw, &key).await, "100", "tier2 applies");
}

#[tokio::test]
async fn webhooks_are_refused_with_503_when_the_signing_secret_is_unset() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = format!(
        "{TIERS}stripe: {{ webhook_secret_env: EXOCLAW_TEST_UNSET_SECRET, price_tiers: {{ price_2: tier2 }} }}\n"
    )
    .replace("stripe: { upgrade_url: \"https://exoclaw.example/upgrade\", past_due_grace: 1d }\n", "");
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(&top)).await;
    let r = webhook(
        &gw,
        &checkout("evt_1", "ana", "tier2", now_secs()),
        &[STRIPE_SECRET],
        now_secs(),
    )
    .await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "webhooks_not_configured", "{v}");
    assert!(
        gw.log().contains("EXOCLAW_TEST_UNSET_SECRET is not set"),
        "serve warned at start"
    );
}
