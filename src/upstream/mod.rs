//! Upstream OpenClaw nodes: pools, the node that serves a request, and each node's health.
//!
//! A `NodePool` spreads requests with its strategy — `consistent_hash` on the user id (a
//! trainee's session stays on one node, and only a departed node's users move),
//! weighted `round_robin`, or `least_inflight` — built on pingora-load-balancing. Selection skips
//! unhealthy nodes and nodes this request already failed to connect to, so a connect failure is
//! retried on another node. `NodeState` carries the live facts per node (health, in-flight
//! count, errors, ejections), read by `/admin/nodes`; `health` keeps them current. `routing`
//! decides which pool a request goes to.

pub mod admission;
pub mod health;
pub mod routing;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::selection::{Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};

use crate::config::{Node, Pool, Strategy};
use admission::AdmissionQueue;

/// Live facts about one node.
#[derive(Debug)]
pub struct NodeState {
    pub config: Node,
    pub pool: String,
    /// The pool's admission queue, woken when this node frees a slot.
    queue: Arc<AdmissionQueue>,
    inflight: AtomicU32,
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    errors: AtomicU64,
    ejections: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl NodeState {
    fn new(pool: &str, config: Node, queue: Arc<AdmissionQueue>) -> NodeState {
        NodeState {
            config,
            pool: pool.to_owned(),
            queue,
            inflight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            consecutive_successes: AtomicU32::new(0),
            errors: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    fn has_slot(&self) -> bool {
        self.config
            .max_inflight
            .is_none_or(|max| self.inflight() < max)
    }

    /// A failed health check or connection. After `threshold` in a row the node is ejected.
    pub fn record_failure(&self, reason: &str, threshold: u32) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.consecutive_successes.store(0, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_owned());
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= threshold && self.healthy.swap(false, Ordering::Relaxed) {
            self.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(pool = %self.pool, node = %self.config.name, %reason, "node ejected");
        }
    }

    /// A passed health check. After `threshold` in a row an ejected node is back.
    pub fn record_success(&self, threshold: u32) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let successes = self.consecutive_successes.fetch_add(1, Ordering::Relaxed) + 1;
        if successes >= threshold && !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(pool = %self.pool, node = %self.config.name, "node healthy again");
        }
    }

    /// What `/admin/nodes` shows.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "pool": self.pool,
            "name": self.config.name,
            "addr": self.config.addr.to_string(),
            "weight": self.config.weight,
            "healthy": self.is_healthy(),
            "inflight": self.inflight(),
            "max_inflight": self.config.max_inflight,
            "errors": self.errors.load(Ordering::Relaxed),
            "consecutive_failures": self.consecutive_failures.load(Ordering::Relaxed),
            "ejections": self.ejections.load(Ordering::Relaxed),
            "last_error": self.last_error.lock().ok().and_then(|l| l.clone()),
        })
    }
}

/// Holds one in-flight slot on a node until dropped.
#[derive(Debug)]
pub struct InflightGuard {
    node: Arc<NodeState>,
}

impl InflightGuard {
    fn new(node: Arc<NodeState>) -> InflightGuard {
        node.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard { node }
    }

    pub fn node(&self) -> &Arc<NodeState> {
        &self.node
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.node.inflight.fetch_sub(1, Ordering::Relaxed);
        self.node.queue.release_one();
    }
}

/// The node a request was sent to.
#[derive(Debug)]
pub struct PickedNode {
    pub guard: InflightGuard,
    pub peer: Box<HttpPeer>,
}

enum Selector {
    Hash(LoadBalancer<Consistent>),
    RoundRobin(LoadBalancer<RoundRobin>),
    LeastInflight,
}

pub struct NodePool {
    config: Pool,
    nodes: Vec<Arc<NodeState>>,
    selector: Selector,
    queue: Arc<AdmissionQueue>,
    /// The pool's private CA for TLS nodes, built once.
    tls_ca: Option<Arc<CaType>>,
}

impl NodePool {
    /// Builds a pool; `previous` carries node health and counters over a config reload.
    pub fn new(config: Pool, previous: Option<&NodePool>) -> NodePool {
        let queue = previous.map_or_else(Arc::default, |p| p.queue.clone());
        let nodes: Vec<Arc<NodeState>> = config
            .nodes
            .iter()
            .map(|node| {
                previous
                    .and_then(|p| p.nodes.iter().find(|n| n.config == *node))
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(NodeState::new(&config.name, node.clone(), queue.clone()))
                    })
            })
            .collect();
        let backends: BTreeSet<Backend> = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let mut backend = Backend {
                    addr: node.config.addr.into(),
                    weight: node.config.weight,
                    ext: Default::default(),
                };
                backend.ext.insert::<usize>(index);
                backend
            })
            .collect();
        let selector = match config.strategy {
            Strategy::ConsistentHash => Selector::Hash(balancer(backends)),
            Strategy::RoundRobin => Selector::RoundRobin(balancer(backends)),
            Strategy::LeastInflight => Selector::LeastInflight,
        };
        let tls_ca = (!config.tls_ca.is_empty()).then(|| {
            let certs: Vec<WrappedX509> = config
                .tls_ca
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            Arc::<CaType>::from(certs)
        });
        NodePool {
            config,
            nodes,
            selector,
            queue,
            tls_ca,
        }
    }

    /// The CA TLS nodes of this pool are verified against (None: the system store).
    pub fn tls_ca(&self) -> Option<&Arc<CaType>> {
        self.tls_ca.as_ref()
    }

    pub fn queue(&self) -> &AdmissionQueue {
        &self.queue
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &Pool {
        &self.config
    }

    pub fn nodes(&self) -> &[Arc<NodeState>] {
        &self.nodes
    }

    /// Picks a healthy node with a free slot for `key` (the user id), skipping `exclude`.
    pub fn pick(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<PickedNode> {
        let usable = |node: &NodeState| {
            node.is_healthy() && node.has_slot() && !exclude.contains(&node.config.addr)
        };
        let node = match &self.selector {
            Selector::Hash(lb) => self.select(lb, key, usable),
            Selector::RoundRobin(lb) => self.select(lb, key, usable),
            Selector::LeastInflight => self
                .nodes
                .iter()
                .filter(|n| usable(n))
                // Fewest in flight per unit of weight; ties go to the earlier node.
                .min_by_key(|n| (u64::from(n.inflight()) * 1000) / n.config.weight as u64)
                .cloned(),
        }?;
        let peer = Box::new(self.peer_for(&node.config));
        Some(PickedNode {
            guard: InflightGuard::new(node),
            peer,
        })
    }

    /// True when some node is healthy and not excluded (even if busy): the request may wait.
    pub fn has_live_node(&self, exclude: &[SocketAddr]) -> bool {
        self.nodes
            .iter()
            .any(|n| n.is_healthy() && !exclude.contains(&n.config.addr))
    }

    fn select<S>(
        &self,
        lb: &LoadBalancer<S>,
        key: &[u8],
        usable: impl Fn(&NodeState) -> bool,
    ) -> Option<Arc<NodeState>>
    where
        S: pingora::lb::selection::BackendSelection + 'static,
        S::Iter: pingora::lb::selection::BackendIter,
    {
        let max_iterations = self.nodes.len() * 8 + 16;
        let backend = lb.select_with(key, max_iterations, |b, _| {
            b.ext
                .get::<usize>()
                .and_then(|i| self.nodes.get(*i))
                .is_some_and(|n| usable(n))
        })?;
        backend
            .ext
            .get::<usize>()
            .and_then(|i| self.nodes.get(*i))
            .cloned()
    }

    fn peer_for(&self, node: &Node) -> HttpPeer {
        let mut peer = match &node.tls_sni {
            Some(sni) => HttpPeer::new(node.addr, true, sni.clone()),
            None => HttpPeer::new(node.addr, false, String::new()),
        };
        if node.tls_sni.is_some() {
            peer.options.ca = self.tls_ca.clone();
        }
        let timeouts = self.config.timeouts;
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.write);
        peer
    }
}

fn balancer<S>(backends: BTreeSet<Backend>) -> LoadBalancer<S>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    let balancer = LoadBalancer::from_backends(Backends::new(Static::new(backends)));
    balancer
        .update()
        .now_or_never()
        .expect("static discovery never waits")
        .expect("static discovery never fails");
    balancer
}

/// Every pool, by name.
pub struct Pools {
    by_name: BTreeMap<String, NodePool>,
}

impl Pools {
    pub fn new(configs: &BTreeMap<String, Pool>, previous: Option<&Pools>) -> Pools {
        let by_name = configs
            .iter()
            .map(|(name, pool)| {
                let old = previous.and_then(|p| p.by_name.get(name));
                (name.clone(), NodePool::new(pool.clone(), old))
            })
            .collect();
        Pools { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&NodePool> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &NodePool> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HealthCheck, Queue, Timeouts};
    use std::time::Duration;

    fn pool(strategy: Strategy, nodes: &[(&str, usize)]) -> NodePool {
        let t = Duration::from_secs(1);
        NodePool::new(
            Pool {
                name: "p".into(),
                strategy,
                nodes: nodes
                    .iter()
                    .enumerate()
                    .map(|(i, (addr, weight))| Node {
                        name: format!("n{i}"),
                        addr: addr.parse().unwrap(),
                        weight: *weight,
                        max_inflight: None,
                        tls_sni: None,
                        auth_token: None,
                    })
                    .collect(),
                timeouts: Timeouts {
                    connect: t,
                    read: t,
                    write: t,
                },
                health: HealthCheck {
                    enabled: true,
                    path: "/healthz".into(),
                    interval: t,
                    timeout: t,
                    failures: 2,
                    successes: 1,
                },
                queue: Queue {
                    max_waiting: 10,
                    timeout: t,
                },
                max_connect_attempts: 3,
                tls_ca: Vec::new(),
                byok_header: None,
                session: crate::config::SessionMode::PerUser,
                allow_openclaw_headers: Vec::new(),
                skills_inventory: None,
            },
            None,
        )
    }

    const THREE: [(&str, usize); 3] = [("127.0.0.1:1", 1), ("127.0.0.1:2", 1), ("127.0.0.1:3", 1)];

    #[test]
    fn consistent_hashing_keeps_users_and_moves_only_a_dead_nodes_users() {
        let p = pool(Strategy::ConsistentHash, &THREE);
        let users: Vec<String> = (0..300).map(|i| format!("trainee-{i}")).collect();
        let before: Vec<SocketAddr> = users
            .iter()
            .map(|u| p.pick(u.as_bytes(), &[]).unwrap().guard.node().config.addr)
            .collect();
        let again: Vec<SocketAddr> = users
            .iter()
            .map(|u| p.pick(u.as_bytes(), &[]).unwrap().guard.node().config.addr)
            .collect();
        assert_eq!(before, again, "a user stays on one node");
        p.nodes[1].record_failure("down", 1);
        for (user, old) in users.iter().zip(&before) {
            let now = p
                .pick(user.as_bytes(), &[])
                .unwrap()
                .guard
                .node()
                .config
                .addr;
            if *old == p.nodes[1].config.addr {
                assert_ne!(now, *old);
            } else {
                assert_eq!(now, *old, "{user} moved although its node is alive");
            }
        }
    }

    #[test]
    fn round_robin_honours_weights() {
        let p = pool(
            Strategy::RoundRobin,
            &[("127.0.0.1:1", 3), ("127.0.0.1:2", 1)],
        );
        let heavy = (0..400)
            .filter(|_| p.pick(b"u", &[]).unwrap().guard.node().config.name == "n0")
            .count();
        assert!(
            (280..=320).contains(&heavy),
            "{heavy} of 400 on the weight-3 node"
        );
    }

    #[test]
    fn least_inflight_prefers_the_idle_node_and_guards_release_slots() {
        let p = pool(Strategy::LeastInflight, &THREE[..2]);
        let first = p.pick(b"u", &[]).unwrap();
        let second = p.pick(b"u", &[]).unwrap();
        assert_ne!(
            first.guard.node().config.addr,
            second.guard.node().config.addr
        );
        assert_eq!(p.nodes[0].inflight() + p.nodes[1].inflight(), 2);
        drop(first);
        drop(second);
        assert_eq!(p.nodes[0].inflight() + p.nodes[1].inflight(), 0);
    }

    #[test]
    fn failures_eject_and_successes_restore() {
        let p = pool(Strategy::RoundRobin, &THREE[..1]);
        let node = &p.nodes[0];
        node.record_failure("refused", 2);
        assert!(node.is_healthy(), "one failure is not enough");
        node.record_failure("refused", 2);
        assert!(!node.is_healthy());
        assert!(p.pick(b"u", &[]).is_none());
        assert!(!p.has_live_node(&[]));
        node.record_success(1);
        assert!(node.is_healthy());
        assert_eq!(node.report()["ejections"], 1);
    }

    #[test]
    fn excluded_nodes_are_skipped_until_none_is_left() {
        let p = pool(Strategy::ConsistentHash, &THREE[..2]);
        let first = p.pick(b"u", &[]).unwrap().guard.node().config.addr;
        let second = p.pick(b"u", &[first]).unwrap().guard.node().config.addr;
        assert_ne!(first, second);
        assert!(p.pick(b"u", &[first, second]).is_none());
    }
}
