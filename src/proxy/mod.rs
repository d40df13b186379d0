//! The `ProxyHttp` implementation: the life of one request through the gateway.
//!
//! Each filter is short and calls named steps that live in their own modules: routing
//! (`route`), identity and credentials (`crate::auth`), limits (`crate::limits`), header policy
//! (`headers`), node selection (`crate::upstream`), and the single error builder
//! (`crate::api_error`). Nothing here blocks, locks across an await, or touches SQLite: the
//! request path reads in-memory snapshots.

pub mod accounting;
pub mod connection;
pub mod drain;
pub mod node_headers;
mod node_request;
pub mod path;
mod prebuffered;
pub mod respond;
mod retry;
pub mod route;
pub mod run_caller;
pub mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::api_error::{ApiError, ErrorKind};
use crate::auth::{self, Credentials, Identity, NodeCredential};
use crate::billing::{self, Billing};
use crate::clock::SharedClock;
use crate::config::RequestLog;
use crate::headers;
use crate::ledger::ip_hash::IpHasher;
use crate::ledger::record::{bounded_endpoint, RequestRecord};
use crate::ledger::writer::LedgerWriter;
use crate::limits::{AuthFailureGuard, RateDecision, RateLimiter};
use crate::metrics::Metrics;
use crate::state::{LiveSnapshot, Snapshot};
use crate::upstream::InflightGuard;
use accounting::Accounting;
use respond::ExtraHeaders;
use route::Route;

/// The gateway's proxy logic, shared by every request.
pub struct Gateway {
    pub live: LiveSnapshot,
    pub credentials: Arc<Credentials>,
    pub rate_limiter: Arc<RateLimiter>,
    pub auth_failures: Arc<AuthFailureGuard>,
    pub clock: SharedClock,
    /// Proves to the sidecar that a request came through this proxy.
    pub sidecar_secret: Arc<str>,
    pub ledger: Arc<LedgerWriter>,
    pub ip_hasher: Arc<IpHasher>,
    pub billing: Arc<Billing>,
    /// Connects to nodes for requests whose body was read before routing (see `prebuffered`).
    pub connector: pingora::connectors::http::Connector,
    pub metrics: Arc<Metrics>,
    /// Ledger rows of requests nobody is identified for (404s, refused keys), per address and
    /// minute: beyond `ANONYMOUS_ROWS_PER_MINUTE` they are counted, not written, so no
    /// anonymous client can fill the disk.
    pub anonymous_rows: Arc<AuthFailureGuard>,
}

/// Ledger rows one address may add per minute without being identified.
pub const ANONYMOUS_ROWS_PER_MINUTE: u32 = 60;

/// What the gateway knows about one request, filter to filter.
pub struct RequestCtx {
    started: Instant,
    /// Policy-clock time of arrival (Unix ms), for limits and the ledger.
    arrived_ms: u64,
    method: http::Method,
    /// The client's address, hashed for the ledger.
    ip_hash: Option<String>,
    /// Where this request's row goes; taken when the row is written, so a request that ends
    /// without `logging` (its task dropped at the end of a shutdown's grace period) still
    /// writes its row when the context is dropped.
    ledger: Option<Arc<LedgerWriter>>,
    /// The status sent to the client, once a response head has gone out.
    response_status: u16,
    client_ip: Option<IpAddr>,
    snapshot: Option<Arc<Snapshot>>,
    /// The request's path with its dot segments resolved: what is classified, routed, logged
    /// and sent to the node.
    path: String,
    /// The path the client sent differs from `path` (or came in absolute form): the node gets
    /// the normalised one.
    path_rewritten: bool,
    route: Route,
    request_id: String,
    identity: Option<Identity>,
    /// The tier the request runs under, and the pool its tier prefers.
    tier: String,
    tier_pool: String,
    /// Admission priority when nodes are full (the tier's).
    priority: u8,
    /// The request's `model`, when routing needed it (the body was read before routing).
    model: Option<String>,
    /// The pool the request was routed to.
    pool: Option<String>,
    /// Holds the chosen node's in-flight slot for the life of the request.
    inflight: Option<InflightGuard>,
    connect_attempts: usize,
    /// When a node was first chosen, and when its response head arrived.
    upstream_started: Option<Instant>,
    first_byte: Option<Instant>,
    rate: Option<RateDecision>,
    credential: Option<NodeCredential>,
    /// The OpenClaw session the gateway chose (`x-openclaw-session-key`).
    session_key: Option<String>,
    /// The body the node receives instead of the client's (`user` namespaced,
    /// `include_usage` added), sent again on a retry.
    node_body: Option<Bytes>,
    /// The last attempt failed on a reused connection: the next one opens a fresh connection
    /// and does not keep it.
    fresh_connection: bool,
    node: Option<(Arc<str>, SocketAddr)>,
    failed_nodes: Vec<SocketAddr>,
    request_body_bytes: u64,
    accounting: Accounting,
    /// The error the gateway decided on itself, used in `fail_to_proxy` and logs.
    rejection: Option<ApiError>,
    /// A run worker's node call (see `run_caller`): its run, session and pinned pool.
    run: Option<run_caller::RunCall>,
}

impl RequestCtx {
    fn snapshot(&self) -> Result<&Arc<Snapshot>> {
        self.snapshot
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "snapshot not loaded"))
    }

    /// The path as logs and the ledger show it: a kit link's token is a credential, stored
    /// only as a hash, so it never appears.
    fn shown_path(&self) -> &str {
        match self.route {
            Route::Onboard => "/onboard/…",
            _ => &self.path,
        }
    }

    fn node_name(&self) -> &str {
        self.node.as_ref().map_or("-", |(name, _)| name)
    }

    fn user(&self) -> &str {
        self.identity.as_ref().map_or("-", |i| i.user.as_str())
    }

    /// The ledger row for a finished request. Token counts come from the node's `usage` when it
    /// answered with one, an estimate from the bytes seen when it did not (a stream cut short, a
    /// client gone) and the endpoint produces tokens, and none otherwise.
    fn ledger_record(&mut self, status: u16) -> RequestRecord {
        let ctx = self;
        let (tokens, model) = if ctx.accounting.node_answered() {
            let (tokens, model) = ctx.accounting.finish(ctx.request_body_bytes);
            // Bytes become estimated tokens only where tokens exist: a 2xx answer of an
            // endpoint that produces them (not a model list, not a node's 404 page).
            let estimable = (200..300).contains(&status) && route::produces_tokens(&ctx.path);
            ((tokens.reported || estimable).then_some(tokens), model)
        } else {
            (None, None)
        };
        RequestRecord {
            request_id: ctx.request_id.clone(),
            user_id: ctx
                .identity
                .as_ref()
                .map_or_else(|| "-".to_owned(), |i| i.user.clone()),
            endpoint: bounded_endpoint(ctx.shown_path()),
            method: ctx.method.as_str().to_owned(),
            status,
            latency_ms: ctx.started.elapsed().as_millis() as u64,
            created_ms: ctx.arrived_ms,
            ip_hash: ctx.ip_hash.clone(),
            model,
            node: ctx.node.as_ref().map(|(name, _)| name.to_string()),
            prompt_tokens: tokens.map(|t| t.usage.prompt),
            completion_tokens: tokens.map(|t| t.usage.completion),
            total_tokens: tokens.map(|t| t.usage.total),
            tokens_est: tokens.map_or(0, |t| t.usage.total),
            streamed: ctx.accounting.streamed,
            tokens_reported: tokens.is_some_and(|t| t.reported),
            error_type: ctx
                .rejection
                .as_ref()
                .map(|r| r.kind.type_name().to_owned()),
            run_id: ctx.run.as_ref().map(|run| run.run_id.clone()),
        }
    }

    /// Headers every response of this request carries.
    fn response_headers(&self) -> ExtraHeaders {
        let mut headers = vec![(headers::REQUEST_ID, self.request_id.clone())];
        if let Some(rate) = &self.rate {
            headers.extend(headers::rate_limit_headers(rate));
        }
        headers
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            arrived_ms: 0,
            method: http::Method::GET,
            ip_hash: None,
            ledger: Some(self.ledger.clone()),
            response_status: 0,
            client_ip: None,
            snapshot: None,
            path: String::new(),
            path_rewritten: false,
            route: Route::Unknown,
            request_id: String::new(),
            identity: None,
            tier: String::new(),
            tier_pool: String::new(),
            priority: 0,
            model: None,
            pool: None,
            inflight: None,
            connect_attempts: 0,
            upstream_started: None,
            first_byte: None,
            rate: None,
            credential: None,
            session_key: None,
            node_body: None,
            fresh_connection: false,
            node: None,
            failed_nodes: Vec::new(),
            request_body_bytes: 0,
            accounting: Accounting::default(),
            rejection: None,
            run: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.live.load_full();
        ctx.arrived_ms = self.clock.now_ms();
        ctx.method = session.req_header().method.clone();
        if session.get_keepalive().is_some() {
            // Between two requests a connection may idle this long (unless shutdown has
            // already turned keep-alive off).
            let idle = snapshot.config.server.connections.keepalive_timeout;
            session.set_keepalive(Some(idle.as_secs().max(1)));
        }
        let ip = client_ip(session);
        ctx.client_ip = Some(ip);
        ctx.ip_hash = Some(self.ip_hasher.hash(ip));
        ctx.request_id = headers::request_id_from(
            session
                .req_header()
                .headers
                .get(headers::REQUEST_ID)
                .map(|v| v.as_bytes()),
        );
        ctx.snapshot = Some(snapshot.clone());
        let uri = &session.req_header().uri;
        match path::normalize(uri.path()) {
            Ok(normalized) => {
                ctx.path_rewritten = normalized != uri.path() || uri.scheme().is_some();
                ctx.path = normalized.into_owned();
            }
            Err(refused) => {
                ctx.path = uri.path().to_owned();
                let error = ApiError::invalid_request("invalid_path", refused.message());
                return reject(session, ctx, error).await;
            }
        }
        ctx.route = route::classify(&ctx.path);
        match ctx.route {
            Route::Health => {
                let headers = ctx.response_headers();
                respond::json(session, 200, respond::health_body(), &headers, None).await?;
                return Ok(true);
            }
            Route::Unknown => {
                let path = ctx.path.clone();
                return reject(session, ctx, ApiError::not_found(&path)).await;
            }
            Route::Node | Route::Sidecar | Route::Webhook | Route::Onboard | Route::Page => {}
        }
        if ctx.route == Route::Node
            && session
                .req_header()
                .headers
                .contains_key(http::header::UPGRADE)
        {
            // OpenClaw serves its WebSocket control protocol on the same port: a connection
            // upgraded through the gateway would escape every per-request limit and the ledger.
            session.set_keepalive(None);
            let error = ApiError::invalid_request(
                "upgrade_refused",
                "Connection upgrades (WebSocket) are not available through the gateway.",
            );
            return reject(session, ctx, error).await;
        }
        let config = &snapshot.config;
        let max_body = config.server.max_request_body;
        if declared_body_len(session.req_header()).is_some_and(|len| len > max_body) {
            // The body is never read: close the connection instead of parsing it as a request.
            session.set_keepalive(None);
            return reject(session, ctx, ApiError::request_too_large(max_body)).await;
        }

        if ctx.route == Route::Webhook {
            // The sender (Stripe) proves itself with its signature, checked by the sidecar.
            ctx.identity = Some(Identity::without_key("webhook"));
            return Ok(false);
        }
        let now = ctx.arrived_ms;
        if self.auth_failures.is_blocked(ip, now) {
            let retry = self.auth_failures.retry_after_secs(ip, now);
            return reject(session, ctx, ApiError::too_many_failed_logins(retry)).await;
        }
        if ctx.route == Route::Onboard {
            // A kit link is its own credential; an unknown one counts as a failed
            // authentication (in `response_filter`), so guessing runs into the guard above.
            ctx.identity = Some(Identity::without_key(crate::onboard::link::DOWNLOADER));
            return Ok(false);
        }
        if ctx.route == Route::Page {
            // A browser proves itself with its session cookie at the sidecar; a refused
            // sign-in (401) counts as a failed authentication, as a wrong key on /v1 does.
            ctx.identity = Some(Identity::without_key(crate::dashboard::BROWSER));
            return Ok(false);
        }
        let run_call = match ctx.route {
            Route::Node => run_caller::from_request(session.req_header(), &self.sidecar_secret),
            _ => None,
        };
        let authenticated = match run_call {
            Some(Ok((identity, run))) => {
                ctx.run = Some(run);
                Ok(identity)
            }
            Some(Err(e)) => Err(e),
            None => auth::authenticate(
                session.req_header(),
                &config.auth,
                &self.credentials.keys.load(),
            ),
        };
        let identity = match authenticated {
            Ok(identity) => identity,
            Err(e) => {
                if e.kind == ErrorKind::Authentication {
                    self.auth_failures.record_failure(ip, now);
                }
                return reject(session, ctx, e).await;
            }
        };
        if let Some(key) = &identity.key {
            key.touch(now);
        }

        let (tier_name, tier) = billing::resolve_tier(
            config,
            &self.billing.plans.load(),
            &identity.user,
            match &ctx.run {
                Some(run) => run.tier.as_deref(),
                None => identity.key.as_ref().and_then(|k| k.tier.as_deref()),
            },
            now,
        );
        ctx.tier = tier_name.to_owned();
        ctx.tier_pool = tier.pool.clone();
        ctx.priority = tier.priority;
        let user = identity.user.clone();
        // A run's node calls are paced by the run queue (workers, the tier's concurrent runs),
        // not by the per-minute limit meant for clients; they count against the month's quota.
        if ctx.run.is_none() {
            let rate = self
                .rate_limiter
                .check(&identity.user, tier.requests_per_minute, now);
            ctx.rate = Some(rate);
            if !rate.allowed {
                ctx.identity = Some(identity);
                let retry = rate.retry_after_ms.div_ceil(1000).max(1);
                return reject(session, ctx, ApiError::rate_limited(rate.limit, retry)).await;
            }
        }
        ctx.identity = Some(identity);
        if let (Route::Node, Some(limit)) = (ctx.route, tier.monthly_requests) {
            let quota = self.billing.quotas.check_and_count(&user, limit, now);
            if !quota.allowed {
                let error = ApiError::quota_exhausted(
                    tier_name,
                    limit,
                    &quota.month.label(),
                    &quota.month.next_start_label(),
                    config.stripe.upgrade_url.as_deref(),
                );
                return reject(session, ctx, error).await;
            }
        }

        if ctx.route == Route::Node {
            let identity = ctx.identity.as_ref().expect("set above");
            match auth::node_credential(
                session.req_header(),
                config.auth.mode,
                identity,
                &self.credentials.codex.load(),
            ) {
                Ok(credential) => ctx.credential = Some(credential),
                Err(e) => return reject(session, ctx, e).await,
            }
            return self.prepare_node_request(session, ctx, &snapshot).await;
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot()?.clone();
        if matches!(
            ctx.route,
            Route::Sidecar | Route::Webhook | Route::Onboard | Route::Page
        ) {
            let addr = snapshot.config.server.sidecar_listen;
            ctx.node = Some((Arc::from("sidecar"), addr));
            return Ok(Box::new(HttpPeer::new(addr, false, String::new())));
        }
        let pool_name = match &ctx.pool {
            Some(pool) => pool.clone(),
            None => snapshot
                .router
                .pool_for(&ctx.path, ctx.model.as_deref(), &ctx.tier_pool)
                .to_owned(),
        };
        let Some(pool) = snapshot.pools.get(&pool_name) else {
            ctx.rejection = Some(ApiError::no_healthy_node(&pool_name));
            return Err(Error::explain(ErrorType::HTTPStatus(503), "unknown pool"));
        };
        ctx.pool = Some(pool_name.clone());
        ctx.connect_attempts += 1;
        ctx.upstream_started.get_or_insert_with(Instant::now);
        let queue = pool.queue();
        let settings = &pool.config().queue;
        let ticket = queue.ticket();
        let deadline = Instant::now() + settings.timeout;
        let mut woken = false;
        loop {
            // While others wait for a slot, a newcomer queues behind them.
            if woken || queue.waiting() == 0 {
                if let Some(mut picked) = pool.pick(ctx.user().as_bytes(), &ctx.failed_nodes) {
                    let node = picked.guard.node();
                    ctx.node = Some((Arc::from(node.config.name.as_str()), node.config.addr));
                    ctx.inflight = Some(picked.guard);
                    if ctx.fresh_connection {
                        // A group of its own: no pooled connection matches it.
                        picked.peer.group_key = rand::random::<u64>() | 1;
                    }
                    return Ok(picked.peer);
                }
            }
            if !pool.has_live_node(&ctx.failed_nodes) {
                ctx.rejection = Some(ApiError::no_healthy_node(&pool_name));
                return Err(Error::explain(
                    ErrorType::HTTPStatus(503),
                    "no healthy node to pick",
                ));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let slice = remaining.min(std::time::Duration::from_millis(250));
            // A client that hangs up while waiting gives up its place: its request never
            // reaches a node. Its body, if any, was read before routing, so the connection is
            // idle and a read sees only the hang-up; a body still unread (not a POST) is left
            // alone, since reading would eat it.
            let downstream = session.as_downstream_mut();
            let watch_hang_up = downstream.is_body_done();
            let hung_up = async move {
                if watch_hang_up {
                    let _ = downstream.read_body_or_idle(true).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let waited = tokio::select! {
                waited = queue.wait(ctx.priority, ticket, settings.max_waiting, slice) => waited,
                () = hung_up => {
                    return Err(Error::explain(
                        ErrorType::ConnectionClosed,
                        "the client hung up while waiting for a node",
                    )
                    .into_down());
                }
            };
            if let Some(refused) = self.gave_up(ctx, &pool_name, waited, remaining, slice) {
                return Err(refused);
            }
            woken = true;
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = !session.as_ref().retry_buffer_truncated();
        let retry = self.retry_after_broken_connection(ctx, &e, client_reused, replayable);
        e.set_retry(retry);
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retry = self.connect_failed(ctx, &e);
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let identity = ctx
            .identity
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no identity"))?;
        if ctx.route == Route::Node {
            self.prepare_node_head(upstream, ctx)?;
        } else {
            for name in headers::STRIPPED_FROM_CLIENT {
                upstream.remove_header(name);
            }
            if identity.authorization_holds_gateway_key {
                upstream.remove_header(&http::header::AUTHORIZATION);
            }
            upstream.insert_header(headers::FORWARDED_USER, identity.user.as_str())?;
            upstream.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
            upstream.insert_header(headers::INTERNAL_SECRET, &*self.sidecar_secret)?;
            if identity.key.is_some() {
                upstream.insert_header(headers::AUTHENTICATED_BY, "key")?;
            }
            if !ctx.tier.is_empty() {
                upstream.insert_header(headers::TIER, ctx.tier.as_str())?;
            }
            if let Some(hash) = &ctx.ip_hash {
                upstream.insert_header(headers::CLIENT_ADDRESS, hash.as_str())?;
            }
        }
        if ctx.path_rewritten {
            let query = upstream
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let uri: http::Uri = format!("{}{query}", ctx.path)
                .parse()
                .map_err(|_| Error::explain(ErrorType::InternalError, "normalised path"))?;
            upstream.set_uri(uri);
        }
        if let Some(body) = &ctx.node_body {
            // The body was rewritten before routing (see `prepare_node_request`).
            upstream.remove_header(&http::header::TRANSFER_ENCODING);
            upstream.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body.as_ref() {
            ctx.request_body_bytes += chunk.len() as u64;
            let max_body = ctx.snapshot()?.config.server.max_request_body;
            if ctx.request_body_bytes > max_body {
                ctx.rejection = Some(ApiError::request_too_large(max_body));
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the configured cap",
                ));
            }
        }
        if let Some(replacement) = &ctx.node_body {
            // The client's bytes are dropped; the rewritten body goes out at the end (an empty
            // chunk tells Pingora "nothing yet" without ending the upstream body).
            *body = Some(if end_of_stream {
                replacement.clone()
            } else {
                Bytes::new()
            });
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.first_byte.get_or_insert_with(Instant::now);
        ctx.response_status = response.status.as_u16();
        let failed_credential = matches!(
            (ctx.route, ctx.response_status),
            (Route::Onboard, 404) | (Route::Page, 401)
        );
        if let (true, Some(ip)) = (failed_credential, ctx.client_ip) {
            self.auth_failures.record_failure(ip, ctx.arrived_ms);
        }
        if ctx.route == Route::Node {
            let content_type = response
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ctx.accounting.response_started(content_type) {
                response.remove_header(&http::header::CONTENT_LENGTH);
            }
        }
        for (name, value) in ctx.response_headers() {
            response.insert_header(name, value)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        ctx.accounting.response_chunk(body, end_of_stream);
        Ok(None)
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
            // The connection is not reused after a failure: say so, so that a keep-alive
            // client opens a new one instead of writing its next request into a closed one.
            session.set_keepalive(None);
            let headers = ctx.response_headers();
            if let Err(write_error) = respond::error(session, &error, &headers).await {
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
        if let Some(ledger) = ctx.ledger.take().filter(|_| ctx.route.is_ledgered()) {
            let record = ctx.ledger_record(status);
            self.observe(ctx, status, &record);
            if self.anonymous_row_allowed(ctx) {
                ledger.record(record);
            } else {
                self.metrics.ledger_rows_suppressed.inc();
            }
        }
        let level = ctx
            .snapshot
            .as_ref()
            .map_or(RequestLog::Info, |s| s.config.server.request_log);
        let req = session.req_header();
        // One line per request; never headers or bodies, so no key or token can appear.
        macro_rules! request_line {
            ($level:ident) => {
                tracing::$level!(
                    target: "exoclaw::request",
                    request_id = %ctx.request_id,
                    method = %req.method,
                    path = %ctx.shown_path(),
                    user = %ctx.user(),
                    node = %ctx.node_name(),
                    status,
                    latency_ms = ctx.started.elapsed().as_millis() as u64,
                    error = ctx.rejection.as_ref().map(|r| r.code).unwrap_or(""),
                    failure = %e.map(|e| e.etype().as_str()).unwrap_or(""),
                )
            };
        }
        match level {
            RequestLog::Off => {}
            RequestLog::Debug => request_line!(debug),
            RequestLog::Info => request_line!(info),
            RequestLog::Warn => request_line!(warn),
        }
    }
}

impl Gateway {
    /// An anonymous request's row is written while its address stays within
    /// `ANONYMOUS_ROWS_PER_MINUTE`; identified requests are bounded by their rate limits.
    fn anonymous_row_allowed(&self, ctx: &RequestCtx) -> bool {
        let (Some(ip), None) = (ctx.client_ip, &ctx.identity) else {
            return true;
        };
        if self.anonymous_rows.is_blocked(ip, ctx.arrived_ms) {
            return false;
        }
        self.anonymous_rows.record_failure(ip, ctx.arrived_ms);
        true
    }

    /// Moves the request's metrics: counts, durations, tokens, rejections.
    fn observe(&self, ctx: &RequestCtx, status: u16, record: &RequestRecord) {
        let m = &self.metrics;
        let route = match ctx.route {
            Route::Health => "health",
            Route::Node => "v1",
            Route::Sidecar => "api",
            Route::Webhook => "webhook",
            Route::Onboard => "onboard",
            Route::Page => "page",
            Route::Unknown => "unknown",
        };
        let pool = ctx.pool.as_deref().unwrap_or("-");
        m.requests
            .with_label_values(&[route, pool, &status.to_string()])
            .inc();
        let total = ctx.started.elapsed();
        m.request_duration
            .with_label_values(&[route])
            .observe(total.as_secs_f64());
        if let Some(upstream_started) = ctx.upstream_started {
            let upstream = upstream_started.elapsed();
            m.upstream_duration
                .with_label_values(&[pool])
                .observe(upstream.as_secs_f64());
            m.overhead
                .observe(total.saturating_sub(upstream).as_secs_f64());
        }
        if let (true, Some(first_byte)) = (ctx.accounting.streamed, ctx.first_byte) {
            m.stream_first_byte
                .observe(first_byte.duration_since(ctx.started).as_secs_f64());
        }
        let source = if record.tokens_reported {
            "reported"
        } else {
            "estimated"
        };
        for (kind, count) in [
            ("prompt", record.prompt_tokens),
            ("completion", record.completion_tokens),
        ] {
            if let Some(count) = count.filter(|c| *c > 0) {
                m.tokens.with_label_values(&[kind, source]).inc_by(count);
            }
        }
        if let Some(rejection) = &ctx.rejection {
            m.rejections.with_label_values(&[rejection.code]).inc();
        }
    }
}

impl Drop for RequestCtx {
    /// A request whose task ended without `logging` — cut at the end of a shutdown's grace
    /// period — still leaves its row, with the tokens estimated from what passed.
    fn drop(&mut self) {
        if let Some(ledger) = self.ledger.take().filter(|_| self.route.is_ledgered()) {
            let status = self.response_status;
            let mut record = self.ledger_record(status);
            record
                .error_type
                .get_or_insert_with(|| "shutdown".to_owned());
            ledger.record(record);
        }
    }
}

/// Answers the request with a gateway error and ends it.
async fn reject(session: &mut Session, ctx: &mut RequestCtx, error: ApiError) -> Result<bool> {
    let headers = ctx.response_headers();
    respond::error(session, &error, &headers).await?;
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

/// The client's IP address (the TCP peer; unspecified for a non-IP transport).
fn client_ip(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
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
        (ErrorSource::Downstream, _) => Some(ApiError::invalid_request(
            "invalid_request",
            "The request could not be parsed as HTTP.",
        )),
        _ => Some(ApiError::internal()),
    }
}
