//! Runtime skills (issue 16): which skills a tenant's OpenClaw runtime has, and which of them the
//! tenant may use — the domain behind `/api/runtime/skills*`. It has no routes and reads no
//! config: the sidecar's handlers call it, and config hands it sources and packs.
//!
//! | module | what |
//! |---|---|
//! | `inventory` | `openclaw skills list --json` parsed into bounded types; what *ready* means |
//! | `source` | a command or a URL that prints a runtime's inventory, fetched under bounds |
//! | `cache` | each runtime's inventory, per TTL, refreshed in the background, stale on failure |
//! | `policy` | a tenant's flags per skill, the merged view, `PATCH`, packs, first bootstrap, remediation |
//! | `diagnostics` | why skills are unavailable, and what is missing, summarised |
//! | `store` | the policy in SQLite (migration 8) |
//!
//! **One endpoint, one short story** (after the handler has found the caller's tenant; another
//! owner's tenant answers 404 before any of this):
//!
//! - `GET /api/runtime/skills`: `inventories.get(runtime)?.get().await` → `store::load` →
//!   `policy::view(&served.inventory, &policy, include_hidden)`, beside `served.status(..)`.
//! - `PATCH /api/runtime/skills`: `policy::patch(&store::load(..)?, &body.policies)?` →
//!   `store::save`.
//! - `GET /api/runtime/skills/packs`: the configured `policy::Packs`.
//!   `POST …/packs`: `policy::apply_pack` → `store::save` (its `kept_disallowed` is worth showing).
//! - First runtime bootstrap of a tenant: `store::bootstrap(conn, tenant, &packs, now)`.
//! - `GET …/diagnostics`: `diagnostics::diagnose(&served.inventory, &policy)`.
//! - `POST …/remediate`: `policy::remediate(&inventory, &policy, strategy)` → `store::save`.
//!
//! **What ExoClaw enforces, and what stays the node's.** ExoClaw cannot switch a skill off
//! inside OpenClaw: one node serves many tenants, and OpenClaw's own switches
//! (`skills.entries.<key>.enabled`, the bundled allowlist, per-agent skill filters) are per node
//! or per agent, not per tenant. What ExoClaw enforces is what it shows, offers and sends: the
//! views and diagnostics, the packs, and whatever the run and Telegram layers build from
//! `effectiveReady` (the skills they name in instructions). A tenant's agent on a shared node can
//! still reach a skill the node has enabled, if it asks for it by name. Hard isolation is the
//! node's configuration: a dedicated node (or an agent with its own skill filter, listed with
//! `--agent <id>` so `blockedByAgentFilter` reflects it) per tenant whose policy must hold.

pub mod cache;
pub mod diagnostics;
pub mod inventory;
pub mod policy;
pub mod refresh;
pub mod source;
pub mod store;
