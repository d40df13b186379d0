//! Serves an axum router — the sidecar's, and the admin listener's — on a Pingora listening
//! service.
//!
//! The listener stays Pingora's, so a zero-downtime upgrade hands the socket to the new process
//! with the proxy's. Each accepted connection is served by hyper's HTTP/1 server with the router
//! as its service: streamed responses (a run's SSE events) flow chunk by chunk, and a graceful
//! stop lets the request in progress finish and closes the connection after it. Each request
//! carries the peer's address as axum's `ConnectInfo<SocketAddr>` (the admin listener's sign-in
//! counts failures per address).
//!
//! Not for: routes or handlers (`sidecar::router`, `admin::router` and their modules).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tower::ServiceExt;

/// An axum router as a Pingora app.
pub struct AxumApp {
    router: Router,
}

impl AxumApp {
    pub fn new(router: Router) -> AxumApp {
        AxumApp { router }
    }
}

#[async_trait]
impl ServerApp for AxumApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer: Option<SocketAddr> = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).copied());
        let service = TowerToHyperService::new(self.router.clone().map_request(
            move |mut request: http::Request<hyper::body::Incoming>| {
                if let Some(peer) = peer {
                    request.extensions_mut().insert(ConnectInfo(peer));
                }
                request
            },
        ));
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let mut shutdown = shutdown.clone();
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = shutdown.changed() => {
                // Finish the request in progress, then close instead of keeping it alive.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!("sidecar connection ended: {e}");
        }
        None
    }
}
