//! The caller's account: their subscription, their stored Codex token, Stripe's webhooks that
//! change tiers, and the one-time kit links.
//!
//! - `PUT /api/oauth/codex` `{"token": "..."}` stores the caller's Codex OAuth token, encrypted
//!   (what `setup.sh --auth codex` calls); `DELETE /api/oauth/codex` removes it.
//! - `POST /api/webhooks/stripe`: Stripe's subscription events, verified by `Stripe-Signature`
//!   (no gateway key: the signature is the authentication). Each event id is processed once, in
//!   the same transaction as its effect; the new tier applies to the user's next request.
//! - `GET /api/subscriptions/me`: the caller's tier, status, this month's usage and what is left.
//! - `GET /onboard/{token}`: a trainee's kit, once (no gateway key: the link is the credential);
//!   see `onboard::download` for the answers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::extract::{self, Caller, Customer, JsonBody};
use super::Sidecar;
use crate::api_error::{ApiError, ErrorKind};
use crate::auth::{codex, store};
use crate::billing::quota::Month;
use crate::billing::{events, store as billing_store, stripe_signature};
use crate::headers;
use crate::local_http;
use crate::onboard::{self, download, link};

/// Largest webhook body accepted (Stripe events with expanded objects stay far below this).
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodexTokenBody {
    token: String,
}

/// `GET /api/subscriptions/me`.
pub async fn subscription(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
) -> Response {
    extract::json(200, subscription_view(&sidecar, &caller))
}

/// The caller's tier, status, this month's usage and what is left (the API's answer, and what
/// the dashboard shows).
pub fn subscription_view(sidecar: &Sidecar, caller: &Caller) -> serde_json::Value {
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let now = sidecar.clock.now_ms();
    let (tier_name, tier) = sidecar.tier_of(caller, config);
    let month = Month::of_unix_ms(now);
    let used = sidecar.billing.quotas.used(&caller.user, now);
    json!({
        "user": caller.user,
        "tier": tier_name,
        "status": sidecar.billing.plans.load().status(&caller.user),
        "requests_per_minute": tier.requests_per_minute,
        "month": month.label(),
        "requests_this_month": used,
        "monthly_requests": tier.monthly_requests,
        "remaining": tier.monthly_requests.map(|limit| limit.saturating_sub(used)),
        "resets_on": month.next_start_label(),
        "max_tenants": tier.max_tenants.count(),
        "runs_per_month": tier.runs_per_month.count(),
        "max_concurrent_runs": tier.max_concurrent_runs,
        "upgrade_url": config.stripe.upgrade_url,
    })
}

/// `PUT /api/oauth/codex`.
pub async fn store_codex_token(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    JsonBody(body): JsonBody<CodexTokenBody>,
) -> Result<Response, ApiError> {
    let token = body.token.trim().to_owned();
    if !codex::is_valid_token(&token) {
        return Err(ApiError::invalid_request(
            "invalid_token",
            format!(
                "`token` must be 1-{} visible ASCII characters without spaces.",
                codex::MAX_TOKEN_LEN
            ),
        ));
    }
    if sidecar.credentials.cipher.is_none() {
        tracing::error!(
            "a Codex token was sent but no token key is configured: set {}",
            sidecar.live.load().config.auth.token_key_env
        );
        return Err(ApiError::new(
            ErrorKind::Internal,
            "codex_tokens_disabled",
            "This gateway cannot store Codex tokens yet; the operator must configure a token key.",
        ));
    }
    let credentials = sidecar.credentials.clone();
    let owner = caller.user.clone();
    local_http::blocking("sidecar", move || {
        let cipher = credentials.cipher.as_ref().ok_or("no token key")?;
        let (nonce, sealed) = cipher.seal(&owner, &token)?;
        let conn = credentials.open_db()?;
        store::put_codex_token(&conn, &owner, &nonce, &sealed).map_err(|e| e.to_string())?;
        credentials.reload_codex(&conn).map_err(|e| e.to_string())
    })
    .await?;
    tracing::info!(user = %caller.user, "Codex token stored");
    Ok(extract::json(
        200,
        json!({ "status": "stored", "user": caller.user }),
    ))
}

/// `DELETE /api/oauth/codex`.
pub async fn delete_codex_token(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
) -> Result<Response, ApiError> {
    let credentials = sidecar.credentials.clone();
    let owner = caller.user.clone();
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
    tracing::info!(user = %caller.user, "Codex token deleted");
    Ok(extract::json(
        200,
        json!({ "status": "deleted", "user": caller.user }),
    ))
}

/// `GET /onboard/{token}`: claims the link once, in its own write transaction.
pub async fn download_kit(
    State(sidecar): State<Arc<Sidecar>>,
    _caller: Caller,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    if !link::is_well_formed(&token) {
        return Ok(download::not_found().map(Body::from));
    }
    let token_hash = link::token_hash(&token);
    let credentials = sidecar.credentials.clone();
    let now = sidecar.clock.now_ms();
    let claim = local_http::blocking("onboard link", move || {
        let mut conn = credentials.open_db()?;
        onboard::store::claim(&mut conn, &token_hash, now).map_err(|e| e.to_string())
    })
    .await?;
    let claim = match claim {
        onboard::store::Claim::Kit { user, zip: sealed } => {
            let Some(zip) = link::open_kit(&token, &sealed) else {
                tracing::error!(%user, "a kit could not be opened with its own link");
                return Err(ApiError::internal());
            };
            tracing::info!(%user, "kit downloaded");
            onboard::store::Claim::Kit { user, zip }
        }
        other => other,
    };
    Ok(download::response(claim).map(Body::from))
}

/// `POST /api/webhooks/stripe`.
pub async fn stripe_webhook(
    State(sidecar): State<Arc<Sidecar>>,
    _caller: Caller,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let snapshot = sidecar.live.load_full();
    let stripe = &snapshot.config.stripe;
    let Some(secret) = sidecar.stripe_secret.clone() else {
        tracing::error!(
            "a Stripe webhook arrived but {} is not set: it cannot be verified, refused",
            stripe.webhook_secret_env
        );
        return Err(ApiError::not_configured(
            "webhooks_not_configured",
            "Stripe webhooks are not set up on this gateway (no signing secret).",
        ));
    };
    let body = extract::read_body(request, MAX_WEBHOOK_BODY).await?;
    let signature = headers
        .get(headers::STRIPE_SIGNATURE)
        .and_then(|v| v.to_str().ok());
    let now_secs = (sidecar.clock.now_ms() / 1000) as i64;
    let signed_at = stripe_signature::verify(
        signature,
        &body,
        &secret,
        stripe.tolerance.as_secs(),
        now_secs,
    )
    .map_err(|e| {
        tracing::warn!("Stripe webhook refused: {e}");
        sidecar.count_webhook("unverified", "invalid_signature");
        ApiError::invalid_request("invalid_signature", e.to_string())
    })?;
    let event = events::parse(&body, stripe, signed_at).map_err(|e| {
        sidecar.count_webhook("unparsed", "invalid_event");
        ApiError::invalid_request("invalid_event", e)
    })?;
    let (id, kind) = (event.id.clone(), event.kind.clone());
    let credentials = sidecar.credentials.clone();
    let billing = sidecar.billing.clone();
    let outcome = local_http::blocking("stripe webhook", move || {
        let mut conn = credentials.open_db()?;
        let outcome = billing_store::apply_event(&mut conn, &event).map_err(|e| e.to_string())?;
        billing.reload_plans(&conn).map_err(|e| e.to_string())?;
        Ok(outcome)
    })
    .await?;
    tracing::info!(event_id = %id, kind = %kind, ?outcome, "Stripe webhook processed");
    let result = format!("{outcome:?}").to_ascii_lowercase();
    sidecar.count_webhook(&kind, &result);
    Ok(extract::json(
        200,
        json!({ "received": true, "outcome": outcome }),
    ))
}
