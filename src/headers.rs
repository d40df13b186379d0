//! Every header name the gateway reads, sets or strips, in one place: a ground-floor module
//! that the proxy, authentication, the sidecar, the admin API and the run workers all read, so
//! no arrow runs back up into the proxy.
//!
//! The strip list is a security boundary: a client must never be able to impersonate another
//! user to a node (`X-Forwarded-User`), inject a Codex session (`X-Codex-Token`), or leak its
//! gateway key to a node (`X-Gateway-Key`).

use rand::RngCore;

use crate::limits::RateDecision;

/// Request id, both directions (`x-request-id` on responses, `X-Request-Id` to the node).
pub const REQUEST_ID: &str = "x-request-id";
/// The user the gateway vouches for, set by the gateway only.
pub const FORWARDED_USER: &str = "x-forwarded-user";
/// The caller's Codex OAuth token, resolved by the gateway in Codex mode.
pub const CODEX_TOKEN: &str = "x-codex-token";
/// The gateway key a client presents.
pub const GATEWAY_KEY: &str = "x-gateway-key";
/// The user id a client claims (the seed's header).
pub const USER_ID: &str = "x-user-id";

/// Proxy → node: the OpenClaw session the request lands in, chosen by the gateway only.
pub const OPENCLAW_SESSION_KEY: &str = "x-openclaw-session-key";
/// Client → proxy: the name of one of the caller's own sessions (namespaced under the user).
pub const SESSION_ID: &str = "x-session-id";
/// Proxy → node: the client's address, as the gateway saw it (a client's own copy is dropped).
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const FORWARDED: &str = "forwarded";
/// Dropped from clients: some nodes read it as the client's address.
pub const X_REAL_IP: &str = "x-real-ip";

/// Proxy → sidecar: the per-process secret proving a request came through the proxy.
pub const INTERNAL_SECRET: &str = "x-exoclaw-internal";
/// Proxy → sidecar: `key` when the user was proven by a gateway key (not just claimed).
pub const AUTHENTICATED_BY: &str = "x-exoclaw-authenticated";

/// OpenAI's rate-limit headers, on every response once the caller's limit is known.
pub const RATE_LIMIT: &str = "x-ratelimit-limit-requests";
pub const RATE_REMAINING: &str = "x-ratelimit-remaining-requests";
pub const RATE_RESET: &str = "x-ratelimit-reset-requests";

/// Proxy → sidecar: the tier the caller's request ran under.
pub const TIER: &str = "x-exoclaw-tier";
/// Stripe's webhook signature.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";
/// The secret Telegram sends back with every webhook call (`setWebhook`'s `secret_token`).
pub const TELEGRAM_SECRET: &str = "x-telegram-bot-api-secret-token";

/// Run worker → proxy (with `INTERNAL_SECRET`): the run a node call belongs to.
pub const RUN_ID: &str = "x-exoclaw-run";
/// Run worker → proxy: the tenant's owner, on whose behalf the run calls the node.
pub const RUN_USER: &str = "x-exoclaw-run-user";
/// Run worker → proxy: the run's OpenClaw session name (namespaced by tenant).
pub const RUN_SESSION: &str = "x-exoclaw-run-session";
/// Run worker → proxy: the pool an operator pinned the tenant to.
pub const RUN_POOL: &str = "x-exoclaw-run-pool";
/// Run worker → proxy: the tier the run was accepted under (a key's comped tier counts).
pub const RUN_TIER: &str = "x-exoclaw-run-tier";

/// Headers a client may send but no node or sidecar may ever see from the client.
pub const STRIPPED_FROM_CLIENT: [&str; 11] = [
    FORWARDED_USER,
    CODEX_TOKEN,
    GATEWAY_KEY,
    INTERNAL_SECRET,
    AUTHENTICATED_BY,
    TIER,
    RUN_ID,
    RUN_USER,
    RUN_SESSION,
    RUN_POOL,
    RUN_TIER,
];

/// Longest request id or user id accepted from a client.
const MAX_ID_LEN: usize = 128;

/// True for ids safe to echo into headers and logs: 1–128 of `A-Z a-z 0-9 - _ . : @`.
pub fn is_well_formed_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

/// The client's request id when it is well-formed, a fresh one otherwise.
pub fn request_id_from(client_value: Option<&[u8]>) -> String {
    match client_value {
        Some(v) if is_well_formed_id(v) => String::from_utf8_lossy(v).into_owned(),
        _ => new_request_id(),
    }
}

/// `req_`, then 32 hex digits: the time in milliseconds (48 bits), then 80 random bits.
///
/// Time first, so ids sort by creation and each new one lands at the end of the ledger's
/// `request_id` index: a random id would land on a random index page, which the ledger writer
/// then has to read and rewrite for every row.
pub fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    rand::rng().fill_bytes(&mut bytes[6..]);
    format!("req_{}", hex::encode(bytes))
}

/// The token of `Authorization: Bearer <token>`, if that is what the header holds.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The three rate-limit headers for a decision.
pub fn rate_limit_headers(decision: &RateDecision) -> [(&'static str, String); 3] {
    [
        (RATE_LIMIT, decision.limit.to_string()),
        (RATE_REMAINING, decision.remaining.to_string()),
        (RATE_RESET, format_reset(decision.reset_ms)),
    ]
}

/// A duration the way OpenAI writes `x-ratelimit-reset-requests`: `0s`, `1.2s`, `6m0s`.
pub fn format_reset(ms: u64) -> String {
    let (minutes, ms) = (ms / 60_000, ms % 60_000);
    let seconds = if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let text = format!("{:.3}", ms as f64 / 1000.0);
        format!("{}s", text.trim_end_matches('0'))
    };
    if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openais() {
        assert_eq!(format_reset(0), "0s");
        assert_eq!(format_reset(1200), "1.2s");
        assert_eq!(format_reset(59_999), "59.999s");
        assert_eq!(format_reset(60_000), "1m0s");
        assert_eq!(format_reset(360_500), "6m0.5s");
    }

    #[test]
    fn client_request_id_is_kept_when_well_formed() {
        assert_eq!(request_id_from(Some(b"abc-123_x.y:z")), "abc-123_x.y:z");
    }

    #[test]
    fn malformed_request_id_is_replaced() {
        for bad in [&b""[..], b"has space", b"new\nline", &[b'a'; 129][..]] {
            let id = request_id_from(Some(bad));
            assert!(id.starts_with("req_") && id.len() == 36, "{id}");
        }
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn generated_request_ids_sort_by_time() {
        let first = new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_request_id();
        assert!(first < later, "{first} then {later}");
        let millis = u64::from_str_radix(&first[4..16], 16).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            now - millis < 60_000,
            "the id starts with the time: {first}"
        );
    }
}
