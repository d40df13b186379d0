//! The `ProxyHttp` implementation: the life of one request through the gateway.
//!
//! Each filter is short and calls named steps that live in their own modules: routing
//! (`route`), header policy (`headers`), node selection (`crate::upstream`), and the single
//! error builder (`crate::api_error`). Nothing here blocks, locks across an await, or touches
//! SQLite: the request path reads one in-memory snapshot.

pub mod headers;
pub mod respond;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::api_error::ApiError;
use crate::state::{LiveSnapshot, Snapshot};
use route::Route;

/// The gateway's proxy logic, shared by every request.
pub struct Gateway {
    live: LiveSnapshot,
}

impl Gateway {
    pub fn new(live: LiveSnapshot) -> Gateway {
        Gateway { live }
    }
}

/// What the gateway knows about one request, filter to filter.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    request_id: String,
    user: String,
    node: Option<(Arc<str>, SocketAddr)>,
    failed_nodes: Vec<SocketAddr>,
    request_body_bytes: u64,
    /// The error the gateway decided on itself, used in `fail_to_proxy` and logs.
    rejection: Option<ApiError>,
}

impl RequestCtx {
    fn snapshot(&self) -> Result<&Arc<Snapshot>> {
        self.snapshot
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "snapshot not loaded"))
    }

    fn node_name(&self) -> &str {
        self.node.as_ref().map_or("-", |(name, _)| name)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            request_id: String::new(),
            user: String::new(),
            node: None,
            failed_nodes: Vec::new(),
            request_body_bytes: 0,
            rejection: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.live.load_full();
        ctx.request_id = headers::request_id_from(
            session
                .req_header()
                .headers
                .get(headers::REQUEST_ID)
                .map(|v| v.as_bytes()),
        );
        let max_body = snapshot.config.server.max_request_body;
        ctx.snapshot = Some(snapshot);

        match route::classify(session.req_header().uri.path()) {
            Route::Health => {
                respond::json(session, 200, respond::health_body(), &ctx.request_id, None).await?;
                return Ok(true);
            }
            Route::Unknown => {
                let path = session.req_header().uri.path().to_owned();
                return reject(session, ctx, ApiError::not_found(&path)).await;
            }
            Route::Proxied => {}
        }
        if declared_body_len(session.req_header()).is_some_and(|len| len > max_body) {
            // The body is never read: close the connection instead of parsing it as a request.
            session.set_keepalive(None);
            return reject(session, ctx, ApiError::request_too_large(max_body)).await;
        }
        ctx.user = claimed_user(session.req_header());
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot()?.clone();
        let pool = &snapshot.pool;
        match pool.pick(ctx.user.as_bytes(), &ctx.failed_nodes) {
            Some(picked) => {
                ctx.node = Some((picked.name, picked.addr));
                Ok(picked.peer)
            }
            None => {
                ctx.rejection = Some(ApiError::no_healthy_node(pool.name()));
                Err(Error::explain(
                    ErrorType::HTTPStatus(503),
                    "no healthy node to pick",
                ))
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some((_, addr)) = &ctx.node {
            ctx.failed_nodes.push(*addr);
        }
        let node_count = ctx.snapshot.as_ref().map_or(0, |s| s.pool.nodes().len());
        // Retry on another node, at most once per node; a request body is only replayed from
        // Pingora's retry buffer, which has not been touched before the connection exists.
        e.set_retry(ctx.failed_nodes.len() < node_count);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        for name in headers::STRIPPED_FROM_CLIENT {
            upstream.remove_header(name);
        }
        upstream.insert_header(headers::FORWARDED_USER, ctx.user.as_str())?;
        upstream.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(chunk) = body else {
            return Ok(());
        };
        ctx.request_body_bytes += chunk.len() as u64;
        let max_body = ctx.snapshot()?.config.server.max_request_body;
        if ctx.request_body_bytes > max_body {
            ctx.rejection = Some(ApiError::request_too_large(max_body));
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body over the configured cap",
            ));
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let error = match ctx.rejection.clone() {
            Some(rejection) => Some(rejection),
            None => classify_failure(e, ctx.node_name()),
        };
        let Some(error) = error else {
            // The client went away: there is nobody to answer.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if session.response_written().is_none() {
            if let Err(write_error) = respond::error(session, &error, &ctx.request_id).await {
                log::debug!("could not send error response: {write_error}");
            }
        }
        let status = error.status();
        ctx.rejection = Some(error);
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// A client hanging up mid-answer is routine (Ctrl-C, a closed tab), not an error worth a
    /// line at ERROR level; the request line in `logging` still records it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        client_went_away(error)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        tracing::info!(
            target: "exoclaw::request",
            request_id = %ctx.request_id,
            method = %req.method,
            path = %req.uri.path(),
            user = %ctx.user,
            node = %ctx.node_name(),
            status,
            latency_ms = ctx.started.elapsed().as_millis() as u64,
            error = ctx.rejection.as_ref().map(|r| r.code).unwrap_or(""),
            failure = %e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }
}

/// Answers the request with a gateway error and ends it.
async fn reject(session: &mut Session, ctx: &mut RequestCtx, error: ApiError) -> Result<bool> {
    respond::error(session, &error, &ctx.request_id).await?;
    ctx.rejection = Some(error);
    Ok(true)
}

/// `Content-Length`, when the client declared one.
fn declared_body_len(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The user a client claims with `X-User-ID`; the shared `anonymous` bucket otherwise.
fn claimed_user(req: &RequestHeader) -> String {
    match req.headers.get(headers::USER_ID) {
        Some(v) if headers::is_well_formed_id(v.as_bytes()) => {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        }
        _ => "anonymous".to_owned(),
    }
}

fn client_went_away(e: &Error) -> bool {
    use ErrorType::*;
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ReadError | WriteError | ConnectionClosed | ReadTimedout
        )
}

/// Maps a proxy failure to the error the client sees; `None` when the client itself is gone.
fn classify_failure(e: &Error, node: &str) -> Option<ApiError> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (ErrorSource::Upstream, ConnectTimedout) => {
            Some(ApiError::node_timeout(node, "accept the connection"))
        }
        (ErrorSource::Upstream, ReadTimedout) => Some(ApiError::node_timeout(node, "answer")),
        (ErrorSource::Upstream, WriteTimedout) => {
            Some(ApiError::node_timeout(node, "accept the request"))
        }
        (ErrorSource::Upstream, ConnectRefused | ConnectNoRoute | ConnectError | SocketError) => {
            Some(ApiError::node_refused(node))
        }
        (ErrorSource::Upstream, _) => Some(ApiError::node_failed(node)),
        _ if client_went_away(e) => None,
        (ErrorSource::Downstream, _) => Some(ApiError::new(
            crate::api_error::ErrorKind::InvalidRequest,
            "invalid_request",
            "The request could not be parsed as HTTP.",
        )),
        _ => Some(ApiError::internal()),
    }
}
