//! `/runs`: the run queue — how many runs each status holds, the latest runs (all of them, or
//! one status's) — with a cancel button on each queued or running run and a retry button on
//! each failed, dead or canceled one.
//!
//! The work is `admin::runs` (`latest`, `cancel`, `retry`), as for `/admin/runs`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{status_of, with_status, Nav, PageError};
use crate::admin::runs::{self as actions, Latest};
use crate::admin::session::{Operator, OperatorForm};
use crate::admin::AdminApp;
use crate::api_error::ApiError;
use crate::dashboard::render;
use crate::onboard::sheet::utc_label;
use crate::runs::queue::{Run, RunFilter, RunStatus};

/// Runs shown at once.
const SHOWN: u32 = 50;

/// One run as a row.
pub struct RunRow {
    pub id: String,
    pub owner: String,
    pub tenant_id: String,
    pub template: String,
    pub status: &'static str,
    pub attempts: String,
    pub created: String,
    pub error: String,
    pub cancelable: bool,
    pub retryable: bool,
}

impl RunRow {
    fn of(run: &Run) -> RunRow {
        RunRow {
            id: run.id.clone(),
            owner: run.owner.clone(),
            tenant_id: run.tenant_id.clone(),
            template: run.template.clone(),
            status: run.status.as_str(),
            attempts: format!("{}/{}", run.attempts, run.max_attempts),
            created: utc_label(run.created_ms),
            error: run
                .last_error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default(),
            cancelable: !run.status.is_terminal(),
            retryable: matches!(
                run.status,
                RunStatus::Failed | RunStatus::Dead | RunStatus::Canceled
            ),
        }
    }
}

/// How many runs hold a status, and whether the page shows that status.
pub struct StatusCount {
    pub name: &'static str,
    pub runs: u64,
    pub shown: bool,
}

#[derive(Template)]
#[template(path = "admin_runs.html")]
struct Runs<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    /// Every status and how many runs hold it.
    counts: Vec<StatusCount>,
    /// The status shown, or empty for all.
    status: &'static str,
    runs: Vec<RunRow>,
    notice: String,
    error: String,
}

#[derive(Deserialize)]
pub struct Shown {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    canceled: Option<String>,
    #[serde(default)]
    retried: Option<String>,
}

async fn runs_page(
    app: &AdminApp,
    operator: &Operator,
    status: Option<RunStatus>,
    notice: String,
    refused: Option<ApiError>,
) -> Result<Response, PageError> {
    let filter = RunFilter {
        owner: None,
        tenant_id: None,
        status,
        limit: SHOWN,
        before_seq: None,
    };
    let Latest { page, counts } = actions::latest(&app.runs, filter).await?;
    let code = refused.as_ref().map_or(StatusCode::OK, status_of);
    let page = render(&Runs {
        nav: Nav::of(operator, "runs"),
        csrf: &operator.csrf,
        counts: counts
            .into_iter()
            .map(|(s, runs)| StatusCount {
                name: s.as_str(),
                runs,
                shown: Some(s) == status,
            })
            .collect(),
        status: status.map_or("", |s| s.as_str()),
        runs: page.runs.iter().map(RunRow::of).collect(),
        notice,
        error: refused.map(|e| e.message).unwrap_or_default(),
    });
    Ok(with_status(page, code))
}

/// `GET /runs?status=dead`.
pub async fn page(
    State(app): State<Arc<AdminApp>>,
    operator: Operator,
    Query(shown): Query<Shown>,
) -> Result<Response, PageError> {
    let status = match shown.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
            PageError::bad_request(
                "A run's status is one of queued, running, succeeded, failed, canceled, dead.",
            )
        })?),
        None => None,
    };
    let notice = match (shown.canceled, shown.retried) {
        (Some(id), _) => format!("Run {id}: cancel asked."),
        (_, Some(id)) => format!("Run {id} is queued again."),
        _ => String::new(),
    };
    runs_page(&app, &operator, status, notice, None).await
}

#[derive(Deserialize)]
pub struct NoFields {}

/// After an action: back to the list saying what was done, or the list with the refusal.
async fn back(
    app: &AdminApp,
    operator: &Operator,
    done: Result<Run, ApiError>,
    what: &str,
) -> Result<Response, PageError> {
    match done {
        Ok(run) => {
            let query = serde_urlencoded::to_string([(what, &run.id)]).unwrap_or_default();
            Ok(Redirect::to(&format!("/runs?{query}")).into_response())
        }
        Err(e) if e.status() >= 500 => Err(e.into()),
        Err(e) => runs_page(app, operator, None, String::new(), Some(e)).await,
    }
}

/// `POST /runs/{id}/cancel`.
pub async fn cancel(
    State(app): State<Arc<AdminApp>>,
    Path(id): Path<String>,
    OperatorForm { operator, .. }: OperatorForm<NoFields>,
) -> Result<Response, PageError> {
    let done = actions::cancel(&app.runs, &id).await;
    back(&app, &operator, done, "canceled").await
}

/// `POST /runs/{id}/retry`.
pub async fn retry(
    State(app): State<Arc<AdminApp>>,
    Path(id): Path<String>,
    OperatorForm { operator, .. }: OperatorForm<NoFields>,
) -> Result<Response, PageError> {
    let done = actions::retry(&app.runs, &id).await;
    back(&app, &operator, done, "retried").await
}
