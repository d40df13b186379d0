//! `/dashboard/tenants/{id}`: one tenant of the signed-in customer — its name and runtime, links
//! to its skills and Telegram pages, its runs (newest first, by status, a page at a time on the
//! API's cursor), and a launch form for each template the customer's tier may run.
//!
//! - **The forms are the templates**: each input becomes a field with its label, its
//!   description as a hint, `required`, `maxlength` from `max_len`, and a text area when it is
//!   `multiline`. In BYOK mode (`auth.mode: byok`) each form also asks for the provider key, a
//!   password field that goes where the API's `Authorization` key goes: into memory beside the
//!   run until it ends, never stored, never shown again.
//! - **Launching is the API's submission** (`sidecar::runs::submit_run`): the same gates and
//!   messages. A refusal (402 with where to upgrade, 400 for the input) shows this page again
//!   with the message and what was typed; success goes (303) to the run's page. Each form
//!   carries a fresh idempotency key, so a double click starts one run.
//!
//! Not for: the run's own page (`run_page`), the tenant's skills and Telegram pages.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::RunLine;
use crate::api_error::ApiError;
use crate::config::{AuthMode, Config};
use crate::dashboard::session::{Submitted, WebUser};
use crate::dashboard::{render, Nav, PageError};
use crate::local_http;
use crate::runs::queue::RunStatus;
use crate::runs::submit::Submitted as Queued;
use crate::sidecar::runs::{list_runs, submit_run, RunQuery, RunRequest};
use crate::sidecar::tenants::owned_tenant;
use crate::sidecar::Sidecar;
use crate::tenants::{self, Tenant};

/// Runs on one page of the list.
const PAGE_SIZE: u32 = 10;
/// The launch form's field names: `input.<name>` for the template's inputs.
const INPUT_PREFIX: &str = "input.";

/// Which runs the list shows: `?status=` and `?cursor=` (the API's).
#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    cursor: Option<i64>,
}

/// One input of a launch form.
pub struct LaunchField {
    pub name: String,
    /// The element's id: `input-<template>-<name>` (template ids may hold `-`, input names not).
    pub dom_id: String,
    pub label: String,
    pub hint: Option<String>,
    pub required: bool,
    pub max_len: usize,
    pub multiline: bool,
    /// What the customer typed, when the page comes back with a refusal.
    pub value: String,
}

/// The launch form of one template.
pub struct LaunchForm {
    pub template: String,
    pub name: String,
    pub description: String,
    pub idempotency_key: String,
    pub fields: Vec<LaunchField>,
}

/// A link of the status filter.
pub struct StatusFilter {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantView {
    nav: Nav,
    csrf: String,
    error: String,
    /// Where to upgrade, shown beside a tier's refusal (402).
    upgrade_url: Option<String>,
    tenant: Tenant,
    pool: String,
    dedicated: bool,
    byok: bool,
    forms: Vec<LaunchForm>,
    filters: Vec<StatusFilter>,
    runs: Vec<RunLine>,
    /// The next page of older runs.
    older: Option<String>,
    /// Back to the newest runs, from a later page.
    newest: Option<String>,
}

/// A launch the API refused: its message, and what was typed in which form.
struct Refusal {
    error: ApiError,
    template: String,
    input: BTreeMap<String, String>,
}

/// `GET /dashboard/tenants/{id}`.
pub async fn show(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    user: WebUser,
    shown: Result<Query<Shown>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(shown) = shown.map_err(|e| {
        PageError::bad_request(format!(
            "This list's address is not valid: {}",
            e.body_text()
        ))
    })?;
    tenant_page(&sidecar, &user, &id, &shown, None).await
}

async fn tenant_page(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    id: &str,
    shown: &Shown,
    refused: Option<Refusal>,
) -> Result<Response, PageError> {
    let tenant = owned_tenant(sidecar, user.user(), id).await?;
    let query = RunQuery {
        tenant_id: Some(tenant.id.clone()),
        status: shown.status.clone(),
        limit: Some(PAGE_SIZE),
        cursor: shown.cursor,
    };
    let page = list_runs(sidecar, &user.caller, &query).await?;
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let (tier, _) = sidecar.tier_of(&user.caller, config);
    let (pool, dedicated) = tenants::runtime_pool(config, tier, &tenant);
    let status = shown.status.as_deref().filter(|s| !s.is_empty());
    let list_href = |status: Option<&str>, cursor: Option<i64>| {
        let mut query = Vec::new();
        if let Some(status) = status {
            query.push(format!("status={status}"));
        }
        if let Some(cursor) = cursor {
            query.push(format!("cursor={cursor}"));
        }
        match query.is_empty() {
            true => format!("/dashboard/tenants/{}", tenant.id),
            false => format!("/dashboard/tenants/{}?{}", tenant.id, query.join("&")),
        }
    };
    let filters = std::iter::once(("all", None))
        .chain(
            RunStatus::ALL
                .iter()
                .map(|s| (s.as_str(), Some(s.as_str()))),
        )
        .map(|(label, filter)| StatusFilter {
            label,
            href: list_href(filter, None),
            current: filter == status,
        })
        .collect();
    let http_status = match &refused {
        // The proxy counts a page's 401 as a failed sign-in; a missing provider key is not one.
        Some(r) if r.error.status() == 401 => StatusCode::BAD_REQUEST,
        Some(r) => StatusCode::from_u16(r.error.status()).unwrap_or(StatusCode::BAD_REQUEST),
        None => StatusCode::OK,
    };
    let upgrade_url = match &refused {
        Some(r) if r.error.status() == 402 => config.stripe.upgrade_url.clone(),
        _ => None,
    };
    let view = TenantView {
        nav: Nav::of(Some(user)),
        csrf: user.csrf.clone(),
        upgrade_url,
        pool: pool.to_owned(),
        dedicated,
        byok: config.auth.mode == AuthMode::Byok,
        forms: launch_forms(config, tier, refused.as_ref()),
        filters,
        runs: page.runs.iter().map(|r| RunLine::of(r, config)).collect(),
        older: page.next_cursor.map(|c| list_href(status, Some(c))),
        newest: shown.cursor.map(|_| list_href(status, None)),
        error: refused.map(|r| r.error.message).unwrap_or_default(),
        tenant,
    };
    let mut response = render(&view);
    *response.status_mut() = http_status;
    Ok(response)
}

/// A form for each template `tier` may run, holding what was typed into a refused one.
fn launch_forms(config: &Config, tier: &str, refused: Option<&Refusal>) -> Vec<LaunchForm> {
    config
        .templates
        .iter()
        .filter(|(_, t)| t.allows_tier(tier))
        .map(|(id, template)| {
            let typed = refused.filter(|r| r.template == *id).map(|r| &r.input);
            let fields = template
                .inputs
                .iter()
                .map(|(name, input)| LaunchField {
                    name: name.clone(),
                    dom_id: format!("input-{id}-{name}"),
                    label: input.label.clone(),
                    hint: input.description.clone(),
                    required: input.required,
                    max_len: input.max_len,
                    multiline: input.multiline,
                    value: typed.and_then(|t| t.get(name)).cloned().unwrap_or_default(),
                })
                .collect();
            LaunchForm {
                template: id.clone(),
                name: template.name.clone(),
                description: template.description.clone(),
                idempotency_key: local_http::new_secret(),
                fields,
            }
        })
        .collect()
}

/// The launch form as posted.
struct LaunchFields {
    template: String,
    idempotency_key: Option<String>,
    /// Wiped from memory when dropped, as the run's copy is.
    provider_key: Option<Zeroizing<String>>,
    input: BTreeMap<String, String>,
}

impl LaunchFields {
    /// Reads the posted pairs: `template`, `idempotency_key`, `provider_key`, `input.<name>`
    /// (the `csrf` field was checked already). A form sends line breaks as CRLF: the input gets
    /// them as `\n`, as an API client would send them.
    fn read(pairs: Vec<(String, String)>) -> LaunchFields {
        let mut fields = LaunchFields {
            template: String::new(),
            idempotency_key: None,
            provider_key: None,
            input: BTreeMap::new(),
        };
        for (name, value) in pairs {
            match name.as_str() {
                "template" => fields.template = value,
                "idempotency_key" => fields.idempotency_key = Some(value),
                "provider_key" => fields.provider_key = Some(Zeroizing::new(value)),
                _ => {
                    if let Some(input) = name.strip_prefix(INPUT_PREFIX) {
                        fields
                            .input
                            .insert(input.to_owned(), value.replace("\r\n", "\n"));
                    }
                }
            }
        }
        fields
    }
}

/// `POST /dashboard/tenants/{id}/runs`.
pub async fn launch(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let LaunchFields {
        template,
        idempotency_key,
        provider_key,
        input,
    } = LaunchFields::read(form);
    let request = RunRequest {
        tenant_id: id.clone(),
        template: template.clone(),
        input: Value::Object(
            input
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<_, _>>(),
        ),
        idempotency_key,
    };
    let key = provider_key.as_ref().map(|k| k.as_str());
    match submit_run(&sidecar, &user.caller, request, key).await {
        Ok(Queued::Created(run) | Queued::Existing(run)) => {
            Ok(Redirect::to(&format!("/dashboard/runs/{}", run.id)).into_response())
        }
        Err(e) if e.status() >= 500 => Err(e.into()),
        Err(error) => {
            let refused = Refusal {
                error,
                template,
                input,
            };
            tenant_page(&sidecar, &user, &id, &Shown::default(), Some(refused)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_form_becomes_the_apis_fields() {
        let pairs = [
            ("csrf", "t"),
            ("template", "summarize"),
            ("idempotency_key", "k1"),
            ("provider_key", "sk-1"),
            ("input.text", "one\r\ntwo"),
            ("input.audience", ""),
            ("other", "ignored"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        let fields = LaunchFields::read(pairs);
        assert_eq!(fields.template, "summarize");
        assert_eq!(fields.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(
            fields.provider_key.as_deref().map(String::as_str),
            Some("sk-1")
        );
        assert_eq!(fields.input.len(), 2);
        assert_eq!(fields.input["text"], "one\ntwo");
        assert_eq!(fields.input["audience"], "");
    }
}
