//! `/dashboard/runs/{id}`: one run of the signed-in customer, followed live.
//!
//! - **The page** shows the run's status, template, attempts, times, input and error, its
//!   output, its artifacts as download links, and a Cancel button while it has not ended.
//! - **Live**: while the run is queued or running, `assets/runs.js` opens an `EventSource` on
//!   `/dashboard/runs/{id}/events` — the API's own stream of the run
//!   (`sidecar::runs::events_response`), opened with the session cookie instead of a key — and
//!   updates the status and appends the output as it streams. When the run ends it fetches this
//!   page again and swaps in the parts marked `data-refresh` (times, error, artifacts, actions),
//!   so the browser never reloads.
//! - **Artifacts** download through `/dashboard/runs/{id}/artifacts/{name}` with the API's
//!   artifact code: the same type, `Content-Disposition: attachment`, `nosniff`.
//! - **Cancel** is the API's cancel action; the page comes back with the run, whose stream then
//!   shows it end as canceled.
//!
//! Someone else's run, and anything under it, is the 404 page, as on the API.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

use super::template_name;
use crate::api_error::{human_size, ApiError, ErrorKind};
use crate::dashboard::account::NoFields;
use crate::dashboard::session::{Submitted, WebUser};
use crate::dashboard::{render, Nav, PageError};
use crate::onboard::sheet::utc_label;
use crate::runs::queue::{Run, RunStatus};
use crate::sidecar::runs::{
    artifact_of, artifact_response, artifacts_of, cancel_run, events_response, owned_run,
};
use crate::sidecar::tenants::owned_tenant;
use crate::sidecar::Sidecar;

/// The artifact whose text the page shows as the run's output.
const OUTPUT_ARTIFACT: &str = "output.md";
/// Most output text the page shows (the download has it all).
const MAX_SHOWN_OUTPUT: usize = 256 * 1024;

/// An artifact as the page lists it.
pub struct ArtifactLink {
    pub name: String,
    pub size: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunView {
    nav: Nav,
    csrf: String,
    error: String,
    id: String,
    status: &'static str,
    /// Queued or running: the page follows the run's events.
    live: bool,
    tenant_id: String,
    /// The tenant's name; None once it was deleted.
    tenant_name: Option<String>,
    template_id: String,
    template_name: String,
    attempts: u32,
    max_attempts: u32,
    created: String,
    started: Option<String>,
    finished: Option<String>,
    next_attempt: Option<String>,
    cancel_requested: bool,
    /// The latest failed attempt's error: (code, message).
    run_error: Option<(String, String)>,
    input: Vec<(String, String)>,
    output: String,
    output_cut: bool,
    artifacts: Vec<ArtifactLink>,
}

/// `GET /dashboard/runs/{id}`.
pub async fn show(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    user: WebUser,
) -> Result<Response, PageError> {
    run_page(&sidecar, &user, &id, None).await
}

async fn run_page(
    sidecar: &Arc<Sidecar>,
    user: &WebUser,
    id: &str,
    refused: Option<ApiError>,
) -> Result<Response, PageError> {
    let run = owned_run(sidecar, user.user(), id).await?;
    let tenant_name = owned_tenant(sidecar, user.user(), &run.tenant_id)
        .await
        .ok()
        .map(|t| t.name);
    let artifacts = artifacts_of(sidecar, &run)
        .await?
        .into_iter()
        .map(|a| ArtifactLink {
            href: format!("/dashboard/runs/{}/artifacts/{}", run.id, a.name),
            size: human_size(a.size),
            name: a.name,
        })
        .collect();
    let (output, output_cut) = stored_output(sidecar, &run).await?;
    let snapshot = sidecar.live.load_full();
    let now = sidecar.clock.now_ms();
    let status = refused
        .as_ref()
        .and_then(|e| StatusCode::from_u16(e.status()).ok())
        .unwrap_or(StatusCode::OK);
    let view = RunView {
        nav: Nav::of(Some(user)),
        csrf: user.csrf.clone(),
        error: refused.map(|e| e.message).unwrap_or_default(),
        status: run.status.as_str(),
        live: !run.status.is_terminal(),
        tenant_name,
        template_name: template_name(&snapshot.config, &run.template),
        attempts: run.attempts,
        max_attempts: run.max_attempts,
        created: utc_label(run.created_ms),
        started: run.started_ms.map(utc_label),
        finished: run.finished_ms.map(utc_label),
        next_attempt: (run.status == RunStatus::Queued && run.available_ms > now)
            .then(|| utc_label(run.available_ms)),
        cancel_requested: run.cancel_requested,
        run_error: run
            .last_error
            .as_ref()
            .map(|e| (e.code.clone(), e.message.clone())),
        input: input_fields(&run.input),
        output,
        output_cut,
        artifacts,
        id: run.id,
        tenant_id: run.tenant_id,
        template_id: run.template,
    };
    let mut response = render(&view);
    *response.status_mut() = status;
    Ok(response)
}

/// The run's input as (field, text) pairs.
fn input_fields(input: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<Value>(input) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The output a run that ended stored (`output.md`), cut at `MAX_SHOWN_OUTPUT`; and whether it
/// was cut. A run still going has none yet: its stream brings it.
async fn stored_output(sidecar: &Sidecar, run: &Run) -> Result<(String, bool), PageError> {
    if !run.status.is_terminal() {
        return Ok((String::new(), false));
    }
    let bytes = match artifact_of(sidecar, run, OUTPUT_ARTIFACT).await {
        Ok((_, bytes)) => bytes,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok((String::new(), false)),
        Err(e) => return Err(e.into()),
    };
    let cut = bytes.len() > MAX_SHOWN_OUTPUT;
    let shown = &bytes[..bytes.len().min(MAX_SHOWN_OUTPUT)];
    Ok((String::from_utf8_lossy(shown).into_owned(), cut))
}

/// `GET /dashboard/runs/{id}/events`: the run's Server-Sent Events, as on the API.
pub async fn events(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    user: WebUser,
) -> Result<Response, PageError> {
    let run = owned_run(&sidecar, user.user(), &id).await?;
    Ok(events_response(sidecar, run))
}

/// `GET /dashboard/runs/{id}/artifacts/{name}`: a download, as on the API.
pub async fn artifact(
    State(sidecar): State<Arc<Sidecar>>,
    Path((id, name)): Path<(String, String)>,
    user: WebUser,
) -> Result<Response, PageError> {
    let run = owned_run(&sidecar, user.user(), &id).await?;
    let (info, bytes) = artifact_of(&sidecar, &run, &name).await?;
    Ok(artifact_response(&info, bytes))
}

/// `POST /dashboard/runs/{id}/cancel`.
pub async fn cancel(
    State(sidecar): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Submitted { user, .. }: Submitted<NoFields>,
) -> Result<Response, PageError> {
    match cancel_run(&sidecar, &user.caller, &id).await {
        Ok(run) => Ok(Redirect::to(&format!("/dashboard/runs/{}", run.id)).into_response()),
        Err(e) if e.status() >= 500 => Err(e.into()),
        // Someone else's run is the 404 page; one that already ended shows why.
        Err(e) => run_page(&sidecar, &user, &id, Some(e)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_is_shown_field_by_field() {
        let fields = input_fields(r#"{"audience":"kids","text":"a\nb","n":3}"#);
        assert_eq!(
            fields,
            [
                ("audience".to_owned(), "kids".to_owned()),
                ("text".to_owned(), "a\nb".to_owned()),
                ("n".to_owned(), "3".to_owned()),
            ]
        );
        assert!(input_fields("not json").is_empty());
    }
}
