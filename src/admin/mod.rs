//! The admin API on `server.admin_listen` (loopback by default): key management as JSON, behind
//! a bearer token read from the environment (`auth.admin_token_env`, `EXOCLAW_ADMIN_TOKEN` by
//! default). Without that variable the key endpoints refuse with a message saying what to set.
//!
//! - `GET /metrics` Prometheus metrics (no token: keep the admin listener on loopback)
//! - `GET /admin/keys` lists keys (never the keys themselves)
//! - `POST /admin/keys` `{"user": "...", "tier": "..."}` creates one and returns it once
//! - `DELETE /admin/keys/{id}` revokes one
//! - `GET /admin/usage?since=5m` per-user usage from the ledger (what `exoclaw usage` shows)
//! - `GET /admin/nodes` every node: pool, health, in-flight count, errors, ejections
//! - `GET /admin/ledger` the ledger writer's queue depth, rows written, rows dropped
//! - `GET /admin/runs?status=&owner=&tenant_id=&limit=&cursor=` the run queue, newest first;
//!   `GET /admin/runs/{id}`, `POST /admin/runs/{id}/cancel`, `POST /admin/runs/{id}/retry`
//!   (see `runs`)
//! - `POST /admin/clock` `{"advance_ms": N}` or `{"set_ms": N}`: only when the process was
//!   started with a manual clock (tests), absent otherwise
//!
//! Database work runs on blocking threads; the proxy's snapshots are refreshed before the
//! response, so a revoked key is refused from the next request on.

mod runs;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use crate::api_error::{ApiError, ErrorKind};
use crate::auth::{self, store, Credentials};
use crate::clock::{Clock, ManualClock, SharedClock};
use crate::config::units;
use crate::headers;
use crate::ledger::queries;
use crate::ledger::writer::LedgerWriter;
use crate::local_http;
use crate::metrics::Metrics;
use crate::runs::RunService;
use crate::state::LiveSnapshot;

pub struct AdminApp {
    pub credentials: Arc<Credentials>,
    pub live: LiveSnapshot,
    pub ledger: Arc<LedgerWriter>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// The admin bearer token, from `auth.admin_token_env` at start; None: the API is off.
    pub token: Option<String>,
    /// Present only under `--manual-clock` (tests): `POST /admin/clock` moves it.
    pub manual_clock: Option<Arc<ManualClock>>,
    pub runs: Arc<RunService>,
}

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

impl AdminApp {
    fn authorize(&self, session: &ServerSession) -> Result<(), ApiError> {
        let env = &self.live.load().config.auth.admin_token_env;
        let Some(expected) = self.token.as_deref() else {
            return Err(ApiError::unauthenticated(
                "admin_disabled",
                format!("The admin API is disabled: set {env} in the gateway's environment."),
            ));
        };
        match headers::bearer(&session.req_header().headers) {
            Some(t) if local_http::secret_matches(t.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(ApiError::unauthenticated(
                "invalid_admin_token",
                format!("Send Authorization: Bearer <the value of {env}>."),
            )),
        }
    }

    async fn route(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, ApiError> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        if method == Method::GET && path == "/metrics" {
            let text = self
                .metrics
                .render(&self.live.load_full(), self.ledger.stats());
            return Ok(http::Response::builder()
                .status(200)
                .header("content-type", "text/plain; version=0.0.4")
                .header("content-length", text.len())
                .body(text.into_bytes())
                .unwrap_or_else(|_| Response::new(Vec::new())));
        }
        self.authorize(session)?;
        match (method, path.as_str()) {
            (Method::GET, "/admin/keys") => self.list_keys().await,
            (Method::GET, "/admin/usage") => {
                let query = session.req_header().uri.query().unwrap_or("").to_owned();
                self.usage(&query).await
            }
            (Method::GET, "/admin/nodes") => {
                let snapshot = self.live.load_full();
                let nodes: Vec<_> = snapshot
                    .pools
                    .iter()
                    .flat_map(|pool| pool.nodes().iter().map(|n| n.report()))
                    .collect();
                Ok(local_http::json(200, &json!({ "nodes": nodes })))
            }
            (Method::GET, "/admin/ledger") => {
                Ok(local_http::json(200, &json!(self.ledger.stats())))
            }
            (Method::POST, "/admin/keys") => {
                let body: CreateKey = local_http::read_json(session).await?;
                self.create_key(body).await
            }
            (Method::DELETE, p) if p.starts_with("/admin/keys/") => {
                self.revoke_key(p["/admin/keys/".len()..].to_owned()).await
            }
            (Method::GET, "/admin/runs") => {
                let query = session.req_header().uri.query().unwrap_or("").to_owned();
                runs::list(&self.runs, &query).await
            }
            (method, p) if p.starts_with("/admin/runs/") => {
                runs::one(&self.runs, method, &p["/admin/runs/".len()..]).await
            }
            (Method::POST, "/admin/clock") if self.manual_clock.is_some() => {
                let body: ClockChange = local_http::read_json(session).await?;
                Ok(self.change_clock(body))
            }
            _ => Err(ApiError::admin_not_found(&path)),
        }
    }

    async fn list_keys(&self) -> Result<Response<Vec<u8>>, ApiError> {
        let credentials = self.credentials.clone();
        let keys = local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            store::list_keys(&conn).map_err(|e| e.to_string())
        })
        .await?;
        Ok(local_http::json(200, &json!({ "keys": keys })))
    }

    async fn usage(&self, query: &str) -> Result<Response<Vec<u8>>, ApiError> {
        let since = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("since="))
            .unwrap_or("24h")
            .to_owned();
        let window = units::parse_duration(&since)
            .map_err(|e| ApiError::invalid_request("invalid_since", format!("since: {e}")))?;
        let since_ms = self
            .clock
            .now_ms()
            .saturating_sub(window.as_millis() as u64);
        let credentials = self.credentials.clone();
        let users = local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            queries::usage_since(&conn, since_ms).map_err(|e| e.to_string())
        })
        .await?;
        Ok(local_http::json(
            200,
            &json!({ "since": since, "users": users }),
        ))
    }

    async fn create_key(&self, body: CreateKey) -> Result<Response<Vec<u8>>, ApiError> {
        let credentials = self.credentials.clone();
        let tiers = self.live.load().config.tiers.clone();
        let CreateKey { user, tier } = body;
        let (minted, user, tier) = local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            let minted = auth::create_key(&conn, &user, tier.as_deref(), &tiers)
                .map_err(|e| format!("invalid: {e}"))?;
            credentials.reload_keys(&conn).map_err(|e| e.to_string())?;
            Ok((minted, user, tier))
        })
        .await?;
        tracing::info!(key_id = %minted.id, %user, "gateway key created via admin API");
        Ok(local_http::json(
            201,
            &json!({ "id": minted.id, "key": minted.secret, "user": user, "tier": tier }),
        ))
    }

    async fn revoke_key(&self, id: String) -> Result<Response<Vec<u8>>, ApiError> {
        let credentials = self.credentials.clone();
        let key_id = id.clone();
        let revoked = local_http::blocking("admin API", move || {
            let conn = credentials.open_db()?;
            let revoked = store::revoke_key(&conn, &key_id).map_err(|e| e.to_string())?;
            credentials.reload_keys(&conn).map_err(|e| e.to_string())?;
            Ok(revoked)
        })
        .await?;
        if !revoked {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "key_not_found",
                format!("No active key has the id `{id}`."),
            ));
        }
        tracing::info!(key_id = %id, "gateway key revoked via admin API");
        Ok(local_http::json(200, &json!({ "id": id, "revoked": true })))
    }

    fn change_clock(&self, body: ClockChange) -> Response<Vec<u8>> {
        let Some(clock) = &self.manual_clock else {
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
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.route(session).await {
            Ok(response) => response,
            Err(e) => local_http::error(&e),
        }
    }
}
