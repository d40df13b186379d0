//! Requests whose body had to be read before routing (rules that look at `model`).
//!
//! Pingora forwards a body read in `request_filter` only from its retry buffer, which holds
//! 64 KiB; a larger body would never reach the node. For those, this module forwards the
//! request itself with Pingora's HTTP connector, running the same filters in the same order as
//! the proxy loop (peer choice with connect retries, header policy, body rewrite, response
//! filters, token accounting), so a 2 MiB prompt routes by its model like a small one.

use bytes::Bytes;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};
use pingora_proxy::{ProxyHttp, Session};

use super::{Gateway, RequestCtx};

/// Bodies up to this size are replayed by Pingora from its retry buffer.
pub const REPLAYED_BY_PINGORA: usize = 64 * 1024;

impl Gateway {
    /// Proxies a request whose whole body is in hand. Always answers the client (`Ok(true)`).
    pub(super) async fn forward_prebuffered(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: Bytes,
    ) -> Result<bool> {
        if let Err(e) = self.forward_once_connected(session, ctx, body).await {
            let failure = self.fail_to_proxy(session, &e, ctx).await;
            log::debug!("pre-read request failed with {}: {e}", failure.error_code);
        }
        Ok(true)
    }

    async fn forward_once_connected(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: Bytes,
    ) -> Result<()> {
        let up = |e: Box<Error>| e.into_up();
        let (mut upstream, peer) = loop {
            let (mut upstream, peer, reused) = self.connect(session, ctx).await?;
            match self.send_request(session, ctx, &mut upstream, &body).await {
                Ok(()) => break (upstream, peer),
                Err(e) => {
                    let e = up(e);
                    // A connection that broke before any answer: again (see the method).
                    if !self.retry_after_broken_connection(ctx, &e, reused, true) {
                        return Err(e);
                    }
                }
            }
        };
        let mut response = upstream
            .response_header()
            .cloned()
            .ok_or_else(|| Error::explain(pingora::ErrorType::InvalidHTTPHeader, "no response"))
            .map_err(up)?;
        self.upstream_response_filter(session, &mut response, ctx)
            .await?;
        self.response_filter(session, &mut response, ctx).await?;
        session
            .write_response_header(Box::new(response), false)
            .await?;
        loop {
            let mut chunk = upstream.read_response_body().await.map_err(up)?;
            let end = chunk.is_none() || upstream.response_done();
            self.response_body_filter(session, &mut chunk, end, ctx)?;
            session.write_response_body(chunk, end).await?;
            if end {
                break;
            }
        }
        if let HttpSession::H1(_) = upstream {
            self.connector
                .release_http_session(upstream, &*peer, None)
                .await;
        }
        Ok(())
    }

    /// A connection to a node picked for the request (connect failures move to another node).
    async fn connect(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(HttpSession, Box<HttpPeer>, bool)> {
        loop {
            let peer = self.upstream_peer(session, ctx).await?;
            match self.connector.get_http_session(&*peer).await {
                Ok((upstream, reused)) => return Ok((upstream, peer, reused)),
                Err(e) => {
                    let e = e.into_up();
                    if !self.connect_failed(ctx, &e) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends the head and the whole body, and reads the response head.
    async fn send_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        upstream: &mut HttpSession,
        body: &Bytes,
    ) -> Result<()> {
        let mut request = session.req_header().clone();
        self.upstream_request_filter(session, &mut request, ctx)
            .await?;
        let mut full_body = Some(body.clone());
        self.request_body_filter(session, &mut full_body, true, ctx)
            .await?;
        let full_body = full_body.unwrap_or_default();
        // The body is complete: send it with its length rather than chunked.
        request.remove_header(&http::header::TRANSFER_ENCODING);
        request.insert_header(http::header::CONTENT_LENGTH, full_body.len().to_string())?;
        upstream.write_request_header(Box::new(request)).await?;
        upstream.write_request_body(full_body, true).await?;
        upstream.finish_request_body().await?;
        upstream.read_response_header().await
    }
}
