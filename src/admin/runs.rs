//! The operators' view of the run queue: every tenant's runs, and the two things an operator
//! does to one — cancel it, or queue a failed, dead or canceled one again.
//!
//! `latest`, `cancel` and `retry` are the actions; the JSON API (`list`, `one`) and the runs page
//! (`admin::pages::runs`) both call them, so the two never disagree on what an operator may do.
//!
//! Not for: customers (`sidecar::runs`, which only ever shows a caller their own runs).

use http::{Method, Response};
use serde_json::{json, Value};

use crate::api_error::{ApiError, ErrorKind};
use crate::local_http;
use crate::runs::queue::{CancelOutcome, Run, RunFilter, RunPage, RunStatus};
use crate::runs::{artifacts, run_json, RunService};

/// A page of runs, newest first, and how many runs each status holds (zeros included).
pub struct Latest {
    pub page: RunPage,
    pub counts: Vec<(RunStatus, u64)>,
}

/// The runs matching `filter`, and the queue's counts by status.
pub async fn latest(runs: &RunService, filter: RunFilter) -> Result<Latest, ApiError> {
    let page = runs.with_queue(move |q| q.list(&filter)).await?;
    let counts = runs.with_queue(|q| q.counts_by_status()).await?;
    Ok(Latest { page, counts })
}

/// Cancels run `id`: a queued run at once, a running one through its worker.
pub async fn cancel(runs: &RunService, id: &str) -> Result<Run, ApiError> {
    if !artifacts::is_valid_run_id(id) {
        return Err(run_not_found(id));
    }
    match runs.cancel(id).await? {
        CancelOutcome::Canceled(run) | CancelOutcome::Requested(run) => {
            tracing::info!(run = %run.id, "run cancel asked by an operator");
            Ok(run)
        }
        CancelOutcome::AlreadyFinished(run) => Err(ApiError::new(
            ErrorKind::Conflict,
            "run_finished",
            format!("The run already ended: it is {}.", run.status.as_str()),
        )),
        CancelOutcome::NotFound => Err(run_not_found(id)),
    }
}

/// Queues a failed, dead or canceled run `id` again; its attempts start over.
pub async fn retry(runs: &RunService, id: &str) -> Result<Run, ApiError> {
    if !artifacts::is_valid_run_id(id) {
        return Err(run_not_found(id));
    }
    let now = runs.clock.now_ms();
    let (retrying, lookup) = (id.to_owned(), id.to_owned());
    let retried = runs.with_queue(move |q| q.retry(&retrying, now)).await?;
    match retried {
        Some(run) => {
            tracing::info!(run = %run.id, "run queued again by an operator");
            runs.announce(&run);
            runs.wake();
            Ok(run)
        }
        None => match runs.with_queue(move |q| q.get(&lookup)).await? {
            Some(run) => Err(ApiError::new(
                ErrorKind::Conflict,
                "run_not_retryable",
                format!(
                    "Only a failed, dead or canceled run can be retried; this one is {}.",
                    run.status.as_str()
                ),
            )),
            None => Err(run_not_found(id)),
        },
    }
}

fn run_not_found(id: &str) -> ApiError {
    ApiError::admin_not_found(&format!("/admin/runs/{id}"))
}

/// `GET /admin/runs?status=&owner=&tenant_id=&limit=&cursor=`.
pub async fn list(runs: &RunService, query: &str) -> Result<Response<Vec<u8>>, ApiError> {
    let mut filter = RunFilter {
        owner: None,
        tenant_id: None,
        status: None,
        limit: 50,
        before_seq: None,
    };
    for (name, value) in query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
    {
        let invalid = |what: &str| ApiError::invalid_request("invalid_query", what.to_owned());
        match name {
            "status" => {
                filter.status = Some(value.parse::<RunStatus>().map_err(|_| {
                    invalid("`status` is one of queued, running, succeeded, failed, canceled, dead")
                })?)
            }
            "owner" => filter.owner = Some(value.to_owned()),
            "tenant_id" => filter.tenant_id = Some(value.to_owned()),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| invalid("`limit` is 1-100"))?
            }
            "cursor" => {
                filter.before_seq =
                    Some(value.parse().map_err(|_| invalid("`cursor` is a number"))?)
            }
            other => return Err(invalid(&format!("unknown parameter `{other}`"))),
        }
    }
    let Latest { page, counts } = latest(runs, filter).await?;
    let now = runs.clock.now_ms();
    let data: Vec<Value> = page.runs.iter().map(|r| run_json(r, now)).collect();
    let counts: serde_json::Map<String, Value> = counts
        .into_iter()
        .map(|(status, n)| (status.as_str().to_owned(), json!(n)))
        .collect();
    Ok(local_http::json(
        200,
        &json!({ "runs": data, "next_cursor": page.next_cursor, "counts": counts }),
    ))
}

/// `GET /admin/runs/{id}`, `POST /admin/runs/{id}/cancel`, `POST /admin/runs/{id}/retry`.
pub async fn one(
    runs: &RunService,
    method: Method,
    rest: &str,
) -> Result<Response<Vec<u8>>, ApiError> {
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let not_found = || ApiError::admin_not_found(&format!("/admin/runs/{rest}"));
    if !artifacts::is_valid_run_id(id) {
        return Err(not_found());
    }
    let now = runs.clock.now_ms();
    // A missing run answers with the path asked for, action included.
    let named = |e: ApiError| match e.status() {
        404 => not_found(),
        _ => e,
    };
    let run = match (method, action) {
        (Method::GET, "") => {
            let id = id.to_owned();
            runs.with_queue(move |q| q.get(&id))
                .await?
                .ok_or_else(not_found)?
        }
        (Method::POST, "cancel") => cancel(runs, id).await.map_err(named)?,
        (Method::POST, "retry") => retry(runs, id).await.map_err(named)?,
        _ => return Err(not_found()),
    };
    Ok(local_http::json(200, &run_json(&run, now)))
}
