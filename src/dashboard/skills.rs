//! `/dashboard/tenants/{id}/skills`: a tenant's skills on its runtime with their readiness, the
//! policy's switches (enabled, shown, allowed) for each, the packs, and the two remediations.
//!
//! Every button is a small form that calls the API's own action (`sidecar::skills`:
//! `change_policies`, `apply_pack_to`, `remediate_tenant`) and comes back to the page. A runtime
//! without an inventory, or one that cannot be read yet, shows the API's reason instead.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{Submitted, WebUser};
use super::{render, Nav, PageError};
use crate::api_error::ApiError;
use crate::sidecar::{skills as skills_api, tenants as tenant_api, Sidecar};
use crate::skills::diagnostics;
use crate::skills::policy::SkillPolicyPatch;

/// One skill's row.
pub struct SkillRow {
    pub name: String,
    pub emoji: String,
    pub description: String,
    pub ready: bool,
    /// Why it is not ready, in a few words.
    pub reason: String,
    pub allowed: bool,
    pub enabled: bool,
    pub hidden: bool,
}

/// A pack's button.
pub struct PackRow {
    pub name: String,
    pub skills: String,
}

#[derive(Template)]
#[template(path = "skills.html")]
struct SkillsPage {
    nav: Nav,
    csrf: String,
    tenant_id: String,
    tenant_name: String,
    runtime: String,
    stale: bool,
    unavailable_reason: String,
    error: String,
    notice: String,
    skills: Vec<SkillRow>,
    not_installed: Vec<String>,
    packs: Vec<PackRow>,
}

async fn page(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    tenant_id: &str,
    error: Option<ApiError>,
    notice: &str,
) -> Result<Response, PageError> {
    let tenant = tenant_api::owned_tenant(sidecar, user.user(), tenant_id).await?;
    let packs = sidecar
        .live
        .load()
        .config
        .skills
        .packs
        .iter()
        .map(|(name, skills)| PackRow {
            name: name.clone(),
            skills: skills.join(", "),
        })
        .collect();
    let mut view = SkillsPage {
        nav: Nav::of(Some(user)),
        csrf: user.csrf.clone(),
        tenant_id: tenant.id.clone(),
        tenant_name: tenant.name.clone(),
        runtime: String::new(),
        stale: false,
        unavailable_reason: String::new(),
        error: String::new(),
        notice: notice.to_owned(),
        skills: Vec::new(),
        not_installed: Vec::new(),
        packs,
    };
    let mut status = StatusCode::OK;
    match skills_api::tenant_skills(sidecar, &user.caller, &tenant.id, true).await {
        Ok(found) => {
            view.runtime = found.runtime;
            view.stale = found.served.stale.is_some();
            view.not_installed = found.view.not_installed;
            view.skills = found
                .view
                .skills
                .iter()
                .map(|s| SkillRow {
                    name: s.skill.name.clone(),
                    emoji: s.skill.emoji.clone().unwrap_or_default(),
                    description: s.skill.description.clone().unwrap_or_default(),
                    ready: s.ready,
                    reason: diagnostics::short_reason(&s.skill),
                    allowed: s.policy.allowed,
                    enabled: s.policy.enabled,
                    hidden: s.policy.hidden,
                })
                .collect();
        }
        Err(e) if e.status() == 503 => view.unavailable_reason = e.message,
        Err(e) => return Err(e.into()),
    }
    if let Some(e) = error {
        status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        view.error = e.message;
    }
    let mut response = render(&view);
    *response.status_mut() = status;
    Ok(response)
}

/// `GET /dashboard/tenants/{id}/skills`.
pub async fn show(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    user: WebUser,
) -> Result<Response, PageError> {
    page(&sidecar, &user, &id, None, "").await
}

/// After a form: back to the page, or the page with the API's refusal.
async fn back(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    tenant_id: &str,
    done: Result<(), ApiError>,
) -> Result<Response, PageError> {
    match done {
        Ok(()) => {
            Ok(Redirect::to(&format!("/dashboard/tenants/{tenant_id}/skills")).into_response())
        }
        Err(e) if e.status() == 404 || e.status() >= 500 => Err(e.into()),
        Err(e) => page(sidecar, user, tenant_id, Some(e), "").await,
    }
}

#[derive(Deserialize)]
pub struct SwitchFields {
    name: String,
    /// `enabled`, `hidden` or `allowed`.
    flag: String,
    /// `true` or `false`.
    value: String,
}

/// `POST /dashboard/tenants/{id}/skills`: one switch of one skill.
pub async fn switch(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<SwitchFields>,
) -> Result<Response, PageError> {
    let value = match form.value.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(PageError::bad_request("A switch is on or off.")),
    };
    let mut patch = SkillPolicyPatch {
        name: form.name,
        allowed: None,
        enabled: None,
        hidden: None,
    };
    match form.flag.as_str() {
        "enabled" => patch.enabled = Some(value),
        "hidden" => patch.hidden = Some(value),
        "allowed" => patch.allowed = Some(value),
        _ => return Err(PageError::bad_request("There is no such switch.")),
    }
    let done = skills_api::change_policies(&sidecar, &user.caller, &id, &[patch])
        .await
        .map(drop);
    back(&sidecar, &user, &id, done).await
}

#[derive(Deserialize)]
pub struct PackFields {
    pack: String,
}

/// `POST /dashboard/tenants/{id}/skills/pack`.
pub async fn apply_pack(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<PackFields>,
) -> Result<Response, PageError> {
    let done = skills_api::apply_pack_to(&sidecar, &user.caller, &id, &form.pack).await;
    match done {
        Ok((_, kept)) if !kept.is_empty() => {
            let notice = format!(
                "Pack {} applied; still disallowed by your policy: {}.",
                form.pack,
                kept.join(", ")
            );
            page(&sidecar, &user, &id, None, &notice).await
        }
        other => back(&sidecar, &user, &id, other.map(drop)).await,
    }
}

#[derive(Deserialize)]
pub struct RemediateFields {
    strategy: String,
}

/// `POST /dashboard/tenants/{id}/skills/remediate`.
pub async fn remediate(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<RemediateFields>,
) -> Result<Response, PageError> {
    let done = skills_api::remediate_tenant(&sidecar, &user.caller, &id, Some(&form.strategy))
        .await
        .map(drop);
    back(&sidecar, &user, &id, done).await
}
