//! `POST /api/webhooks/telegram`: Telegram delivers the bot's updates here.
//!
//! The `X-Telegram-Bot-Api-Secret-Token` header must equal the secret in the environment
//! variable `telegram.webhook_secret_env` (compared in constant time); anything else is 401 and
//! changes nothing. An accepted update is committed to the inbox and answered 200 at once: the
//! bot's worker does the rest. Telegram retries a slow or failed answer and holds the chat's
//! next updates meanwhile, so nothing slow happens before the 200. A redelivered `update_id` is
//! answered 200 and ignored.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::extract::{self, Caller};
use super::Sidecar;
use crate::api_error::{ApiError, ErrorKind};
use crate::headers;
use crate::telegram::bot::{Bot, Refused};

/// Largest update read: Telegram's are a few KiB (`update::MAX_UPDATE_BYTES` bounds the parse).
const MAX_UPDATE_BODY: usize = 256 * 1024;

/// `POST /api/webhooks/telegram`.
pub async fn webhook(
    State(sidecar): State<Arc<Sidecar>>,
    _caller: Caller,
    request_headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let bot = &sidecar.bot;
    let Some(settings) = bot.settings() else {
        return Err(ApiError::not_found(request.uri().path()));
    };
    let Some(secret) = Bot::webhook_secret(&settings) else {
        tracing::error!(
            "a Telegram update arrived but {} is not set: it cannot be verified, refused",
            settings.webhook_secret_env
        );
        return Err(ApiError::not_configured(
            "telegram_not_configured",
            "The Telegram bot's webhook secret is not set up on this gateway.",
        ));
    };
    let given = request_headers
        .get(headers::TELEGRAM_SECRET)
        .map_or(&[][..], |v| v.as_bytes());
    if !bool::from(given.ct_eq(secret.as_bytes())) {
        count(&sidecar, "unauthorized");
        tracing::warn!("Telegram webhook refused: wrong or missing secret token");
        return Err(ApiError::unauthenticated(
            "invalid_webhook_secret",
            "The X-Telegram-Bot-Api-Secret-Token header does not match this bot's secret.",
        ));
    }
    let body = extract::read_body(request, MAX_UPDATE_BODY).await?;
    match bot.accept(&body).await {
        Ok(accepted) => {
            count(&sidecar, accepted.as_str());
            Ok(extract::json(200, json!({ "ok": true })))
        }
        Err(Refused::Invalid(e)) => {
            count(&sidecar, "invalid");
            tracing::warn!("Telegram update refused: {e}");
            Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "invalid_update",
                e.to_string(),
            ))
        }
        Err(Refused::Storage(e)) => Err(e),
    }
}

fn count(sidecar: &Sidecar, result: &str) {
    sidecar
        .metrics
        .telegram_updates
        .with_label_values(&[result])
        .inc();
}
