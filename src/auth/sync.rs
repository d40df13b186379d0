//! Keeps the in-memory credential and subscription snapshots in step with SQLite, in the
//! background.
//!
//! Every 250 ms it reads two change counters (one indexed query each); when `exoclaw keys
//! create` / `revoke` in another process, the admin API or the sidecar changed keys or tokens,
//! it reloads that table into a new snapshot (subscriptions too, after a Stripe webhook). So a revoked key stops working within a second,
//! without a restart, while the request path never queries SQLite. Every 10 s, and at shutdown,
//! it writes keys' `last used` times, which the request path only records in memory.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rusqlite::Connection;

use super::{store, Credentials};
use crate::billing::Billing;

const POLL_INTERVAL: Duration = Duration::from_millis(250);
const LAST_USED_FLUSH_EVERY: u32 = 40; // polls: 10 s

pub struct CredentialSync {
    credentials: Arc<Credentials>,
    billing: Arc<Billing>,
    state: Arc<Mutex<SyncState>>,
}

struct SyncState {
    conn: Option<Connection>,
    keys_generation: i64,
    codex_generation: i64,
    plans_generation: i64,
    flushed_last_used: HashMap<String, u64>,
    polls: u32,
}

impl CredentialSync {
    pub fn new(credentials: Arc<Credentials>, billing: Arc<Billing>) -> CredentialSync {
        CredentialSync {
            credentials,
            billing,
            state: Arc::new(Mutex::new(SyncState {
                conn: None,
                keys_generation: -1,
                codex_generation: -1,
                plans_generation: -1,
                flushed_last_used: HashMap::new(),
                polls: 0,
            })),
        }
    }

    /// Runs one blocking step on a blocking thread; the state lock never spans an await.
    async fn step(&self, final_flush: bool) {
        let credentials = self.credentials.clone();
        let billing = self.billing.clone();
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut state = state
                .lock()
                .map_err(|_| "credential sync state poisoned".to_owned())?;
            state.poll(&credentials, &billing, final_flush)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("credential sync: {e}"),
            Err(e) => tracing::warn!("credential sync task failed: {e}"),
        }
    }
}

impl SyncState {
    fn poll(
        &mut self,
        credentials: &Credentials,
        billing: &Billing,
        final_flush: bool,
    ) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(credentials.open_db()?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let result = (|| -> rusqlite::Result<()> {
            let keys_generation = store::generation(conn, "keys")?;
            if keys_generation != self.keys_generation {
                credentials.reload_keys(conn)?;
                self.keys_generation = keys_generation;
            }
            let codex_generation = store::generation(conn, "codex_tokens")?;
            if codex_generation != self.codex_generation {
                credentials.reload_codex(conn)?;
                self.codex_generation = codex_generation;
            }
            let plans_generation = store::generation(conn, "subscriptions")?;
            if plans_generation != self.plans_generation {
                billing.reload_plans(conn)?;
                self.plans_generation = plans_generation;
            }
            self.polls += 1;
            if final_flush || self.polls % LAST_USED_FLUSH_EVERY == 0 {
                let used: Vec<(String, u64)> = credentials
                    .keys
                    .load()
                    .records()
                    .filter_map(|r| {
                        let ms = r.last_used_ms.load(Ordering::Relaxed);
                        let flushed = self.flushed_last_used.get(&r.id).copied().unwrap_or(0);
                        (ms > flushed).then(|| (r.id.clone(), ms))
                    })
                    .collect();
                if !used.is_empty() {
                    store::flush_last_used(conn, &used)?;
                    self.flushed_last_used.extend(used);
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Drop the connection: the next poll reopens it (the file may have been replaced).
            self.conn = None;
            return Err(e.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for CredentialSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.step(false).await,
                _ = shutdown.changed() => break,
            }
        }
        self.step(true).await;
    }
}
