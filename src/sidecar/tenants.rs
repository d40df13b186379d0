//! `/api/tenants` and `/api/templates`: a customer's projects, and the agent templates their
//! tier may run.
//!
//! - `POST /api/tenants {name}` → 201; one past the tier's `max_tenants` → 402 naming the tier
//!   and where to upgrade. `GET /api/tenants`, `GET/PATCH/DELETE /api/tenants/{id}`.
//! - Another user's tenant answers 404, exactly like one that does not exist.
//! - Deleting a tenant cancels its queued runs and stops its running ones, and removes its
//!   Telegram pairings and pending pairing codes.
//!
//! The work of each route is an action (`create_tenant`, `list_tenants`, `rename_tenant`,
//! `delete_tenant`) that the dashboard's pages call too, with the signed-in user as the caller.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{self, Caller, Customer, Id, JsonBody};
use super::Sidecar;
use crate::api_error::{shown, ApiError, ErrorKind};
use crate::config::{Config, Template};
use crate::ledger::connection::write_transaction;
use crate::telegram;
use crate::tenants::{self, store, Tenant};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    name: String,
}

/// A tenant as its owner sees it.
pub fn tenant_json(tenant: &Tenant, config: &Config, tier: &str) -> Value {
    let (pool, pinned) = tenants::runtime_pool(config, tier, tenant);
    json!({
        "id": tenant.id,
        "object": "tenant",
        "name": tenant.name,
        "created_ms": tenant.created_ms,
        "updated_ms": tenant.updated_ms,
        "runtime": { "pool": pool, "dedicated": pinned },
    })
}

/// A template as a form needs it.
pub fn template_json(id: &str, template: &Template) -> Value {
    let inputs: Vec<Value> = template
        .inputs
        .iter()
        .map(|(name, input)| {
            json!({
                "name": name,
                "label": input.label,
                "description": input.description,
                "required": input.required,
                "max_len": input.max_len,
                "multiline": input.multiline,
            })
        })
        .collect();
    json!({
        "id": id,
        "object": "template",
        "name": template.name,
        "description": template.description,
        "agent": template.agent,
        "inputs": inputs,
        "timeout_s": template.timeout.as_secs(),
        "max_attempts": template.max_attempts,
    })
}

/// `GET /api/templates`: those the caller's tier may use.
pub async fn list_templates(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
) -> Response {
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let (tier, _) = sidecar.tier_of(&caller, config);
    let data: Vec<Value> = config
        .templates
        .iter()
        .filter(|(_, t)| t.allows_tier(tier))
        .map(|(id, t)| template_json(id, t))
        .collect();
    extract::json(200, json!({ "object": "list", "data": data }))
}

/// `POST /api/tenants`.
pub async fn create(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    JsonBody(body): JsonBody<TenantBody>,
) -> Result<Response, ApiError> {
    let tenant = create_tenant(&sidecar, &caller, &body.name).await?;
    let snapshot = sidecar.live.load_full();
    let (tier, _) = sidecar.tier_of(&caller, &snapshot.config);
    let mut response = extract::json(201, tenant_json(&tenant, &snapshot.config, tier));
    if let Ok(location) = format!("/api/tenants/{}", tenant.id).parse() {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Ok(response)
}

/// Creates a tenant of the caller's within their tier's `max_tenants` (402 past it).
pub async fn create_tenant(
    sidecar: &Sidecar,
    caller: &Caller,
    name: &str,
) -> Result<Tenant, ApiError> {
    let name =
        tenants::clean_name(name).map_err(|m| ApiError::invalid_request("invalid_name", m))?;
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let (tier_name, tier) = sidecar.tier_of(caller, config);
    let max = tier.max_tenants.count();
    let (id, owner, now) = (
        tenants::new_id(),
        caller.user.clone(),
        sidecar.clock.now_ms(),
    );
    let created = sidecar
        .with_db("tenants", move |conn| {
            store::create(conn, &id, &owner, &name, max, now).map_err(|e| e.to_string())
        })
        .await?;
    match created {
        store::Created::Tenant(tenant) => {
            tracing::info!(user = %caller.user, tenant = %tenant.id, "tenant created");
            Ok(tenant)
        }
        store::Created::OverLimit { used } => Err(over_limit(
            "tenant_limit_reached",
            format!(
                "Your tier `{tier_name}` allows {} tenant(s) and you have {used}.",
                max.unwrap_or(0)
            ),
            config,
        )),
    }
}

/// `GET /api/tenants`.
pub async fn list(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
) -> Result<Response, ApiError> {
    let found = list_tenants(&sidecar, &caller).await?;
    let snapshot = sidecar.live.load_full();
    let (tier, _) = sidecar.tier_of(&caller, &snapshot.config);
    let data: Vec<Value> = found
        .iter()
        .map(|t| tenant_json(t, &snapshot.config, tier))
        .collect();
    Ok(extract::json(
        200,
        json!({ "object": "list", "data": data }),
    ))
}

/// The caller's tenants.
pub async fn list_tenants(sidecar: &Sidecar, caller: &Caller) -> Result<Vec<Tenant>, ApiError> {
    let owner = caller.user.clone();
    sidecar
        .with_db("tenants", move |conn| {
            store::list(conn, &owner).map_err(|e| e.to_string())
        })
        .await
}

/// `GET /api/tenants/{id}`.
pub async fn show(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let tenant = owned_tenant(&sidecar, &caller.user, &id).await?;
    let snapshot = sidecar.live.load_full();
    let (tier, _) = sidecar.tier_of(&caller, &snapshot.config);
    Ok(extract::json(
        200,
        tenant_json(&tenant, &snapshot.config, tier),
    ))
}

/// `PATCH /api/tenants/{id} {name}`.
pub async fn rename(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
    JsonBody(body): JsonBody<TenantBody>,
) -> Result<Response, ApiError> {
    let renamed = rename_tenant(&sidecar, &caller, &id, &body.name).await?;
    let snapshot = sidecar.live.load_full();
    let (tier, _) = sidecar.tier_of(&caller, &snapshot.config);
    Ok(extract::json(
        200,
        tenant_json(&renamed, &snapshot.config, tier),
    ))
}

/// Renames the caller's tenant `id` (404 when it is not theirs).
pub async fn rename_tenant(
    sidecar: &Sidecar,
    caller: &Caller,
    id: &str,
    name: &str,
) -> Result<Tenant, ApiError> {
    let name =
        tenants::clean_name(name).map_err(|m| ApiError::invalid_request("invalid_name", m))?;
    if !tenants::is_id(id) {
        return Err(tenant_not_found(id));
    }
    let (owner, now, tenant_id) = (caller.user.clone(), sidecar.clock.now_ms(), id.to_owned());
    sidecar
        .with_db("tenants", move |conn| {
            store::rename(conn, &tenant_id, &owner, &name, now).map_err(|e| e.to_string())
        })
        .await?
        .ok_or_else(|| tenant_not_found(id))
}

/// `DELETE /api/tenants/{id}`.
pub async fn delete(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let canceled = delete_tenant(&sidecar, &caller, &id).await?;
    Ok(extract::json(
        200,
        json!({ "id": id, "object": "tenant", "deleted": true, "runs_canceled": canceled }),
    ))
}

/// Deletes the caller's tenant `id`: its queued runs are canceled and its running ones
/// stopped; its Telegram users are unpaired and its pending pairing codes withdrawn. Returns
/// how many runs were canceled.
pub async fn delete_tenant(sidecar: &Sidecar, caller: &Caller, id: &str) -> Result<u64, ApiError> {
    if !tenants::is_id(id) {
        return Err(tenant_not_found(id));
    }
    let (owner, now, tenant_id) = (caller.user.clone(), sidecar.clock.now_ms(), id.to_owned());
    let deleted = sidecar
        .with_db("tenants", move |conn| {
            let delete = |conn: &mut rusqlite::Connection| {
                let tx = write_transaction(conn)?;
                let deleted = store::delete(&tx, &tenant_id, &owner, now)?;
                if deleted {
                    telegram::store::forget_tenant(&tx, &tenant_id)?;
                }
                tx.commit()?;
                Ok::<_, rusqlite::Error>(deleted)
            };
            delete(conn).map_err(|e| e.to_string())
        })
        .await?;
    if !deleted {
        return Err(tenant_not_found(id));
    }
    let canceled = sidecar.runs.cancel_tenant(id).await?;
    tracing::info!(user = %caller.user, tenant = %id, canceled, "tenant deleted");
    Ok(canceled)
}

/// The caller's tenant `id`, or 404 (also when it is someone else's).
pub async fn owned_tenant(sidecar: &Sidecar, owner: &str, id: &str) -> Result<Tenant, ApiError> {
    if !tenants::is_id(id) {
        return Err(tenant_not_found(id));
    }
    let (owner, tenant_id) = (owner.to_owned(), id.to_owned());
    sidecar
        .with_db("tenants", move |conn| {
            store::get(conn, &tenant_id, Some(&owner)).map_err(|e| e.to_string())
        })
        .await?
        .ok_or_else(|| tenant_not_found(id))
}

pub fn tenant_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "tenant_not_found",
        format!("You have no tenant `{}`.", shown(id)),
    )
}

/// 402 for a tier limit, with where to upgrade.
pub fn over_limit(code: &'static str, message: String, config: &Config) -> ApiError {
    ApiError::tier_limit(code, message, config.stripe.upgrade_url.as_deref())
}
