//! `/api/runtime/skills…`: a tenant's skills as its OpenClaw runtime has them, merged with the
//! tenant's policy (the seed's endpoints, names and semantics).
//!
//! - `GET /api/runtime/skills?tenantId=…[&includeHidden=true]`: each skill with its inventory
//!   fields, its policy and `effectiveReady`, and where the inventory stands (`stale` with its
//!   kind when the source failed and the last good inventory is served).
//! - `PATCH /api/runtime/skills {tenantId, policies: [{name, allowed?, enabled?, hidden?}]}`.
//! - `GET /api/runtime/skills/packs`; `POST /api/runtime/skills/packs {tenantId, pack}`.
//! - `GET /api/runtime/skills/diagnostics?tenantId=…`.
//! - `POST /api/runtime/skills/remediate {tenantId, strategy?}` (`hide_unavailable` by default,
//!   or `enable_ready`).
//!
//! Only the tenant's owner may read or change its policy: another's answers 404. A tenant's
//! first look at its runtime bootstraps its policy with the `basic` pack when it has none.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::extract::{self, Customer, JsonBody, Params};
use super::tenants::owned_tenant;
use super::Sidecar;
use crate::api_error::{ApiError, ErrorKind};
use crate::skills::cache::Served;
use crate::skills::policy::{self, Policy, SkillPolicy, SkillPolicyPatch, Strategy};
use crate::skills::{diagnostics, store};
use crate::tenants::{self, Tenant};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ViewParams {
    tenant_id: String,
    #[serde(default)]
    include_hidden: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantParams {
    tenant_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchBody {
    tenant_id: String,
    policies: Vec<SkillPolicyPatch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackBody {
    tenant_id: String,
    pack: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemediateBody {
    tenant_id: String,
    #[serde(default)]
    strategy: Option<String>,
}

/// The caller's tenant, its runtime's name, and its policy (bootstrapped on first look).
async fn tenant_policy(
    sidecar: &Sidecar,
    caller: &super::extract::Caller,
    tenant_id: &str,
) -> Result<(Tenant, String, Policy), ApiError> {
    let tenant = owned_tenant(sidecar, &caller.user, tenant_id).await?;
    let snapshot = sidecar.live.load_full();
    let (tier, _) = sidecar.tier_of(caller, &snapshot.config);
    let runtime = tenants::runtime_pool(&snapshot.config, tier, &tenant)
        .0
        .to_owned();
    let packs = snapshot.config.skills.packs.clone();
    let (id, now) = (tenant.id.clone(), sidecar.clock.now_ms());
    let policy = sidecar
        .with_db("skills policy", move |conn| {
            store::bootstrap(conn, &id, &packs, now).map_err(|e| e.to_string())?;
            store::load(conn, &id).map_err(|e| e.to_string())
        })
        .await?;
    Ok((tenant, runtime, policy))
}

/// The runtime's inventory as served now (the last good one when the source fails).
async fn inventory(sidecar: &Sidecar, runtime: &str) -> Result<Served, ApiError> {
    let Some(cache) = sidecar.skills.get(runtime) else {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "skills_inventory_not_configured",
            "This tenant's runtime has no skills inventory configured; ask the operator.",
        ));
    };
    cache.get().await.map_err(|failure| {
        tracing::warn!(runtime, "skills inventory unavailable: {}", failure.reason);
        ApiError::new(
            ErrorKind::Unavailable,
            "skills_inventory_unavailable",
            format!(
                "The runtime's skills inventory could not be read yet ({}); try again shortly.",
                failure.kind
            ),
        )
    })
}

fn policy_error(e: policy::PolicyError) -> ApiError {
    ApiError::invalid_request("invalid_policy", e.to_string())
}

/// Writes policy entries for the tenant, all or none.
async fn save(
    sidecar: &Sidecar,
    tenant_id: &str,
    entries: Vec<SkillPolicy>,
) -> Result<Vec<SkillPolicy>, ApiError> {
    let (id, now) = (tenant_id.to_owned(), sidecar.clock.now_ms());
    let saved = sidecar
        .with_db("skills policy", move |conn| {
            store::save(conn, &id, &entries, now)
                .map(|saved| (saved, entries))
                .map_err(|e| e.to_string())
        })
        .await?;
    match saved {
        (store::Saved::Written(_), entries) => Ok(entries),
        (store::Saved::OverLimit { max }, _) => Err(ApiError::invalid_request(
            "too_many_policies",
            format!("A tenant's skills policy holds at most {max} entries."),
        )),
    }
}

/// A tenant's skills as its runtime has them, merged with its policy: what the view shows.
pub struct TenantSkills {
    pub tenant: Tenant,
    pub runtime: String,
    pub served: Served,
    pub view: policy::SkillsView,
    pub policy: Policy,
}

/// The caller's tenant's skills (the view's and the dashboard's).
pub async fn tenant_skills(
    sidecar: &Sidecar,
    caller: &super::extract::Caller,
    tenant_id: &str,
    include_hidden: bool,
) -> Result<TenantSkills, ApiError> {
    let (tenant, runtime, policy) = tenant_policy(sidecar, caller, tenant_id).await?;
    let served = inventory(sidecar, &runtime).await?;
    let view = policy::view(&served.inventory, &policy, include_hidden);
    Ok(TenantSkills {
        tenant,
        runtime,
        served,
        view,
        policy,
    })
}

/// `GET /api/runtime/skills`.
pub async fn view(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Params(params): Params<ViewParams>,
) -> Result<Response, ApiError> {
    let found = tenant_skills(
        &sidecar,
        &caller,
        &params.tenant_id,
        params.include_hidden.unwrap_or(false),
    )
    .await?;
    Ok(extract::json(
        200,
        json!({
            "tenantId": found.tenant.id,
            "runtime": found.runtime,
            "inventory": found.served.status(false),
            "skills": found.view.skills,
            "hidden": found.view.hidden,
            "notInstalled": found.view.not_installed,
        }),
    ))
}

/// `PATCH /api/runtime/skills`.
pub async fn patch(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<Response, ApiError> {
    let written = change_policies(&sidecar, &caller, &body.tenant_id, &body.policies).await?;
    Ok(extract::json(
        200,
        json!({ "tenantId": body.tenant_id, "policies": written }),
    ))
}

/// Changes the flags of the skills `patches` name, in the caller's tenant's policy.
pub async fn change_policies(
    sidecar: &Sidecar,
    caller: &super::extract::Caller,
    tenant_id: &str,
    patches: &[SkillPolicyPatch],
) -> Result<Vec<SkillPolicy>, ApiError> {
    let (tenant, _, policy) = tenant_policy(sidecar, caller, tenant_id).await?;
    let entries = policy::patch(&policy, patches).map_err(policy_error)?;
    let written = save(sidecar, &tenant.id, entries).await?;
    tracing::info!(user = %caller.user, tenant = %tenant.id, entries = written.len(), "skills policy changed");
    Ok(written)
}

/// `GET /api/runtime/skills/packs`.
pub async fn packs(State(sidecar): State<Arc<Sidecar>>, _caller: Customer) -> Response {
    let snapshot = sidecar.live.load_full();
    extract::json(200, json!({ "packs": snapshot.config.skills.packs }))
}

/// `POST /api/runtime/skills/packs`.
pub async fn apply_pack(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    JsonBody(body): JsonBody<PackBody>,
) -> Result<Response, ApiError> {
    let (written, kept_disallowed) =
        apply_pack_to(&sidecar, &caller, &body.tenant_id, &body.pack).await?;
    Ok(extract::json(
        200,
        json!({
            "tenantId": body.tenant_id,
            "pack": body.pack,
            "policies": written,
            "keptDisallowed": kept_disallowed,
        }),
    ))
}

/// Enables and shows a pack's skills in the caller's tenant's policy; returns the entries
/// written and the skills the pack names that stay disallowed.
pub async fn apply_pack_to(
    sidecar: &Sidecar,
    caller: &super::extract::Caller,
    tenant_id: &str,
    pack: &str,
) -> Result<(Vec<SkillPolicy>, Vec<String>), ApiError> {
    let (tenant, _, policy) = tenant_policy(sidecar, caller, tenant_id).await?;
    let packs = sidecar.live.load_full().config.skills.packs.clone();
    let applied = policy::apply_pack(&policy, &packs, pack).map_err(|e| match e {
        policy::PolicyError::UnknownPack { .. } => ApiError::new(
            ErrorKind::NotFound,
            "pack_not_found",
            format!(
                "There is no pack `{}` (packs: {}).",
                crate::api_error::shown(pack),
                packs.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        other => policy_error(other),
    })?;
    let written = save(sidecar, &tenant.id, applied.changes).await?;
    Ok((written, applied.kept_disallowed))
}

/// `GET /api/runtime/skills/diagnostics`.
pub async fn diagnose(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Params(params): Params<TenantParams>,
) -> Result<Response, ApiError> {
    let (tenant, runtime, policy) = tenant_policy(&sidecar, &caller, &params.tenant_id).await?;
    let served = inventory(&sidecar, &runtime).await?;
    let found = diagnostics::diagnose(&served.inventory, &policy);
    Ok(extract::json(
        200,
        json!({
            "tenantId": tenant.id,
            "runtime": runtime,
            "inventory": served.status(false),
            "summary": found.summary,
            "unavailable": found.unavailable,
            "notInstalled": found.not_installed,
        }),
    ))
}

/// `POST /api/runtime/skills/remediate`.
pub async fn remediate(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    JsonBody(body): JsonBody<RemediateBody>,
) -> Result<Response, ApiError> {
    let (strategy, written) =
        remediate_tenant(&sidecar, &caller, &body.tenant_id, body.strategy.as_deref()).await?;
    Ok(extract::json(
        200,
        json!({
            "tenantId": body.tenant_id,
            "strategy": strategy.as_str(),
            "policies": written,
        }),
    ))
}

/// Applies a remediation strategy (`hide_unavailable` when None) to the caller's tenant.
pub async fn remediate_tenant(
    sidecar: &Sidecar,
    caller: &super::extract::Caller,
    tenant_id: &str,
    strategy: Option<&str>,
) -> Result<(Strategy, Vec<SkillPolicy>), ApiError> {
    let strategy = match strategy {
        None => Strategy::default(),
        Some(name) => name.parse::<Strategy>().map_err(policy_error)?,
    };
    let (tenant, runtime, policy) = tenant_policy(sidecar, caller, tenant_id).await?;
    let served = inventory(sidecar, &runtime).await?;
    let changes = policy::remediate(&served.inventory, &policy, strategy);
    let written = save(sidecar, &tenant.id, changes).await?;
    tracing::info!(user = %caller.user, tenant = %tenant.id, strategy = strategy.as_str(), changed = written.len(), "skills remediated");
    Ok((strategy, written))
}
