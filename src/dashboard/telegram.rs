//! `/dashboard/tenants/{id}/telegram`: pairing Telegram users with a tenant. The owner makes a
//! one-time code and sees it once with its `t.me` deep link and a QR code of that link (a phone
//! camera opens the bot with the code filled in); the paired users are listed, each with a
//! button that unpairs them.
//!
//! The work is the API's (`sidecar::telegram`: `make_code`, `tenant_pairings`,
//! `remove_pairing`). The QR code is an inline SVG (`onboard::qr`), so nothing is fetched.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{Submitted, WebUser};
use super::{render, Nav, PageError};
use crate::api_error::ApiError;
use crate::onboard::qr;
use crate::sidecar::telegram::{self as telegram_api, NewCode};
use crate::sidecar::{tenants as tenant_api, Sidecar};

/// A paired user's row.
pub struct PairingRow {
    pub id: i64,
    pub name: String,
    pub since: String,
}

/// A code just made, as the page shows it once.
pub struct CodeView {
    pub code: String,
    pub deep_link: String,
    /// An inline `<svg>` of the deep link.
    pub qr_svg: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "telegram.html")]
struct TelegramPage {
    nav: Nav,
    csrf: String,
    tenant_id: String,
    tenant_name: String,
    bot: Option<String>,
    error: String,
    code: Option<CodeView>,
    pairings: Vec<PairingRow>,
}

use crate::clock::utc_minute as utc;

async fn page(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    tenant_id: &str,
    code: Option<NewCode>,
    error: Option<ApiError>,
) -> Result<Response, PageError> {
    let tenant = tenant_api::owned_tenant(sidecar, user.user(), tenant_id).await?;
    let pairings = telegram_api::tenant_pairings(sidecar, &user.caller, &tenant.id)
        .await?
        .into_iter()
        .map(|p| PairingRow {
            id: p.id,
            name: match &p.username {
                Some(username) => format!("{} (@{username})", p.first_name),
                None => p.first_name.clone(),
            },
            since: utc(p.created_ms),
        })
        .collect();
    let code = match code {
        None => None,
        Some(made) => {
            let qr_svg = qr::encode(&made.deep_link)
                .map(|c| qr::svg(&c, 240))
                .map_err(|e| {
                    tracing::error!("no QR code of a pairing link: {e}");
                    PageError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "The QR code could not be made.",
                    )
                })?;
            Some(CodeView {
                code: made.code.as_str().to_owned(),
                deep_link: made.deep_link,
                qr_svg,
                expires: utc(made.expires_ms),
            })
        }
    };
    let status = error
        .as_ref()
        .and_then(|e| StatusCode::from_u16(e.status()).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = render(&TelegramPage {
        nav: Nav::of(Some(user)),
        csrf: user.csrf.clone(),
        tenant_id: tenant.id.clone(),
        tenant_name: tenant.name.clone(),
        bot: sidecar
            .live
            .load()
            .config
            .telegram
            .as_ref()
            .map(|t| t.bot_username.clone()),
        error: error.map(|e| e.message).unwrap_or_default(),
        code,
        pairings,
    });
    *response.status_mut() = status;
    Ok(response)
}

/// `GET /dashboard/tenants/{id}/telegram`.
pub async fn show(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    user: WebUser,
) -> Result<Response, PageError> {
    page(&sidecar, &user, &id, None, None).await
}

#[derive(Deserialize)]
pub struct NoFields {}

/// `POST /dashboard/tenants/{id}/telegram/codes`: the page with the new code, shown once.
pub async fn make_code(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, .. }: Submitted<NoFields>,
) -> Result<Response, PageError> {
    let mut response = match telegram_api::make_code(&sidecar, &user.caller, &id).await {
        Ok(made) => page(&sidecar, &user, &id, Some(made), None).await?,
        Err(e) if e.status() == 404 || e.status() >= 500 && e.status() != 503 => {
            return Err(e.into())
        }
        Err(e) => page(&sidecar, &user, &id, None, Some(e)).await?,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /dashboard/tenants/{id}/telegram/pairings/{pairing}/delete`.
pub async fn unpair(
    State(sidecar): State<Arc<Sidecar>>,
    Path((id, pairing)): Path<(String, String)>,
    Submitted { user, .. }: Submitted<NoFields>,
) -> Result<Response, PageError> {
    telegram_api::remove_pairing(&sidecar, &user.caller, &pairing).await?;
    Ok(Redirect::to(&format!("/dashboard/tenants/{id}/telegram")).into_response())
}
