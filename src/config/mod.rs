//! Configuration: the YAML file (`file`) and the validated structure (`Config`) that the rest of
//! ExoClaw reads.
//!
//! Validation happens once, when the file is loaded: unknown keys, unparsable addresses, bad
//! durations and sizes are reported with the path of the offending key
//! (`pools.openclaw.nodes[0].addr: ...`). Nothing in the request path re-parses config.

pub mod agents;
pub mod bounds;
pub mod file;
pub mod skills;
pub mod telegram;
mod text;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::codex::TokenCipher;
pub use agents::{Artifacts, Limit, Runs, Template, TemplateInput};
use bounds::{
    duration_within, within, MAX_CONNECT_ATTEMPTS, MAX_FAILED_AUTH_PER_MINUTE,
    MAX_HEALTH_THRESHOLD, MAX_INFLIGHT, MAX_INTERVAL, MAX_LEDGER_BATCH_SIZE,
    MAX_LEDGER_QUEUE_CAPACITY, MAX_MONTHLY_REQUESTS, MAX_NODES_PER_POOL, MAX_NODE_WEIGHT,
    MAX_PAST_DUE_GRACE, MAX_REQUESTS_PER_MINUTE, MAX_REQUEST_BODY, MAX_RETENTION,
    MAX_SIGNATURE_TOLERANCE, MAX_THREADS, MAX_TIMEOUT, MAX_WAITING,
};
pub use file::{AuthMode, RequestLog, SessionMode, Strategy};
use file::{
    AuthSection, ConfigFile, HealthCheckSection, LedgerSection, NodeSection, PoolSection,
    QueueSection, RouteSection, ServerSection, SizeValue, StripeSection, TierSection,
};

/// Default cap on a request body: large prompts fit, runaway uploads do not.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 10 * 1024 * 1024;
/// Default time to open a TCP connection to a node across the mesh.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest silence between two reads from a node. Models think before the first token,
/// so this is generous; a streamed answer resets it with every event.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Default longest wait for a node to accept request bytes.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time in-flight requests get to finish on a graceful stop.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Default time an idle keep-alive connection stays open between two requests.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send a whole request head, from its first byte.
pub const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Default cap on a request head (request line and headers): OpenAI clients send about 1 KiB.
pub const DEFAULT_MAX_REQUEST_HEAD: u64 = 64 * 1024;
/// Largest `max_request_head` accepted: Pingora itself stops reading heads at 1 MiB.
pub const MAX_REQUEST_HEAD_LIMIT: u64 = 1024 * 1024 - 1;
/// Default open connections from one client address: room for a workshop of 50 behind one
/// NAT, each SDK keeping a few connections.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 256;

/// Default admin listener: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9787";
/// Default sidecar listener: loopback only, reached through the proxy.
pub const DEFAULT_SIDECAR_LISTEN: &str = "127.0.0.1:9788";
/// The seed's limit: protects a 16 GB Mac mini from 50 trainees' runaway loops.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 50;
/// Failed authentications per minute from one IP before it is answered 429 without a check.
pub const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 20;

/// Default location of the SQLite ledger, relative to the working directory.
pub const DEFAULT_DATABASE: &str = "./data/exoclaw.db";

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub database: PathBuf,
    pub ledger: Ledger,
    pub auth: Auth,
    pub tiers: BTreeMap<String, Tier>,
    pub default_tier: String,
    pub stripe: Stripe,
    pub pools: BTreeMap<String, Pool>,
    pub routes: Vec<RouteRule>,
    /// Agent templates by id (`templates:`).
    pub templates: BTreeMap<String, Template>,
    pub runs: Runs,
    pub artifacts: Artifacts,
    /// Skill packs (`skills.packs`).
    pub skills: skills::Skills,
    /// The shared Telegram bot, when configured.
    pub telegram: Option<telegram::Telegram>,
}

impl Config {
    /// The tier a request runs under: the key's override when it names a known tier, the
    /// default tier otherwise.
    pub fn tier(&self, name: Option<&str>) -> (&str, &Tier) {
        name.and_then(|n| self.tiers.get_key_value(n))
            .or_else(|| self.tiers.get_key_value(self.default_tier.as_str()))
            .map(|(n, t)| (n.as_str(), t))
            .expect("validation guarantees the default tier exists")
    }
}

/// How request rows reach SQLite, and how long they stay.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    /// Rows waiting for the writer; beyond this they are counted as dropped, never waited for.
    pub queue_capacity: usize,
    /// Rows per transaction, at most.
    pub batch_size: usize,
    /// Longest a row waits for its batch to fill.
    pub flush_interval: Duration,
    /// Rows older than this are folded into the daily per-user rollup and deleted.
    pub retention: Option<Duration>,
    pub prune_interval: Duration,
    /// Where the key for hashing client IPs lives; created (mode 0600) on first start.
    pub ip_hash_key_file: PathBuf,
    /// How often monthly quota counters are written to SQLite (the most a crash can lose).
    pub quota_flush_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub mode: AuthMode,
    pub require_key: bool,
    /// Environment variable holding the admin API's bearer token.
    pub admin_token_env: String,
    /// Environment variable holding the Codex token encryption key (64 hex characters).
    pub token_key_env: String,
    /// File holding the Codex token encryption key, used when the variable is unset.
    pub token_key_file: Option<PathBuf>,
    pub failed_auth_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub requests_per_minute: u32,
    /// Requests per UTC calendar month; `None` is unlimited.
    pub monthly_requests: Option<u64>,
    /// The node pool this tier's requests go to.
    pub pool: String,
    /// Admission priority when nodes are full: higher goes first. Also orders queued runs.
    pub priority: u8,
    /// Tenants a user may own.
    pub max_tenants: Limit,
    /// Agent runs a user may start per UTC calendar month.
    pub runs_per_month: Limit,
    /// A user's runs working at once.
    pub max_concurrent_runs: u32,
}

/// Stripe webhooks and how their objects map to tiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Stripe {
    /// Environment variable holding the endpoint's signing secret (`whsec_…`).
    pub webhook_secret_env: String,
    /// Largest accepted distance between a signature's timestamp and now.
    pub tolerance: Duration,
    /// How long a `past_due` subscription keeps its tier before falling back to the default.
    pub past_due_grace: Duration,
    /// Stripe price id → tier.
    pub price_tiers: BTreeMap<String, String>,
    /// Stripe payment link id → tier.
    pub payment_link_tiers: BTreeMap<String, String>,
    /// Where a user at their quota can upgrade (shown in the 402 message).
    pub upgrade_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub sidecar_listen: SocketAddr,
    pub threads: usize,
    pub max_request_body: u64,
    pub grace_period: Duration,
    /// Reload when the config file changes (SIGHUP reloads either way).
    pub watch_config: bool,
    /// Where a new process (`serve --upgrade`) receives the listening sockets of the old one.
    pub upgrade_sock: PathBuf,
    /// Where `serve --daemon` writes its process id (what systemd's `PIDFile=` reads).
    pub pid_file: PathBuf,
    /// The level of the per-request log line (`off` silences it).
    pub request_log: RequestLog,
    /// Connection limits of the public listener.
    pub connections: ConnectionLimits,
}

/// What one client connection may hold of the gateway (the public listener).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// An idle keep-alive connection (no request under way) is closed after this.
    pub keepalive_timeout: Duration,
    /// A request head must be complete this long after its first byte (else 408).
    pub request_head_timeout: Duration,
    /// Bytes of a request head, at most (else 431).
    pub max_request_head: u64,
    /// Open connections from one client address, at most (else 429 and close).
    pub max_per_client: u32,
}

/// A named group of OpenClaw nodes that serve the same traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub strategy: Strategy,
    pub nodes: Vec<Node>,
    pub timeouts: Timeouts,
    pub health: HealthCheck,
    pub queue: Queue,
    /// Connection attempts per request, each on a different node.
    pub max_connect_attempts: usize,
    /// Certificates (DER) that TLS nodes of this pool must chain to, from `tls_ca_file`; empty
    /// means the system's trust store.
    pub tls_ca: Vec<Vec<u8>>,
    /// Where a BYOK provider key travels when `Authorization` carries the node's token
    /// (lower-case header name).
    pub byok_header: Option<String>,
    /// One session per user, or a fresh one per request.
    pub session: SessionMode,
    /// `x-openclaw-*` headers a client may send to this pool's nodes (lower case); every other
    /// one is dropped. Never `x-openclaw-scopes` or `x-openclaw-session-key`.
    pub allow_openclaw_headers: Vec<String>,
    /// Where this pool's runtime skills inventory comes from (`skills_inventory`).
    pub skills_inventory: Option<skills::SkillsInventory>,
}

/// `x-openclaw-*` headers no pool may let a client send: the session is the gateway's choice,
/// and scopes are an operator's.
pub const NEVER_FROM_CLIENT: [&str; 2] = ["x-openclaw-session-key", "x-openclaw-scopes"];

/// A node's bearer token: the environment variable it is read from, and its value when that
/// variable is set. The value is never shown: not by `Debug`, not in an error, not in a log.
#[derive(Clone, PartialEq)]
pub struct NodeToken {
    /// The environment variable's name.
    pub env: String,
    /// The config key that named it (`pools.p.auth_token_env`), for errors.
    pub key_path: String,
    value: Option<std::sync::Arc<str>>,
}

impl NodeToken {
    /// Reads the variable now (start-up, `check`, reload).
    fn from_env(env: String, key_path: String) -> NodeToken {
        let value = std::env::var(&env)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(std::sync::Arc::from);
        NodeToken {
            env,
            key_path,
            value,
        }
    }

    /// The token, when its variable was set.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.value.is_some() { "set" } else { "unset" };
        write!(f, "NodeToken({}: {state})", self.env)
    }
}

/// Active health checking of a pool's nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub enabled: bool,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures (checks or connects) that take a node out.
    pub failures: u32,
    /// Consecutive successful checks that bring it back.
    pub successes: u32,
}

/// Waiting for a free slot when every candidate node is at its `max_inflight`.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    pub max_waiting: usize,
    pub timeout: Duration,
}

/// A routing rule: requests matching every given condition go to `pool`. A rule without
/// conditions is a catch-all.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    pub path_prefix: Option<String>,
    pub model: Option<ModelMatch>,
    pub pool: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelMatch {
    Exact(String),
    Prefix(String),
}

impl RouteRule {
    pub fn is_catch_all(&self) -> bool {
        self.path_prefix.is_none() && self.model.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: usize,
    /// Requests this node takes at once; more wait in the pool's queue.
    pub max_inflight: Option<u32>,
    /// TLS to the node, with this SNI (None: plain TCP, the norm inside a Tailscale mesh).
    pub tls_sni: Option<String>,
    /// The token sent as `Authorization: Bearer …` to this node (its own, or its pool's).
    pub auth_token: Option<NodeToken>,
}

/// A config problem, with the dotted path of the key it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_yaml(&text)
    }

    /// Loads the file the way `serve`, `check` and a reload need it: valid, and with every
    /// secret it names present (node tokens in the environment, the Codex token key in its
    /// variable or file). (Commands that never reach a node, such as `keys` and `usage`, use
    /// `load` and need neither.)
    pub fn load_to_serve(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::load(path)?;
        config.require_node_tokens()?;
        config.token_cipher()?;
        Ok(config)
    }

    /// The Codex token key, read now: from the variable `auth.token_key_env`, or else from
    /// `auth.token_key_file`. A key that is named but unreadable or malformed is an error in
    /// either mode; in codex mode a missing key is one too (stored tokens could not be opened).
    /// `serve` builds its cipher with this, so `check` and a reload refuse exactly what `serve`
    /// refuses.
    pub fn token_cipher(&self) -> Result<Option<TokenCipher>, ConfigError> {
        let Auth {
            mode,
            token_key_env,
            token_key_file,
            ..
        } = &self.auth;
        if let Ok(text) = std::env::var(token_key_env) {
            return TokenCipher::from_hex(&text).map(Some).map_err(|e| {
                err(
                    "auth.token_key_env",
                    format!("environment variable `{token_key_env}`: {e}"),
                )
            });
        }
        match token_key_file {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    err(
                        "auth.token_key_file",
                        format!("cannot read the token key from {}: {e}", file.display()),
                    )
                })?;
                TokenCipher::from_hex(&text)
                    .map(Some)
                    .map_err(|e| err("auth.token_key_file", format!("{}: {e}", file.display())))
            }
            None if *mode == AuthMode::Codex => Err(err(
                "auth.token_key_env",
                format!(
                    "codex mode needs the token key: put 64 hex characters in the environment \
                     variable `{token_key_env}` or in a file named by `auth.token_key_file`"
                ),
            )),
            None => Ok(None),
        }
    }

    /// What is allowed but probably a mistake, for `check` to print and `serve` to log: Stripe
    /// mappings without the signing secret that verifies Stripe's webhooks (they would all be
    /// refused).
    pub fn warnings(&self) -> Vec<String> {
        let stripe = &self.stripe;
        let uses_stripe = !stripe.price_tiers.is_empty() || !stripe.payment_link_tiers.is_empty();
        let secret_set = std::env::var(&stripe.webhook_secret_env).is_ok_and(|v| !v.is_empty());
        let mut warnings = Vec::new();
        if uses_stripe && !secret_set {
            warnings.push(format!(
                "stripe: {} is not set, so every Stripe webhook will be refused (503) and paid \
                 tiers will not apply",
                stripe.webhook_secret_env
            ));
        }
        if let Some(bot) = &self.telegram {
            let unset = |name: &str| std::env::var(name).map_or(true, |v| v.is_empty());
            if unset(&bot.bot_token_env) {
                warnings.push(format!(
                    "telegram: {} is not set, so the bot cannot answer anyone",
                    bot.bot_token_env
                ));
            }
            if unset(&bot.webhook_secret_env) {
                warnings.push(format!(
                    "telegram: {} is not set, so every Telegram update will be refused (503)",
                    bot.webhook_secret_env
                ));
            }
        }
        warnings
    }

    /// Every node token the config names is set, and can travel in a header.
    pub fn require_node_tokens(&self) -> Result<(), ConfigError> {
        let tokens = self
            .pools
            .values()
            .flat_map(|pool| &pool.nodes)
            .filter_map(|node| node.auth_token.as_ref());
        for token in tokens {
            match token.value() {
                None => {
                    return Err(err(
                        &token.key_path,
                        format!(
                            "environment variable `{}` is not set (it holds the node token)",
                            token.env
                        ),
                    ))
                }
                Some(value) if http::HeaderValue::from_str(&format!("Bearer {value}")).is_err() => {
                    return Err(err(
                        &token.key_path,
                        format!(
                            "environment variable `{}` holds characters a header cannot carry",
                            token.env
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let raw: ConfigFile = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| err(e.path().to_string(), e.inner().to_string()))?;
        validate(raw)
    }
}

fn validate(raw: ConfigFile) -> Result<Config, ConfigError> {
    let ConfigFile {
        server,
        database,
        ledger,
        auth,
        tiers,
        default_tier,
        stripe,
        pools,
        routes,
        templates,
        runs,
        artifacts,
        skills: skills_section,
        telegram: telegram_section,
    } = raw;
    let database = match database {
        Some(path) if path.trim().is_empty() => return Err(err("database", "must not be empty")),
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(DEFAULT_DATABASE),
    };
    let server = validate_server(server, &database)?;
    let ledger = validate_ledger(ledger, &database)?;
    if pools.is_empty() {
        return Err(err("pools", "at least one pool is needed"));
    }
    let pools = pools
        .into_iter()
        .map(|(name, pool)| Ok((name.clone(), validate_pool(name, pool)?)))
        .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
    let routes = validate_routes(routes, &pools)?;
    let auth = validate_auth(auth)?;
    check_byok_travels_beside_node_tokens(&auth, &pools)?;
    let (tiers, default_tier) = validate_tiers(tiers, default_tier, &pools, &routes)?;
    let stripe = validate_stripe(stripe.unwrap_or_default(), &tiers)?;
    let templates = agents::templates(templates, &tiers)?;
    let runs = agents::runs(runs)?;
    let artifacts = agents::artifacts(artifacts, &database)?;
    let skills = skills::skills(skills_section)?;
    let telegram = telegram::telegram(telegram_section, &templates, auth.mode)?;
    Ok(Config {
        server,
        database,
        ledger,
        auth,
        tiers,
        default_tier,
        stripe,
        pools,
        routes,
        templates,
        runs,
        artifacts,
        skills,
        telegram,
    })
}

/// In BYOK mode the client's provider key goes to the node in `Authorization`; a node that
/// takes its own token there needs the provider key moved to the pool's `byok_header`.
fn check_byok_travels_beside_node_tokens(
    auth: &Auth,
    pools: &BTreeMap<String, Pool>,
) -> Result<(), ConfigError> {
    if auth.mode != AuthMode::Byok {
        return Ok(());
    }
    for (name, pool) in pools {
        let has_token = pool.nodes.iter().any(|n| n.auth_token.is_some());
        if has_token && pool.byok_header.is_none() {
            return Err(err(
                format!("pools.{name}.byok_header"),
                "this pool's nodes take their token in Authorization, where BYOK mode would put \
                 the provider key: name another header for the provider key (e.g. \
                 `byok_header: x-provider-authorization`)",
            ));
        }
    }
    Ok(())
}

fn validate_stripe(
    raw: StripeSection,
    tiers: &BTreeMap<String, Tier>,
) -> Result<Stripe, ConfigError> {
    let StripeSection {
        webhook_secret_env,
        tolerance,
        past_due_grace,
        price_tiers,
        payment_link_tiers,
        upgrade_url,
    } = raw;
    let known = |path: String, map: Option<BTreeMap<String, String>>| {
        let map = map.unwrap_or_default();
        for (id, tier) in &map {
            text::plain(&format!("{path}.{}", id.escape_debug()), id)?;
            if !tiers.contains_key(tier) {
                return Err(err(
                    format!("{path}.{id}"),
                    format!("`{tier}` is not a tier"),
                ));
            }
        }
        Ok(map)
    };
    let webhook_secret_env = env_var_name(
        "stripe.webhook_secret_env",
        webhook_secret_env,
        "STRIPE_WEBHOOK_SECRET",
    )?;
    if let Some(url) = &upgrade_url {
        text::plain("stripe.upgrade_url", url)?;
    }
    Ok(Stripe {
        webhook_secret_env,
        tolerance: duration_or(
            "stripe.tolerance",
            tolerance,
            Duration::from_secs(300),
            MAX_SIGNATURE_TOLERANCE,
        )?,
        past_due_grace: duration_or(
            "stripe.past_due_grace",
            past_due_grace,
            Duration::from_secs(3 * 86_400),
            MAX_PAST_DUE_GRACE,
        )?,
        price_tiers: known("stripe.price_tiers".to_owned(), price_tiers)?,
        payment_link_tiers: known("stripe.payment_link_tiers".to_owned(), payment_link_tiers)?,
        upgrade_url,
    })
}

fn validate_ledger(raw: Option<LedgerSection>, database: &Path) -> Result<Ledger, ConfigError> {
    let LedgerSection {
        queue_capacity,
        batch_size,
        flush_interval,
        retention,
        prune_interval,
        ip_hash_key_file,
        quota_flush_interval,
    } = raw.unwrap_or_default();
    let queue_capacity = within(
        "ledger.queue_capacity",
        queue_capacity.unwrap_or(65_536),
        1,
        MAX_LEDGER_QUEUE_CAPACITY,
    )?;
    let batch_size = within(
        "ledger.batch_size",
        batch_size.unwrap_or(5000),
        1,
        MAX_LEDGER_BATCH_SIZE,
    )?;
    let retention = match retention.as_deref() {
        None | Some("forever") => None,
        Some(text) => Some(
            units::parse_duration(text)
                .map_err(|m| err("ledger.retention", format!("{m}, or `forever`")))?,
        ),
    };
    if retention.is_some_and(|r| r < Duration::from_secs(86_400)) {
        return Err(err("ledger.retention", "must be at least 1d"));
    }
    if let Some(retention) = retention {
        duration_within("ledger.retention", retention, MAX_RETENTION)?;
    }
    let ip_hash_key_file = match ip_hash_key_file {
        Some(path) => PathBuf::from(path),
        None => database.with_file_name("ip_hash.key"),
    };
    Ok(Ledger {
        queue_capacity,
        batch_size,
        flush_interval: duration_or(
            "ledger.flush_interval",
            flush_interval,
            Duration::from_millis(200),
            MAX_INTERVAL,
        )?,
        retention,
        prune_interval: duration_or(
            "ledger.prune_interval",
            prune_interval,
            Duration::from_secs(3600),
            MAX_INTERVAL,
        )?,
        ip_hash_key_file,
        quota_flush_interval: duration_or(
            "ledger.quota_flush_interval",
            quota_flush_interval,
            Duration::from_secs(10),
            MAX_INTERVAL,
        )?,
    })
}

fn validate_auth(raw: Option<AuthSection>) -> Result<Auth, ConfigError> {
    let AuthSection {
        mode,
        require_key,
        admin_token_env,
        token_key_env,
        token_key_file,
        failed_auth_per_minute,
    } = raw.unwrap_or_default();
    let mode = mode.unwrap_or(AuthMode::Byok);
    let require_key = require_key.unwrap_or(true);
    if mode == AuthMode::Codex && !require_key {
        return Err(err(
            "auth.require_key",
            "codex mode needs gateway keys: without them anyone who knows a user id would get \
             that user's Codex session",
        ));
    }
    let failed_auth_per_minute = within(
        "auth.failed_auth_per_minute",
        failed_auth_per_minute.unwrap_or(DEFAULT_FAILED_AUTH_PER_MINUTE),
        1,
        MAX_FAILED_AUTH_PER_MINUTE,
    )?;
    Ok(Auth {
        mode,
        require_key,
        admin_token_env: env_var_name(
            "auth.admin_token_env",
            admin_token_env,
            "EXOCLAW_ADMIN_TOKEN",
        )?,
        token_key_env: env_var_name("auth.token_key_env", token_key_env, "EXOCLAW_TOKEN_KEY")?,
        token_key_file: match token_key_file {
            Some(file) if file.trim().is_empty() => {
                return Err(err("auth.token_key_file", "must not be empty"))
            }
            Some(file) => Some(PathBuf::from(file)),
            None => None,
        },
        failed_auth_per_minute,
    })
}

/// The name of an environment variable that holds a secret (`default` when not configured).
fn env_var_name(path: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    match value {
        Some(v) if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Err(err(
                path,
                format!("`{v}` is not an environment variable name"),
            ))
        }
        Some(v) => Ok(v),
        None => Ok(default.to_owned()),
    }
}

fn validate_tiers(
    raw: Option<BTreeMap<String, TierSection>>,
    default_tier: Option<String>,
    pools: &BTreeMap<String, Pool>,
    routes: &[RouteRule],
) -> Result<(BTreeMap<String, Tier>, String), ConfigError> {
    // A tier without its own pool uses the catch-all route, or the only pool there is.
    let fallback_pool = routes
        .iter()
        .find(|r| r.is_catch_all())
        .map(|r| r.pool.clone())
        .or_else(|| {
            (pools.len() == 1)
                .then(|| pools.keys().next().cloned())
                .flatten()
        });
    let raw = raw.unwrap_or_else(|| {
        BTreeMap::from([(
            "workshop".to_owned(),
            TierSection {
                requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
                monthly_requests: None,
                pool: None,
                priority: None,
                max_tenants: None,
                runs_per_month: None,
                max_concurrent_runs: None,
            },
        )])
    });
    let mut tiers = BTreeMap::new();
    for (name, section) in raw {
        text::plain(&format!("tiers.{}", name.escape_debug()), &name)?;
        let at = format!("tiers.{name}");
        let TierSection {
            requests_per_minute,
            monthly_requests,
            pool,
            priority,
            max_tenants,
            runs_per_month,
            max_concurrent_runs,
        } = section;
        let requests_per_minute = within(
            &format!("{at}.requests_per_minute"),
            requests_per_minute,
            0,
            MAX_REQUESTS_PER_MINUTE,
        )?;
        let monthly_requests = monthly_requests
            .map(|m| {
                within(
                    &format!("{at}.monthly_requests"),
                    m,
                    0,
                    MAX_MONTHLY_REQUESTS,
                )
            })
            .transpose()?;
        let pool = match pool.or_else(|| fallback_pool.clone()) {
            Some(pool) => pool,
            None => {
                return Err(err(
                    format!("tiers.{name}.pool"),
                    "name a pool, or add a catch-all route `{ pool: NAME }`",
                ))
            }
        };
        if !pools.contains_key(&pool) {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            return Err(err(
                format!("tiers.{name}.pool"),
                format!("`{pool}` is not a pool (pools: {})", known.join(", ")),
            ));
        }
        let tier = Tier {
            requests_per_minute,
            monthly_requests,
            pool,
            priority: priority.unwrap_or(0),
            max_tenants: agents::limit(&format!("{at}.max_tenants"), max_tenants)?,
            runs_per_month: agents::limit(&format!("{at}.runs_per_month"), runs_per_month)?,
            max_concurrent_runs: agents::concurrent_runs(
                &format!("{at}.max_concurrent_runs"),
                max_concurrent_runs,
            )?,
        };
        tiers.insert(name, tier);
    }
    if tiers.is_empty() {
        return Err(err("tiers", "at least one tier is needed"));
    }
    let default_tier = default_tier.unwrap_or_else(|| "workshop".to_owned());
    if !tiers.contains_key(&default_tier) {
        let known: Vec<&str> = tiers.keys().map(String::as_str).collect();
        return Err(err(
            "default_tier",
            format!(
                "`{default_tier}` is not a tier (tiers: {})",
                known.join(", ")
            ),
        ));
    }
    Ok((tiers, default_tier))
}

fn validate_server(raw: ServerSection, database: &Path) -> Result<Server, ConfigError> {
    let ServerSection {
        listen,
        admin_listen,
        sidecar_listen,
        threads,
        max_request_body,
        grace_period,
        watch_config,
        upgrade_sock,
        pid_file,
        request_log,
        keepalive_timeout,
        request_head_timeout,
        max_request_head,
        max_connections_per_client,
    } = raw;
    let connections = ConnectionLimits {
        keepalive_timeout: duration_or(
            "server.keepalive_timeout",
            keepalive_timeout,
            DEFAULT_KEEPALIVE_TIMEOUT,
            bounds::MAX_CONNECTION_TIMEOUT,
        )?,
        request_head_timeout: duration_or(
            "server.request_head_timeout",
            request_head_timeout,
            DEFAULT_REQUEST_HEAD_TIMEOUT,
            bounds::MAX_CONNECTION_TIMEOUT,
        )?,
        max_request_head: match max_request_head {
            None => DEFAULT_MAX_REQUEST_HEAD,
            Some(SizeValue::Bytes(n)) => n,
            Some(SizeValue::Text(t)) => {
                units::parse_size(&t).map_err(|m| err("server.max_request_head", m))?
            }
        },
        max_per_client: max_connections_per_client.unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
    };
    if !(1024..=MAX_REQUEST_HEAD_LIMIT).contains(&connections.max_request_head) {
        return Err(err(
            "server.max_request_head",
            format!("must be between 1KiB and {MAX_REQUEST_HEAD_LIMIT} bytes (just under 1MiB)"),
        ));
    }
    bounds::within(
        "server.max_connections_per_client",
        connections.max_per_client,
        1,
        bounds::MAX_CONNECTIONS_PER_CLIENT,
    )?;
    let listen = listen.parse().map_err(|_| {
        err(
            "server.listen",
            format!("`{listen}` is not an IP:port address (e.g. `0.0.0.0:8787`)"),
        )
    })?;
    let loopback = |path: &str, value: Option<String>, default: &str| {
        let text = value.unwrap_or_else(|| default.to_owned());
        let addr: SocketAddr = text.parse().map_err(|_| {
            err(
                path,
                format!("`{text}` is not an IP:port address (e.g. `{default}`)"),
            )
        })?;
        Ok::<_, ConfigError>(addr)
    };
    let admin_listen = loopback("server.admin_listen", admin_listen, DEFAULT_ADMIN_LISTEN)?;
    let sidecar_listen = loopback(
        "server.sidecar_listen",
        sidecar_listen,
        DEFAULT_SIDECAR_LISTEN,
    )?;
    if !sidecar_listen.ip().is_loopback() {
        return Err(err(
            "server.sidecar_listen",
            "must be a loopback address: the sidecar trusts what the proxy tells it",
        ));
    }
    let distinct = [listen, admin_listen, sidecar_listen];
    if distinct[0] == distinct[1] || distinct[0] == distinct[2] || distinct[1] == distinct[2] {
        return Err(err(
            "server",
            "listen, admin_listen and sidecar_listen must be different addresses",
        ));
    }
    let threads = within("server.threads", threads.unwrap_or(2), 1, MAX_THREADS)?;
    let max_request_body = match max_request_body {
        None => DEFAULT_MAX_REQUEST_BODY,
        Some(SizeValue::Bytes(n)) => n,
        Some(SizeValue::Text(t)) => {
            units::parse_size(&t).map_err(|m| err("server.max_request_body", m))?
        }
    };
    if max_request_body == 0 {
        return Err(err("server.max_request_body", "must be greater than zero"));
    }
    if max_request_body > MAX_REQUEST_BODY {
        return Err(err(
            "server.max_request_body",
            format!("must be at most {}MiB", MAX_REQUEST_BODY >> 20),
        ));
    }
    let grace_period = duration_or(
        "server.grace_period",
        grace_period,
        DEFAULT_GRACE_PERIOD,
        MAX_TIMEOUT,
    )?;
    Ok(Server {
        listen,
        admin_listen,
        sidecar_listen,
        threads,
        max_request_body,
        grace_period,
        watch_config: watch_config.unwrap_or(true),
        upgrade_sock: upgrade_sock
            .map_or_else(|| database.with_file_name("upgrade.sock"), PathBuf::from),
        pid_file: pid_file.map_or_else(|| database.with_file_name("exoclaw.pid"), PathBuf::from),
        request_log: request_log.unwrap_or(RequestLog::Info),
        connections,
    })
}

fn validate_pool(name: String, raw: PoolSection) -> Result<Pool, ConfigError> {
    let PoolSection {
        strategy,
        health_check,
        queue,
        max_connect_attempts,
        tls_ca_file,
        nodes,
        connect_timeout,
        read_timeout,
        write_timeout,
        auth_token_env,
        byok_header,
        session,
        allow_openclaw_headers,
        skills_inventory,
    } = raw;
    text::plain(&format!("pools.{}", name.escape_debug()), &name)?;
    let at = format!("pools.{name}");
    let skills_inventory = skills::inventory(&at, skills_inventory)?;
    let pool_token = auth_token_env
        .map(|env| {
            let path = format!("{at}.auth_token_env");
            env_var_name(&path, Some(env), "").map(|env| NodeToken::from_env(env, path))
        })
        .transpose()?;
    let byok_header = byok_header
        .map(|h| validate_byok_header(&format!("{at}.byok_header"), h))
        .transpose()?;
    let allow_openclaw_headers = allow_openclaw_headers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, h)| validate_openclaw_header(&format!("{at}.allow_openclaw_headers[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    let tls_ca = match tls_ca_file {
        None => Vec::new(),
        Some(path) => {
            load_ca_file(Path::new(&path)).map_err(|m| err(format!("{at}.tls_ca_file"), m))?
        }
    };
    if nodes.is_empty() {
        return Err(err(format!("{at}.nodes"), "a pool needs at least one node"));
    }
    if nodes.len() > MAX_NODES_PER_POOL {
        return Err(err(
            format!("{at}.nodes"),
            format!(
                "a pool has at most {MAX_NODES_PER_POOL} nodes, not {}",
                nodes.len()
            ),
        ));
    }
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| validate_node(&format!("{at}.nodes[{i}]"), node, pool_token.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, node) in nodes.iter().enumerate() {
        if nodes[..i].iter().any(|n| n.name == node.name) {
            return Err(err(
                format!("{at}.nodes[{i}].name"),
                format!("`{}` is used by another node of this pool", node.name),
            ));
        }
    }
    let timeouts = Timeouts {
        connect: duration_or(
            &format!("{at}.connect_timeout"),
            connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
            MAX_TIMEOUT,
        )?,
        read: duration_or(
            &format!("{at}.read_timeout"),
            read_timeout,
            DEFAULT_READ_TIMEOUT,
            MAX_TIMEOUT,
        )?,
        write: duration_or(
            &format!("{at}.write_timeout"),
            write_timeout,
            DEFAULT_WRITE_TIMEOUT,
            MAX_TIMEOUT,
        )?,
    };
    let HealthCheckSection {
        enabled,
        path,
        interval,
        timeout,
        failures,
        successes,
    } = health_check.unwrap_or_default();
    let path = path.unwrap_or_else(|| "/healthz".to_owned());
    text::uri_path(&format!("{at}.health_check.path"), &path, true)?;
    let health = HealthCheck {
        enabled: enabled.unwrap_or(true),
        path,
        interval: duration_or(
            &format!("{at}.health_check.interval"),
            interval,
            Duration::from_secs(2),
            MAX_INTERVAL,
        )?,
        timeout: duration_or(
            &format!("{at}.health_check.timeout"),
            timeout,
            Duration::from_secs(1),
            MAX_TIMEOUT,
        )?,
        failures: within(
            &format!("{at}.health_check.failures"),
            failures.unwrap_or(3),
            1,
            MAX_HEALTH_THRESHOLD,
        )?,
        successes: within(
            &format!("{at}.health_check.successes"),
            successes.unwrap_or(2),
            1,
            MAX_HEALTH_THRESHOLD,
        )?,
    };
    let QueueSection {
        max_waiting,
        timeout: queue_timeout,
    } = queue.unwrap_or_default();
    let queue = Queue {
        max_waiting: within(
            &format!("{at}.queue.max_waiting"),
            max_waiting.unwrap_or(1000),
            0,
            MAX_WAITING,
        )?,
        timeout: duration_or(
            &format!("{at}.queue.timeout"),
            queue_timeout,
            Duration::from_secs(30),
            MAX_TIMEOUT,
        )?,
    };
    let max_connect_attempts = within(
        &format!("{at}.max_connect_attempts"),
        max_connect_attempts.unwrap_or(3),
        1,
        MAX_CONNECT_ATTEMPTS,
    )?;
    Ok(Pool {
        name,
        tls_ca,
        strategy: strategy.unwrap_or(Strategy::ConsistentHash),
        nodes,
        timeouts,
        health,
        queue,
        max_connect_attempts,
        byok_header,
        session: session.unwrap_or(SessionMode::PerUser),
        allow_openclaw_headers,
        skills_inventory,
    })
}

/// Header names the gateway itself sets or strips on the way to a node: none of them can carry
/// a BYOK key.
const RESERVED_HEADER_PREFIXES: [&str; 4] =
    ["x-openclaw-", "x-forwarded-", "x-exoclaw-", "forwarded"];

fn validate_byok_header(path: &str, name: String) -> Result<String, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(err(path, format!("`{name}` is not a header name")));
    }
    if lower == "authorization"
        || lower == "host"
        || RESERVED_HEADER_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
    {
        return Err(err(
            path,
            format!("`{name}` is a header the gateway sets itself: name another"),
        ));
    }
    Ok(lower)
}

fn validate_openclaw_header(path: &str, name: String) -> Result<String, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    if !lower.starts_with("x-openclaw-") || http::HeaderName::from_bytes(lower.as_bytes()).is_err()
    {
        return Err(err(
            path,
            format!("`{name}` is not an `x-openclaw-*` header name"),
        ));
    }
    if NEVER_FROM_CLIENT.contains(&lower.as_str()) {
        return Err(err(
            path,
            format!(
                "`{lower}` can never come from a client: the gateway chooses the session, and \
                 scopes are an operator's"
            ),
        ));
    }
    Ok(lower)
}

/// Reads PEM certificates and checks each parses as X.509 (a bad file fails at load, not at the
/// first TLS handshake).
fn load_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = cert.map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{} holds an invalid certificate: {e}", path.display()))?;
        certs.push(der.to_vec());
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn validate_node(
    at: &str,
    raw: NodeSection,
    pool_token: Option<&NodeToken>,
) -> Result<Node, ConfigError> {
    let NodeSection {
        name,
        addr,
        weight,
        max_inflight,
        tls,
        sni,
        auth_token_env,
    } = raw;
    let auth_token = match auth_token_env {
        Some(env) => {
            let path = format!("{at}.auth_token_env");
            Some(NodeToken::from_env(
                env_var_name(&path, Some(env), "")?,
                path,
            ))
        }
        None => pool_token.cloned(),
    };
    text::plain(&format!("{at}.name"), &name)?;
    let weight = within(
        &format!("{at}.weight"),
        weight.unwrap_or(1),
        1,
        MAX_NODE_WEIGHT,
    )?;
    let max_inflight = max_inflight
        .map(|m| within(&format!("{at}.max_inflight"), m, 1, MAX_INFLIGHT))
        .transpose()?;
    let host = addr.rsplit_once(':').map_or("", |(h, _)| h).to_owned();
    let resolved = resolve(&addr).map_err(|m| err(format!("{at}.addr"), m))?;
    let tls_sni = match (tls.unwrap_or(false), sni) {
        (false, Some(_)) => return Err(err(format!("{at}.sni"), "needs `tls: true`")),
        (false, None) => None,
        (true, Some(sni)) => {
            text::host_name(&format!("{at}.sni"), &sni)?;
            Some(sni)
        }
        (true, None) => Some(host),
    };
    Ok(Node {
        name,
        addr: resolved,
        weight,
        max_inflight,
        tls_sni,
        auth_token,
    })
}

fn validate_routes(
    raw: Option<Vec<RouteSection>>,
    pools: &BTreeMap<String, Pool>,
) -> Result<Vec<RouteRule>, ConfigError> {
    let mut rules = Vec::new();
    for (i, section) in raw.unwrap_or_default().into_iter().enumerate() {
        let at = format!("routes[{i}]");
        let RouteSection {
            path_prefix,
            model,
            model_prefix,
            pool,
        } = section;
        if !pools.contains_key(&pool) {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            return Err(err(
                format!("{at}.pool"),
                format!("`{pool}` is not a pool (pools: {})", known.join(", ")),
            ));
        }
        if let Some(prefix) = &path_prefix {
            text::uri_path(&format!("{at}.path_prefix"), prefix, false)?;
        }
        if let Some(model) = &model {
            text::plain(&format!("{at}.model"), model)?;
        }
        if let Some(prefix) = &model_prefix {
            text::plain(&format!("{at}.model_prefix"), prefix)?;
        }
        let model = match (model, model_prefix) {
            (Some(_), Some(_)) => {
                return Err(err(at, "use either `model` or `model_prefix`, not both"))
            }
            (Some(m), None) => Some(ModelMatch::Exact(m)),
            (None, Some(p)) => Some(ModelMatch::Prefix(p)),
            (None, None) => None,
        };
        rules.push(RouteRule {
            path_prefix,
            model,
            pool,
        });
    }
    Ok(rules)
}

/// Accepts `IP:port` directly; resolves `host:port` once, at load time (never per request).
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(parsed) = addr.parse() {
        return Ok(parsed);
    }
    let (_, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not host:port (e.g. `100.82.244.127:18789`)"))?;
    port.parse::<u16>()
        .map_err(|_| format!("`{addr}` has no valid port"))?;
    addr.to_socket_addrs()
        .map_err(|e| format!("`{addr}` does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))
}

/// The duration at `path`, or `default`; more than zero and at most `max`.
fn duration_or(
    path: &str,
    raw: Option<String>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(text) => {
            let value = units::parse_duration(&text).map_err(|m| err(path, m))?;
            if value.is_zero() {
                return Err(err(path, "must be greater than zero"));
            }
            duration_within(path, value, max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
server: { listen: "127.0.0.1:8787" }
pools:
  openclaw:
    nodes: [ { name: mac-mini, addr: "127.0.0.1:18789" } ]
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.server.max_request_body, DEFAULT_MAX_REQUEST_BODY);
        assert_eq!(config.server.threads, 2);
        let pool = &config.pools["openclaw"];
        assert_eq!(pool.strategy, Strategy::ConsistentHash);
        assert_eq!(pool.nodes[0].weight, 1);
        assert_eq!(pool.timeouts.read, DEFAULT_READ_TIMEOUT);
        assert_eq!(pool.health.path, "/healthz");
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let text = MINIMAL.replace("listen:", "listn:");
        let e = Config::from_yaml(&text).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let text = MINIMAL.replace("name: mac-mini", "name: mac-mini, wieght: 2");
        let e = Config::from_yaml(&text).unwrap_err();
        assert!(e.path.starts_with("pools.openclaw.nodes[0]"), "{e}");
        assert!(e.to_string().contains("wieght"), "{e}");
    }

    #[test]
    fn bad_address_and_duration_name_the_key() {
        let e = Config::from_yaml(&MINIMAL.replace("127.0.0.1:8787", "localhost")).unwrap_err();
        assert_eq!(e.path, "server.listen");
        let e = Config::from_yaml(&MINIMAL.replace("127.0.0.1:18789", "mac-mini")).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.nodes[0].addr");
        let text = MINIMAL.replace("nodes:", "read_timeout: 30\n    nodes:");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.read_timeout");
        assert!(e.message.contains("no unit"));
    }

    #[test]
    fn sizes_accept_units_and_plain_numbers() {
        let text = MINIMAL.replace(
            "\"127.0.0.1:8787\"",
            "\"127.0.0.1:8787\", max_request_body: 2MiB",
        );
        assert_eq!(
            Config::from_yaml(&text).unwrap().server.max_request_body,
            2 << 20
        );
        let text = MINIMAL.replace(
            "\"127.0.0.1:8787\"",
            "\"127.0.0.1:8787\", max_request_body: 4096",
        );
        assert_eq!(
            Config::from_yaml(&text).unwrap().server.max_request_body,
            4096
        );
    }

    #[test]
    fn auth_and_tiers_default_to_the_workshop() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.auth.mode, AuthMode::Byok);
        assert!(config.auth.require_key);
        let (name, tier) = config.tier(None);
        assert_eq!((name, tier.requests_per_minute), ("workshop", 50));
        assert_eq!(
            (tier.monthly_requests, tier.pool.as_str()),
            (None, "openclaw")
        );
        assert_eq!(config.stripe.tolerance, Duration::from_secs(300));
        assert_eq!(config.tier(Some("nope")).0, "workshop");
        assert_eq!(config.server.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
    }

    #[test]
    fn ledger_defaults_and_retention() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.ledger.retention, None);
        assert_eq!(
            config.ledger.ip_hash_key_file,
            PathBuf::from("./data/ip_hash.key")
        );
        let text = format!("ledger: {{ retention: 90d }}\n{MINIMAL}");
        let config = Config::from_yaml(&text).unwrap();
        assert_eq!(
            config.ledger.retention,
            Some(Duration::from_secs(90 * 86_400))
        );
        let text = format!("ledger: {{ retention: 5m }}\n{MINIMAL}");
        assert_eq!(
            Config::from_yaml(&text).unwrap_err().path,
            "ledger.retention"
        );
    }

    #[test]
    fn codex_mode_without_keys_is_refused() {
        let text = format!("auth: {{ mode: codex, require_key: false }}\n{MINIMAL}");
        assert_eq!(
            Config::from_yaml(&text).unwrap_err().path,
            "auth.require_key"
        );
        let text = format!("auth: {{ mode: oauth }}\n{MINIMAL}");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "auth.mode", "{e}");
    }

    #[test]
    fn default_tier_must_exist() {
        let text = format!("tiers: {{ tier1: {{ requests_per_minute: 5 }} }}\n{MINIMAL}");
        assert_eq!(Config::from_yaml(&text).unwrap_err().path, "default_tier");
        let text = format!(
            "tiers: {{ tier1: {{ requests_per_minute: 5 }} }}\ndefault_tier: tier1\n{MINIMAL}"
        );
        let config = Config::from_yaml(&text).unwrap();
        assert_eq!(config.tier(None).1.requests_per_minute, 5);
    }

    #[test]
    fn tiers_name_real_pools_and_stripe_maps_name_real_tiers() {
        let text = format!(
            "tiers: {{ t1: {{ requests_per_minute: 5, monthly_requests: 10, pool: elsewhere }} }}\n\
             default_tier: t1\n{MINIMAL}"
        );
        assert_eq!(Config::from_yaml(&text).unwrap_err().path, "tiers.t1.pool");
        let text = format!(
            "tiers: {{ t1: {{ requests_per_minute: 5, monthly_requests: null }} }}\ndefault_tier: t1\n\
             stripe: {{ price_tiers: {{ price_123: gold }} }}\n{MINIMAL}"
        );
        assert_eq!(
            Config::from_yaml(&text).unwrap_err().path,
            "stripe.price_tiers.price_123"
        );
    }

    #[test]
    fn routes_name_real_pools_and_tiers_fall_back_to_the_catch_all() {
        let two_pools = "pools:\n  openclaw: { nodes: [ { name: a, addr: \"127.0.0.1:1\" } ] }\n  \
                         noclaw: { strategy: round_robin, nodes: [ { name: g, addr: \"127.0.0.1:2\" } ] }\n";
        let base = "server: { listen: \"127.0.0.1:8787\" }\n";
        let text =
            format!("{base}{two_pools}routes: [ {{ model_prefix: gemma, pool: noclaw }} ]\n");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(
            e.path, "tiers.workshop.pool",
            "two pools and no catch-all: {e}"
        );
        let text = format!(
            "{base}{two_pools}routes: [ {{ model_prefix: gemma, pool: noclaw }}, {{ pool: openclaw }} ]\n"
        );
        let config = Config::from_yaml(&text).unwrap();
        assert_eq!(config.tier(None).1.pool, "openclaw");
        assert_eq!(
            config.routes[0].model,
            Some(ModelMatch::Prefix("gemma".into()))
        );
        let text = format!("{base}{two_pools}routes: [ {{ pool: hermes }} ]\n");
        assert_eq!(Config::from_yaml(&text).unwrap_err().path, "routes[0].pool");
    }

    #[test]
    fn the_sidecar_stays_on_loopback() {
        let text = MINIMAL.replace(
            "listen: \"127.0.0.1:8787\"",
            "listen: \"127.0.0.1:8787\", sidecar_listen: \"0.0.0.0:9788\"",
        );
        assert_eq!(
            Config::from_yaml(&text).unwrap_err().path,
            "server.sidecar_listen"
        );
    }

    #[test]
    fn duplicate_node_names_are_rejected() {
        let text = MINIMAL.replace(
            "[ { name: mac-mini, addr: \"127.0.0.1:18789\" } ]",
            "[ { name: a, addr: \"127.0.0.1:1\" }, { name: a, addr: \"127.0.0.1:2\" } ]",
        );
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.nodes[1].name");
    }

    fn with_pool_keys(keys: &str) -> String {
        MINIMAL.replace("  openclaw:\n", &format!("  openclaw:\n{keys}"))
    }

    #[test]
    fn node_tokens_come_from_the_environment_and_never_show() {
        std::env::set_var("EXOCLAW_TEST_POOL_TOKEN", "pool-secret");
        std::env::set_var("EXOCLAW_TEST_NODE_TOKEN", "node-secret");
        let text = with_pool_keys(
            "    auth_token_env: EXOCLAW_TEST_POOL_TOKEN\n    byok_header: X-Provider-Authorization\n",
        )
        .replace(
            "[ { name: mac-mini, addr: \"127.0.0.1:18789\" } ]",
            "[ { name: a, addr: \"127.0.0.1:1\" }, \
             { name: b, addr: \"127.0.0.1:2\", auth_token_env: EXOCLAW_TEST_NODE_TOKEN } ]",
        );
        let config = Config::from_yaml(&text).unwrap();
        config.require_node_tokens().unwrap();
        let pool = &config.pools["openclaw"];
        let token = |i: usize| pool.nodes[i].auth_token.as_ref().unwrap().value().unwrap();
        assert_eq!((token(0), token(1)), ("pool-secret", "node-secret"));
        assert_eq!(
            pool.byok_header.as_deref(),
            Some("x-provider-authorization")
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("pool-secret") && !shown.contains("node-secret"));
        assert!(shown.contains("EXOCLAW_TEST_POOL_TOKEN"));
    }

    #[test]
    fn an_unset_token_variable_is_named_by_the_serving_check() {
        let text = with_pool_keys(
            "    auth_token_env: EXOCLAW_TEST_NEVER_SET\n    byok_header: x-provider-key\n",
        );
        let config = Config::from_yaml(&text).expect("keys and usage need no node token");
        let e = config.require_node_tokens().unwrap_err();
        assert_eq!(e.path, "pools.openclaw.auth_token_env");
        assert!(e.message.contains("EXOCLAW_TEST_NEVER_SET"), "{e}");
    }

    #[test]
    fn byok_beside_a_node_token_needs_its_own_header() {
        let text = with_pool_keys("    auth_token_env: PATH\n");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.byok_header");
        let codex = format!("auth: {{ mode: codex }}\n{text}");
        assert!(
            Config::from_yaml(&codex).is_ok(),
            "codex mode leaves Authorization free"
        );
        for bad in [
            "authorization",
            "x-openclaw-model",
            "x-forwarded-for",
            "bad header",
        ] {
            let text = with_pool_keys(&format!(
                "    auth_token_env: PATH\n    byok_header: \"{bad}\"\n"
            ));
            let e = Config::from_yaml(&text).unwrap_err();
            assert_eq!(e.path, "pools.openclaw.byok_header", "{bad}");
        }
    }

    #[test]
    fn sessions_and_openclaw_headers_are_the_gateways_to_allow() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        let pool = &config.pools["openclaw"];
        assert_eq!(pool.session, SessionMode::PerUser);
        assert!(pool.allow_openclaw_headers.is_empty());
        let text = with_pool_keys(
            "    session: per_request\n    allow_openclaw_headers: [X-OpenClaw-Agent-Id]\n",
        );
        let pool = Config::from_yaml(&text).unwrap().pools["openclaw"].clone();
        assert_eq!(pool.session, SessionMode::PerRequest);
        assert_eq!(pool.allow_openclaw_headers, ["x-openclaw-agent-id"]);
        for never in [
            "x-openclaw-session-key",
            "X-OpenClaw-Scopes",
            "x-forwarded-for",
        ] {
            let text = with_pool_keys(&format!("    allow_openclaw_headers: [{never}]\n"));
            let e = Config::from_yaml(&text).unwrap_err();
            assert_eq!(
                e.path, "pools.openclaw.allow_openclaw_headers[0]",
                "{never}"
            );
        }
    }

    /// `MINIMAL` with `extra` at the top level and `keys` in the pool.
    fn with(extra: &str, keys: &str) -> String {
        format!("{extra}{}", with_pool_keys(keys))
    }

    #[test]
    fn every_number_past_its_bound_is_refused_naming_the_key_and_the_bound() {
        let node = |keys: &str| {
            MINIMAL.replace(
                "addr: \"127.0.0.1:18789\" }",
                &format!("addr: \"127.0.0.1:18789\"{keys} }}"),
            )
        };
        let server = |keys: &str| {
            MINIMAL.replace("\"127.0.0.1:8787\"", &format!("\"127.0.0.1:8787\", {keys}"))
        };
        let cases = [
            (node(", weight: 4294967296"), "pools.openclaw.nodes[0].weight", "at most 100,"),
            (node(", weight: 101"), "pools.openclaw.nodes[0].weight", "at most 100,"),
            (node(", max_inflight: 10001"), "pools.openclaw.nodes[0].max_inflight", "at most 10000,"),
            (server("threads: 1000000000"), "server.threads", "at most 256,"),
            (server("max_request_body: 257MiB"), "server.max_request_body", "at most 256MiB"),
            (server("grace_period: 2h"), "server.grace_period", "at most 1h"),
            (with("ledger: { queue_capacity: 1099511627776 }\n", ""), "ledger.queue_capacity", "at most 4194304,"),
            (with("ledger: { batch_size: 100001 }\n", ""), "ledger.batch_size", "at most 100000,"),
            (with("ledger: { flush_interval: 2d }\n", ""), "ledger.flush_interval", "at most 1d"),
            (with("ledger: { prune_interval: 2d }\n", ""), "ledger.prune_interval", "at most 1d"),
            (with("ledger: { quota_flush_interval: 2d }\n", ""), "ledger.quota_flush_interval", "at most 1d"),
            (with("ledger: { retention: 3651d }\n", ""), "ledger.retention", "at most 3650d"),
            (with("auth: { failed_auth_per_minute: 10001 }\n", ""), "auth.failed_auth_per_minute", "at most 10000,"),
            (with("tiers: { workshop: { requests_per_minute: 1000000001 } }\n", ""), "tiers.workshop.requests_per_minute", "at most 1000000000,"),
            (with("tiers: { workshop: { requests_per_minute: 1, monthly_requests: 10000000001 } }\n", ""), "tiers.workshop.monthly_requests", "at most 10000000000,"),
            (with("stripe: { tolerance: 2h }\n", ""), "stripe.tolerance", "at most 1h"),
            (with("stripe: { past_due_grace: 91d }\n", ""), "stripe.past_due_grace", "at most 90d"),
            (with_pool_keys("    queue: { max_waiting: 100001, timeout: 2h }\n"), "pools.openclaw.queue.max_waiting", "at most 100000,"),
            (with_pool_keys("    queue: { timeout: 2h }\n"), "pools.openclaw.queue.timeout", "at most 1h"),
            (with_pool_keys("    max_connect_attempts: 17\n"), "pools.openclaw.max_connect_attempts", "at most 16,"),
            (with_pool_keys("    connect_timeout: 2h\n"), "pools.openclaw.connect_timeout", "at most 1h"),
            (with_pool_keys("    read_timeout: 36500d\n"), "pools.openclaw.read_timeout", "at most 1h"),
            (with_pool_keys("    write_timeout: 2h\n"), "pools.openclaw.write_timeout", "at most 1h"),
            (with_pool_keys("    health_check: { failures: 101 }\n"), "pools.openclaw.health_check.failures", "at most 100,"),
            (with_pool_keys("    health_check: { successes: 101 }\n"), "pools.openclaw.health_check.successes", "at most 100,"),
            (with_pool_keys("    health_check: { interval: 2d }\n"), "pools.openclaw.health_check.interval", "at most 1d"),
            (with_pool_keys("    health_check: { timeout: 2h }\n"), "pools.openclaw.health_check.timeout", "at most 1h"),
        ];
        for (text, path, bound) in cases {
            let e = Config::from_yaml(&text).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(bound), "{path} names its bound: {e}");
        }
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let text = format!(
            "ledger: {{ queue_capacity: {MAX_LEDGER_QUEUE_CAPACITY}, batch_size: {MAX_LEDGER_BATCH_SIZE}, retention: 3650d }}\n{}",
            with_pool_keys("    max_connect_attempts: 16\n    read_timeout: 1h\n    health_check: { failures: 100, interval: 1d }\n")
                .replace("\"127.0.0.1:18789\" }", "\"127.0.0.1:18789\", weight: 100, max_inflight: 10000 }")
                .replace("\"127.0.0.1:8787\"", "\"127.0.0.1:8787\", threads: 256, max_request_body: 256MiB")
        );
        let config = Config::from_yaml(&text).unwrap();
        let pool = &config.pools["openclaw"];
        assert_eq!((pool.nodes[0].weight, config.server.threads), (100, 256));
        assert_eq!(config.ledger.queue_capacity, MAX_LEDGER_QUEUE_CAPACITY);
    }

    #[test]
    fn a_pool_past_its_node_count_is_refused() {
        let nodes: Vec<String> = (0..=MAX_NODES_PER_POOL)
            .map(|i| format!("{{ name: n{i}, addr: \"127.0.0.1:{}\" }}", 20_000 + i))
            .collect();
        let text = MINIMAL.replace(
            "[ { name: mac-mini, addr: \"127.0.0.1:18789\" } ]",
            &format!("[ {} ]", nodes.join(", ")),
        );
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.nodes");
        assert!(e.message.contains("at most 100"), "{e}");
    }

    #[test]
    fn text_bound_for_requests_and_logs_holds_no_control_characters() {
        let node = |keys: &str| MINIMAL.replace("name: mac-mini, addr: \"127.0.0.1:18789\"", keys);
        let cases = [
            (node("name: \"mini\\r\\nforged\", addr: \"127.0.0.1:1\""), "pools.openclaw.nodes[0].name"),
            (node("name: \"mini\\0\", addr: \"127.0.0.1:1\""), "pools.openclaw.nodes[0].name"),
            (node("name: m, addr: \"127.0.0.1:1\", tls: true, sni: \"a\\r\\nHost: b\""), "pools.openclaw.nodes[0].sni"),
            (with_pool_keys("    health_check: { path: \"/healthz\\r\\nX: 1\" }\n"), "pools.openclaw.health_check.path"),
            (with_pool_keys("    health_check: { path: \"/health z\" }\n"), "pools.openclaw.health_check.path"),
            (with("routes: [ { path_prefix: \"/v1\\n\", pool: openclaw } ]\n", ""), "routes[0].path_prefix"),
            (with("routes: [ { path_prefix: \"/v1?x=1\", pool: openclaw } ]\n", ""), "routes[0].path_prefix"),
            (with("routes: [ { model: \"gpt\\u0007\", pool: openclaw } ]\n", ""), "routes[0].model"),
            (with("stripe: { upgrade_url: \"https://x.test/\\r\\n\" }\n", ""), "stripe.upgrade_url"),
            (MINIMAL.replace("  openclaw:", "  \"open\\nclaw\":"), "pools.open\\nclaw"),
            (with("tiers: { \"t\\u001b[2J\": { requests_per_minute: 1 } }\ndefault_tier: \"t\\u001b[2J\"\n", ""), "tiers.t\\u{1b}[2J"),
        ];
        for (text, path) in cases {
            let e = Config::from_yaml(&text).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(
                !e.to_string().chars().any(char::is_control),
                "the error itself is plain: {e:?}"
            );
        }
        let fine = with_pool_keys("    health_check: { path: \"/ready?deep=1\" }\n");
        assert_eq!(
            Config::from_yaml(&fine).unwrap().pools["openclaw"]
                .health
                .path,
            "/ready?deep=1"
        );
    }

    #[test]
    fn the_token_key_is_read_where_serving_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token.key");
        let auth = |extra: &str| {
            format!("auth: {{ mode: codex, token_key_env: EXOCLAW_TEST_KEY_NEVER_SET{extra} }}\n{MINIMAL}")
        };
        let config = Config::from_yaml(&auth("")).expect("keys and usage need no token key");
        let e = config.token_cipher().err().unwrap();
        assert_eq!(e.path, "auth.token_key_env");
        assert!(e.message.contains("EXOCLAW_TEST_KEY_NEVER_SET"), "{e}");

        let named = auth(&format!(", token_key_file: \"{}\"", file.display()));
        let e = Config::from_yaml(&named)
            .unwrap()
            .token_cipher()
            .err()
            .unwrap();
        assert_eq!(e.path, "auth.token_key_file");
        std::fs::write(&file, "not hex").unwrap();
        let e = Config::from_yaml(&named)
            .unwrap()
            .token_cipher()
            .err()
            .unwrap();
        assert_eq!(e.path, "auth.token_key_file");
        std::fs::write(&file, "ab".repeat(32)).unwrap();
        assert!(Config::from_yaml(&named)
            .unwrap()
            .token_cipher()
            .unwrap()
            .is_some());

        let byok = format!("auth: {{ token_key_env: EXOCLAW_TEST_KEY_NEVER_SET }}\n{MINIMAL}");
        assert!(Config::from_yaml(&byok)
            .unwrap()
            .token_cipher()
            .unwrap()
            .is_none());
        std::env::set_var("EXOCLAW_TEST_KEY_MALFORMED", "xyz");
        let bad = format!("auth: {{ token_key_env: EXOCLAW_TEST_KEY_MALFORMED }}\n{MINIMAL}");
        let e = Config::from_yaml(&bad)
            .unwrap()
            .token_cipher()
            .err()
            .unwrap();
        assert_eq!(
            e.path, "auth.token_key_env",
            "serve refuses a malformed key in any mode"
        );
    }
}
