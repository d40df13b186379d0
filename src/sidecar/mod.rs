//! The sidecar: the gateway's control plane, an axum app on a loopback listener.
//!
//! The proxy authenticates the caller and hands `/api/*` (and `/onboard/*`) here with
//! `X-Forwarded-User`, plus the gateway's internal secret that proves the request came through
//! the proxy: a local process that connects to the sidecar directly cannot impersonate a user.
//! The router stays thin: each handler reads as the request's story (typed extractors for the
//! caller, the path, the body; `ApiError` for every failure) and calls a domain module.
//!
//! | routes | module |
//! |---|---|
//! | `/api/subscriptions/me`, `/api/oauth/codex`, `/api/webhooks/stripe`, `/onboard/{token}` | `account` |
//! | `/api/tenants…`, `/api/templates` | `tenants` |
//! | `/api/runs…` | `runs` |
//! | `/api/runtime/skills…` | `skills` |
//! | `/api/telegram/pairing`, `/api/telegram/pairings…` | `telegram` |
//! | `/api/webhooks/telegram` | `telegram_webhook` |
//! | `/`, `/pricing`, `/signup`, `/signin`, `/signout`, `/dashboard…`, `/assets/…` | `crate::dashboard` |

pub mod account;
pub mod extract;
pub mod runs;
pub mod serve;
pub mod skills;
pub mod telegram;
pub mod telegram_webhook;
pub mod tenants;

use std::sync::Arc;

use axum::extract::Request;
use axum::routing::{get, post, put};
use axum::Router;

use crate::api_error::{ApiError, ErrorKind};
use crate::auth::Credentials;
use crate::billing::{self, Billing};
use crate::clock::SharedClock;
use crate::config::{Config, Tier};
use crate::ledger::connection::SharedConnection;
use crate::metrics::Metrics;
use crate::runs::RunService;
use crate::state::LiveSnapshot;
use extract::Caller;

/// What every handler shares.
pub struct Sidecar {
    pub credentials: Arc<Credentials>,
    pub billing: Arc<Billing>,
    pub live: LiveSnapshot,
    pub clock: SharedClock,
    /// Proves a request came through the proxy (`x-exoclaw-internal`).
    pub internal_secret: Arc<str>,
    /// The Stripe endpoint secret (`whsec_…`), from the environment at start.
    pub stripe_secret: Option<String>,
    pub metrics: Arc<Metrics>,
    /// The control plane's connection (tenants).
    pub db: Arc<SharedConnection>,
    pub runs: Arc<RunService>,
    /// Every runtime's skills inventory.
    pub skills: Arc<crate::skills::cache::Inventories>,
    /// The shared Telegram bot, which the webhook hands updates to.
    pub bot: Arc<crate::telegram::bot::Bot>,
    /// What the dashboard's pages keep in memory (sign-ups per address).
    pub pages: crate::dashboard::Pages,
}

/// Every route of the control plane.
pub fn router(sidecar: Arc<Sidecar>) -> Router {
    Router::new()
        .route("/api/subscriptions/me", get(account::subscription))
        .route(
            "/api/oauth/codex",
            put(account::store_codex_token).delete(account::delete_codex_token),
        )
        .route("/api/webhooks/stripe", post(account::stripe_webhook))
        .route("/api/webhooks/telegram", post(telegram_webhook::webhook))
        .route("/onboard/{token}", get(account::download_kit))
        .route("/api/templates", get(tenants::list_templates))
        .route("/api/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/api/tenants/{id}",
            get(tenants::show)
                .patch(tenants::rename)
                .delete(tenants::delete),
        )
        .route("/api/runs", post(runs::submit).get(runs::list))
        .route("/api/runs/{id}", get(runs::show))
        .route("/api/runs/{id}/cancel", post(runs::cancel))
        .route("/api/runs/{id}/events", get(runs::events))
        .route("/api/runs/{id}/artifacts", get(runs::artifacts))
        .route("/api/runs/{id}/artifacts/{name}", get(runs::artifact))
        .route(
            "/api/runtime/skills",
            get(skills::view).patch(skills::patch),
        )
        .route(
            "/api/runtime/skills/packs",
            get(skills::packs).post(skills::apply_pack),
        )
        .route("/api/runtime/skills/diagnostics", get(skills::diagnose))
        .route("/api/runtime/skills/remediate", post(skills::remediate))
        .route("/api/telegram/pairing", post(telegram::create_code))
        .route("/api/telegram/pairings", get(telegram::list))
        .route(
            "/api/telegram/pairings/{id}",
            axum::routing::delete(telegram::delete),
        )
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(sidecar)
}

async fn not_found(request: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    match crate::dashboard::is_page_path(request.uri().path()) {
        true => crate::dashboard::page_not_found().await,
        false => ApiError::not_found(request.uri().path()).into_response(),
    }
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidRequest,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}.",
            request.method(),
            request.uri().path()
        ),
    )
}

impl Sidecar {
    /// The tier the caller's request ran under (the proxy's choice, which counts a key's
    /// comped tier), or the one their subscription gives.
    pub fn tier_of<'c>(&self, caller: &Caller, config: &'c Config) -> (&'c str, &'c Tier) {
        match caller
            .tier
            .as_deref()
            .and_then(|t| config.tiers.get_key_value(t))
        {
            Some((name, tier)) => (name.as_str(), tier),
            None => billing::resolve_tier(
                config,
                &self.billing.plans.load(),
                &caller.user,
                None,
                self.clock.now_ms(),
            ),
        }
    }

    /// Counts a webhook; event types are Stripe's (only after the signature verified).
    pub fn count_webhook(&self, kind: &str, result: &str) {
        let kind = if kind.is_empty() || kind.len() > 64 {
            "other"
        } else {
            kind
        };
        self.metrics
            .webhooks
            .with_label_values(&[kind, result])
            .inc();
    }

    /// Runs blocking SQL with the control plane's connection.
    pub async fn with_db<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.db.clone();
        crate::local_http::blocking(context, move || db.with(work)).await
    }
}
