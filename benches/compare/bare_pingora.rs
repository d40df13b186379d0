//! The framework's own floor: a Pingora reverse proxy with no filters, for the comparison.
//!
//! It forwards every request to one upstream over pooled keep-alive connections and does
//! nothing else — no keys, no limits, no accounting, no ledger. Measured beside exoclaw
//! (`TARGETS=... pingora benches/compare/run`), it shows how much of exoclaw's cost per request
//! is Pingora's request machinery and how much is exoclaw's own work.
//!
//! Usage: `compare-bare-pingora --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT --threads N`.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;
use pingora_proxy::{ProxyHttp, Session};

/// The same allocator as the `exoclaw` binary, so the comparison is of the proxies alone.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Forward {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut listen = None;
    let mut upstream = None;
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--listen" => listen = value.parse::<SocketAddr>().ok(),
            "--upstream" => upstream = value.parse::<SocketAddr>().ok(),
            "--threads" => threads = value.parse().unwrap_or(1),
            _ => {}
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        eprintln!("usage: compare-bare-pingora --listen ADDR --upstream ADDR [--threads N]");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Forward { upstream });
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
