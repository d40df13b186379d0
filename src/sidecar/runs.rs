//! `/api/runs`: launch a run of a template in a tenant, follow it, cancel it, fetch its output.
//!
//! - `POST /api/runs {tenant_id, template, input, idempotency_key?}` → 202 with `Location`.
//!   A BYOK run brings the provider key as on `/v1`: `Authorization: Bearer sk-…` beside
//!   `X-Gateway-Key`; it stays in memory only. The same idempotency key in a tenant returns the
//!   same run (200); reused for a different run, 409.
//! - Gates, each a 402 naming the tier and where to upgrade: a lapsed subscription, a tier
//!   without runs, the month's runs or requests used up.
//! - `GET /api/runs?tenant_id=&status=&limit=&cursor=`, `GET /api/runs/{id}`,
//!   `POST /api/runs/{id}/cancel`, `GET /api/runs/{id}/events` (SSE: status changes and output
//!   as it streams), `GET /api/runs/{id}/artifacts[/{name}]`.
//! - Someone else's run answers 404, exactly like one that does not exist.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::extract::{self, Customer, Id, IdAndName, JsonBody, Params};
use super::tenants::owned_tenant;
use super::Sidecar;

use crate::api_error::{shown, ApiError, ErrorKind};
use crate::config::AuthMode;
use crate::headers;
use crate::runs::byok::{self, ProviderKey};
use crate::runs::events::RunEvent;
use crate::runs::queue::{CancelOutcome, Run, RunFilter, RunStatus};
use crate::runs::submit::{self, Submission, Submitted};
use crate::runs::{self, artifacts, run_json};

/// How often a watcher re-reads its run, to see changes made by another process.
const WATCH_RECHECK: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    tenant_id: String,
    template: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    tenant_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<i64>,
}

/// `POST /api/runs`.
pub async fn submit(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    request_headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<Response, ApiError> {
    let tenant = owned_tenant(&sidecar, &caller.user, &body.tenant_id).await?;
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let (tier_name, _) = sidecar.tier_of(&caller, config);
    let submission = Submission {
        tenant,
        owner: caller.user.clone(),
        tier: tier_name.to_owned(),
        template: body.template,
        input: body.input.unwrap_or_else(|| json!({})),
        idempotency_key: body.idempotency_key,
        provider_key: provider_key(&request_headers, config.auth.mode)?,
        session: None,
    };
    let now = sidecar.clock.now_ms();
    let enqueued = match submit::submit(&sidecar.runs, config, &sidecar.billing, submission).await?
    {
        Submitted::Created(run) => run,
        Submitted::Existing(run) => {
            let mut response = extract::json(200, run_json(&run, now));
            response.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
    };
    let mut response = extract::json(202, run_json(&enqueued, now));
    if let Ok(location) = format!("/api/runs/{}", enqueued.id).parse() {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Ok(response)
}

/// The provider key a BYOK run brings in `Authorization` (the gateway key then travels in
/// `X-Gateway-Key`; the proxy already removed `Authorization` if it held the gateway key).
/// In codex mode runs use the owner's stored Codex token, and carry no key.
fn provider_key(
    request_headers: &HeaderMap,
    mode: AuthMode,
) -> Result<Option<ProviderKey>, ApiError> {
    if mode == AuthMode::Codex {
        // The gateway sends the owner's stored Codex token; a provider key has no use here.
        return Ok(None);
    }
    let key = headers::bearer(request_headers).filter(|k| !k.is_empty());
    match key {
        Some(key) if !byok::is_valid_key(key) => Err(ApiError::invalid_request(
            "invalid_provider_key",
            "The provider key in Authorization must be 1-512 visible ASCII characters.",
        )),
        Some(key) => Ok(Some(ProviderKey::new(key.to_owned()))),
        None if mode == AuthMode::Byok => Err(ApiError::unauthenticated(
            "missing_provider_key",
            "This gateway runs agents with your own provider key: send it as \
             Authorization: Bearer sk-… and your gateway key as X-Gateway-Key: exo_….",
        )),
        None => Ok(None),
    }
}

/// `GET /api/runs`.
pub async fn list(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    if let Some(tenant_id) = &params.tenant_id {
        owned_tenant(&sidecar, &caller.user, tenant_id).await?;
    }
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
            ApiError::invalid_request(
                "invalid_status",
                "`status` is one of queued, running, succeeded, failed, canceled, dead.",
            )
        })?),
    };
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_request(
            "invalid_limit",
            "`limit` is 1-100.",
        ));
    }
    let filter = RunFilter {
        owner: Some(caller.user.clone()),
        tenant_id: params.tenant_id.clone(),
        status,
        limit,
        before_seq: params.cursor,
    };
    let page = sidecar.runs.with_queue(move |q| q.list(&filter)).await?;
    let now = sidecar.clock.now_ms();
    let data: Vec<Value> = page.runs.iter().map(|r| run_json(r, now)).collect();
    Ok(extract::json(
        200,
        json!({ "object": "list", "data": data, "next_cursor": page.next_cursor }),
    ))
}

/// The caller's run `id`, or 404 (also when it is someone else's).
fn run_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "run_not_found",
        format!("You have no run `{}`.", shown(id)),
    )
}

async fn owned_run(sidecar: &Sidecar, owner: &str, id: &str) -> Result<Run, ApiError> {
    let not_found = || run_not_found(id);
    if !artifacts::is_valid_run_id(id) {
        return Err(not_found());
    }
    let run_id = id.to_owned();
    let run = sidecar.runs.with_queue(move |q| q.get(&run_id)).await?;
    run.filter(|r| r.owner == owner).ok_or_else(not_found)
}

/// `GET /api/runs/{id}`.
pub async fn show(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let run = owned_run(&sidecar, &caller.user, &id).await?;
    Ok(extract::json(200, run_json(&run, sidecar.clock.now_ms())))
}

/// `POST /api/runs/{id}/cancel`.
pub async fn cancel(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    owned_run(&sidecar, &caller.user, &id).await?;
    let now = sidecar.clock.now_ms();
    match sidecar.runs.cancel(&id).await? {
        CancelOutcome::Canceled(run) | CancelOutcome::Requested(run) => {
            tracing::info!(user = %caller.user, run = %run.id, "run cancel asked");
            Ok(extract::json(200, run_json(&run, now)))
        }
        CancelOutcome::AlreadyFinished(run) => Err(ApiError::new(
            ErrorKind::Conflict,
            "run_finished",
            format!("The run already ended: it is {}.", run.status.as_str()),
        )),
        CancelOutcome::NotFound => Err(run_not_found(&id)),
    }
}

/// `GET /api/runs/{id}/events`: Server-Sent Events until the run ends.
///
/// Each event is `event: status` (`{status, attempt, error?, at_ms}`) or `event: output`
/// (`{delta}`); the stream starts with the run's current status (and the output so far, when it
/// is running) and ends with `event: done` after a final status.
pub async fn events(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let run = owned_run(&sidecar, &caller.user, &id).await?;
    let stream = watch_run(sidecar, run);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn status_event(run: &Run, at_ms: u64) -> Event {
    sse(&runs::status_event(run, at_ms))
}

fn sse(event: &RunEvent) -> Event {
    let name = match event {
        RunEvent::Status { .. } => "status",
        RunEvent::Output { .. } => "output",
    };
    let data = serde_json::to_string(event).unwrap_or_default();
    Event::default().event(name).data(data)
}

fn watch_run(sidecar: Arc<Sidecar>, run: Run) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream(move |tx| async move {
        let runs = &sidecar.runs;
        let done = || Event::default().event("done").data("{}");
        if run.status.is_terminal() {
            let _ = tx.send(status_event(&run, sidecar.clock.now_ms())).await;
            let _ = tx.send(done()).await;
            return;
        }
        // Watch first, then read: no change can fall between the two.
        let (so_far, mut events) = runs.events.watch(&run.id);
        let id = run.id.clone();
        let current = runs
            .with_queue(move |q| q.get(&id))
            .await
            .ok()
            .flatten()
            .unwrap_or(run);
        let mut last_status = current.status;
        if tx
            .send(status_event(&current, sidecar.clock.now_ms()))
            .await
            .is_err()
        {
            return;
        }
        if current.status.is_terminal() {
            let _ = tx.send(done()).await;
            runs.events.forget_if_unwatched(&current.id);
            return;
        }
        if current.status == RunStatus::Running && !so_far.is_empty() {
            let _ = tx.send(sse(&RunEvent::Output { delta: so_far })).await;
        }
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => {
                        let terminal = matches!(&event, RunEvent::Status { status, .. }
                            if status.parse::<RunStatus>().is_ok_and(|s| s.is_terminal()));
                        if let RunEvent::Status { status, .. } = &event {
                            if let Ok(s) = status.parse() { last_status = s; }
                        }
                        if tx.send(sse(&event)).await.is_err() || terminal {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        let note = Event::default().event("lagged").data(json!({ "skipped": skipped }).to_string());
                        if tx.send(note).await.is_err() { break; }
                    }
                    Err(RecvError::Closed) => {
                        // The run ended (its channel closed after the final status was sent).
                        break;
                    }
                },
                _ = tokio::time::sleep(WATCH_RECHECK) => {
                    if tx.is_closed() {
                        // The watcher left while nothing happened: stop watching for it.
                        break;
                    }
                    let id = current.id.clone();
                    match runs.with_queue(move |q| q.get(&id)).await {
                        Ok(Some(now)) if now.status != last_status => {
                            last_status = now.status;
                            if tx.send(status_event(&now, sidecar.clock.now_ms())).await.is_err()
                                || now.status.is_terminal()
                            {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        let _ = tx.send(done()).await;
        drop(events);
        runs.events.forget_if_unwatched(&current.id);
    })
}

/// A stream fed by a task: the task ends when the watcher leaves (its sends fail).
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}

/// `GET /api/runs/{id}/artifacts`.
pub async fn artifacts(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let run = owned_run(&sidecar, &caller.user, &id).await?;
    let found = sidecar.runs.artifacts.list(&run.id).await.map_err(|e| {
        tracing::error!(run = %run.id, "cannot list the run's artifacts: {e}");
        ApiError::internal()
    })?;
    let data: Vec<Value> = found
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "object": "artifact",
                "size": a.size,
                "content_type": a.content_type,
                "url": format!("/api/runs/{}/artifacts/{}", run.id, a.name),
            })
        })
        .collect();
    Ok(extract::json(
        200,
        json!({ "object": "list", "data": data }),
    ))
}

/// `GET /api/runs/{id}/artifacts/{name}`.
pub async fn artifact(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    IdAndName(id, name): IdAndName,
) -> Result<Response, ApiError> {
    let run = owned_run(&sidecar, &caller.user, &id).await?;
    let not_found = || {
        ApiError::new(
            ErrorKind::NotFound,
            "artifact_not_found",
            format!("The run has no artifact `{}`.", shown(&name)),
        )
    };
    if !artifacts::is_valid_name(&name) {
        return Err(not_found());
    }
    let found = sidecar
        .runs
        .artifacts
        .get(&run.id, &name)
        .await
        .map_err(|e| {
            tracing::error!(run = %run.id, "cannot read the run's artifact: {e}");
            ApiError::internal()
        })?;
    let (info, bytes) = found.ok_or_else(not_found)?;
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(info.content_type),
    );
    if let Ok(disposition) = format!("attachment; filename=\"{}\"", info.name).parse() {
        headers.insert(http::header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
