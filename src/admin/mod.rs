//! The admin listener (`server.admin_listen`, loopback by default): what operators use.
//!
//! - `api` (and `runs`): `/metrics` for Prometheus, and `/admin/*` JSON for scripts that send
//!   the admin token as a bearer token;
//! - `pages` (and `session`): `/`, `/nodes`, `/keys`, `/runs`, for an operator's browser signed
//!   in at `/signin` with the same token.
//!
//! The token is read from the environment at start (`auth.admin_token_env`,
//! `EXOCLAW_ADMIN_TOKEN` by default); without it the JSON API and the sign-in refuse, saying
//! what to set. Both halves are one axum router on a Pingora listener
//! (`sidecar::serve::AxumApp`), so a zero-downtime upgrade hands the admin socket over with the
//! others. The pages answer the paths they know; every other request goes to the JSON API, as
//! it did before there were pages.
//!
//! The actions live here, on `AdminApp` (keys, usage, nodes) and in `runs` (the run queue): the
//! JSON API and the pages call the same ones, so a page can do nothing the API cannot.
//! Database work runs on blocking threads; the proxy's key snapshot is refreshed before an
//! answer, so a revoked key is refused from the next request on.

mod api;
pub mod pages;
mod runs;
pub mod session;

use std::sync::Arc;

use axum::Router;

use crate::api_error::{ApiError, ErrorKind};
use crate::auth::store::KeyListing;
use crate::auth::{self, store, Credentials};
use crate::clock::{ManualClock, SharedClock};
use crate::config::units;
use crate::ledger::queries::{self, UserUsage};
use crate::ledger::writer::LedgerWriter;
use crate::limits::AuthFailureGuard;
use crate::local_http;
use crate::metrics::Metrics;
use crate::reload::LastReload;
use crate::runs::RunService;
use crate::state::LiveSnapshot;

pub struct AdminApp {
    pub credentials: Arc<Credentials>,
    pub live: LiveSnapshot,
    pub ledger: Arc<LedgerWriter>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// The admin bearer token, from `auth.admin_token_env` at start; None: the API is off.
    pub token: Option<String>,
    /// Present only under `--manual-clock` (tests): `POST /admin/clock` moves it.
    pub manual_clock: Option<Arc<ManualClock>>,
    pub runs: Arc<RunService>,
    /// What the latest config reload did (written by `reload::ConfigWatcher`).
    pub last_reload: Arc<LastReload>,
    /// The operators' signed-in browsers.
    pub sessions: session::OperatorSessions,
    /// Wrong tokens at `/signin`, per address (`auth.failed_auth_per_minute`).
    pub sign_in_failures: AuthFailureGuard,
}

/// The admin listener's router: the operators' pages, and the JSON API for everything else.
pub fn router(app: Arc<AdminApp>) -> Router {
    pages::router().fallback(api::answer).with_state(app)
}

/// A key just made: the only time `key` is shown.
pub struct CreatedKey {
    pub id: String,
    pub key: String,
    pub user: String,
    pub tier: Option<String>,
}

impl AdminApp {
    /// Whether `presented` is the admin token (constant time). Always false when the token is
    /// not set.
    pub fn is_admin_token(&self, presented: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| local_http::secret_matches(presented.as_bytes(), t.as_bytes()))
    }

    /// The environment variable the admin token is read from (for messages).
    pub fn token_env(&self) -> String {
        self.live.load().config.auth.admin_token_env.clone()
    }

    /// Every key, revoked ones included: never the keys themselves.
    pub async fn keys(&self) -> Result<Vec<KeyListing>, ApiError> {
        let credentials = self.credentials.clone();
        local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            store::list_keys(&conn).map_err(|e| e.to_string())
        })
        .await
    }

    /// Makes a key for `user` (with a comped `tier`, if any); the proxy knows it at once.
    pub async fn create_key(
        &self,
        user: String,
        tier: Option<String>,
    ) -> Result<CreatedKey, ApiError> {
        let credentials = self.credentials.clone();
        let tiers = self.live.load().config.tiers.clone();
        let (minted, user, tier) = local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            let minted = auth::create_key(&conn, &user, tier.as_deref(), &tiers)
                .map_err(|e| format!("invalid: {e}"))?;
            credentials.reload_keys(&conn).map_err(|e| e.to_string())?;
            Ok((minted, user, tier))
        })
        .await?;
        tracing::info!(key_id = %minted.id, %user, "gateway key created by an operator");
        Ok(CreatedKey {
            id: minted.id,
            key: minted.secret,
            user,
            tier,
        })
    }

    /// Revokes key `id`; the proxy refuses it from the next request on. 404 when no active key
    /// has that id.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ApiError> {
        let credentials = self.credentials.clone();
        let key_id = id.to_owned();
        let revoked = local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            let revoked = store::revoke_key(&conn, &key_id).map_err(|e| e.to_string())?;
            credentials.reload_keys(&conn).map_err(|e| e.to_string())?;
            Ok(revoked)
        })
        .await?;
        if !revoked {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "key_not_found",
                format!("No active key has the id `{id}`."),
            ));
        }
        tracing::info!(key_id = %id, "gateway key revoked by an operator");
        Ok(())
    }

    /// Per-user usage over the last `since` (`5m`, `24h`…), most requests first: what
    /// `exoclaw usage` shows.
    pub async fn usage(&self, since: &str) -> Result<Vec<UserUsage>, ApiError> {
        let window = units::parse_duration(since)
            .map_err(|e| ApiError::invalid_request("invalid_since", format!("since: {e}")))?;
        let since_ms = self
            .clock
            .now_ms()
            .saturating_sub(window.as_millis() as u64);
        let credentials = self.credentials.clone();
        local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            queries::usage_since(&conn, since_ms).map_err(|e| e.to_string())
        })
        .await
    }

    /// Every node of every pool: health, in-flight requests, errors, ejections.
    pub fn nodes(&self) -> Vec<serde_json::Value> {
        self.live
            .load()
            .pools
            .iter()
            .flat_map(|pool| pool.nodes().iter().map(|n| n.report()))
            .collect()
    }
}
