//! Upstream OpenClaw nodes: the pool a request goes to and the node that serves it.
//!
//! A `NodePool` wraps pingora-load-balancing's weighted round robin over the configured nodes.
//! Selection skips nodes this request already failed to connect to, so a connect failure is
//! retried on another node (bounded by the pool size). Health checks, other strategies and
//! multiple pools with routing build on this seam.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;

use crate::config::{Node, Pool};

/// The node a request was sent to.
#[derive(Debug, Clone)]
pub struct PickedNode {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub peer: Box<HttpPeer>,
}

pub struct NodePool {
    config: Pool,
    balancer: LoadBalancer<RoundRobin>,
}

impl NodePool {
    pub fn new(config: Pool) -> NodePool {
        let backends: BTreeSet<Backend> = config
            .nodes
            .iter()
            .map(|node| {
                let mut backend = Backend {
                    addr: node.addr.into(),
                    weight: node.weight,
                    ext: Default::default(),
                };
                backend
                    .ext
                    .insert::<Arc<str>>(Arc::from(node.name.as_str()));
                backend
            })
            .collect();
        let balancer = LoadBalancer::from_backends(Backends::new(Static::new(backends)));
        balancer
            .update()
            .now_or_never()
            .expect("static discovery never waits")
            .expect("static discovery never fails");
        NodePool { config, balancer }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn nodes(&self) -> &[Node] {
        &self.config.nodes
    }

    /// Picks the next node for `key`, skipping `exclude` (nodes this request already failed on).
    pub fn pick(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<PickedNode> {
        let max_iterations = self.config.nodes.len() * 4;
        let backend = self
            .balancer
            .select_with(key, max_iterations, |b, healthy| {
                healthy && !b.addr.as_inet().is_some_and(|a| exclude.contains(a))
            })?;
        let addr = *backend.addr.as_inet()?;
        let name = backend
            .ext
            .get::<Arc<str>>()
            .cloned()
            .unwrap_or_else(|| Arc::from(addr.to_string()));
        Some(PickedNode {
            peer: Box::new(self.peer_for(addr)),
            name,
            addr,
        })
    }

    fn peer_for(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        let timeouts = self.config.timeouts;
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.write);
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Timeouts;
    use std::time::Duration;

    fn pool(addrs: &[&str]) -> NodePool {
        let t = Duration::from_secs(1);
        NodePool::new(Pool {
            name: "p".into(),
            nodes: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| Node {
                    name: format!("n{i}"),
                    addr: a.parse().unwrap(),
                    weight: 1,
                })
                .collect(),
            timeouts: Timeouts {
                connect: t,
                read: t,
                write: t,
            },
        })
    }

    #[test]
    fn picks_carry_name_and_timeouts() {
        let p = pool(&["127.0.0.1:1"]);
        let node = p.pick(b"u", &[]).unwrap();
        assert_eq!(&*node.name, "n0");
        assert_eq!(node.peer.options.read_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn excluded_nodes_are_skipped_until_none_is_left() {
        let p = pool(&["127.0.0.1:1", "127.0.0.1:2"]);
        let first = p.pick(b"u", &[]).unwrap();
        let second = p.pick(b"u", &[first.addr]).unwrap();
        assert_ne!(first.addr, second.addr);
        assert!(p.pick(b"u", &[first.addr, second.addr]).is_none());
    }
}
