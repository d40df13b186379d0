//! The web dashboard: pages for customers on the public listener, served by the sidecar and
//! rendered on the server from templates compiled into the binary (askama), with a little plain
//! JavaScript (`assets`) and nothing to build or install.
//!
//! | pages | module |
//! |---|---|
//! | `/`, `/pricing`, `/signup`, `/signin`, `/signout` | `public` |
//! | `/dashboard` (subscription, usage, tenants) | `account` |
//! | `/dashboard/tenants/{id}` (its runs, the launch forms), `/dashboard/runs/{id}…` (one run, live) | `runs` |
//! | `/dashboard/tenants/{id}/skills` (readiness, switches, packs, remediation) | `skills` |
//! | `/dashboard/tenants/{id}/telegram` (pairing codes with their QR, paired users) | `telegram` |
//! | `/assets/…` (CSS, JavaScript) | `assets` |
//!
//! Every page is answered with a strict Content-Security-Policy (scripts and styles from this
//! origin only, no inline script, no framing), `nosniff` and no referrer. A page has no logic the
//! API does not already have: the handlers call the same domain modules and gates as the JSON
//! routes, with the signed-in user as the caller (`session::WebUser`).
//!
//! Not for: JSON (`crate::sidecar`), the operators' pages (`admin::pages`, on the admin
//! listener, which share the templates directory, the assets and `secure_headers`).

pub mod account;
pub mod assets;
pub mod public;
pub mod runs;
pub mod session;
pub mod skills;
pub mod telegram;

use std::sync::Arc;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api_error::ApiError;
use crate::sidecar::Sidecar;
use session::WebUser;

/// What the pages keep in memory.
#[derive(Default)]
pub struct Pages {
    pub signups: public::SignupLimiter,
}

/// The user the proxy names for a page request: the page itself finds who is signed in.
pub const BROWSER: &str = "browser";

/// The pages' Content-Security-Policy: everything from this origin, nothing inline, no frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Every page and asset.
pub fn router() -> Router<Arc<Sidecar>> {
    Router::new()
        .route("/", get(public::landing))
        .route("/pricing", get(public::pricing))
        .route("/signup", get(public::signup_form).post(public::signup))
        .route("/signin", get(public::signin_form).post(public::signin))
        .route("/signout", post(public::signout))
        .route("/dashboard", get(account::overview))
        .route("/dashboard/tenants", post(account::create_tenant))
        .route(
            "/dashboard/tenants/{id}/rename",
            post(account::rename_tenant),
        )
        .route(
            "/dashboard/tenants/{id}/delete",
            post(account::delete_tenant),
        )
        .route(
            "/dashboard/tenants/{id}/skills",
            get(skills::show).post(skills::switch),
        )
        .route(
            "/dashboard/tenants/{id}/skills/pack",
            post(skills::apply_pack),
        )
        .route(
            "/dashboard/tenants/{id}/skills/remediate",
            post(skills::remediate),
        )
        .route("/dashboard/tenants/{id}/telegram", get(telegram::show))
        .route(
            "/dashboard/tenants/{id}/telegram/codes",
            post(telegram::make_code),
        )
        .route(
            "/dashboard/tenants/{id}/telegram/pairings/{pairing}/delete",
            post(telegram::unpair),
        )
        .route("/dashboard/tenants/{id}", get(runs::tenant_page::show))
        .route(
            "/dashboard/tenants/{id}/runs",
            post(runs::tenant_page::launch),
        )
        .route("/dashboard/runs/{id}", get(runs::run_page::show))
        .route("/dashboard/runs/{id}/events", get(runs::run_page::events))
        .route("/dashboard/runs/{id}/cancel", post(runs::run_page::cancel))
        .route(
            "/dashboard/runs/{id}/artifacts/{name}",
            get(runs::run_page::artifact),
        )
        .route("/assets/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(secure_headers))
}

/// Whether `path` is a page's (an unknown one answers with an HTML 404, not JSON).
pub fn is_page_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/pricing" | "/signup" | "/signin" | "/signout" | "/dashboard"
    ) || path.starts_with("/dashboard/")
        || path.starts_with("/assets/")
}

/// The headers every page and asset carries (the operators' pages too, `admin::pages`).
pub async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What the header of every page needs: who is signed in, and the sign-out form's token.
pub struct Nav {
    pub user: Option<String>,
    pub csrf: String,
}

impl Nav {
    pub fn of(user: Option<&WebUser>) -> Nav {
        Nav {
            user: user.map(|u| u.user().to_owned()),
            csrf: user.map(|u| u.csrf.clone()).unwrap_or_default(),
        }
    }
}

/// Renders a page.
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("a dashboard page did not render: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A page that cannot be shown: an HTML page with the reason, or the way to sign in.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Nav,
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

    pub fn not_found() -> PageError {
        PageError::new(StatusCode::NOT_FOUND, "There is no such page.")
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
            StatusCode::UNAUTHORIZED => "Not signed in",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let page = ErrorPage {
            nav: Nav::of(None),
            title,
            message: &self.message,
        };
        let mut response = render(&page);
        *response.status_mut() = self.status;
        response
    }
}

/// The sidecar's fallback for a page path nobody answers.
pub async fn page_not_found() -> Response {
    secure_headers(PageError::not_found().into_response()).await
}
