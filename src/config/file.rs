//! The config file as operators write it: YAML mapped one-to-one onto serde structs.
//!
//! Every struct rejects unknown keys, so a typo (`listn:`) is an error that names the key instead
//! of a setting silently ignored. Values stay raw here (strings for addresses, durations and
//! sizes); `config::validate` turns them into the checked structure the rest of the code uses.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub server: ServerSection,
    pub database: Option<String>,
    pub ledger: Option<LedgerSection>,
    pub auth: Option<AuthSection>,
    pub tiers: Option<BTreeMap<String, TierSection>>,
    pub default_tier: Option<String>,
    pub stripe: Option<StripeSection>,
    pub pools: BTreeMap<String, PoolSection>,
    pub routes: Option<Vec<RouteSection>>,
    pub templates: Option<BTreeMap<String, TemplateSection>>,
    pub runs: Option<RunsSection>,
    pub artifacts: Option<ArtifactsSection>,
    pub skills: Option<SkillsSection>,
    pub telegram: Option<TelegramSection>,
    pub dashboard: Option<DashboardSection>,
}

/// The web dashboard (`dashboard:`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    pub signup: Option<bool>,
    pub signups_per_hour: Option<u32>,
    pub session_ttl: Option<String>,
}

/// The shared Telegram bot (`telegram:`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSection {
    pub bot_username: String,
    pub bot_token_env: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub template: String,
    pub api_base: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillsSection {
    pub packs: Option<BTreeMap<String, Vec<String>>>,
}

/// Where a pool's skills inventory comes from: `url` or `command`, not both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillsInventorySection {
    pub url: Option<String>,
    pub command: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: String,
    pub admin_listen: Option<String>,
    pub sidecar_listen: Option<String>,
    pub threads: Option<usize>,
    pub max_request_body: Option<SizeValue>,
    pub grace_period: Option<String>,
    pub watch_config: Option<bool>,
    pub upgrade_sock: Option<String>,
    pub pid_file: Option<String>,
    pub request_log: Option<RequestLog>,
    pub keepalive_timeout: Option<String>,
    pub request_head_timeout: Option<String>,
    pub max_request_head: Option<SizeValue>,
    pub max_connections_per_client: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    pub queue_capacity: Option<usize>,
    pub batch_size: Option<usize>,
    pub flush_interval: Option<String>,
    pub retention: Option<String>,
    pub prune_interval: Option<String>,
    pub ip_hash_key_file: Option<String>,
    pub quota_flush_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub mode: Option<AuthMode>,
    pub require_key: Option<bool>,
    pub admin_token_env: Option<String>,
    pub token_key_env: Option<String>,
    pub token_key_file: Option<String>,
    pub failed_auth_per_minute: Option<u32>,
}

/// Phase 1 (`byok`: the client's provider key goes to the node) or Phase 2 (`codex`: the
/// gateway sends the user's stored Codex OAuth token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Byok,
    Codex,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSection {
    pub requests_per_minute: u32,
    /// `null` or absent: unlimited.
    pub monthly_requests: Option<u64>,
    pub pool: Option<String>,
    pub priority: Option<u8>,
    /// Tenants a user of this tier may own; absent: none (the agent service is opt-in).
    pub max_tenants: Option<LimitValue>,
    /// Agent runs a user may start per UTC month; absent: none.
    pub runs_per_month: Option<LimitValue>,
    /// A user's runs working at once; absent: 1.
    pub max_concurrent_runs: Option<u32>,
    /// What the pricing page shows as the price (`"$99 / month"`).
    pub price: Option<String>,
    /// Where the tier is bought (a Stripe Payment Link).
    pub checkout_url: Option<String>,
}

/// A count, or `unlimited`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    Count(u64),
    Word(String),
}

/// An agent template, as operators define it (`templates.ID`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    pub name: String,
    pub description: Option<String>,
    pub agent: String,
    pub instructions: String,
    pub inputs: Option<BTreeMap<String, TemplateInputSection>>,
    pub tiers: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateInputSection {
    pub required: Option<bool>,
    pub max_len: Option<usize>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub multiline: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsSection {
    pub workers: Option<usize>,
    pub lease: Option<String>,
    pub poll_interval: Option<String>,
    pub backoff: Option<BackoffSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSection {
    pub base: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsSection {
    pub dir: Option<String>,
    pub retention: Option<String>,
    pub prune_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSection {
    pub webhook_secret_env: Option<String>,
    pub tolerance: Option<String>,
    pub past_due_grace: Option<String>,
    pub price_tiers: Option<BTreeMap<String, String>>,
    pub payment_link_tiers: Option<BTreeMap<String, String>>,
    pub upgrade_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub strategy: Option<Strategy>,
    pub health_check: Option<HealthCheckSection>,
    pub queue: Option<QueueSection>,
    pub max_connect_attempts: Option<usize>,
    pub tls_ca_file: Option<String>,
    pub nodes: Vec<NodeSection>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub auth_token_env: Option<String>,
    pub byok_header: Option<String>,
    pub session: Option<SessionMode>,
    pub allow_openclaw_headers: Option<Vec<String>>,
    pub skills_inventory: Option<SkillsInventorySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
    pub addr: String,
    pub weight: Option<usize>,
    pub max_inflight: Option<u32>,
    pub tls: Option<bool>,
    pub sni: Option<String>,
    pub auth_token_env: Option<String>,
}

/// Which OpenClaw session a request lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// One session per authenticated user (and per sub-session the user names), chosen by
    /// the gateway.
    PerUser,
    /// A fresh session for every request: the node keeps no conversation between requests.
    PerRequest,
}

/// The level of the one log line written per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestLog {
    Off,
    Debug,
    Info,
    Warn,
}

/// How a pool spreads requests over its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    ConsistentHash,
    RoundRobin,
    LeastInflight,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub failures: Option<u32>,
    pub successes: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    pub max_waiting: Option<usize>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub path_prefix: Option<String>,
    pub model: Option<String>,
    pub model_prefix: Option<String>,
    pub pool: String,
}

/// A size is either a byte count (`1048576`) or text with a unit (`1MiB`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}
