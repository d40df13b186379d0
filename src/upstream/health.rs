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

/// A node's check, built once and reused on every tick: building one creates a TLS
/// connector, which reads the whole system certificate store from disk.
struct PreparedCheck {
    /// What it was built from; a reload that changes any of it rebuilds the check.
    recipe: Recipe,
    check: Arc<HttpHealthCheck>,
    backend: Backend,
}

struct Recipe {
    addr: std::net::SocketAddr,
    tls_sni: Option<String>,
    path: String,
    timeout: Duration,
    /// The pool's CA (a reload that changes `tls_ca_file` loads a new one). Held, so that
    /// comparing by identity cannot mistake a new CA for a freed one at the same address.
    tls_ca: Option<Arc<CaType>>,
    /// The node's token, sent as `Authorization: Bearer …` like on every request.
    auth_token: Option<Arc<str>>,
}

impl PartialEq for Recipe {
    fn eq(&self, other: &Recipe) -> bool {
        let same_ca = match (&self.tls_ca, &other.tls_ca) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_ca
            && self.addr == other.addr
            && self.tls_sni == other.tls_sni
            && self.path == other.path
            && self.timeout == other.timeout
            && self.auth_token == other.auth_token
    }
}

impl Recipe {
    fn of(node: &NodeState, settings: &HealthCheck, tls_ca: Option<&Arc<CaType>>) -> Recipe {
        Recipe {
            addr: node.config.addr,
            tls_sni: node.config.tls_sni.clone(),
            path: settings.path.clone(),
            timeout: settings.timeout,
            tls_ca: tls_ca.cloned(),
            auth_token: node
                .config
                .auth_token
                .as_ref()
                .and_then(|t| t.value())
                .map(Arc::from),
        }
    }
}

impl PreparedCheck {
    fn build(recipe: Recipe) -> Result<PreparedCheck, String> {
        let host = recipe
            .tls_sni
            .clone()
            .unwrap_or_else(|| recipe.addr.ip().to_string());
        let mut check = HttpHealthCheck::new(&host, recipe.tls_sni.is_some());
        check.req.set_uri(
            recipe
                .path
                .parse()
                .map_err(|_| format!("bad health path {}", recipe.path))?,
        );
        check.peer_template.options.connection_timeout = Some(recipe.timeout);
        check.peer_template.options.read_timeout = Some(recipe.timeout);
        check.peer_template.options.total_connection_timeout = Some(recipe.timeout);
        check.peer_template.options.ca = recipe.tls_ca.clone();
        if let Some(token) = &recipe.auth_token {
            check
                .req
                .insert_header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .map_err(|_| "the node token cannot travel in a header".to_owned())?;
        }
        let backend = Backend {
            addr: recipe.addr.into(),
            weight: 1,
            ext: Default::default(),
        };
        Ok(PreparedCheck {
            recipe,
            check: Arc::new(check),
            backend,
        })
    }

    /// Checks the node once; `Err` carries the reason.
    async fn run(
        check: Arc<HttpHealthCheck>,
        backend: Backend,
        timeout: Duration,
    ) -> Result<(), String> {
        tokio::time::timeout(timeout * 2, check.check(&backend))
            .await
            .map_err(|_| "health check timed out".to_owned())?
            .map_err(|e| format!("health check failed: {}", e.etype().as_str()))
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_due: HashMap<(String, String), Instant> = HashMap::new();
        let mut prepared: HashMap<(String, String), PreparedCheck> = HashMap::new();
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
                let settings = &pool.config().health;
                if !settings.enabled {
                    continue;
                }
                for node in pool.nodes() {
                    let key = (pool.name().to_owned(), node.config.name.clone());
                    if next_due.get(&key).is_some_and(|due| *due > now) {
                        continue;
                    }
                    next_due.insert(key.clone(), now + settings.interval);
                    let recipe = Recipe::of(node, settings, pool.tls_ca());
                    if prepared.get(&key).is_none_or(|p| p.recipe != recipe) {
                        match PreparedCheck::build(recipe) {
                            Ok(check) => {
                                prepared.insert(key.clone(), check);
                            }
                            Err(reason) => {
                                node.record_failure(&reason, settings.failures);
                                continue;
                            }
                        }
                    }
                    let Some(check) = prepared.get(&key) else {
                        continue;
                    };
                    let (node, thresholds) = (Arc::clone(node), settings.clone());
                    let run = PreparedCheck::run(
                        check.check.clone(),
                        check.backend.clone(),
                        settings.timeout,
                    );
                    checks.push(async move {
                        match run.await {
                            Ok(()) => node.record_success(thresholds.successes),
                            Err(reason) => node.record_failure(&reason, thresholds.failures),
                        }
                    });
                }
            }
            // Nodes removed by a reload drop their checks.
            next_due.retain(|(pool, node), _| {
                snapshot
                    .pools
                    .iter()
                    .any(|p| p.name() == pool && p.nodes().iter().any(|n| n.config.name == *node))
            });
            prepared.retain(|key, _| next_due.contains_key(key));
            futures_util::future::join_all(checks).await;
        }
    }
}
