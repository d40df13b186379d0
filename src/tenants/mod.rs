//! Tenants: the projects a gateway user owns, each with the runtime its runs go to.
//!
//! A tenant belongs to one user (the owner, proven by a gateway key); how many a user may own
//! is their tier's `max_tenants`. Its runtime is the pool its runs reach: the owner's tier's
//! pool, unless an operator pinned the tenant to another pool (`exoclaw tenants pin`), which is
//! how a tier3 customer gets a dedicated node — a pool of one node that serves that tenant
//! alone, since OpenClaw treats one node as one trust boundary. On a shared node every session
//! a run opens is namespaced by tenant (`run_session`).
//!
//! Not for: SQL (`store`), HTTP (`sidecar::tenants`), runs (`crate::runs`).

pub mod store;

use rand::RngCore;
use serde::Serialize;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: String,
    pub owner: String,
    pub name: String,
    /// The operator's pin; None: the owner's tier's pool.
    pub pool: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// Longest tenant name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A fresh tenant id: `ten_` and 80 random bits in hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    format!("ten_{}", hex::encode(bytes))
}

/// Whether `id` looks like a tenant id (checked before any query).
pub fn is_id(id: &str) -> bool {
    id.len() == 24 && id.starts_with("ten_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A tenant's name, trimmed: 1-100 characters, no control characters.
pub fn clean_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("`name` must not be empty".to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "`name` must be at most {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("`name` must not hold control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// The pool a tenant's runs go to, and whether an operator chose it.
pub fn runtime_pool<'a>(config: &'a Config, tier: &'a str, tenant: &'a Tenant) -> (&'a str, bool) {
    match &tenant.pool {
        Some(pinned) => (pinned.as_str(), true),
        None => (config.tier(Some(tier)).1.pool.as_str(), false),
    }
}

/// The OpenClaw sub-session a run of `tenant` works in: derived from the run, so a retried
/// attempt continues the same session, and namespaced by tenant.
pub fn run_session(tenant_id: &str, run_id: &str) -> String {
    format!("tenant/{tenant_id}/run/{run_id}")
}

/// The OpenClaw sub-session of a Telegram user's chat with `tenant`: one per tenant and user,
/// so the agent remembers the conversation across messages.
pub fn chat_session(tenant_id: &str, telegram_user_id: i64) -> String {
    format!("tenant/{tenant_id}/telegram/{telegram_user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_recognised() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(is_id(&a), "{a}");
        assert!(!is_id("ten_../../etc"));
        assert!(!is_id("run_0123456789abcdef0123"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  Acme  ").unwrap(), "Acme");
        assert!(clean_name("   ").is_err());
        assert!(clean_name("a\nb").is_err());
        assert!(clean_name(&"é".repeat(100)).is_ok());
        assert!(clean_name(&"é".repeat(101)).is_err());
    }

    #[test]
    fn run_sessions_are_what_the_proxy_accepts() {
        let session = run_session(&new_id(), "run_abc");
        assert!(
            crate::proxy::run_caller::is_run_session(&session),
            "{session}"
        );
    }
}
