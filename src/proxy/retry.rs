//! When a request is tried again on a node: a refused connection (another node), a connection
//! that broke before any answer (a fresh connection, then another node), and the end of a wait
//! for a free slot. Every failure counts against its node.
//!
//! Not for: choosing the node (`upstream_peer`) or the error the client finally sees
//! (`fail_to_proxy`).

use pingora::{Error, ErrorType};

use super::route::Route;
use super::{Gateway, RequestCtx};
use crate::api_error::ApiError;
use crate::upstream::admission::Refused;

impl Gateway {
    /// A request failed on a connection to a node, before any byte of an answer. It is sent
    /// again when the body can be replayed and the connection broke rather than timed out:
    ///
    /// - on a reused keep-alive connection (the node died, or closed it as idle, between two
    ///   requests): once more to the same node, on a fresh connection;
    /// - on a fresh connection (the node is going away: its listener still accepted, then it
    ///   died): on another node, like a refused connection, while attempts and live nodes
    ///   remain.
    ///
    /// Each failure counts against the node. A node that had read the request and died can
    /// not have answered it, so sending it elsewhere loses nothing; a node that breaks the
    /// connection while alive and working would see the request twice, which is the price of
    /// losing no request to a dying node (and a rare one: an answer's first byte ends retries).
    pub(super) fn retry_after_broken_connection(
        &self,
        ctx: &mut RequestCtx,
        e: &Error,
        reused: bool,
        replayable: bool,
    ) -> bool {
        use ErrorType::*;
        let broken = matches!(
            e.etype(),
            ConnectionClosed | ReadError | WriteError | ConnectError | InvalidHTTPHeader
        );
        if !(broken && replayable && ctx.route == Route::Node && ctx.first_byte.is_none()) {
            return false;
        }
        let retry = if reused && !ctx.fresh_connection {
            release_failed_node(ctx, &format!("reused connection: {}", e.etype().as_str()));
            ctx.fresh_connection = true;
            true
        } else {
            self.connect_failed(ctx, e)
        };
        if retry {
            // The body goes out again and is counted again.
            ctx.request_body_bytes = 0;
        }
        retry
    }

    /// The end of a wait for a slot: `Some(error)` when the request gives up (the queue is
    /// full, or its timeout is over), `None` when it should look for a node again.
    pub(super) fn gave_up(
        &self,
        ctx: &mut RequestCtx,
        pool_name: &str,
        waited: Result<(), Refused>,
        remaining: std::time::Duration,
        slice: std::time::Duration,
    ) -> Option<Box<Error>> {
        let gave_up = match waited {
            Ok(()) => false,
            Err(Refused::QueueFull) => true,
            Err(Refused::TimedOut) => remaining <= slice,
        };
        if !gave_up {
            return None;
        }
        let settings = &ctx.snapshot.as_ref()?.pools.get(pool_name)?.config().queue;
        let retry_after = settings.timeout.as_secs().clamp(1, 30);
        ctx.rejection = Some(ApiError::nodes_busy(pool_name, retry_after));
        Some(Error::explain(
            ErrorType::HTTPStatus(503),
            "every node is at capacity",
        ))
    }

    /// Counts a connect failure against the node and decides whether to try another node: only
    /// while attempts remain and the pool still has a live node this request has not tried.
    /// (The body has not been sent yet, so a retry replays nothing partial.)
    pub(super) fn connect_failed(&self, ctx: &mut RequestCtx, e: &Error) -> bool {
        release_failed_node(ctx, &format!("connect: {}", e.etype().as_str()));
        if let Some((_, addr)) = &ctx.node {
            ctx.failed_nodes.push(*addr);
        }
        let pool = ctx
            .snapshot
            .as_ref()
            .zip(ctx.pool.as_deref())
            .and_then(|(s, name)| s.pools.get(name));
        match (ctx.route, pool) {
            (Route::Node, Some(pool)) => {
                ctx.connect_attempts < pool.config().max_connect_attempts
                    && pool.has_live_node(&ctx.failed_nodes)
            }
            _ => false,
        }
    }
}

/// Counts a failure against the request's node (its pool's threshold ejects it) and gives up
/// the request's slot on it.
fn release_failed_node(ctx: &mut RequestCtx, reason: &str) {
    if let Some(guard) = ctx.inflight.take() {
        let node = guard.node();
        let threshold = ctx
            .snapshot
            .as_ref()
            .and_then(|s| s.pools.get(&node.pool))
            .map_or(1, |p| p.config().health.failures);
        node.record_failure(reason, threshold);
    }
}
