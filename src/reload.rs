//! Live configuration reload: the file is watched (polled every 500 ms) and SIGHUP reloads too.
//!
//! A reload parses and validates the whole file, then swaps the snapshot atomically: tiers,
//! limits, routes, pools and nodes (added, removed, re-weighted, health settings) apply to the
//! next request, while in-flight requests finish on the snapshot they started with. Node health
//! and counters carry over for nodes that did not change. An invalid edit keeps the running
//! config, logs the reason with the key's path, and counts a failed reload.
//!
//! The watcher never dies: whatever a reload does — refuse the file, or (a bug validation should
//! have caught) panic while building the snapshot — is logged and counted, the running config
//! stays, and the next edit or SIGHUP is tried.
//!
//! The outcome of the latest reload — when, what triggered it, ok or the reason it was refused —
//! is kept in `LastReload`, which the operators' pages and `GET /admin/reload` show.
//!
//! Some settings are fixed when the process starts — listeners, threads, the grace period, the
//! database and ledger writer, the names of secret variables, the failed-authentication limit.
//! A reload that changes them keeps the running values and names them in the log.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};

use crate::clock::SharedClock;
use crate::config::{Config, ConfigError, Server};
use crate::metrics::Metrics;
use crate::state::{LiveSnapshot, Snapshot};

const POLL: Duration = Duration::from_millis(500);

/// How one reload ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    /// When it happened (Unix ms, on the gateway's clock).
    pub at_ms: u64,
    /// What set it off: `SIGHUP` or `file changed`.
    pub trigger: String,
    /// `ok`, `invalid` (the file was refused) or `failed` (building the snapshot panicked): the
    /// label of `exoclaw_config_reloads_total`.
    pub result: &'static str,
    /// Why it was refused; None when it applied.
    pub error: Option<String>,
}

/// The latest reload's outcome, shared by the watcher (which writes it) and the admin listener
/// (which shows it). Empty until the first reload after start.
#[derive(Default)]
pub struct LastReload(ArcSwapOption<ReloadOutcome>);

impl LastReload {
    pub fn record(&self, outcome: ReloadOutcome) {
        self.0.store(Some(Arc::new(outcome)));
    }

    pub fn get(&self) -> Option<Arc<ReloadOutcome>> {
        self.0.load_full()
    }
}

pub struct ConfigWatcher {
    path: PathBuf,
    live: LiveSnapshot,
    metrics: Arc<Metrics>,
    watch_file: bool,
    last: Arc<LastReload>,
    clock: SharedClock,
}

impl ConfigWatcher {
    pub fn new(
        path: PathBuf,
        live: LiveSnapshot,
        metrics: Arc<Metrics>,
        watch_file: bool,
        last: Arc<LastReload>,
        clock: SharedClock,
    ) -> Self {
        ConfigWatcher {
            path,
            live,
            metrics,
            watch_file,
            last,
            clock,
        }
    }

    /// Reloads the file now; `why` says what triggered it (for the log).
    pub fn reload(&self, why: &str) -> Result<(), String> {
        self.reload_from(why, || Config::load_to_serve(&self.path))
    }

    /// Loads a config with `load` and swaps in a snapshot built from it; logs, counts and records
    /// the outcome. A panic anywhere in here is caught as a last resort — it would mean validation
    /// let through a config the pools cannot be built from — so the running config keeps
    /// serving and the watcher lives on to try the next edit.
    fn reload_from(
        &self,
        why: &str,
        load: impl FnOnce() -> Result<Config, ConfigError>,
    ) -> Result<(), String> {
        let outcome = catch_unwind(AssertUnwindSafe(|| match load() {
            Ok(config) => {
                self.apply(config);
                Ok("ok")
            }
            Err(e) => Err(("invalid", e.to_string())),
        }))
        .unwrap_or_else(|panic| {
            Err((
                "failed",
                format!(
                    "building the new config panicked (a bug: validation should refuse it): {}",
                    panic_message(panic.as_ref())
                ),
            ))
        });
        let result = match &outcome {
            Ok(result) | Err((result, _)) => *result,
        };
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        self.last.record(ReloadOutcome {
            at_ms: self.clock.now_ms(),
            trigger: why.to_owned(),
            result,
            error: outcome.as_ref().err().map(|(_, e)| e.clone()),
        });
        match outcome {
            Ok(_) => {
                tracing::info!(path = %self.path.display(), trigger = why, "config reloaded");
                Ok(())
            }
            Err((_, e)) => {
                tracing::error!(
                    path = %self.path.display(),
                    trigger = why,
                    "config reload refused, keeping the running config: {e}"
                );
                Err(e)
            }
        }
    }

    /// Swaps in a snapshot built from `new`, a validated config, keeping start-up-only settings.
    fn apply(&self, new: Config) {
        let current = self.live.load_full();
        let (config, fixed) = keep_fixed_settings(new, &current.config);
        if !fixed.is_empty() {
            tracing::warn!(
                settings = %fixed.join(", "),
                "these settings only change on restart; the running values stay"
            );
        }
        self.live
            .store(Arc::new(Snapshot::build(config, Some(&current))));
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Takes the start-up-only settings from `running`; returns the merged config and the names of
/// those the file changed.
pub fn keep_fixed_settings(mut new: Config, running: &Config) -> (Config, Vec<&'static str>) {
    let mut fixed = Vec::new();
    let mut keep = |name: &'static str, changed: bool| {
        if changed {
            fixed.push(name);
        }
    };
    // Destructured without `..`: a new `server` setting must be placed here, as fixed or live.
    let Server {
        listen,
        admin_listen,
        sidecar_listen,
        threads,
        max_request_body: _,
        grace_period,
        watch_config,
        upgrade_sock,
        pid_file,
        request_log: _,
        // Live: each new connection reads the current limits.
        connections: _,
    } = &running.server;
    keep("server.listen", new.server.listen != *listen);
    keep(
        "server.admin_listen",
        new.server.admin_listen != *admin_listen,
    );
    keep(
        "server.sidecar_listen",
        new.server.sidecar_listen != *sidecar_listen,
    );
    keep("server.threads", new.server.threads != *threads);
    keep(
        "server.grace_period",
        new.server.grace_period != *grace_period,
    );
    keep(
        "server.watch_config",
        new.server.watch_config != *watch_config,
    );
    // The running process hands its sockets over through the path it started with.
    keep(
        "server.upgrade_sock",
        new.server.upgrade_sock != *upgrade_sock,
    );
    keep("server.pid_file", new.server.pid_file != *pid_file);
    keep("database", new.database != running.database);
    keep("ledger", new.ledger != running.ledger);
    keep(
        "auth.admin_token_env",
        new.auth.admin_token_env != running.auth.admin_token_env,
    );
    keep(
        "auth.token_key_env",
        new.auth.token_key_env != running.auth.token_key_env,
    );
    keep(
        "auth.token_key_file",
        new.auth.token_key_file != running.auth.token_key_file,
    );
    keep(
        "auth.failed_auth_per_minute",
        new.auth.failed_auth_per_minute != running.auth.failed_auth_per_minute,
    );
    keep(
        "stripe.webhook_secret_env",
        new.stripe.webhook_secret_env != running.stripe.webhook_secret_env,
    );
    let (max_request_body, request_log) = (new.server.max_request_body, new.server.request_log);
    new.server = running.server.clone();
    new.server.max_request_body = max_request_body;
    new.server.request_log = request_log;
    new.database = running.database.clone();
    new.ledger = running.ledger.clone();
    new.auth.admin_token_env = running.auth.admin_token_env.clone();
    new.auth.token_key_env = running.auth.token_key_env.clone();
    new.auth.token_key_file = running.auth.token_key_file.clone();
    new.auth.failed_auth_per_minute = running.auth.failed_auth_per_minute;
    new.stripe.webhook_secret_env = running.stripe.webhook_secret_env.clone();
    (new, fixed)
}

fn fingerprint(path: &PathBuf) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(bytes).into())
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP (reload by editing the file): {e}");
                None
            }
        };
        let mut last = fingerprint(&self.path);
        let mut ticker = tokio::time::interval(POLL);
        loop {
            let sighup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = sighup => {
                    last = fingerprint(&self.path);
                    let _ = self.reload("SIGHUP");
                }
                _ = ticker.tick(), if self.watch_file => {
                    let now = fingerprint(&self.path);
                    if now.is_some() && now != last {
                        last = now;
                        let _ = self.reload("file changed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOLS: &str = "pools: { p: { nodes: [ { name: a, addr: \"127.0.0.1:1\" } ] } }\n";
    const LISTEN: &str = "listen: \"127.0.0.1:8787\"";

    #[test]
    fn start_up_settings_keep_their_running_values_and_are_named() {
        let running = Config::from_yaml(&format!("{POOLS}server: {{ {LISTEN} }}\n")).unwrap();
        let edited = Config::from_yaml(&format!(
            "{POOLS}server: {{ {LISTEN}, upgrade_sock: other.sock, pid_file: other.pid, \
             request_log: warn, max_request_body: 1KiB }}\n"
        ))
        .unwrap();
        let (merged, fixed) = keep_fixed_settings(edited, &running);
        assert_eq!(fixed, ["server.upgrade_sock", "server.pid_file"]);
        assert_eq!(merged.server.upgrade_sock, running.server.upgrade_sock);
        assert_eq!(merged.server.pid_file, running.server.pid_file);
        assert_eq!(merged.server.request_log, crate::config::RequestLog::Warn);
        assert_eq!(merged.server.max_request_body, 1024);
    }

    #[test]
    fn a_panicking_build_keeps_the_running_config_and_the_next_reload_applies() {
        let running = Config::from_yaml(&format!("{POOLS}server: {{ {LISTEN} }}\n")).unwrap();
        let live = crate::state::live(running.clone());
        let metrics = Arc::new(Metrics::new());
        let last = Arc::new(LastReload::default());
        let clock = Arc::new(crate::clock::ManualClock::new(7_000));
        let watcher = ConfigWatcher::new(
            "unused.yaml".into(),
            live.clone(),
            metrics.clone(),
            false,
            last.clone(),
            clock.clone(),
        );
        let weight =
            |live: &LiveSnapshot| live.load().pools.get("p").unwrap().nodes()[0].config.weight;
        let count = |result: &str| metrics.config_reloads.with_label_values(&[result]).get();

        // A weight validation refuses, set behind its back: the hash ring cannot be built.
        let mut heavy = running.clone();
        heavy.pools.get_mut("p").unwrap().nodes[0].weight = 1 << 32;
        let e = watcher.reload_from("test", || Ok(heavy)).unwrap_err();
        assert!(e.contains("panicked"), "{e}");
        assert_eq!((weight(&live), count("failed")), (1, 1));
        assert_eq!(last.get().unwrap().result, "failed");

        clock.advance(1_000);
        let refused = watcher.reload_from("SIGHUP", || Config::from_yaml("pools: {}"));
        assert!(refused.is_err());
        assert_eq!(count("invalid"), 1);
        let recorded = last.get().unwrap();
        assert_eq!(
            (recorded.at_ms, recorded.trigger.as_str(), recorded.result),
            (8_000, "SIGHUP", "invalid")
        );
        assert_eq!(recorded.error, refused.err());

        let mut lighter = running.clone();
        lighter.pools.get_mut("p").unwrap().nodes[0].weight = 3;
        watcher.reload_from("file changed", || Ok(lighter)).unwrap();
        assert_eq!((weight(&live), count("ok")), (3, 1));
        let recorded = last.get().unwrap();
        assert_eq!((recorded.result, recorded.error.as_deref()), ("ok", None));
    }
}
