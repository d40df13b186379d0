//! The live snapshot: validated config plus what is built from it (node pools).
//!
//! Requests load the current `Arc<Snapshot>` once, in `request_filter`, and use that one snapshot
//! for their whole life, so a config swap never changes a request halfway. Loading is a lock-free
//! `ArcSwap` read.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::upstream::NodePool;

pub struct Snapshot {
    pub config: Config,
    pub pool: NodePool,
}

impl Snapshot {
    pub fn build(config: Config) -> Snapshot {
        let pool = NodePool::new(config.pool.clone());
        Snapshot { config, pool }
    }
}

/// Shared handle to the current snapshot.
pub type LiveSnapshot = Arc<ArcSwap<Snapshot>>;

pub fn live(config: Config) -> LiveSnapshot {
    Arc::new(ArcSwap::from_pointee(Snapshot::build(config)))
}
