//! Keeps every runtime's skills inventory fresh in the background, and follows the config: a
//! reload that adds, changes or removes a pool's `skills_inventory` reconfigures the caches
//! (an unchanged source keeps its cache).
//!
//! Not for: fetching or caching itself (`cache`, `source`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::cache::{Inventories, SourceConfig};
use super::source::InventorySource;
use crate::config::skills::InventoryFrom;
use crate::config::Config;
use crate::state::LiveSnapshot;

/// How often due runtimes are refreshed and the config compared.
const TICK: Duration = Duration::from_secs(1);

/// The inventory source of each pool that has one, by pool name (a tenant's runtime).
pub fn sources(config: &Config) -> Vec<(String, SourceConfig)> {
    config
        .pools
        .iter()
        .filter_map(|(name, pool)| {
            let inventory = pool.skills_inventory.as_ref()?;
            let source = match &inventory.from {
                InventoryFrom::Url(url) => InventorySource::Url {
                    url: url.clone(),
                    timeout: inventory.timeout,
                },
                InventoryFrom::Command(argv) => InventorySource::Command {
                    argv: argv.clone(),
                    timeout: inventory.timeout,
                },
            };
            Some((
                name.clone(),
                SourceConfig {
                    source,
                    ttl: inventory.ttl,
                },
            ))
        })
        .collect()
}

pub struct SkillsRefresher {
    pub inventories: Arc<Inventories>,
    pub live: LiveSnapshot,
}

#[async_trait]
impl BackgroundService for SkillsRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut configured = self.live.load_full();
        self.inventories.configure(sources(&configured.config));
        loop {
            let current = self.live.load_full();
            if !Arc::ptr_eq(&current, &configured) {
                self.inventories.configure(sources(&current.config));
                configured = current;
            }
            self.inventories.refresh_due().await;
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
