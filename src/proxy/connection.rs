//! What one client connection may hold of the public listener: how long it may sit idle, how
//! long and how large its request head may be, and how many connections one address may open.
//!
//! Pingora reads a request head with a 60-second timeout per read and up to 1 MiB: a client that
//! sends a byte a second, or 300 connections each holding most of a megabyte of unfinished
//! head, would hold the gateway's sockets and memory for free. So every accepted connection is
//! wrapped in a `GuardedStream` that watches the bytes of each request head as they pass:
//!
//! - a connection that sends nothing is closed after `keepalive_timeout` (between two requests
//!   Pingora applies the same timeout: the proxy sets it on every session);
//! - a head must be complete `request_head_timeout` after its first byte, else 408;
//! - a head may hold `max_request_head` bytes, else 431;
//!
//! and `ClientConnections` counts open connections per client address: one over
//! `max_connections_per_client` is answered 429 and closed.
//!
//! The end of a head is found the way HTTP/1 parsers find it: an empty line (`\n\n`, with or
//! without `\r`). Once the head is complete the body and the response pass untouched; the next
//! head starts with the first byte read after the final response began. A 1xx interim
//! response (`100 Continue`) does not end the request.
//!
//! Not for: limits on a request's body or its answer (`server.max_request_body`, the pools'
//! timeouts), nor HTTP/2 (the listener speaks HTTP/1.1).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use crate::api_error::ApiError;
use crate::config::ConnectionLimits;
use crate::state::LiveSnapshot;

/// A server application whose connections are guarded by the live config's limits.
pub struct Guarded<A> {
    inner: Arc<A>,
    live: LiveSnapshot,
    clients: Arc<ClientConnections>,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, live: LiveSnapshot) -> Guarded<A> {
        Guarded {
            inner: Arc::new(inner),
            live,
            clients: Arc::default(),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.live.load().config.server.connections;
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let slot = match client {
            Some(ip) => match self.clients.open(ip, limits.max_per_client) {
                Some(slot) => Some(slot),
                None => {
                    refuse(
                        &mut stream,
                        &ApiError::too_many_connections(limits.max_per_client),
                    )
                    .await;
                    return None;
                }
            },
            None => None,
        };
        let guarded: Stream = Box::new(GuardedStream::new(stream, limits, slot));
        self.inner.process_new(guarded, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
pub struct ClientConnections {
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl ClientConnections {
    /// A slot for one more connection from `ip`, unless it already holds `max`.
    pub fn open(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ClientSlot> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }

    pub fn count(&self, ip: IpAddr) -> u32 {
        self.open
            .lock()
            .map_or(0, |open| open.get(&ip).copied().unwrap_or(0))
    }
}

/// One open connection of a client; gives its place back when the connection ends.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Arc<ClientConnections>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.clients.open.lock() {
            if let Some(count) = open.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}

/// Where a connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing read yet: closed after the keep-alive timeout.
    Fresh,
    /// Reading a request head: its deadline and size cap apply.
    Head {
        bytes: u64,
        /// The current line is empty so far (only `\r` seen since the last `\n`).
        at_line_start: bool,
    },
    /// The head is complete: the body and the answer pass untouched.
    Request,
    /// The final response began: the next byte read starts a new head.
    Answered,
}

/// A client connection that enforces `ConnectionLimits` on its request heads.
pub struct GuardedStream {
    inner: Stream,
    limits: ConnectionLimits,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    /// An error response being written before the connection is closed.
    refusal: Option<(Vec<u8>, usize)>,
    _slot: Option<ClientSlot>,
}

impl GuardedStream {
    pub fn new(inner: Stream, limits: ConnectionLimits, slot: Option<ClientSlot>) -> Self {
        GuardedStream {
            inner,
            limits,
            phase: Phase::Fresh,
            timer: Box::pin(tokio::time::sleep(limits.keepalive_timeout)),
            refusal: None,
            _slot: slot,
        }
    }

    /// Follows the head through newly read bytes; returns the refusal when a limit is crossed.
    fn observe(&mut self, read: &[u8]) -> Option<ApiError> {
        if self.phase == Phase::Request {
            // Body bytes: nothing to follow.
            return None;
        }
        if matches!(self.phase, Phase::Fresh | Phase::Answered) {
            self.phase = Phase::Head {
                bytes: 0,
                at_line_start: false,
            };
            let deadline =
                tokio::time::Instant::from_std(Instant::now() + self.limits.request_head_timeout);
            self.timer.as_mut().reset(deadline);
        }
        let Phase::Head {
            mut bytes,
            mut at_line_start,
        } = self.phase
        else {
            return None;
        };
        for &byte in read {
            bytes += 1;
            match byte {
                b'\n' if at_line_start && bytes > 2 => {
                    self.phase = Phase::Request;
                    return None;
                }
                b'\n' => at_line_start = true,
                b'\r' => {}
                _ => at_line_start = false,
            }
            if bytes > self.limits.max_request_head {
                return Some(ApiError::request_head_too_large(
                    self.limits.max_request_head,
                ));
            }
        }
        self.phase = Phase::Head {
            bytes,
            at_line_start,
        };
        None
    }

    /// Writes the refusal, then reports the end of the stream to the reader.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((response, written)) = self.refusal.as_mut() {
            if *written == response.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &response[*written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Ok(()))
    }

    fn refuse(&mut self, error: &ApiError, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.refusal = Some((error_response(error), 0));
        self.poll_refusal(cx)
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() == before {
                    return Poll::Ready(Ok(()));
                }
                match this.observe(&buf.filled()[before..]) {
                    None => Poll::Ready(Ok(())),
                    Some(error) => {
                        // The client gets the error, the parser never sees the oversized head.
                        buf.set_filled(before);
                        this.refuse(&error, cx)
                    }
                }
            }
            Poll::Pending => match this.phase {
                Phase::Request | Phase::Answered => Poll::Pending,
                Phase::Fresh | Phase::Head { .. } => {
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.phase == Phase::Fresh {
                        // Nothing was ever sent: close quietly, as an idle keep-alive closes.
                        return Poll::Ready(Ok(()));
                    }
                    this.refuse(
                        &ApiError::request_head_timeout(this.limits.request_head_timeout),
                        cx,
                    )
                }
            },
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.phase == Phase::Request && is_final_response_head(data) {
            this.phase = Phase::Answered;
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.phase == Phase::Request && bufs.first().is_some_and(|b| is_final_response_head(b)) {
            this.phase = Phase::Answered;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// `HTTP/1.x NNN` with a status of 200 or more: the start of the answer to the request.
fn is_final_response_head(data: &[u8]) -> bool {
    data.len() > 9 && data.starts_with(b"HTTP/1.") && data[9] != b'1'
}

/// A whole HTTP/1.1 error response that closes the connection.
fn error_response(error: &ApiError) -> Vec<u8> {
    let body = error.body();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n",
        error.status(),
        http::StatusCode::from_u16(error.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or(""),
        body.len()
    );
    if let Some(secs) = error.retry_after_secs {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(&body);
    response
}

async fn refuse(stream: &mut Stream, error: &ApiError) {
    let response = error_response(error);
    let write = async {
        stream.write_all(&response).await?;
        stream.flush().await
    };
    // A client that does not even read its refusal gets no more of our time.
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {}

#[cfg(test)]
mod tests {
    use super::*;

    async fn guarded(max_head: u64) -> GuardedStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        drop(client);
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(
            accepted.unwrap().0,
        ));
        let limits = ConnectionLimits {
            keepalive_timeout: Duration::from_secs(30),
            request_head_timeout: Duration::from_secs(15),
            max_request_head: max_head,
            max_per_client: 8,
        };
        GuardedStream::new(stream, limits, None)
    }

    #[tokio::test]
    async fn the_end_of_a_head_is_found_across_reads_and_line_endings() {
        for pieces in [
            &["GET / HTTP/1.1\r\nHost: x\r\n", "\r\nbody"][..],
            &["GET / HTTP/1.1\r", "\nHost: x\r\n\r", "\n"],
            &["GET / HTTP/1.1\nHost: x\n\n"],
        ] {
            let mut stream = guarded(1024).await;
            for piece in pieces {
                assert!(stream.observe(piece.as_bytes()).is_none());
            }
            assert_eq!(stream.phase, Phase::Request, "{pieces:?}");
        }
    }

    #[tokio::test]
    async fn a_head_over_the_cap_is_refused_but_a_body_is_not_counted() {
        let mut stream = guarded(1024).await;
        let long = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(1100));
        let refusal = stream.observe(long.as_bytes()).expect("over the cap");
        assert_eq!(refusal.status(), 431);

        let mut stream = guarded(1024).await;
        assert!(stream.observe(b"POST / HTTP/1.1\r\n\r\n").is_none());
        assert!(stream.observe(&[b'x'; 4096]).is_none(), "body bytes pass");
        // A 1xx interim answer does not end the request; the final one does.
        assert!(!is_final_response_head(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(is_final_response_head(b"HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn connections_per_client_are_counted_and_given_back() {
        let clients = Arc::new(ClientConnections::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = clients.open(ip, 2).unwrap();
        let _second = clients.open(ip, 2).unwrap();
        assert!(clients.open(ip, 2).is_none());
        assert!(clients.open("192.0.2.2".parse().unwrap(), 2).is_some());
        drop(first);
        assert_eq!(clients.count(ip), 1);
        assert!(clients.open(ip, 2).is_some());
    }
}
