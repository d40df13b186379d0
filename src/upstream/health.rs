//! Active health checks: a background service that asks every node of every pool for its
//! health path (`GET /healthz` by default) on the pool's interval, and flips a node out after
//! `failures` consecutive failures and back after `successes` consecutive passes. Connect
//! failures of real requests count against a node too (see the proxy's `fail_to_connect`).
//!
//! It reads the live config snapshot on every tick, so nodes added by a reload are checked from
//! the next tick on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck as _, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::protocols::tls::CaType;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::NodeState;
use crate::config::HealthCheck;
use crate::state::LiveSnapshot;

const TICK: Duration = Duration::from_millis(100);

pub struct HealthChecker {
    live: LiveSnapshot,
}

impl HealthChecker {
    pub fn new(live: LiveSnapshot) -> HealthChecker {
        HealthChecker { live }
    }
}

/// Checks one node once; `Err` carries the reason.
pub async fn check_node(
    node: &NodeState,
    settings: &HealthCheck,
    tls_ca: Option<&Arc<CaType>>,
) -> Result<(), String> {
    let host = node
        .config
        .tls_sni
        .clone()
        .unwrap_or_else(|| node.config.addr.ip().to_string());
    let mut check = HttpHealthCheck::new(&host, node.config.tls_sni.is_some());
    check.req.set_uri(
        settings
            .path
            .parse()
            .map_err(|_| format!("bad health path {}", settings.path))?,
    );
    check.peer_template.options.connection_timeout = Some(settings.timeout);
    check.peer_template.options.read_timeout = Some(settings.timeout);
    check.peer_template.options.total_connection_timeout = Some(settings.timeout);
    check.peer_template.options.ca = tls_ca.cloned();
    let backend = Backend {
        addr: node.config.addr.into(),
        weight: node.config.weight,
        ext: Default::default(),
    };
    tokio::time::timeout(settings.timeout * 2, check.check(&backend))
        .await
        .map_err(|_| "health check timed out".to_owned())?
        .map_err(|e| format!("health check failed: {}", e.etype().as_str()))
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_due: HashMap<(String, String), Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.live.load_full();
            let now = Instant::now();
            let mut checks = Vec::new();
            for pool in snapshot.pools.iter() {
                let settings = pool.config().health.clone();
                let tls_ca = pool.tls_ca().cloned();
                if !settings.enabled {
                    continue;
                }
                for node in pool.nodes() {
                    let key = (pool.name().to_owned(), node.config.name.clone());
                    if next_due.get(&key).is_some_and(|due| *due > now) {
                        continue;
                    }
                    next_due.insert(key, now + settings.interval);
                    let (node, settings) = (Arc::clone(node), settings.clone());
                    let tls_ca = tls_ca.clone();
                    checks.push(async move {
                        match check_node(&node, &settings, tls_ca.as_ref()).await {
                            Ok(()) => node.record_success(settings.successes),
                            Err(reason) => node.record_failure(&reason, settings.failures),
                        }
                    });
                }
            }
            futures_util::future::join_all(checks).await;
        }
    }
}
