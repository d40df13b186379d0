//! Builds the one Pingora `Server` that runs ExoClaw's services from a validated config:
//! the proxy (public), the sidecar (loopback, behind the proxy), the admin listener (loopback:
//! the JSON API and the operators' pages), and background work (credential sync, limiter
//! sweeps).
//!
//! `main.rs` parses the command line; this module turns a `Config` into services. Pingora owns
//! the tokio runtimes, so anything async belongs in a background service added here, never in a
//! runtime wrapped around `run_forever`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora_proxy::http_proxy;

use crate::admin::AdminApp;
use crate::auth::sync::CredentialSync;
use crate::auth::Credentials;
use crate::billing::Billing;
use crate::clock::{Clock, ManualClock, SharedClock, SystemClock};
use crate::config::Config;
use crate::ledger;
use crate::ledger::connection::SharedConnection;
use crate::ledger::ip_hash::IpHasher;
use crate::ledger::writer::{LedgerSettings, LedgerWriter};
use crate::limits::{AuthFailureGuard, RateLimiter};
use crate::logging;
use crate::metrics::Metrics;
use crate::proxy::connection::Guarded;
use crate::proxy::drain::Draining;
use crate::proxy::Gateway;
use crate::reload::{ConfigWatcher, LastReload};
use crate::runs::artifacts::Artifacts;
use crate::runs::node_call::NodeClient;
use crate::runs::queue::{RunQueue, SqliteQueue};
use crate::runs::worker::RunWorkers;
use crate::runs::RunService;
use crate::sidecar::serve::AxumApp;
use crate::sidecar::{self, Sidecar};
use crate::skills::cache::Inventories;
use crate::skills::refresh::SkillsRefresher;
use crate::state::{self, LiveSnapshot};
use crate::telegram::bot::{Bot, BotService};
use crate::upstream::health::HealthChecker;

/// How the process was started.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// The config file, watched for live reloads (none for the demo's built-in config).
    pub config_path: Option<std::path::PathBuf>,
    /// Take the listening sockets over from a running old process (graceful upgrade).
    pub upgrade: bool,
    /// Freeze the policy clock and let `POST /admin/clock` move it (tests only).
    pub manual_clock: bool,
    /// Detach into the background and write `server.pid_file` (for systemd's `Type=forking`).
    pub daemon: bool,
}

/// What a built server shares with its caller: the demo creates a key through it, and `finish`
/// runs once the server has stopped.
pub struct Handles {
    pub live: LiveSnapshot,
    pub credentials: Arc<Credentials>,
    pub ledger: Arc<LedgerWriter>,
    pub billing: Arc<Billing>,
}

impl Handles {
    /// After the server stopped (every in-flight request has ended): writes every queued ledger
    /// row, so a graceful stop loses no accepted request's record.
    pub fn finish(&self) {
        match self.credentials.open_db() {
            Ok(mut conn) => {
                if let Err(e) = self.billing.flush_quotas(&mut conn) {
                    tracing::error!("could not save monthly quota counters at shutdown: {e}");
                }
            }
            Err(e) => tracing::error!("could not save monthly quota counters at shutdown: {e}"),
        }
        self.ledger.shutdown();
        let stats = self.ledger.stats();
        tracing::info!(
            written = stats.written,
            dropped = stats.dropped,
            "ledger flushed; exoclaw stopped"
        );
    }
}

/// Runs a built server until SIGTERM/SIGINT, then flushes what must not be lost.
pub fn run(server: Server, handles: Handles) {
    server.run(RunArgs::default());
    handles.finish();
    logging::flush();
}

/// Builds the server, after bringing the database schema up to date and loading credentials.
/// Fails with a readable message when a listen address is taken or a secret is malformed
/// (Pingora itself would panic later, deep in start-up).
pub fn build(config: &Config, launch: Launch) -> Result<(Server, Handles), String> {
    if !launch.upgrade {
        for addr in [
            config.server.listen,
            config.server.admin_listen,
            config.server.sidecar_listen,
        ] {
            ensure_can_listen(addr)?;
        }
    }
    ledger::open(&config.database)?;
    // The same reading `check` and a reload validate with (`Config::load_to_serve`).
    let cipher = config.token_cipher().map_err(|e| e.to_string())?;
    let credentials = Credentials::load(&config.database, cipher)?;
    let admin_token = std::env::var(&config.auth.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty());

    // A daemon changes its directory to `/` when it detaches: anchor relative paths here.
    let here =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let conf = ServerConf {
        working_directory: Some(here.clone()),
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: here.join(&config.server.upgrade_sock).display().to_string(),
        pid_file: here.join(&config.server.pid_file).display().to_string(),
        // A daemon's foreground process exits only once the daemon has written its PID file
        // and is about to take the sockets over: systemd's reload runs this first, then sends
        // SIGQUIT to the old process, then reads the PID file to follow the new one.
        daemon_wait_for_ready: launch.daemon,
        daemon_ready_timeout_seconds: std::num::NonZeroU64::new(60),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: launch.upgrade,
        daemon: launch.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // Taking the sockets over from an old process happens after the daemon fork, as a service
    // the listeners wait for (see `daemon_wait_for_ready` above).
    let bootstrap = server.bootstrap_as_a_service();

    let manual_clock = launch.manual_clock.then(|| {
        // Tests that live in a given month start the clock in it (quotas load that month).
        let start = std::env::var("EXOCLAW_MANUAL_CLOCK_START_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| SystemClock.now_ms());
        Arc::new(ManualClock::new(start))
    });
    let clock: SharedClock = match &manual_clock {
        Some(manual) => manual.clone(),
        None => Arc::new(SystemClock),
    };
    let live = state::live(config.clone());
    let billing = {
        let conn = credentials.open_db()?;
        Billing::load(&conn, clock.now_ms())
            .map_err(|e| format!("cannot load subscriptions and quotas: {e}"))?
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let stripe_secret = std::env::var(&config.stripe.webhook_secret_env)
        .ok()
        .filter(|s| !s.is_empty());
    let rate_limiter = Arc::new(RateLimiter::new());
    let metrics = Arc::new(Metrics::new());
    let ip_hasher = Arc::new(IpHasher::load_or_create(&config.ledger.ip_hash_key_file)?);
    // The writer thread starts in a background service: in daemon mode Pingora forks after this
    // function, and a thread or SQLite connection made before a fork does not survive it.
    let ledger = Arc::new(LedgerWriter::prepare(
        &config.database,
        LedgerSettings {
            queue_capacity: config.ledger.queue_capacity,
            batch_size: config.ledger.batch_size,
            flush_interval: config.ledger.flush_interval,
            retention: config.ledger.retention,
            prune_interval: config.ledger.prune_interval,
        },
        clock.clone(),
    )?);
    // Derived from the data directory's key file: the same in an upgrade's old and new
    // process, so the old process's run workers still reach the new process's proxy.
    let sidecar_secret: Arc<str> = Arc::from(ip_hasher.derive_secret("internal"));
    let queue: Arc<dyn RunQueue> = Arc::new(SqliteQueue::open(&config.database)?);
    let artifacts = Artifacts::local(&config.artifacts.dir)?;
    let runs = Arc::new(RunService::new(queue, artifacts, clock.clone()));
    let skills = Arc::new(Inventories::new(clock.clone()));
    skills.configure(crate::skills::refresh::sources(config));
    let bot = Arc::new(Bot::new(
        live.clone(),
        clock.clone(),
        &config.database,
        runs.clone(),
        billing.clone(),
        skills.clone(),
        metrics.clone(),
    ));

    let gateway = Gateway {
        live: live.clone(),
        credentials: credentials.clone(),
        rate_limiter: rate_limiter.clone(),
        auth_failures: Arc::new(AuthFailureGuard::new(config.auth.failed_auth_per_minute)),
        clock: clock.clone(),
        sidecar_secret: sidecar_secret.clone(),
        ledger: ledger.clone(),
        ip_hasher: ip_hasher.clone(),
        billing: billing.clone(),
        connector: pingora::connectors::http::Connector::new(None),
        metrics: metrics.clone(),
        anonymous_rows: Arc::new(AuthFailureGuard::new(
            crate::proxy::ANONYMOUS_ROWS_PER_MINUTE,
        )),
    };
    // Accepted connections are answered through the grace period, not dropped at shutdown.
    let mut proxy = Service::new(
        "proxy".to_owned(),
        Draining::new(
            Guarded::new(http_proxy(&server.configuration, gateway), live.clone()),
            config.server.grace_period,
        ),
    );
    proxy.add_tcp(&config.server.listen.to_string());
    server.add_service(proxy).add_dependency(&bootstrap);

    let control_plane = Arc::new(Sidecar {
        credentials: credentials.clone(),
        billing: billing.clone(),
        live: live.clone(),
        clock: clock.clone(),
        internal_secret: sidecar_secret.clone(),
        stripe_secret,
        metrics: metrics.clone(),
        db: Arc::new(SharedConnection::new(&config.database)),
        runs: runs.clone(),
        skills: skills.clone(),
        bot: bot.clone(),
        pages: Default::default(),
    });
    let mut sidecar = Service::new(
        "sidecar".to_owned(),
        AxumApp::new(sidecar::router(control_plane)),
    );
    sidecar.add_tcp(&config.server.sidecar_listen.to_string());
    server.add_service(sidecar).add_dependency(&bootstrap);

    let last_reload = Arc::new(LastReload::default());
    let admin_app = Arc::new(AdminApp {
        credentials: credentials.clone(),
        live: live.clone(),
        ledger: ledger.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        token: admin_token,
        manual_clock,
        runs: runs.clone(),
        last_reload: last_reload.clone(),
        sessions: Default::default(),
        sign_in_failures: AuthFailureGuard::new(config.auth.failed_auth_per_minute),
    });
    let mut admin = Service::new(
        "admin".to_owned(),
        AxumApp::new(crate::admin::router(admin_app)),
    );
    admin.add_tcp(&config.server.admin_listen.to_string());
    server.add_service(admin).add_dependency(&bootstrap);

    server.add_service(background_service(
        "writer threads",
        WriterThreads {
            ledger: ledger.clone(),
        },
    ));
    server.add_service(background_service(
        "credential sync",
        CredentialSync::new(credentials.clone(), billing.clone()),
    ));
    server.add_service(background_service(
        "quota flush",
        QuotaFlush {
            billing: billing.clone(),
            credentials: credentials.clone(),
            every: config.ledger.quota_flush_interval,
        },
    ));
    if let Some(path) = &launch.config_path {
        server.add_service(background_service(
            "config watcher",
            ConfigWatcher::new(
                path.clone(),
                live.clone(),
                metrics.clone(),
                config.server.watch_config,
                last_reload,
                clock.clone(),
            ),
        ));
    }
    server.add_service(background_service(
        "run workers",
        RunWorkers::new(
            runs,
            live.clone(),
            billing.clone(),
            NodeClient::new(config.server.listen, sidecar_secret)?,
            metrics.clone(),
            clock.clone(),
            config.server.grace_period,
        ),
    ));
    server.add_service(background_service(
        "skills inventories",
        SkillsRefresher {
            inventories: skills,
            live: live.clone(),
        },
    ));
    server.add_service(background_service("telegram bot", BotService { bot }));
    server.add_service(background_service(
        "node health checks",
        HealthChecker::new(live.clone()),
    ));
    server.add_service(background_service(
        "rate limiter sweep",
        LimiterSweep {
            limiter: rate_limiter,
            clock,
        },
    ));
    Ok((
        server,
        Handles {
            live,
            credentials,
            ledger,
            billing,
        },
    ))
}

fn ensure_can_listen(addr: SocketAddr) -> Result<(), String> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Starts the ledger and log writer threads once the process is in its final form: a thread
/// made before Pingora's daemon fork does not survive it.
struct WriterThreads {
    ledger: Arc<LedgerWriter>,
}

#[async_trait]
impl BackgroundService for WriterThreads {
    async fn start(&self, _shutdown: ShutdownWatch) {
        if let Err(e) = logging::start_writer_thread() {
            tracing::error!("the log writer cannot start; log lines go to stderr directly: {e}");
        }
        if let Err(e) = self.ledger.launch() {
            tracing::error!("the ledger writer cannot start; rows queue until shutdown: {e}");
        }
    }
}

/// Writes changed monthly quota counters every `ledger.quota_flush_interval`.
struct QuotaFlush {
    billing: Arc<Billing>,
    credentials: Arc<Credentials>,
    every: Duration,
}

#[async_trait]
impl BackgroundService for QuotaFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let (billing, credentials) = (self.billing.clone(), self.credentials.clone());
                    let flushed = tokio::task::spawn_blocking(move || {
                        let mut conn = credentials.open_db()?;
                        billing.flush_quotas(&mut conn).map_err(|e| e.to_string())
                    })
                    .await;
                    if let Ok(Err(e)) = flushed {
                        tracing::error!("could not save monthly quota counters (will retry): {e}");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Drops rate state of users whose window is full again, so memory tracks active users.
struct LimiterSweep {
    limiter: Arc<RateLimiter>,
    clock: SharedClock,
}

#[async_trait]
impl BackgroundService for LimiterSweep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.limiter.sweep(self.clock.now_ms());
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
