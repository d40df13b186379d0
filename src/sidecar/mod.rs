//! The sidecar: the gateway's control-plane HTTP app for `/api/*`, on a loopback listener.
//!
//! The proxy authenticates the caller and hands `/api/*` requests here with `X-Forwarded-User`,
//! plus a per-process secret header that proves the request came through the proxy: a local
//! process that connects to the sidecar directly cannot impersonate a user. Endpoints:
//!
//! - `PUT /api/oauth/codex` `{"token": "..."}` stores the caller's Codex OAuth token, encrypted
//!   (what `setup.sh --auth codex` calls); `DELETE /api/oauth/codex` removes it.
//!
//! - `POST /api/webhooks/stripe`: Stripe's subscription events, verified by `Stripe-Signature`
//!   (no gateway key: the signature is the authentication). Each event id is processed once, in
//!   the same transaction as its effect; the new tier applies to the user's next request.
//! - `GET /api/subscriptions/me`: the caller's tier, status, this month's usage and what is left.
//! - `GET /onboard/<token>`: a trainee's kit, once (no gateway key: the link is the
//!   credential); see `onboard::download` for the answers.
//!
//! The Codex and subscription endpoints need a gateway key (not a claimed `X-User-ID`). Runs and
//! tenants join this module in later work.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use crate::api_error::{ApiError, ErrorKind};
use crate::auth::{codex, store, Credentials};
use crate::billing::quota::Month;
use crate::billing::{self, events, store as billing_store, stripe_signature, Billing};
use crate::clock::SharedClock;
use crate::local_http;
use crate::metrics::Metrics;
use crate::onboard::{self, download, link};
use crate::proxy::headers;
use crate::state::LiveSnapshot;

pub struct SidecarApp {
    credentials: Arc<Credentials>,
    billing: Arc<Billing>,
    live: LiveSnapshot,
    clock: SharedClock,
    internal_secret: Arc<str>,
    /// The Stripe endpoint secret (`whsec_…`), from the environment at start.
    stripe_secret: Option<String>,
    metrics: Arc<Metrics>,
}

/// Largest webhook body accepted (Stripe events with expanded objects stay far below this).
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodexTokenBody {
    token: String,
}

impl SidecarApp {
    pub fn new(
        credentials: Arc<Credentials>,
        billing: Arc<Billing>,
        live: LiveSnapshot,
        clock: SharedClock,
        internal_secret: Arc<str>,
        stripe_secret: Option<String>,
        metrics: Arc<Metrics>,
    ) -> SidecarApp {
        SidecarApp {
            credentials,
            billing,
            live,
            clock,
            internal_secret,
            stripe_secret,
            metrics,
        }
    }

    /// The user the proxy vouches for, and whether a gateway key proved it.
    fn caller(&self, session: &ServerSession) -> Result<(String, bool), ApiError> {
        let secret = session
            .get_header(headers::INTERNAL_SECRET)
            .map(|v| v.as_bytes());
        if !secret.is_some_and(|s| local_http::secret_matches(s, self.internal_secret.as_bytes())) {
            return Err(ApiError::unauthenticated(
                "not_through_gateway",
                "Call /api/* through the gateway's public address.",
            ));
        }
        let user = session
            .get_header(headers::FORWARDED_USER)
            .and_then(|v| v.to_str().ok())
            .filter(|u| headers::is_well_formed_id(u.as_bytes()))
            .ok_or_else(ApiError::internal)?
            .to_owned();
        let by_key = session
            .get_header(headers::AUTHENTICATED_BY)
            .is_some_and(|v| v.as_bytes() == b"key");
        Ok((user, by_key))
    }

    async fn route(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, ApiError> {
        let (user, by_key) = self.caller(session)?;
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        match (method, path.as_str()) {
            (Method::POST, "/api/webhooks/stripe") => self.stripe_webhook(session).await,
            (Method::GET, p) if p.starts_with(link::PATH_PREFIX) => {
                self.download_kit(&p[link::PATH_PREFIX.len()..]).await
            }
            (Method::GET, "/api/subscriptions/me") => {
                require_key(by_key)?;
                let tier = session
                    .get_header(headers::TIER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(self.subscription(&user, tier.as_deref()))
            }
            (Method::PUT, "/api/oauth/codex") => {
                require_key(by_key)?;
                let body: CodexTokenBody = local_http::read_json(session).await?;
                self.store_codex_token(user, body.token).await
            }
            (Method::DELETE, "/api/oauth/codex") => {
                require_key(by_key)?;
                self.delete_codex_token(user).await
            }
            _ => Err(ApiError::not_found(&path)),
        }
    }

    /// `GET /onboard/<token>`: claims the link once, in its own write transaction.
    async fn download_kit(&self, token: &str) -> Result<Response<Vec<u8>>, ApiError> {
        if !link::is_well_formed(token) {
            return Ok(download::not_found());
        }
        let token_hash = link::token_hash(token);
        let credentials = self.credentials.clone();
        let now = self.clock.now_ms();
        let claim = local_http::blocking("onboard link", move || {
            let mut conn = credentials.open_db()?;
            onboard::store::claim(&mut conn, &token_hash, now).map_err(|e| e.to_string())
        })
        .await?;
        let claim = match claim {
            onboard::store::Claim::Kit { user, zip: sealed } => {
                let Some(zip) = link::open_kit(token, &sealed) else {
                    tracing::error!(%user, "a kit could not be opened with its own link");
                    return Err(ApiError::internal());
                };
                tracing::info!(%user, "kit downloaded");
                onboard::store::Claim::Kit { user, zip }
            }
            other => other,
        };
        Ok(download::response(claim))
    }

    async fn store_codex_token(
        &self,
        user: String,
        token: String,
    ) -> Result<Response<Vec<u8>>, ApiError> {
        let token = token.trim().to_owned();
        if !codex::is_valid_token(&token) {
            return Err(ApiError::invalid_request(
                "invalid_token",
                format!(
                    "`token` must be 1-{} visible ASCII characters without spaces.",
                    codex::MAX_TOKEN_LEN
                ),
            ));
        }
        if self.credentials.cipher.is_none() {
            return Err(self.tokens_disabled());
        }
        let credentials = self.credentials.clone();
        let owner = user.clone();
        local_http::blocking("sidecar", move || {
            let cipher = credentials.cipher.as_ref().ok_or("no token key")?;
            let (nonce, sealed) = cipher.seal(&owner, &token)?;
            let conn = credentials.open_db()?;
            store::put_codex_token(&conn, &owner, &nonce, &sealed).map_err(|e| e.to_string())?;
            credentials.reload_codex(&conn).map_err(|e| e.to_string())
        })
        .await?;
        tracing::info!(%user, "Codex token stored");
        Ok(local_http::json(
            200,
            &json!({ "status": "stored", "user": user }),
        ))
    }

    async fn delete_codex_token(&self, user: String) -> Result<Response<Vec<u8>>, ApiError> {
        let credentials = self.credentials.clone();
        let owner = user.clone();
        let deleted = local_http::blocking("sidecar", move || {
            let conn = credentials.open_db()?;
            let deleted = store::delete_codex_token(&conn, &owner).map_err(|e| e.to_string())?;
            credentials.reload_codex(&conn).map_err(|e| e.to_string())?;
            Ok(deleted)
        })
        .await?;
        if !deleted {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "no_codex_session",
                "There is no stored Codex token for you.",
            ));
        }
        tracing::info!(%user, "Codex token deleted");
        Ok(local_http::json(
            200,
            &json!({ "status": "deleted", "user": user }),
        ))
    }

    async fn stripe_webhook(
        &self,
        session: &mut ServerSession,
    ) -> Result<Response<Vec<u8>>, ApiError> {
        let snapshot = self.live.load_full();
        let stripe = &snapshot.config.stripe;
        let Some(secret) = self.stripe_secret.clone() else {
            tracing::error!(
                "a Stripe webhook arrived but {} is not set: it cannot be verified, refused",
                stripe.webhook_secret_env
            );
            return Err(ApiError::not_configured(
                "webhooks_not_configured",
                "Stripe webhooks are not set up on this gateway (no signing secret).",
            ));
        };
        let body = local_http::read_body(session, MAX_WEBHOOK_BODY).await?;
        let signature = session
            .get_header(headers::STRIPE_SIGNATURE)
            .and_then(|v| v.to_str().ok());
        let now_secs = (self.clock.now_ms() / 1000) as i64;
        let signed_at = stripe_signature::verify(
            signature,
            &body,
            &secret,
            stripe.tolerance.as_secs(),
            now_secs,
        )
        .map_err(|e| {
            tracing::warn!("Stripe webhook refused: {e}");
            self.count_webhook("unverified", "invalid_signature");
            ApiError::invalid_request("invalid_signature", e.to_string())
        })?;
        let event = events::parse(&body, stripe, signed_at).map_err(|e| {
            self.count_webhook("unparsed", "invalid_event");
            ApiError::invalid_request("invalid_event", e)
        })?;
        let (id, kind) = (event.id.clone(), event.kind.clone());
        let credentials = self.credentials.clone();
        let billing = self.billing.clone();
        let outcome = local_http::blocking("stripe webhook", move || {
            let mut conn = credentials.open_db()?;
            let outcome =
                billing_store::apply_event(&mut conn, &event).map_err(|e| e.to_string())?;
            billing.reload_plans(&conn).map_err(|e| e.to_string())?;
            Ok(outcome)
        })
        .await?;
        tracing::info!(event_id = %id, kind = %kind, ?outcome, "Stripe webhook processed");
        let result = format!("{outcome:?}").to_ascii_lowercase();
        self.count_webhook(&kind, &result);
        Ok(local_http::json(
            200,
            &json!({ "received": true, "outcome": outcome }),
        ))
    }

    /// Counts a webhook; event types are Stripe's (only after the signature verified).
    fn count_webhook(&self, kind: &str, result: &str) {
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

    fn subscription(&self, user: &str, tier_header: Option<&str>) -> Response<Vec<u8>> {
        let snapshot = self.live.load_full();
        let config = &snapshot.config;
        let now = self.clock.now_ms();
        let (tier_name, tier) = match tier_header.and_then(|t| config.tiers.get_key_value(t)) {
            Some((name, tier)) => (name.as_str(), tier),
            None => billing::resolve_tier(config, &self.billing.plans.load(), user, None, now),
        };
        let month = Month::of_unix_ms(now);
        let used = self.billing.quotas.used(user, now);
        local_http::json(
            200,
            &json!({
                "user": user,
                "tier": tier_name,
                "status": self.billing.plans.load().status(user),
                "requests_per_minute": tier.requests_per_minute,
                "month": month.label(),
                "requests_this_month": used,
                "monthly_requests": tier.monthly_requests,
                "remaining": tier.monthly_requests.map(|limit| limit.saturating_sub(used)),
                "resets_on": month.next_start_label(),
            }),
        )
    }

    fn tokens_disabled(&self) -> ApiError {
        tracing::error!(
            "a Codex token was sent but no token key is configured: set {}",
            self.live.load().config.auth.token_key_env
        );
        ApiError::new(
            ErrorKind::Internal,
            "codex_tokens_disabled",
            "This gateway cannot store Codex tokens yet; the operator must configure a token key.",
        )
    }
}

fn require_key(by_key: bool) -> Result<(), ApiError> {
    if by_key {
        Ok(())
    } else {
        Err(ApiError::unauthenticated(
            "missing_gateway_key",
            "This endpoint needs your gateway key: send X-Gateway-Key: exo_….",
        ))
    }
}

#[async_trait]
impl ServeHttp for SidecarApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.route(session).await {
            Ok(response) => response,
            Err(e) => local_http::error(&e),
        }
    }
}
