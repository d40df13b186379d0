//! Identity, credentials and rate limits over real HTTP: gateway keys (CLI and admin API),
//! BYOK pass-through, Codex tokens, per-user limits with an injected clock, and the per-IP guard
//! against repeated failed authentications.

mod common;

use std::time::{Duration, Instant};

use common::{
    bare_client, chat_body, client, error_field, error_type, free_addr, Gateway, Setup, ADMIN_TOKEN,
};
use exoclaw::mock::{MockNode, MockOptions};

const KEYS_ON: &str = "auth: { mode: byok, require_key: true }\n";
const CODEX: &str = "auth: { mode: codex, require_key: true }\n";

async fn chat(gw: &Gateway, key: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", key)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sixty_requests_in_a_minute_let_exactly_fifty_through_and_the_window_slides() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON).manual_clock()).await;
    let (_, key) = gw.create_key("ana", None).await;

    let mut statuses = Vec::new();
    for _ in 0..60 {
        let r = chat(&gw, &key).await;
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "50");
        assert!(r.headers().contains_key("x-ratelimit-remaining-requests"));
        assert!(r.headers().contains_key("x-ratelimit-reset-requests"));
        if r.status() == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry), "retry-after {retry}");
            assert_eq!(error_type(r).await, "rate_limit_exceeded");
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 10);
    assert_eq!(
        node.seen().len(),
        50,
        "refused requests never reach the node"
    );

    // 50 per minute is one every 1.2 s: the window slides by exactly one request.
    gw.advance_clock(1_200).await;
    assert_eq!(chat(&gw, &key).await.status(), 200);
    assert_eq!(chat(&gw, &key).await.status(), 429);

    // A minute later the whole allowance is back, and another user was never affected.
    gw.advance_clock(60_000).await;
    let r = chat(&gw, &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "49");
    let (_, bob) = gw.create_key("bob", None).await;
    assert_eq!(chat(&gw, &bob).await.status(), 200);
}

#[tokio::test]
async fn a_keys_tier_sets_its_limit() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = format!(
        "{KEYS_ON}tiers:\n  workshop: {{ requests_per_minute: 50 }}\n  trial: {{ requests_per_minute: 2 }}\n"
    );
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(&top).manual_clock()).await;
    let (_, key) = gw.create_key("comped", Some("trial")).await;
    assert_eq!(chat(&gw, &key).await.status(), 200);
    assert_eq!(chat(&gw, &key).await.status(), 200);
    let third = chat(&gw, &key).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["x-ratelimit-limit-requests"], "2");
}

#[tokio::test]
async fn cli_keys_apply_to_a_running_gateway_within_a_second() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;

    let created = gw.cli(&["keys", "create", "--user", "ana"]);
    assert!(created.status.success(), "{:?}", created);
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("exo_") && key.len() >= 4 + 32, "{key}");

    let started = Instant::now();
    while chat(&gw, &key).await.status() != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "new key not accepted within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let listed = gw.cli(&["keys", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entry = &listed[0];
    assert_eq!(entry["user"], "ana");
    assert!(
        listed.to_string().find(&key).is_none(),
        "keys list never shows a key"
    );
    let id = entry["id"].as_str().unwrap().to_owned();

    let revoked = gw.cli(&["keys", "revoke", &id]);
    assert!(revoked.status.success(), "{:?}", revoked);
    let started = Instant::now();
    loop {
        let r = chat(&gw, &key).await;
        if r.status() == 401 {
            assert_eq!(error_field(r, "code").await, "invalid_api_key");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "revoked key still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Only a hash is stored: the key is nowhere in the database file.
    let db = std::fs::read(gw.db_path()).unwrap();
    let wal = std::fs::read(gw.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()));
    }
}

#[tokio::test]
async fn forged_revoked_and_missing_keys_get_401_and_a_conflicting_user_is_refused() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;
    let (id, key) = gw.create_key("ana", None).await;

    let missing = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send();
    let missing = missing.await.unwrap();
    assert_eq!(missing.status(), 401);
    let message = error_field(missing, "message").await;
    assert!(message.contains("X-Gateway-Key"), "{message}");

    let mut forged = key.clone();
    forged.replace_range(10..14, "0000");
    let r = chat(&gw, &forged).await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_type(r).await, "authentication_error");

    let conflicting = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &key)
        .header("x-user-id", "bob")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(conflicting.status(), 401);
    assert_eq!(error_field(conflicting, "code").await, "user_mismatch");

    let revoke = client()
        .delete(gw.admin_url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    assert_eq!(
        chat(&gw, &key).await.status(),
        401,
        "admin revoke applies at once"
    );
    assert!(
        node.seen().is_empty(),
        "no refused request reached the node"
    );
}

#[tokio::test]
async fn byok_key_reaches_the_node_unchanged_and_is_stored_and_logged_nowhere() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;
    let (_, key) = gw.create_key("ana", None).await;
    let byok = "sk-proj-Zq81xTrainee0wnKey";

    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &key)
        .header("x-request-id", "trace-byok-1")
        .bearer_auth(byok)
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let seen = &node.seen()[0];
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {byok}").as_str()
    );
    assert_eq!(seen.headers["x-forwarded-user"], "ana");
    assert!(
        !seen.headers.contains_key("x-gateway-key"),
        "the gateway key never reaches the node"
    );

    // Without a provider key the 401 says exactly what to set.
    let missing = bare_client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &key)
        .header("x-request-id", "trace-byok-2")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let message = error_field(missing, "message").await;
    assert!(message.contains("Authorization: Bearer sk-"), "{message}");

    // Both requests are in the ledger and the log before anything is looked for there.
    gw.wait_for_rows(2).await;
    gw.wait_for_log_line("trace-byok-1").await;
    gw.wait_for_log_line("trace-byok-2").await;
    let mut stored = std::fs::read(gw.db_path()).unwrap();
    stored.extend(std::fs::read(gw.db_path().with_extension("db-wal")).unwrap_or_default());
    for secret in [byok, key.as_str()] {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} stored"
        );
        assert!(!gw.log().contains(secret), "{secret} logged");
    }
}

#[tokio::test]
async fn a_gateway_key_in_authorization_never_reaches_the_node() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(CODEX)).await;
    let (_, key) = gw.create_key("ana", None).await;
    let stored = bare_client()
        .put(gw.url("/api/oauth/codex"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "token": "oauth_ana_session" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let r = bare_client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = &node.seen()[0];
    assert!(!seen.headers.contains_key("authorization"));
    assert!(!seen.headers.contains_key("x-gateway-key"));
    assert_eq!(seen.headers["x-codex-token"], "oauth_ana_session");
}

#[tokio::test]
async fn a_user_can_never_cause_another_users_codex_token_to_be_sent() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(CODEX)).await;
    let (_, ana) = gw.create_key("ana", None).await;
    let (_, bob) = gw.create_key("bob", None).await;
    let put = |key: String, token: &'static str| {
        let url = gw.url("/api/oauth/codex");
        async move {
            bare_client()
                .put(url)
                .header("x-gateway-key", key)
                .json(&serde_json::json!({ "token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(put(bob.clone(), "oauth_bob_secret").await.status(), 200);

    // Ana has no session: her request is refused, whatever she claims.
    let r = chat(&gw, &ana).await;
    assert_eq!(r.status(), 401);
    assert!(error_field(r, "message")
        .await
        .starts_with("No Codex session."));
    let as_bob = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &ana)
        .header("x-user-id", "bob")
        .header("x-forwarded-user", "bob")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(as_bob.status(), 401);
    let forged_token = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &ana)
        .header("x-codex-token", "oauth_bob_secret")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(forged_token.status(), 401);
    assert!(node.seen().is_empty(), "bob's token was never sent for ana");

    // Once ana stores her own, each user's request carries exactly their own token.
    assert_eq!(put(ana.clone(), "oauth_ana_secret").await.status(), 200);
    assert_eq!(chat(&gw, &ana).await.status(), 200);
    assert_eq!(chat(&gw, &bob).await.status(), 200);
    let seen = node.seen();
    assert_eq!(seen[0].headers["x-codex-token"], "oauth_ana_secret");
    assert_eq!(seen[0].headers["x-forwarded-user"], "ana");
    assert_eq!(seen[1].headers["x-codex-token"], "oauth_bob_secret");
    assert!(
        !seen[0].headers.contains_key("authorization"),
        "codex mode sends no API key"
    );

    // Deleting removes the session; tokens are encrypted at rest and never logged.
    let deleted = bare_client()
        .delete(gw.url("/api/oauth/codex"))
        .header("x-gateway-key", &ana)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(chat(&gw, &ana).await.status(), 401);
    let mut stored = std::fs::read(gw.db_path()).unwrap();
    stored.extend(std::fs::read(gw.db_path().with_extension("db-wal")).unwrap_or_default());
    assert!(!stored.windows(16).any(|w| w == b"oauth_bob_secret"));
    assert!(!gw.log().contains("oauth_bob_secret"));
}

#[tokio::test]
async fn the_sidecar_refuses_requests_that_bypass_the_proxy() {
    let gw = Gateway::start(Setup::nodes(&[free_addr()]).top(CODEX)).await;
    let (_, key) = gw.create_key("ana", None).await;
    // The sidecar listens on loopback; a direct call lacks the proxy's per-process secret.
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let sidecar = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("sidecar_listen: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let direct = bare_client()
        .put(format!("http://{sidecar}/api/oauth/codex"))
        .header("x-forwarded-user", "ana")
        .header("x-exoclaw-authenticated", "key")
        .header("x-exoclaw-internal", "guess")
        .json(&serde_json::json!({ "token": "oauth_evil" }))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
    // Through the proxy, the proxy's own secret replaces a forged one.
    let through = bare_client()
        .put(gw.url("/api/oauth/codex"))
        .header("x-gateway-key", &key)
        .header("x-exoclaw-internal", "guess")
        .json(&serde_json::json!({ "token": "oauth_ok" }))
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), 200);
}

/// The proxy sets `X-Exoclaw-Authenticated` only when a gateway key proved the user, so a
/// client's own copy reaches the sidecar unless it is stripped: a claimed `X-User-ID` would
/// then pass for a key.
#[tokio::test]
async fn a_forged_authenticated_header_does_not_pass_for_a_gateway_key() {
    let gw = Gateway::start(Setup::nodes(&[free_addr()])).await; // require_key: false
    let forged = |request: reqwest::RequestBuilder| {
        request
            .header("x-user-id", "ana")
            .header("x-exoclaw-authenticated", "key")
            .send()
    };
    let store = forged(
        bare_client()
            .put(gw.url("/api/oauth/codex"))
            .json(&serde_json::json!({ "token": "oauth_evil" })),
    )
    .await
    .unwrap();
    assert_eq!(store.status(), 401);
    assert_eq!(error_field(store, "code").await, "missing_gateway_key");
    let read = forged(bare_client().get(gw.url("/api/subscriptions/me")))
        .await
        .unwrap();
    assert_eq!(read.status(), 401);
    assert_eq!(error_field(read, "code").await, "missing_gateway_key");
}

#[tokio::test]
async fn repeated_failed_authentications_from_one_ip_are_slowed_down() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = "auth: { mode: byok, require_key: true, failed_auth_per_minute: 5 }\n";
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top).manual_clock()).await;
    let (_, key) = gw.create_key("ana", None).await;
    for _ in 0..5 {
        assert_eq!(chat(&gw, "exo_guess").await.status(), 401);
    }
    let blocked = chat(&gw, &key).await;
    assert_eq!(
        blocked.status(),
        429,
        "the guard answers before the key check"
    );
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(
        error_field(blocked, "code").await,
        "too_many_failed_authentications"
    );

    gw.advance_clock(120_000).await;
    assert_eq!(chat(&gw, &key).await.status(), 200);
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_never_lists_keys() {
    let gw = Gateway::start(Setup::nodes(&[free_addr()]).top(KEYS_ON)).await;
    let (_, key) = gw.create_key("ana", Some("workshop")).await;
    let anonymous = client()
        .get(gw.admin_url("/admin/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = bare_client()
        .get(gw.admin_url("/admin/keys"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let listed = bare_client()
        .get(gw.admin_url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let text = listed.text().await.unwrap();
    assert!(text.contains("\"user\":\"ana\"") && !text.contains(&key));
    let bad_tier = bare_client()
        .post(gw.admin_url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "user": "x", "tier": "platinum" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_tier.status(), 400);
    assert!(error_field(bad_tier, "message").await.contains("platinum"));
}
