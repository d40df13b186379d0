//! Builds the one Pingora `Server` that runs ExoClaw's services from a validated config.
//!
//! `main.rs` parses the command line; this module turns a `Config` into listening services.
//! Pingora owns the tokio runtimes, so anything async at start-up belongs in a background
//! service added to the returned server, never in a runtime wrapped around `run_forever`.

use std::net::{SocketAddr, TcpListener};

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora_proxy::http_proxy_service;

use crate::config::Config;
use crate::ledger;
use crate::proxy::Gateway;
use crate::state::{self, LiveSnapshot};

/// How the process was started, as far as Pingora cares.
#[derive(Debug, Default, Clone, Copy)]
pub struct Launch {
    /// Take the listening sockets over from a running old process (graceful upgrade).
    pub upgrade: bool,
}

/// Builds the server with the proxy service on `server.listen`, after bringing the database
/// schema up to date. Fails with a readable message
/// when the listen address is taken (Pingora itself would panic later, deep in start-up).
pub fn build(config: &Config, launch: Launch) -> Result<(Server, LiveSnapshot), String> {
    if !launch.upgrade {
        ensure_can_listen(config.server.listen)?;
    }
    ledger::open(&config.database)?;
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let live = state::live(config.clone());
    let mut proxy = http_proxy_service(&server.configuration, Gateway::new(live.clone()));
    proxy.add_tcp(&config.server.listen.to_string());
    server.add_service(proxy);
    Ok((server, live))
}

fn ensure_can_listen(addr: SocketAddr) -> Result<(), String> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}
