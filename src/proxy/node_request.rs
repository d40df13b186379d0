//! What a `/v1/*` request brings to its node, decided before a node is chosen: the pool (routing
//! may look at `model`), the OpenClaw session, the body (its `user` namespaced, `include_usage`
//! added to a streaming chat completion), and the request head the node receives.
//!
//! Not for: picking the node (`upstream_peer`) or what happens when it fails (`retry`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::Result;
use pingora_proxy::Session;

use super::route::CHAT_COMPLETIONS;
use super::session::{self, UserField};
use super::{headers, node_headers, prebuffered, reject, Gateway, RequestCtx};
use crate::auth;
use crate::config::SessionMode;
use crate::local_http;
use crate::state::Snapshot;
use crate::upstream::routing;

impl Gateway {
    /// Decides what a `/v1/*` request brings to its node, before a node is chosen: the pool
    /// (routing may look at `model`), the session, and the body. A POST body is read here, so
    /// its `user` field can be namespaced (or removed) and a streaming chat completion can ask
    /// for usage; the rewritten body replaces the client's on its way to the node.
    pub(super) async fn prepare_node_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> Result<bool> {
        let body = if session.req_header().method == http::Method::POST {
            session.enable_retry_buffering();
            let expects_continue = session
                .req_header()
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if expects_continue {
                // The client (curl, for a large body) waits for this before sending the body
                // the gateway is about to read; the node never sees the `Expect`.
                let _ = session.as_downstream_mut().write_continue_response().await;
            }
            let max_body = snapshot.config.server.max_request_body;
            let cap = usize::try_from(max_body).unwrap_or(usize::MAX);
            match local_http::read_body(session.as_downstream_mut(), cap).await {
                Ok(body) => Some(body),
                Err(e) => {
                    // The rest of the body is never read: close rather than parse it.
                    session.set_keepalive(None);
                    return reject(session, ctx, e).await;
                }
            }
        } else {
            None
        };
        if let Some(body) = body.as_ref().filter(|_| snapshot.router.needs_model()) {
            ctx.model = routing::model_of(body);
        }
        let pool = match ctx.run.as_ref().and_then(|run| run.pool.clone()) {
            // An operator pinned the run's tenant (say, to its dedicated node).
            Some(pinned) => pinned,
            None => snapshot
                .router
                .pool_for(&ctx.path, ctx.model.as_deref(), &ctx.tier_pool)
                .to_owned(),
        };
        let mode = match snapshot.pools.get(&pool) {
            // Strangers without a name never share one session.
            _ if ctx.user() == auth::ANONYMOUS => SessionMode::PerRequest,
            Some(pool) => pool.config().session,
            None => SessionMode::PerUser,
        };
        ctx.pool = Some(pool);

        let user_field = body
            .as_deref()
            .map_or(UserField::Absent, session::user_field);
        let sub_session = match mode {
            // A run's session derives from its tenant and run, named by the worker.
            SessionMode::PerUser if ctx.run.is_some() => {
                ctx.run.as_ref().map(|r| r.session.clone())
            }
            SessionMode::PerUser => {
                let header = session.req_header().headers.get(headers::SESSION_ID);
                match session::requested_sub_session(header.map(|v| v.as_bytes()), &user_field) {
                    Ok(sub) => sub,
                    Err(e) => return reject(session, ctx, e).await,
                }
            }
            SessionMode::PerRequest => None,
        };
        let choice = session::choose(
            mode,
            ctx.user(),
            sub_session.as_deref(),
            user_field != UserField::Absent,
        );
        ctx.session_key = choice.key;

        let Some(body) = body else {
            return Ok(false);
        };
        let mut node_body = session::rewrite_user(&body, &choice.body_user);
        if ctx.path == CHAT_COMPLETIONS {
            let current = node_body.as_ref().unwrap_or(&body);
            if let Some(with_usage) = ctx.accounting.prepare_request_body(current) {
                node_body = Some(with_usage);
            }
        }
        ctx.node_body = node_body;
        if body.len() > prebuffered::REPLAYED_BY_PINGORA {
            // Pingora replays a pre-read body only up to its retry buffer (64 KiB).
            return self.forward_prebuffered(session, ctx, body).await;
        }
        Ok(false)
    }

    /// The node's request head: cleaned of what a client must not send, with the gateway's
    /// credentials, identity, session and forwarding headers (see `node_headers`).
    pub(super) fn prepare_node_head(
        &self,
        upstream: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        let snapshot = ctx.snapshot()?;
        let pool = ctx
            .pool
            .as_deref()
            .and_then(|name| snapshot.pools.get(name))
            .map(|p| p.config());
        let node_token = ctx
            .inflight
            .as_ref()
            .and_then(|guard| guard.node().config.auth_token.as_ref())
            .and_then(|token| token.value());
        node_headers::prepare(
            upstream,
            &node_headers::NodeHead {
                user: ctx.user(),
                request_id: &ctx.request_id,
                client_ip: ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                credential: ctx.credential.as_ref(),
                node_token,
                byok_header: pool.and_then(|p| p.byok_header.as_deref()),
                allowed_openclaw: pool.map_or(&[][..], |p| &p.allow_openclaw_headers),
                session_key: ctx.session_key.as_deref(),
            },
        )?;
        if ctx.fresh_connection {
            // The retry's connection is not kept: it was opened outside the pool's reuse.
            upstream.insert_header(http::header::CONNECTION, "close")?;
        }
        Ok(())
    }
}
