//! The operators' view of the run queue: every tenant's runs, and the two things an operator
//! does to one — cancel it, or queue a failed, dead or canceled one again.
//!
//! Not for: customers (`sidecar::runs`, which only ever shows a caller their own runs).

use http::{Method, Response};
use serde_json::{json, Value};

use crate::api_error::{ApiError, ErrorKind};
use crate::local_http;
use crate::runs::queue::{CancelOutcome, RunFilter, RunStatus};
use crate::runs::{artifacts, run_json, RunService};

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
    let page = runs.with_queue(move |q| q.list(&filter)).await?;
    let counts = runs.with_queue(|q| q.counts_by_status()).await?;
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
    let id = id.to_owned();
    match (method, action) {
        (Method::GET, "") => {
            let run = runs
                .with_queue(move |q| q.get(&id))
                .await?
                .ok_or_else(not_found)?;
            Ok(local_http::json(200, &run_json(&run, now)))
        }
        (Method::POST, "cancel") => match runs.cancel(&id).await? {
            CancelOutcome::Canceled(run) | CancelOutcome::Requested(run) => {
                tracing::info!(run = %run.id, "run cancel asked by an operator");
                Ok(local_http::json(200, &run_json(&run, now)))
            }
            CancelOutcome::AlreadyFinished(run) => Err(ApiError::new(
                ErrorKind::Conflict,
                "run_finished",
                format!("The run already ended: it is {}.", run.status.as_str()),
            )),
            CancelOutcome::NotFound => Err(not_found()),
        },
        (Method::POST, "retry") => {
            let lookup = id.clone();
            let retried = runs.with_queue(move |q| q.retry(&id, now)).await?;
            match retried {
                Some(run) => {
                    tracing::info!(run = %run.id, "run queued again by an operator");
                    runs.announce(&run);
                    runs.wake();
                    Ok(local_http::json(200, &run_json(&run, now)))
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
                    None => Err(not_found()),
                },
            }
        }
        _ => Err(not_found()),
    }
}
