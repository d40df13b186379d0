//! Graceful shutdown for the public listener: connections the process has already accepted are
//! still served during the grace period, not dropped when it stops accepting.
//!
//! On SIGQUIT (upgrade) and SIGTERM (stop) Pingora stops the accept loop and, in the same
//! moment, calls the proxy's `cleanup`, which aborts every connection still waiting for a
//! request head. That includes a connection accepted a moment earlier whose request is still on
//! its way: the client sees its connection closed before any response, mid-upgrade, although
//! the new process was ready. `Draining` holds that cleanup back until the grace period is
//! over. Until then a waiting connection's request is read and answered as usual — with
//! `Connection: close`, since Pingora disables keep-alive once shutdown has started — and the
//! client's next request opens a connection that the new process accepts.
//!
//! This is not a way to keep serving forever: Pingora stops the runtime when the grace period
//! ends, which closes whatever is still open. An idle keep-alive connection whose client sends
//! at that very instant can still see it close; HTTP/1.1 has no way to warn an idle client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// A server application whose shutdown cleanup waits for `linger` first.
pub struct Draining<A> {
    inner: Arc<A>,
    linger: Duration,
}

impl<A> Draining<A> {
    /// `linger` is the server's grace period: the time accepted connections keep being served
    /// after the listener stops accepting.
    pub fn new(inner: A, linger: Duration) -> Draining<A> {
        Draining {
            inner: Arc::new(inner),
            linger,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Draining<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.linger).await;
        self.inner.cleanup().await;
    }
}
