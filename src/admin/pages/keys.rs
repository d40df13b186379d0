//! `/keys`: every gateway key (id, user, tier, when made, when last used — never the key), a
//! form to make one (shown once, on the answer to the form, never again), and a revoke button
//! per active key, after which the proxy answers that key 401 from the next request on.
//!
//! The work is `AdminApp::create_key` and `AdminApp::revoke_key`, as for `POST /admin/keys`
//! and `DELETE /admin/keys/{id}`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{status_of, with_status, Nav, PageError};
use crate::admin::session::{Operator, OperatorForm};
use crate::admin::AdminApp;
use crate::api_error::ApiError;
use crate::auth::store::KeyListing;
use crate::dashboard::render;

#[derive(Template)]
#[template(path = "admin_keys.html")]
struct Keys<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    keys: Vec<KeyListing>,
    /// The configured tiers, for the form.
    tiers: Vec<String>,
    notice: String,
    error: String,
    /// What the form held when it was refused.
    user: &'a str,
}

#[derive(Template)]
#[template(path = "admin_key_created.html")]
struct KeyCreated {
    nav: Option<Nav>,
    id: String,
    key: String,
    user: String,
    tier: String,
}

#[derive(Deserialize)]
pub struct Done {
    #[serde(default)]
    revoked: Option<String>,
}

async fn keys_page(
    app: &AdminApp,
    operator: &Operator,
    notice: String,
    refused: Option<(ApiError, &str)>,
) -> Result<Response, PageError> {
    let mut keys = app.keys().await?;
    // Newest first: the key just made or touched is at the top.
    keys.reverse();
    let tiers = app.live.load().config.tiers.keys().cloned().collect();
    let status = refused
        .as_ref()
        .map_or(StatusCode::OK, |(e, _)| status_of(e));
    let (error, user) = match refused {
        Some((e, user)) => (e.message, user),
        None => (String::new(), ""),
    };
    let page = render(&Keys {
        nav: Nav::of(operator, "keys"),
        csrf: &operator.csrf,
        keys,
        tiers,
        notice,
        error,
        user,
    });
    Ok(with_status(page, status))
}

/// `GET /keys`.
pub async fn page(
    State(app): State<Arc<AdminApp>>,
    operator: Operator,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let notice = done
        .revoked
        .map(|id| format!("Key {id} is revoked: the gateway refuses it from now on."))
        .unwrap_or_default();
    keys_page(&app, &operator, notice, None).await
}

#[derive(Deserialize)]
pub struct NewKey {
    #[serde(default)]
    user: String,
    /// Empty: the gateway's default tier (or the user's subscription).
    #[serde(default)]
    tier: String,
}

/// `POST /keys`: the new key, shown once.
pub async fn create(
    State(app): State<Arc<AdminApp>>,
    OperatorForm { operator, form }: OperatorForm<NewKey>,
) -> Result<Response, PageError> {
    let user = form.user.trim().to_owned();
    let tier = Some(form.tier.trim().to_owned()).filter(|t| !t.is_empty());
    match app.create_key(user.clone(), tier).await {
        Ok(created) => Ok(render(&KeyCreated {
            nav: Nav::of(&operator, "keys"),
            id: created.id,
            key: created.key,
            user: created.user,
            tier: created.tier.unwrap_or_default(),
        })),
        Err(e) if e.status() >= 500 => Err(e.into()),
        Err(e) => keys_page(&app, &operator, String::new(), Some((e, &user))).await,
    }
}

#[derive(Deserialize)]
pub struct NoFields {}

/// `POST /keys/{id}/revoke`.
pub async fn revoke(
    State(app): State<Arc<AdminApp>>,
    Path(id): Path<String>,
    OperatorForm { operator, .. }: OperatorForm<NoFields>,
) -> Result<Response, PageError> {
    match app.revoke_key(&id).await {
        Ok(()) => {
            let to = format!(
                "/keys?{}",
                serde_urlencoded::to_string([("revoked", &id)]).unwrap_or_default()
            );
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) if e.status() >= 500 => Err(e.into()),
        Err(e) => keys_page(&app, &operator, String::new(), Some((e, ""))).await,
    }
}
