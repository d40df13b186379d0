//! The live snapshot: validated config plus what is built from it (node pools, the router).
//!
//! Requests load the current `Arc<Snapshot>` once, in `request_filter`, and use that one snapshot
//! for their whole life, so a config swap never changes a request halfway. Loading is a lock-free
//! `ArcSwap` read.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::upstream::routing::Router;
use crate::upstream::Pools;

pub struct Snapshot {
    pub config: Config,
    pub pools: Pools,
    pub router: Router,
}

impl Snapshot {
    /// Builds a snapshot; `previous` carries node health and counters over a reload.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Snapshot {
        let pools = Pools::new(&config.pools, previous.map(|p| &p.pools));
        let router = Router::new(&config.routes);
        Snapshot {
            config,
            pools,
            router,
        }
    }
}

/// Shared handle to the current snapshot.
pub type LiveSnapshot = Arc<ArcSwap<Snapshot>>;

pub fn live(config: Config) -> LiveSnapshot {
    Arc::new(ArcSwap::from_pointee(Snapshot::build(config, None)))
}
