//! `/dashboard`: the signed-in customer's subscription, this month's usage against the quota,
//! the upgrade links, and their tenants (create, rename, delete).
//!
//! Each form posts, then the browser is sent back to `/dashboard` (a reload never posts twice).
//! A refusal (the tier's tenant limit, a bad name) shows the overview again with the API's own
//! message. The work is the API's: `sidecar::account::subscription_view` and the tenant actions
//! of `sidecar::tenants`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::session::{Submitted, WebUser};
use super::{render, Nav, PageError};
use crate::api_error::ApiError;
use crate::sidecar::{account, tenants as tenant_api, Sidecar};
use crate::tenants::Tenant;

/// The subscription as the overview shows it (from the API's view of it).
pub struct SubscriptionCard {
    pub tier: String,
    pub status: String,
    pub month: String,
    pub used: u64,
    pub limit: Option<u64>,
    pub remaining: u64,
    pub resets_on: String,
    pub runs: String,
    pub tenants: String,
    pub upgrade_url: Option<String>,
}

impl SubscriptionCard {
    fn of(view: &Value) -> SubscriptionCard {
        let text = |key: &str| view[key].as_str().unwrap_or("").to_owned();
        let limit_text = |key: &str| match view[key].as_u64() {
            Some(0) => "none".to_owned(),
            Some(n) => n.to_string(),
            None => "unlimited".to_owned(),
        };
        SubscriptionCard {
            tier: text("tier"),
            status: view["status"].as_str().unwrap_or("none").to_owned(),
            month: text("month"),
            used: view["requests_this_month"].as_u64().unwrap_or(0),
            limit: view["monthly_requests"].as_u64(),
            remaining: view["remaining"].as_u64().unwrap_or(0),
            resets_on: text("resets_on"),
            runs: format!("{} a month", limit_text("runs_per_month")),
            tenants: limit_text("max_tenants"),
            upgrade_url: view["upgrade_url"].as_str().map(str::to_owned),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Overview {
    nav: Nav,
    user: String,
    csrf: String,
    error: String,
    sub: SubscriptionCard,
    /// Tiers above the current one that can be bought here: (name, checkout link).
    upgrades: Vec<(String, String)>,
    tenants: Vec<Tenant>,
}

async fn overview_page(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    error: Option<ApiError>,
) -> Result<Response, PageError> {
    let view = account::subscription_view(sidecar, &user.caller);
    let sub = SubscriptionCard::of(&view);
    let tenants = tenant_api::list_tenants(sidecar, &user.caller).await?;
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let current_priority = config.tiers.get(&sub.tier).map_or(0, |t| t.priority);
    let upgrades = config
        .tiers
        .iter()
        .filter(|(name, tier)| **name != sub.tier && tier.priority >= current_priority)
        .filter_map(|(name, tier)| {
            let url = tier.checkout_url.as_ref()?;
            Some((
                name.clone(),
                format!("{url}?client_reference_id={}", user.user()),
            ))
        })
        .collect();
    let status = error
        .as_ref()
        .and_then(|e| StatusCode::from_u16(e.status()).ok())
        .unwrap_or(StatusCode::OK);
    let mut page = render(&Overview {
        nav: Nav::of(Some(user)),
        user: user.user().to_owned(),
        csrf: user.csrf.clone(),
        error: error.map(|e| e.message).unwrap_or_default(),
        sub,
        upgrades,
        tenants,
    });
    *page.status_mut() = status;
    Ok(page)
}

/// `GET /dashboard`.
pub async fn overview(
    State(sidecar): State<Arc<Sidecar>>,
    user: WebUser,
) -> Result<Response, PageError> {
    overview_page(&sidecar, &user, None).await
}

#[derive(Deserialize)]
pub struct NameFields {
    #[serde(default)]
    name: String,
}

/// After a form: back to the overview, or the overview with the refusal.
async fn back(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    done: Result<(), ApiError>,
) -> Result<Response, PageError> {
    match done {
        Ok(()) => Ok(Redirect::to("/dashboard").into_response()),
        Err(e) if e.status() >= 500 => Err(e.into()),
        Err(e) => overview_page(sidecar, user, Some(e)).await,
    }
}

/// `POST /dashboard/tenants`.
pub async fn create_tenant(
    State(sidecar): State<Arc<Sidecar>>,
    Submitted { user, form }: Submitted<NameFields>,
) -> Result<Response, PageError> {
    let done = tenant_api::create_tenant(&sidecar, &user.caller, &form.name)
        .await
        .map(drop);
    back(&sidecar, &user, done).await
}

/// `POST /dashboard/tenants/{id}/rename`.
pub async fn rename_tenant(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<NameFields>,
) -> Result<Response, PageError> {
    let done = tenant_api::rename_tenant(&sidecar, &user.caller, &id, &form.name)
        .await
        .map(drop);
    back(&sidecar, &user, done).await
}

#[derive(Deserialize)]
pub struct NoFields {}

/// `POST /dashboard/tenants/{id}/delete`.
pub async fn delete_tenant(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, .. }: Submitted<NoFields>,
) -> Result<Response, PageError> {
    let done = tenant_api::delete_tenant(&sidecar, &user.caller, &id)
        .await
        .map(drop);
    back(&sidecar, &user, done).await
}
