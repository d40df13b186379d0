//! The operators' pages on the admin listener, rendered on the server from the dashboard's
//! templates directory (`admin_*.html`), with the dashboard's stylesheet and two small scripts.
//!
//! | page | module |
//! |---|---|
//! | `/signin`, `/signout` (the admin token → a session) | `sign_in` |
//! | `/` live usage per user, the latest config reload; `/usage.json` | `overview` |
//! | `/nodes` every pool's nodes and their health; `/nodes.json` | `nodes` |
//! | `/keys` list, create (shown once), revoke | `keys` |
//! | `/runs` the queue by status, the latest runs, cancel and retry | `runs` |
//!
//! Tables that change by themselves (usage, nodes) are `live::LiveTable`s: rendered here, then
//! refreshed every few seconds by `admin.js` from a JSON twin of the page (the same JSON as
//! `/admin/usage` and `/admin/nodes`, behind the session instead of the bearer token).
//!
//! Every answer carries the dashboard's strict Content-Security-Policy (`dashboard::
//! secure_headers`: nothing inline, no frames). Each page is a short handler over an action of
//! `AdminApp` or `admin::runs`: the JSON API's own.
//!
//! Not for: the customers' pages (`crate::dashboard`, on the public listener).

pub mod keys;
pub mod live;
pub mod nodes;
pub mod overview;
pub mod runs;
pub mod sign_in;

use std::sync::Arc;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::session::Operator;
use super::AdminApp;
use crate::api_error::ApiError;
use crate::dashboard::{self, assets, render};

/// The operators' pages, their JSON twins and the assets.
pub fn router() -> Router<Arc<AdminApp>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/usage.json", get(overview::usage_json))
        .route("/nodes", get(nodes::page))
        .route("/nodes.json", get(nodes::nodes_json))
        .route("/keys", get(keys::page).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/runs", get(runs::page))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/signin", get(sign_in::form).post(sign_in::sign_in))
        .route("/signout", post(sign_in::sign_out))
        .route("/assets/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(dashboard::secure_headers))
}

/// What the header of a signed-in page needs: where the operator is, and the sign-out form's
/// token.
pub struct Nav {
    pub here: &'static str,
    pub csrf: String,
}

impl Nav {
    pub fn of(operator: &Operator, here: &'static str) -> Option<Nav> {
        Some(Nav {
            here,
            csrf: operator.csrf.clone(),
        })
    }
}

/// A page that cannot be shown: an HTML page with the reason, or the way to sign in.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

#[derive(Template)]
#[template(path = "admin_error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav>,
    title: &'a str,
    message: &'a str,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    /// Not signed in: the page sends the browser to `/signin`.
    pub fn sign_in() -> PageError {
        PageError::new(StatusCode::SEE_OTHER, "")
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        PageError::new(status, e.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::SEE_OTHER {
            return Redirect::to("/signin").into_response();
        }
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "Not now",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let mut response = render(&ErrorPage {
            nav: None,
            title,
            message: &self.message,
        });
        *response.status_mut() = self.status;
        response
    }
}

/// A page shown with `status` (a refused form shows its page again, with the reason).
pub fn with_status(mut page: Response, status: StatusCode) -> Response {
    *page.status_mut() = status;
    page
}

/// The status of a refusal from an action, for the page that shows it.
pub fn status_of(e: &ApiError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
}
