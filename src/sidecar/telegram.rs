//! `/api/telegram`: a tenant's owner pairs Telegram users with the tenant, sees who is paired,
//! and removes a pairing. The bot itself (webhook, worker) lives elsewhere; this is the owner's
//! side of `crate::telegram::pairing`.
//!
//! - `POST /api/telegram/pairing {tenant_id}` → 201 with a one-time code, its `t.me` deep link
//!   and its expiry. The code is shown this once (`Cache-Control: no-store`); only its hash is
//!   stored. A tenant may have `MAX_PENDING_PER_TENANT` codes pending: one more is a 409 naming
//!   the limit and when codes expire. Without a `telegram:` section the bot cannot redeem a
//!   code, so none is made: 503 `telegram_not_configured`.
//! - `GET /api/telegram/pairings?tenant_id=` → the tenant's pairings, oldest first.
//! - `DELETE /api/telegram/pairings/{id}` → the Telegram user is no longer paired; their next
//!   message gets the how-to-pair answer.
//! - Listing and deleting work with the bot switched off too: an owner can still see and remove
//!   the pairings it left behind.
//! - Another user's tenant or pairing answers 404, exactly like one that does not exist.
//!
//! Deleting a tenant (`tenants::delete`) removes its pairings and pending codes.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{self, Caller, Customer, Id, JsonBody, Params};
use super::tenants::owned_tenant;
use super::Sidecar;
use crate::api_error::{shown, ApiError, ErrorKind};
use crate::telegram::pairing::{Pairing, PairingCode, CODE_TTL, MAX_PENDING_PER_TENANT};
use crate::telegram::store::{self, CodeCreated};
use crate::tenants::store as tenant_store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingBody {
    tenant_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    tenant_id: String,
}

/// A pairing as its tenant's owner sees it (the chat id is the bot's business).
fn pairing_json(pairing: &Pairing) -> Value {
    json!({
        "id": pairing.id,
        "object": "telegram_pairing",
        "telegram_user_id": pairing.telegram_user_id,
        "username": pairing.username,
        "first_name": pairing.first_name,
        "tenant_id": pairing.tenant_id,
        "created_ms": pairing.created_ms,
    })
}

/// `POST /api/telegram/pairing`.
pub async fn create_code(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    JsonBody(body): JsonBody<PairingBody>,
) -> Result<Response, ApiError> {
    let made = make_code(&sidecar, &caller, &body.tenant_id).await?;
    let mut response = extract::json(
        201,
        json!({
            "object": "telegram_pairing_code",
            "tenant_id": made.tenant_id,
            "code": made.code.as_str(),
            "deep_link": made.deep_link,
            "expires_ms": made.expires_ms,
            "bot_username": made.bot_username,
        }),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// A pairing code just made, to show its owner once.
pub struct NewCode {
    pub tenant_id: String,
    pub code: PairingCode,
    pub deep_link: String,
    pub expires_ms: u64,
    pub bot_username: String,
}

/// Makes a pairing code for the caller's tenant (503 without a bot, 409 over the pending limit).
pub async fn make_code(
    sidecar: &Sidecar,
    caller: &Caller,
    tenant_id: &str,
) -> Result<NewCode, ApiError> {
    let snapshot = sidecar.live.load_full();
    let bot_username = snapshot
        .config
        .telegram
        .as_ref()
        .map(|t| t.bot_username.clone())
        .ok_or_else(not_configured)?;
    let tenant = owned_tenant(sidecar, &caller.user, tenant_id).await?;
    let code = PairingCode::generate().map_err(|e| {
        tracing::error!(error = %e, "no pairing code");
        ApiError::internal()
    })?;
    let (hash, id, owner, now) = (
        code.hash(),
        tenant.id.clone(),
        caller.user.clone(),
        sidecar.clock.now_ms(),
    );
    let created = sidecar
        .with_db("telegram pairing", move |conn| {
            store::create_code(conn, &hash, &id, &owner, now).map_err(|e| e.to_string())
        })
        .await?;
    let expires_ms = match created {
        CodeCreated::Created { expires_ms } => expires_ms,
        CodeCreated::TooManyPending { pending } => return Err(too_many_pending(pending)),
    };
    tracing::info!(user = %caller.user, tenant = %tenant.id, "telegram pairing code made");
    Ok(NewCode {
        deep_link: code.deep_link(&bot_username),
        tenant_id: tenant.id,
        code,
        expires_ms,
        bot_username,
    })
}

/// `GET /api/telegram/pairings?tenant_id=`.
pub async fn list(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let pairings = tenant_pairings(&sidecar, &caller, &params.tenant_id).await?;
    let data: Vec<Value> = pairings.iter().map(pairing_json).collect();
    Ok(extract::json(
        200,
        json!({ "object": "list", "data": data }),
    ))
}

/// The Telegram users paired with the caller's tenant, oldest first.
pub async fn tenant_pairings(
    sidecar: &Sidecar,
    caller: &Caller,
    tenant_id: &str,
) -> Result<Vec<Pairing>, ApiError> {
    let tenant = owned_tenant(sidecar, &caller.user, tenant_id).await?;
    sidecar
        .with_db("telegram pairings", move |conn| {
            store::pairings_of_tenant(conn, &tenant.id).map_err(|e| e.to_string())
        })
        .await
}

/// `DELETE /api/telegram/pairings/{id}`: only a pairing with a tenant of the caller's.
pub async fn delete(
    State(sidecar): State<Arc<Sidecar>>,
    Customer(caller): Customer,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let deleted = remove_pairing(&sidecar, &caller, &id).await?;
    Ok(extract::json(
        200,
        json!({ "id": deleted.id, "object": "telegram_pairing", "deleted": true }),
    ))
}

/// Removes pairing `id` of one of the caller's tenants (404 for anyone else's, as for none).
pub async fn remove_pairing(
    sidecar: &Sidecar,
    caller: &Caller,
    id: &str,
) -> Result<Pairing, ApiError> {
    let pairing_id: i64 = id.parse().map_err(|_| pairing_not_found(id))?;
    let owner = caller.user.clone();
    let deleted = sidecar
        .with_db("telegram pairings", move |conn| {
            let found = store::pairing_by_id(conn, pairing_id).map_err(|e| e.to_string())?;
            let Some(pairing) = found else {
                return Ok(None);
            };
            let owned = tenant_store::get(conn, &pairing.tenant_id, Some(&owner))
                .map_err(|e| e.to_string())?
                .is_some();
            if !owned {
                return Ok(None);
            }
            let deleted = store::delete_pairing(conn, pairing.id, &pairing.tenant_id)
                .map_err(|e| e.to_string())?;
            Ok(deleted.then_some(pairing))
        })
        .await?
        .ok_or_else(|| pairing_not_found(id))?;
    tracing::info!(
        user = %caller.user,
        tenant = %deleted.tenant_id,
        pairing = deleted.id,
        "telegram pairing deleted"
    );
    Ok(deleted)
}

fn not_configured() -> ApiError {
    ApiError::new(
        ErrorKind::Unavailable,
        "telegram_not_configured",
        "This gateway has no Telegram bot: its operator has not set up the `telegram:` section, \
         so a pairing code could not be used.",
    )
}

fn too_many_pending(pending: u64) -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        "too_many_pending_codes",
        format!(
            "This tenant has {pending} pairing codes pending, and {MAX_PENDING_PER_TENANT} is \
             the limit. Use one, or wait: a code expires {} minutes after it is made.",
            CODE_TTL.as_secs() / 60
        ),
    )
}

fn pairing_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "pairing_not_found",
        format!("You have no Telegram pairing `{}`.", shown(id)),
    )
}
