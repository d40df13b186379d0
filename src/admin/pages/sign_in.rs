//! `/signin` and `/signout`: the admin token buys the browser a session, signing out ends it.
//!
//! A wrong token answers 401 and counts against the address (`AdminApp::sign_in_failures`);
//! past `auth.failed_auth_per_minute` wrong tokens in a minute the form answers 429 with
//! `Retry-After`, without comparing. Sessions and cookies: `admin::session`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{with_status, Nav, PageError};
use crate::admin::session::{self, FormToken, Operator, OperatorForm};
use crate::admin::AdminApp;
use crate::dashboard::render;
use crate::dashboard::session::read_form;

#[derive(Template)]
#[template(path = "admin_signin.html")]
struct SigninForm {
    nav: Option<Nav>,
    csrf: String,
    error: String,
    /// The variable to set when the gateway has no admin token: the form is off.
    disabled_env: String,
}

fn with_cookie(mut response: Response, cookie: Option<String>) -> Response {
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The form, with `error` when a try was refused.
fn signin_page(app: &AdminApp, request_headers: &HeaderMap, error: String) -> Response {
    let token = FormToken::of(app, request_headers);
    let page = render(&SigninForm {
        nav: None,
        csrf: token.csrf,
        error,
        disabled_env: match app.token {
            Some(_) => String::new(),
            None => app.token_env(),
        },
    });
    with_cookie(page, token.set_cookie)
}

/// `GET /signin`.
pub async fn form(State(app): State<Arc<AdminApp>>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if Operator::from_request_parts(&mut parts, &app).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    signin_page(&app, &parts.headers, String::new())
}

#[derive(Deserialize)]
struct SigninFields {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /signin`.
pub async fn sign_in(
    State(app): State<Arc<AdminApp>>,
    request: Request,
) -> Result<Response, PageError> {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let request_headers = request.headers().clone();
    if app.token.is_none() {
        let page = signin_page(&app, &request_headers, String::new());
        return Ok(with_status(page, StatusCode::SERVICE_UNAVAILABLE));
    }
    let bytes = read_form(request)
        .await
        .map_err(|_| PageError::bad_request("This form is too large."))?;
    let fields: SigninFields = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| PageError::bad_request("This form could not be read."))?;
    FormToken::check(&app, &request_headers, &fields.csrf)?;
    let now = app.clock.now_ms();
    if app.sign_in_failures.is_blocked(address, now) {
        let wait = app.sign_in_failures.retry_after_secs(address, now);
        let error = format!("Too many wrong tokens from your address: try again in {wait} s.");
        let mut page = with_status(
            signin_page(&app, &request_headers, error),
            StatusCode::TOO_MANY_REQUESTS,
        );
        page.headers_mut().insert(header::RETRY_AFTER, wait.into());
        return Ok(page);
    }
    if !app.is_admin_token(fields.token.trim()) {
        app.sign_in_failures.record_failure(address, now);
        tracing::warn!(%address, "wrong admin token at the operators' sign-in");
        let error = "That is not the admin token.".to_owned();
        return Ok(with_status(
            signin_page(&app, &request_headers, error),
            StatusCode::UNAUTHORIZED,
        ));
    }
    let token = app.sessions.open(now);
    tracing::info!(%address, "an operator signed in");
    Ok(with_cookie(
        Redirect::to("/").into_response(),
        Some(session::cookie(&token)),
    ))
}

#[derive(Deserialize)]
pub struct NoFields {}

/// `POST /signout`: the session ends on the server, and the cookie goes.
pub async fn sign_out(
    State(app): State<Arc<AdminApp>>,
    OperatorForm { operator, .. }: OperatorForm<NoFields>,
) -> Response {
    app.sessions.close(operator.token());
    with_cookie(
        Redirect::to("/signin").into_response(),
        Some(session::removed_cookie()),
    )
}
