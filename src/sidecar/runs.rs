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
//!
//! The work of each route is an action that the dashboard's pages call too, with the signed-in
//! user as the caller: `submit_run`, `list_runs`, `owned_run`, `cancel_run`, `events_response`
//! (the one SSE stream of a run), `artifacts_of`, `artifact_of` and `artifact_response`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::extract::{self, Caller, Customer, Id, IdAndName, JsonBody, Params};
use super::tenants::owned_tenant;
use super::Sidecar;

use crate::api_error::{shown, ApiError, ErrorKind};
use crate::config::AuthMode;
use crate::headers;
use crate::runs::artifacts::ArtifactInfo;
use crate::runs::byok::{self, ProviderKey};
use crate::runs::events::RunEvent;
use crate::runs::queue::{CancelOutcome, Run, RunFilter, RunPage, RunStatus};
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

/// Which of the caller's runs to list (`GET /api/runs`'s query), newest first.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub tenant_id: Option<String>,
    /// A status name; None or empty: every status.
    pub status: Option<String>,
    /// 1-100; None: 20.
    pub limit: Option<u32>,
    /// A previous page's `next_cursor`.
    pub cursor: Option<i64>,
}

/// What a caller asks to run: the API's JSON body, or the dashboard's launch form.
pub struct RunRequest {
    pub tenant_id: String,
    pub template: String,
    /// The template's inputs, a JSON object of text fields.
    pub input: Value,
    pub idempotency_key: Option<String>,
}

/// `POST /api/runs`.
pub async fn submit(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    request_headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<Response, ApiError> {
    let request = RunRequest {
        tenant_id: body.tenant_id,
        template: body.template,
        input: body.input.unwrap_or_else(|| json!({})),
        idempotency_key: body.idempotency_key,
    };
    let provider_key = headers::bearer(&request_headers);
    let now = sidecar.clock.now_ms();
    let enqueued = match submit_run(&sidecar, &caller, request, provider_key).await? {
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

/// Checks and queues a run in the caller's tenant, under the tier their request runs under.
/// `provider_key` is the key the caller brought (the API's `Authorization`, the dashboard
/// form's password field): checked against the auth mode, then kept in memory with the run.
pub async fn submit_run(
    sidecar: &Sidecar,
    caller: &Caller,
    request: RunRequest,
    provider_key: Option<&str>,
) -> Result<Submitted, ApiError> {
    let RunRequest {
        tenant_id,
        template,
        input,
        idempotency_key,
    } = request;
    let tenant = owned_tenant(sidecar, &caller.user, &tenant_id).await?;
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let (tier_name, _) = sidecar.tier_of(caller, config);
    let submission = Submission {
        tenant,
        owner: caller.user.clone(),
        tier: tier_name.to_owned(),
        template,
        input,
        idempotency_key,
        provider_key: checked_provider_key(provider_key, config.auth.mode)?,
        session: None,
    };
    submit::submit(&sidecar.runs, config, &sidecar.billing, submission).await
}

/// The provider key a BYOK run brings (on the API in `Authorization`, the gateway key then
/// travelling in `X-Gateway-Key`; the proxy already removed `Authorization` if it held the
/// gateway key). In codex mode runs use the owner's stored Codex token, and carry no key.
fn checked_provider_key(
    presented: Option<&str>,
    mode: AuthMode,
) -> Result<Option<ProviderKey>, ApiError> {
    if mode == AuthMode::Codex {
        // The gateway sends the owner's stored Codex token; a provider key has no use here.
        return Ok(None);
    }
    match presented.filter(|k| !k.is_empty()) {
        Some(key) if !byok::is_valid_key(key) => Err(ApiError::invalid_request(
            "invalid_provider_key",
            "The provider key must be 1-512 visible ASCII characters.",
        )),
        Some(key) => Ok(Some(ProviderKey::new(key.to_owned()))),
        None => Err(ApiError::unauthenticated(
            "missing_provider_key",
            "This gateway runs agents with your own provider key: on the API send it as \
             Authorization: Bearer sk-… and your gateway key as X-Gateway-Key: exo_…; on the \
             dashboard, fill in the provider key field.",
        )),
    }
}

/// `GET /api/runs`.
pub async fn list(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Params(query): Params<RunQuery>,
) -> Result<Response, ApiError> {
    let page = list_runs(&sidecar, &caller, &query).await?;
    let now = sidecar.clock.now_ms();
    let data: Vec<Value> = page.runs.iter().map(|r| run_json(r, now)).collect();
    Ok(extract::json(
        200,
        json!({ "object": "list", "data": data, "next_cursor": page.next_cursor }),
    ))
}

/// One page of the caller's runs (of one of their tenants, when the query names it).
pub async fn list_runs(
    sidecar: &Sidecar,
    caller: &Caller,
    query: &RunQuery,
) -> Result<RunPage, ApiError> {
    if let Some(tenant_id) = &query.tenant_id {
        owned_tenant(sidecar, &caller.user, tenant_id).await?;
    }
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
            ApiError::invalid_request(
                "invalid_status",
                "`status` is one of queued, running, succeeded, failed, canceled, dead.",
            )
        })?),
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_request(
            "invalid_limit",
            "`limit` is 1-100.",
        ));
    }
    let filter = RunFilter {
        owner: Some(caller.user.clone()),
        tenant_id: query.tenant_id.clone(),
        status,
        limit,
        before_seq: query.cursor,
    };
    sidecar.runs.with_queue(move |q| q.list(&filter)).await
}

/// The caller's run `id`, or 404 (also when it is someone else's).
fn run_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "run_not_found",
        format!("You have no run `{}`.", shown(id)),
    )
}

/// The run `id` of `owner`, or 404 (also when it is someone else's).
pub async fn owned_run(sidecar: &Sidecar, owner: &str, id: &str) -> Result<Run, ApiError> {
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
    let run = cancel_run(&sidecar, &caller, &id).await?;
    Ok(extract::json(200, run_json(&run, sidecar.clock.now_ms())))
}

/// Cancels the caller's run `id`: a queued one at once, a running one when its worker stops
/// (the run answered is then still running, with `cancel_requested`). 409 once it ended.
pub async fn cancel_run(sidecar: &Sidecar, caller: &Caller, id: &str) -> Result<Run, ApiError> {
    owned_run(sidecar, &caller.user, id).await?;
    match sidecar.runs.cancel(id).await? {
        CancelOutcome::Canceled(run) | CancelOutcome::Requested(run) => {
            tracing::info!(user = %caller.user, run = %run.id, "run cancel asked");
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
    Ok(events_response(sidecar, run))
}

/// The Server-Sent Events of `run` (which the caller owns), until it ends.
pub fn events_response(sidecar: Arc<Sidecar>, run: Run) -> Response {
    let stream = watch_run(sidecar, run);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
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
    let found = artifacts_of(&sidecar, &run).await?;
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

/// The artifacts `run` (which the caller owns) stored, by name.
pub async fn artifacts_of(sidecar: &Sidecar, run: &Run) -> Result<Vec<ArtifactInfo>, ApiError> {
    sidecar.runs.artifacts.list(&run.id).await.map_err(|e| {
        tracing::error!(run = %run.id, "cannot list the run's artifacts: {e}");
        ApiError::internal()
    })
}

/// `GET /api/runs/{id}/artifacts/{name}`.
pub async fn artifact(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    IdAndName(id, name): IdAndName,
) -> Result<Response, ApiError> {
    let run = owned_run(&sidecar, &caller.user, &id).await?;
    let (info, bytes) = artifact_of(&sidecar, &run, &name).await?;
    Ok(artifact_response(&info, bytes))
}

/// The artifact `name` of `run` (which the caller owns), or 404.
pub async fn artifact_of(
    sidecar: &Sidecar,
    run: &Run,
    name: &str,
) -> Result<(ArtifactInfo, Bytes), ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorKind::NotFound,
            "artifact_not_found",
            format!("The run has no artifact `{}`.", shown(name)),
        )
    };
    if !artifacts::is_valid_name(name) {
        return Err(not_found());
    }
    let found = sidecar
        .runs
        .artifacts
        .get(&run.id, name)
        .await
        .map_err(|e| {
            tracing::error!(run = %run.id, "cannot read the run's artifact: {e}");
            ApiError::internal()
        })?;
    found.ok_or_else(not_found)
}

/// An artifact as a download: its type, `attachment` under its name, never sniffed.
pub fn artifact_response(info: &ArtifactInfo, bytes: Bytes) -> Response {
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
    response
}
