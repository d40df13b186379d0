//! The per-runtime inventory cache: each runtime's inventory fetched at most once per TTL,
//! refreshed in the background, and served stale — marked, with the reason — when its source
//! fails after having worked once; and the set of every runtime's cache, swapped on reload.
//!
//! Not for: fetching (`source`), or what a tenant may use of what is served (`policy`).
//!
//! **Time.** TTLs and retry windows read the injected clock (`SharedClock`), so tests move time
//! instead of waiting; a fetch's own timeout is real time (`source`).
//!
//! **Failures are bounded too.** After a failed fetch the source is tried again only after the
//! TTL or 10 s, whichever is shorter, however many requests ask meanwhile; one fetch runs at a
//! time per runtime, and callers arriving during it share its result.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::watch;

use super::inventory::Inventory;
use super::source::{http_client, InventorySource};
use crate::clock::SharedClock;

/// How long an inventory is served before it is fetched again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The longest wait before retrying a failed source.
const MAX_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// How often the background refresher looks for runtimes whose inventory is due.
const REFRESH_TICK: Duration = Duration::from_secs(1);

/// A failed fetch, as remembered: `kind` for tenants, `reason` for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    pub kind: &'static str,
    pub reason: String,
    /// When it failed (clock ms).
    pub at_ms: u64,
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// An inventory as served: the last good one, and, when the latest fetch failed, why.
#[derive(Debug, Clone)]
pub struct Served {
    pub inventory: Arc<Inventory>,
    /// When it was fetched (clock ms).
    pub fetched_ms: u64,
    /// Set when the source failed since: the inventory is stale, and this is the latest reason.
    pub stale: Option<FetchFailure>,
}

/// How an answer says where its inventory stands: `{"fetchedMs": …, "stale": false}`, or with
/// `stale: true`, the failure's `staleKind` and `failedMs`, and, for operators, `staleReason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryStatus {
    pub fetched_ms: u64,
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_ms: Option<u64>,
}

impl Served {
    /// The status to put beside the inventory; `with_reason` adds the operator's text (host
    /// names, stderr), which a tenant should not be shown.
    pub fn status(&self, with_reason: bool) -> InventoryStatus {
        let stale = self.stale.as_ref();
        InventoryStatus {
            fetched_ms: self.fetched_ms,
            stale: stale.is_some(),
            stale_kind: stale.map(|f| f.kind),
            stale_reason: stale.filter(|_| with_reason).map(|f| f.reason.clone()),
            failed_ms: stale.map(|f| f.at_ms),
        }
    }
}

#[derive(Debug, Default)]
struct CacheState {
    good: Option<(Arc<Inventory>, u64)>,
    /// The latest failure, cleared by the next success.
    failure: Option<FetchFailure>,
    last_attempt_ms: Option<u64>,
}

/// One runtime's inventory: its source, the last good inventory and the latest failure.
pub struct RuntimeInventory {
    source: InventorySource,
    ttl_ms: u64,
    retry_ms: u64,
    clock: SharedClock,
    http: reqwest::Client,
    state: Mutex<CacheState>,
    /// Held for the length of a fetch: one at a time per runtime.
    fetching: tokio::sync::Mutex<()>,
    /// Set while a background refresh is spawned, so requests spawn at most one.
    spawned: AtomicBool,
}

impl fmt::Debug for RuntimeInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeInventory")
            .field("source", &self.source)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl RuntimeInventory {
    pub fn new(
        source: InventorySource,
        ttl: Duration,
        clock: SharedClock,
        http: reqwest::Client,
    ) -> RuntimeInventory {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        RuntimeInventory {
            source,
            ttl_ms,
            retry_ms: ttl_ms.min(MAX_RETRY_AFTER_FAILURE.as_millis() as u64),
            clock,
            http,
            state: Mutex::new(CacheState::default()),
            fetching: tokio::sync::Mutex::new(()),
            spawned: AtomicBool::new(false),
        }
    }

    pub fn source(&self) -> &InventorySource {
        &self.source
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is cached now, without fetching: None before the first good fetch.
    pub fn cached(&self) -> Option<Served> {
        let state = self.state();
        let (inventory, fetched_ms) = state.good.clone()?;
        Some(Served {
            inventory,
            fetched_ms,
            stale: state.failure.clone(),
        })
    }

    /// Whether a fetch is due: never tried, the TTL passed since the last try, or the retry
    /// window passed since the last failure.
    pub fn is_due(&self) -> bool {
        let state = self.state();
        let Some(last) = state.last_attempt_ms else {
            return true;
        };
        let wait = if state.failure.is_some() {
            self.retry_ms
        } else {
            self.ttl_ms
        };
        self.clock.now_ms() >= last.saturating_add(wait)
    }

    /// Fetches if due; true when this call fetched. Concurrent callers wait for the fetch in
    /// flight and then find nothing due.
    pub async fn refresh_if_due(&self) -> bool {
        let _one_at_a_time = self.fetching.lock().await;
        if !self.is_due() {
            return false;
        }
        let started_ms = self.clock.now_ms();
        let result = self.source.fetch(&self.http).await;
        let mut state = self.state();
        state.last_attempt_ms = Some(started_ms);
        match result {
            Ok(inventory) => {
                if state.failure.is_some() {
                    tracing::info!(source = %self.source, "skills inventory readable again");
                }
                state.good = Some((Arc::new(inventory), started_ms));
                state.failure = None;
            }
            Err(e) => {
                // The operator's line: the whole reason (a tenant sees only its kind).
                tracing::warn!(
                    source = %self.source,
                    serving = if state.good.is_some() { "the last good inventory, marked stale" } else { "nothing yet" },
                    "skills inventory fetch failed: {e}"
                );
                state.failure = Some(FetchFailure {
                    kind: e.kind(),
                    reason: e.to_string(),
                    at_ms: started_ms,
                });
            }
        }
        true
    }

    /// The inventory to serve. With a good one cached, it is answered at once (stale if the
    /// source failed since), and a refresh is spawned when due. Before the first good fetch the
    /// caller waits for one; the error is the latest failure.
    pub async fn get(self: &Arc<Self>) -> Result<Served, FetchFailure> {
        if self.state().good.is_some() {
            if self.is_due() {
                self.spawn_refresh();
            }
        } else {
            self.refresh_if_due().await;
        }
        if let Some(served) = self.cached() {
            return Ok(served);
        }
        let failure = self.state().failure.clone();
        Err(failure.unwrap_or_else(|| FetchFailure {
            kind: "unavailable",
            reason: "no inventory fetched yet".into(),
            at_ms: self.clock.now_ms(),
        }))
    }

    fn spawn_refresh(self: &Arc<Self>) {
        if self.spawned.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.refresh_if_due().await;
            this.spawned.store(false, Ordering::Release);
        });
    }
}

/// One runtime's source as configured: where, and how long an inventory is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub source: InventorySource,
    pub ttl: Duration,
}

/// The caches of every runtime (pool or node) that has an inventory source, by runtime name;
/// swapped whole on reload, readers never blocked.
pub struct Inventories {
    runtimes: ArcSwap<BTreeMap<String, Arc<RuntimeInventory>>>,
    clock: SharedClock,
    http: reqwest::Client,
}

impl Inventories {
    pub fn new(clock: SharedClock) -> Inventories {
        Inventories {
            runtimes: ArcSwap::from_pointee(BTreeMap::new()),
            clock,
            http: http_client(),
        }
    }

    /// Sets the runtimes from config. A runtime whose source and TTL are unchanged keeps its
    /// cache (a reload does not refetch everything); a new or changed one starts empty; a
    /// removed one is dropped.
    pub fn configure(&self, sources: impl IntoIterator<Item = (String, SourceConfig)>) {
        let old = self.runtimes.load();
        let next: BTreeMap<String, Arc<RuntimeInventory>> = sources
            .into_iter()
            .map(|(name, SourceConfig { source, ttl })| {
                let ttl_ms = ttl.as_millis().max(1) as u64;
                let kept = old
                    .get(&name)
                    .filter(|r| r.source == source && r.ttl_ms == ttl_ms)
                    .cloned();
                let runtime = kept.unwrap_or_else(|| {
                    Arc::new(RuntimeInventory::new(
                        source,
                        ttl,
                        self.clock.clone(),
                        self.http.clone(),
                    ))
                });
                (name, runtime)
            })
            .collect();
        self.runtimes.store(Arc::new(next));
    }

    /// The cache of runtime `name`, if it has an inventory source.
    pub fn get(&self, name: &str) -> Option<Arc<RuntimeInventory>> {
        self.runtimes.load().get(name).cloned()
    }

    /// Refreshes every runtime that is due, concurrently; how many fetched.
    pub async fn refresh_due(&self) -> usize {
        let runtimes = self.runtimes.load_full();
        let fetched =
            futures_util::future::join_all(runtimes.values().map(|r| r.refresh_if_due())).await;
        fetched.into_iter().filter(|&f| f).count()
    }

    /// The background refresher: looks every second for due runtimes until shutdown (a Pingora
    /// `ShutdownWatch` is such a receiver).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.refresh_due().await;
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(REFRESH_TICK) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::skills::source::fixtures::{fixture, inventory_file, runs, script};
    use crate::skills::source::DEFAULT_TIMEOUT;

    fn cache(source: InventorySource, clock: &Arc<ManualClock>) -> Arc<RuntimeInventory> {
        Arc::new(RuntimeInventory::new(
            source,
            DEFAULT_TTL,
            clock.clone(),
            http_client(),
        ))
    }

    #[tokio::test]
    async fn the_cache_serves_within_the_ttl_and_refetches_after_it() {
        let d = inventory_file(Some("list-newest.json"));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let cache = cache(script(&d.file, None, DEFAULT_TIMEOUT), &clock);
        let first = cache.get().await.unwrap();
        assert_eq!(
            (first.inventory.skills.len(), first.fetched_ms),
            (12, 1_000_000)
        );
        assert!(first.stale.is_none());

        // Within the TTL, a changed file is not seen and nothing runs.
        std::fs::copy(fixture("list-older.json"), &d.file).unwrap();
        clock.advance(59_999);
        assert_eq!(cache.get().await.unwrap().inventory.skills.len(), 12);
        assert!(!cache.refresh_if_due().await);
        assert_eq!(runs(&d.file), 1);

        // Past it, a request still answers at once with what it has and spawns the refresh.
        clock.advance(1);
        assert_eq!(cache.get().await.unwrap().inventory.skills.len(), 12);
        cache.refresh_if_due().await; // waits for the spawned refresh, or does it itself
        let fresh = cache.get().await.unwrap();
        assert_eq!(
            (fresh.inventory.skills.len(), fresh.fetched_ms),
            (4, 1_060_000)
        );
        assert_eq!(runs(&d.file), 2, "one refresh, however many asked");
    }

    #[tokio::test]
    async fn a_failing_source_serves_the_last_good_inventory_marked_stale() {
        let d = inventory_file(Some("list-newest.json"));
        let clock = Arc::new(ManualClock::new(0));
        let cache = cache(script(&d.file, None, DEFAULT_TIMEOUT), &clock);
        cache.get().await.unwrap();

        std::fs::remove_file(&d.file).unwrap();
        clock.advance(60_000);
        assert!(cache.refresh_if_due().await);
        let served = cache.get().await.unwrap();
        assert_eq!((served.inventory.skills.len(), served.fetched_ms), (12, 0));
        assert_eq!(
            serde_json::to_value(served.status(false)).unwrap(),
            serde_json::json!({
                "fetchedMs": 0, "stale": true, "staleKind": "command_failed", "failedMs": 60_000
            })
        );
        let reason = served.status(true).stale_reason.unwrap();
        assert!(reason.contains("Connection refused"), "{reason}");

        // A failure is retried after 10 s, not on every request, and not after a full TTL.
        clock.advance(9_999);
        assert!(!cache.refresh_if_due().await);
        clock.advance(1);
        assert!(cache.refresh_if_due().await);
        assert_eq!(runs(&d.file), 3);

        // The node recovers: fresh again, the mark gone.
        std::fs::copy(fixture("list-older.json"), &d.file).unwrap();
        clock.advance(10_000);
        assert!(cache.refresh_if_due().await);
        let served = cache.get().await.unwrap();
        assert!(served.stale.is_none());
        assert_eq!(
            (served.inventory.skills.len(), served.fetched_ms),
            (4, 80_000)
        );
    }

    #[tokio::test]
    async fn without_a_good_inventory_a_request_waits_for_one_and_gets_the_failure() {
        let d = inventory_file(None);
        let clock = Arc::new(ManualClock::new(0));
        let cache = cache(script(&d.file, None, DEFAULT_TIMEOUT), &clock);
        let e = cache.get().await.unwrap_err();
        assert_eq!(e.kind, "command_failed");
        // Asking again within the retry window does not run the command again.
        assert_eq!(cache.get().await.unwrap_err(), e);
        assert_eq!(runs(&d.file), 1);
        // Concurrent first requests share one fetch.
        std::fs::copy(fixture("list-newest.json"), &d.file).unwrap();
        clock.advance(10_000);
        let (a, b) = tokio::join!(cache.get(), cache.get());
        assert_eq!(a.unwrap().fetched_ms, b.unwrap().fetched_ms);
        assert_eq!(runs(&d.file), 2);
    }

    #[tokio::test]
    async fn a_reload_keeps_unchanged_caches_and_the_refresher_fetches_what_is_due() {
        let d = inventory_file(Some("list-newest.json"));
        let clock = Arc::new(ManualClock::new(0));
        let inventories = Inventories::new(clock.clone());
        let config = |ttl: u64| SourceConfig {
            source: script(&d.file, None, DEFAULT_TIMEOUT),
            ttl: Duration::from_secs(ttl),
        };
        inventories.configure([
            ("openclaw".into(), config(60)),
            ("dedicated".into(), config(60)),
        ]);
        assert_eq!(inventories.refresh_due().await, 2);
        assert_eq!(inventories.refresh_due().await, 0);

        let before = inventories.get("openclaw").unwrap();
        inventories.configure([
            ("openclaw".into(), config(60)),
            ("dedicated".into(), config(30)),
        ]);
        assert!(
            Arc::ptr_eq(&before, &inventories.get("openclaw").unwrap()),
            "kept"
        );
        assert!(inventories.get("openclaw").unwrap().cached().is_some());
        assert!(
            inventories.get("dedicated").unwrap().cached().is_none(),
            "changed: empty"
        );
        assert!(inventories.get("gone").is_none());

        // The background loop refreshes and stops on shutdown.
        let (stop, shutdown) = watch::channel(false);
        let inventories = Arc::new(inventories);
        let running = {
            let inventories = inventories.clone();
            tokio::spawn(async move { inventories.run(shutdown).await })
        };
        let dedicated = inventories.get("dedicated").unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while dedicated.cached().is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the refresher fetches the changed runtime");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the refresher stops on shutdown")
            .unwrap();
    }
}
