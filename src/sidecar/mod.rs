//! The sidecar: the gateway's control-plane HTTP app for `/api/*`, on a loopback listener.
//!
//! The proxy authenticates the caller and hands `/api/*` requests here with `X-Forwarded-User`,
//! plus a per-process secret header that proves the request came through the proxy: a local
//! process that connects to the sidecar directly cannot impersonate a user. Endpoints:
//!
//! - `PUT /api/oauth/codex` `{"token": "..."}` stores the caller's Codex OAuth token, encrypted
//!   (what `setup.sh --auth codex` calls); `DELETE /api/oauth/codex` removes it.
//!
//! Both need a gateway key (not a claimed `X-User-ID`). Stored tokens apply to the caller's next
//! request. Webhooks, runs and tenants join this module in later work.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use crate::api_error::{ApiError, ErrorKind};
use crate::auth::{codex, store, Credentials};
use crate::local_http;
use crate::proxy::headers;

pub struct SidecarApp {
    credentials: Arc<Credentials>,
    internal_secret: Arc<str>,
    token_key_env: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodexTokenBody {
    token: String,
}

impl SidecarApp {
    pub fn new(
        credentials: Arc<Credentials>,
        internal_secret: Arc<str>,
        token_key_env: String,
    ) -> SidecarApp {
        SidecarApp {
            credentials,
            internal_secret,
            token_key_env,
        }
    }

    /// The user the proxy vouches for, and whether a gateway key proved it.
    fn caller(&self, session: &ServerSession) -> Result<(String, bool), ApiError> {
        let secret = session
            .get_header(headers::INTERNAL_SECRET)
            .map(|v| v.as_bytes());
        if !secret.is_some_and(|s| local_http::secret_matches(s, self.internal_secret.as_bytes())) {
            return Err(ApiError::unauthenticated(
                "not_through_gateway",
                "Call /api/* through the gateway's public address.",
            ));
        }
        let user = session
            .get_header(headers::FORWARDED_USER)
            .and_then(|v| v.to_str().ok())
            .filter(|u| headers::is_well_formed_id(u.as_bytes()))
            .ok_or_else(ApiError::internal)?
            .to_owned();
        let by_key = session
            .get_header(headers::AUTHENTICATED_BY)
            .is_some_and(|v| v.as_bytes() == b"key");
        Ok((user, by_key))
    }

    async fn route(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, ApiError> {
        let (user, by_key) = self.caller(session)?;
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        match (method, path.as_str()) {
            (Method::PUT, "/api/oauth/codex") => {
                require_key(by_key)?;
                let body: CodexTokenBody = local_http::read_json(session).await?;
                self.store_codex_token(user, body.token).await
            }
            (Method::DELETE, "/api/oauth/codex") => {
                require_key(by_key)?;
                self.delete_codex_token(user).await
            }
            _ => Err(ApiError::not_found(&path)),
        }
    }

    async fn store_codex_token(
        &self,
        user: String,
        token: String,
    ) -> Result<Response<Vec<u8>>, ApiError> {
        let token = token.trim().to_owned();
        if !codex::is_valid_token(&token) {
            return Err(ApiError::invalid_request(
                "invalid_token",
                format!(
                    "`token` must be 1-{} visible ASCII characters without spaces.",
                    codex::MAX_TOKEN_LEN
                ),
            ));
        }
        if self.credentials.cipher.is_none() {
            return Err(self.tokens_disabled());
        }
        let credentials = self.credentials.clone();
        let owner = user.clone();
        local_http::blocking("sidecar", move || {
            let cipher = credentials.cipher.as_ref().ok_or("no token key")?;
            let (nonce, sealed) = cipher.seal(&owner, &token)?;
            let conn = credentials.open_db()?;
            store::put_codex_token(&conn, &owner, &nonce, &sealed).map_err(|e| e.to_string())?;
            credentials.reload_codex(&conn).map_err(|e| e.to_string())
        })
        .await?;
        tracing::info!(%user, "Codex token stored");
        Ok(local_http::json(
            200,
            &json!({ "status": "stored", "user": user }),
        ))
    }

    async fn delete_codex_token(&self, user: String) -> Result<Response<Vec<u8>>, ApiError> {
        let credentials = self.credentials.clone();
        let owner = user.clone();
        let deleted = local_http::blocking("sidecar", move || {
            let conn = credentials.open_db()?;
            let deleted = store::delete_codex_token(&conn, &owner).map_err(|e| e.to_string())?;
            credentials.reload_codex(&conn).map_err(|e| e.to_string())?;
            Ok(deleted)
        })
        .await?;
        if !deleted {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "no_codex_session",
                "There is no stored Codex token for you.",
            ));
        }
        tracing::info!(%user, "Codex token deleted");
        Ok(local_http::json(
            200,
            &json!({ "status": "deleted", "user": user }),
        ))
    }

    fn tokens_disabled(&self) -> ApiError {
        tracing::error!(
            "a Codex token was sent but no token key is configured: set {}",
            self.token_key_env
        );
        ApiError::new(
            ErrorKind::Internal,
            "codex_tokens_disabled",
            "This gateway cannot store Codex tokens yet; the operator must configure a token key.",
        )
    }
}

fn require_key(by_key: bool) -> Result<(), ApiError> {
    if by_key {
        Ok(())
    } else {
        Err(ApiError::unauthenticated(
            "missing_gateway_key",
            "This endpoint needs your gateway key: send X-Gateway-Key: exo_….",
        ))
    }
}

#[async_trait]
impl ServeHttp for SidecarApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.route(session).await {
            Ok(response) => response,
            Err(e) => local_http::error(&e),
        }
    }
}
