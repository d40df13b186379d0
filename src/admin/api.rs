//! The admin JSON API, behind `Authorization: Bearer <admin token>`, and `/metrics` without it
//! (keep the admin listener on loopback).
//!
//! - `GET /metrics` Prometheus metrics
//! - `GET /admin/keys` lists keys (never the keys themselves)
//! - `POST /admin/keys` `{"user": "...", "tier": "..."}` creates one and returns it once
//! - `DELETE /admin/keys/{id}` revokes one
//! - `GET /admin/usage?since=5m` per-user usage from the ledger (what `exoclaw usage` shows)
//! - `GET /admin/nodes` every node: pool, health, in-flight count, errors, ejections
//! - `GET /admin/ledger` the ledger writer's queue depth, rows written, rows dropped
//! - `GET /admin/runs?status=&owner=&tenant_id=&limit=&cursor=` the run queue, newest first;
//!   `GET /admin/runs/{id}`, `POST /admin/runs/{id}/cancel`, `POST /admin/runs/{id}/retry`
//!   (see `runs`)
//! - `GET /admin/reload` the latest config reload: when, its trigger, `ok` or why it was
//!   refused (`{"last_reload": null}` before the first)
//! - `POST /admin/clock` `{"advance_ms": N}` or `{"set_ms": N}`: only when the process was
//!   started with a manual clock (tests), absent otherwise
//!
//! Every answer is JSON, errors OpenAI-shaped; a wrong token is a 401 that says what to send.
//!
//! Not for: the operators' pages (`admin::pages`), which sign in with the same token.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::{runs, AdminApp, CreatedKey};
use crate::api_error::ApiError;
use crate::clock::Clock;
use crate::headers;
use crate::local_http::{self, MAX_APP_BODY};
use crate::sidecar::extract::read_body;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user: String,
    tier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockChange {
    advance_ms: Option<u64>,
    set_ms: Option<u64>,
}

/// Every request the pages do not answer.
pub async fn answer(State(app): State<Arc<AdminApp>>, request: Request) -> Response {
    let response = match route(&app, request).await {
        Ok(response) => response,
        Err(e) => local_http::error(&e),
    };
    response.map(Body::from)
}

fn authorize(app: &AdminApp, request_headers: &HeaderMap) -> Result<(), ApiError> {
    if app.token.is_none() {
        return Err(ApiError::unauthenticated(
            "admin_disabled",
            format!(
                "The admin API is disabled: set {} in the gateway's environment.",
                app.token_env()
            ),
        ));
    }
    match headers::bearer(request_headers) {
        Some(t) if app.is_admin_token(t) => Ok(()),
        _ => Err(ApiError::unauthenticated(
            "invalid_admin_token",
            format!(
                "Send Authorization: Bearer <the value of {}>.",
                app.token_env()
            ),
        )),
    }
}

async fn route(app: &AdminApp, request: Request) -> Result<http::Response<Vec<u8>>, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    if method == Method::GET && path == "/metrics" {
        let text = app
            .metrics
            .render(&app.live.load_full(), app.ledger.stats());
        return Ok(http::Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4")
            .header("content-length", text.len())
            .body(text.into_bytes())
            .unwrap_or_else(|_| http::Response::new(Vec::new())));
    }
    authorize(app, request.headers())?;
    match (method, path.as_str()) {
        (Method::GET, "/admin/keys") => {
            let keys = app.keys().await?;
            Ok(local_http::json(200, &json!({ "keys": keys })))
        }
        (Method::GET, "/admin/usage") => {
            let since = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("since="))
                .unwrap_or("24h");
            let users = app.usage(since).await?;
            Ok(local_http::json(
                200,
                &json!({ "since": since, "users": users }),
            ))
        }
        (Method::GET, "/admin/nodes") => {
            Ok(local_http::json(200, &json!({ "nodes": app.nodes() })))
        }
        (Method::GET, "/admin/ledger") => Ok(local_http::json(200, &json!(app.ledger.stats()))),
        (Method::GET, "/admin/reload") => Ok(local_http::json(
            200,
            &json!({ "last_reload": app.last_reload.get().as_deref() }),
        )),
        (Method::POST, "/admin/keys") => {
            let CreateKey { user, tier } = read_json(request).await?;
            let CreatedKey {
                id,
                key,
                user,
                tier,
            } = app.create_key(user, tier).await?;
            Ok(local_http::json(
                201,
                &json!({ "id": id, "key": key, "user": user, "tier": tier }),
            ))
        }
        (Method::DELETE, p) if p.starts_with("/admin/keys/") => {
            let id = &p["/admin/keys/".len()..];
            app.revoke_key(id).await?;
            Ok(local_http::json(200, &json!({ "id": id, "revoked": true })))
        }
        (Method::GET, "/admin/runs") => runs::list(&app.runs, &query).await,
        (method, p) if p.starts_with("/admin/runs/") => {
            runs::one(&app.runs, method, &p["/admin/runs/".len()..]).await
        }
        (Method::POST, "/admin/clock") if app.manual_clock.is_some() => {
            let body: ClockChange = read_json(request).await?;
            Ok(change_clock(app, body))
        }
        _ => Err(ApiError::admin_not_found(&path)),
    }
}

/// The body as JSON of type `T`, at most `MAX_APP_BODY` bytes.
async fn read_json<T: DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let body = read_body(request, MAX_APP_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_request(
            "invalid_json",
            format!("The body is not the expected JSON: {e}"),
        )
    })
}

fn change_clock(app: &AdminApp, body: ClockChange) -> http::Response<Vec<u8>> {
    let Some(clock) = &app.manual_clock else {
        return local_http::error(&ApiError::not_found("/admin/clock"));
    };
    if let Some(ms) = body.set_ms {
        clock.set(ms);
    }
    if let Some(ms) = body.advance_ms {
        clock.advance(ms);
    }
    local_http::json(200, &json!({ "now_ms": clock.now_ms() }))
}
