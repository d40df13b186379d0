//! The pages anyone may open: the landing page, pricing, sign-up, sign-in and sign-out.
//!
//! - `/pricing` is built from the tiers: limits, the price and the checkout link each sets.
//! - `/signup` (an operator turns it off with `dashboard.signup: false`) makes a user with a
//!   gateway key, shows the key once, signs the browser in, and links each paid tier's Stripe
//!   checkout with `client_reference_id=<user>`, so the webhook knows whose subscription it is.
//!   Each address may sign up `dashboard.signups_per_hour` times an hour.
//! - `/signin` takes a gateway key. A wrong key answers 401, which the proxy counts as a failed
//!   authentication of that address (guessing runs into the same guard as on `/v1`).
//! - The two anonymous forms carry a CSRF token too: an HMAC of a random `exoclaw_form` cookie
//!   (`SameSite=Strict`), so another site cannot post them (no login CSRF).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, MaybeWebUser, Submitted};
use super::{render, Nav, PageError};
use crate::config::{Config, Limit};
use crate::headers;
use crate::local_http;
use crate::sidecar::Sidecar;

/// The cookie behind the anonymous forms' CSRF token.
const FORM_COOKIE: &str = "exoclaw_form";
const SIGNUP_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Sign-ups per address over the last hour, in memory (a restart forgets them).
#[derive(Default)]
pub struct SignupLimiter {
    by_address: Mutex<HashMap<String, VecDeque<u64>>>,
}

impl SignupLimiter {
    /// Counts a sign-up of `address` at `now_ms` if fewer than `max` happened in the window.
    pub fn try_take(&self, address: &str, max: u32, now_ms: u64) -> bool {
        let window = SIGNUP_WINDOW.as_millis() as u64;
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, times| times.back().is_some_and(|&t| t + window > now_ms));
        }
        let times = map.entry(address.to_owned()).or_default();
        while times.front().is_some_and(|&t| t + window <= now_ms) {
            times.pop_front();
        }
        if times.len() >= max as usize {
            return false;
        }
        times.push_back(now_ms);
        true
    }
}

/// One tier as the pricing page shows it.
pub struct TierCard {
    pub name: String,
    pub price: String,
    pub requests_per_minute: u32,
    pub monthly_requests: String,
    pub tenants: String,
    pub runs: String,
    pub checkout_url: Option<String>,
}

fn limit_text(limit: Limit, unit: &str) -> String {
    match limit {
        Limit::Unlimited => format!("unlimited {unit}"),
        Limit::Count(0) => format!("no {unit}"),
        Limit::Count(n) => format!("{n} {unit}"),
    }
}

/// The tiers, cheapest priority first, as cards.
pub fn tier_cards(config: &Config) -> Vec<TierCard> {
    let mut tiers: Vec<_> = config.tiers.iter().collect();
    tiers.sort_by_key(|(name, tier)| (tier.priority, tier.checkout_url.is_some(), *name));
    tiers
        .into_iter()
        .map(|(name, tier)| TierCard {
            name: name.clone(),
            price: tier
                .price
                .clone()
                .unwrap_or_else(|| match tier.checkout_url {
                    Some(_) => "Paid".to_owned(),
                    None => "Free".to_owned(),
                }),
            requests_per_minute: tier.requests_per_minute,
            monthly_requests: match tier.monthly_requests {
                Some(n) => format!("{n} requests a month"),
                None => "unlimited requests a month".to_owned(),
            },
            tenants: limit_text(tier.max_tenants, "agents (tenants)"),
            runs: limit_text(tier.runs_per_month, "agent runs a month"),
            checkout_url: tier.checkout_url.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing {
    nav: Nav,
    signup: bool,
}

/// `GET /`.
pub async fn landing(
    State(sidecar): State<Arc<Sidecar>>,
    MaybeWebUser(user): MaybeWebUser,
) -> Response {
    let signup = sidecar.live.load().config.dashboard.signup;
    render(&Landing {
        nav: Nav::of(user.as_ref()),
        signup,
    })
}

#[derive(Template)]
#[template(path = "pricing.html")]
struct Pricing {
    nav: Nav,
    tiers: Vec<TierCard>,
    signup: bool,
}

/// `GET /pricing`.
pub async fn pricing(
    State(sidecar): State<Arc<Sidecar>>,
    MaybeWebUser(user): MaybeWebUser,
) -> Response {
    let snapshot = sidecar.live.load_full();
    render(&Pricing {
        nav: Nav::of(user.as_ref()),
        tiers: tier_cards(&snapshot.config),
        signup: snapshot.config.dashboard.signup,
    })
}

/// An anonymous form's token, and the cookie it is bound to (set when the form is shown).
struct FormToken {
    csrf: String,
    set_cookie: Option<String>,
}

fn form_token(sidecar: &Sidecar, parts: &Parts) -> FormToken {
    let existing = cookie_value(parts, FORM_COOKIE);
    let (value, set_cookie) = match existing {
        Some(value) => (value, None),
        None => {
            let value = local_http::new_secret();
            let cookie = format!(
                "{FORM_COOKIE}={value}; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Strict"
            );
            (value, Some(cookie))
        }
    };
    FormToken {
        csrf: session::csrf_token(&sidecar.internal_secret, &value),
        set_cookie,
    }
}

fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    local_http::cookie_token(&parts.headers, name)
}

/// Checks an anonymous form's token against its cookie.
fn check_form_token(sidecar: &Sidecar, parts: &Parts, presented: &str) -> Result<(), PageError> {
    let expected = cookie_value(parts, FORM_COOKIE)
        .map(|v| session::csrf_token(&sidecar.internal_secret, &v))
        .unwrap_or_default();
    match !expected.is_empty()
        && local_http::secret_matches(presented.as_bytes(), expected.as_bytes())
    {
        true => Ok(()),
        false => Err(PageError::forbidden(
            "This form has expired or did not come from this site. Reload the page and try again.",
        )),
    }
}

fn with_cookie(mut response: Response, cookie: Option<String>) -> Response {
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupForm<'a> {
    nav: Nav,
    csrf: String,
    user: &'a str,
    error: &'a str,
}

/// `GET /signup`.
pub async fn signup_form(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
) -> Result<Response, PageError> {
    signup_open(&sidecar)?;
    let (parts, _) = request.into_parts();
    let user = session::current(&sidecar, &parts).await?;
    let token = form_token(&sidecar, &parts);
    let page = render(&SignupForm {
        nav: Nav::of(user.as_ref()),
        csrf: token.csrf,
        user: "",
        error: "",
    });
    Ok(with_cookie(page, token.set_cookie))
}

fn signup_open(sidecar: &Sidecar) -> Result<(), PageError> {
    match sidecar.live.load().config.dashboard.signup {
        true => Ok(()),
        false => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Sign-up is closed on this gateway: ask its operator for a gateway key.",
        )),
    }
}

#[derive(Deserialize)]
struct SignupFields {
    #[serde(default)]
    user: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Template)]
#[template(path = "signed_up.html")]
struct SignedUp {
    nav: Nav,
    user: String,
    key: String,
    gateway: String,
    tiers: Vec<TierCard>,
}

/// A user id someone may choose: 3–64 of `a-z 0-9 - _ .`, starting with a letter or digit.
fn valid_new_user(user: &str) -> bool {
    (3..=64).contains(&user.len())
        && user
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && user.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// `POST /signup`.
pub async fn signup(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
) -> Result<Response, PageError> {
    signup_open(&sidecar)?;
    let (parts, body) = request.into_parts();
    let bytes = session::read_form(Request::from_parts(parts.clone(), body)).await?;
    let fields: SignupFields = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| PageError::bad_request("This form could not be read."))?;
    check_form_token(&sidecar, &parts, &fields.csrf)?;
    let user = fields.user.trim().to_ascii_lowercase();
    let again = |error: &str| {
        let token = form_token(&sidecar, &parts);
        let mut page = render(&SignupForm {
            nav: Nav::of(None),
            csrf: token.csrf,
            user: &user,
            error,
        });
        *page.status_mut() = StatusCode::BAD_REQUEST;
        page
    };
    if !valid_new_user(&user) {
        return Ok(again(
            "Choose a name of 3 to 64 lower-case letters, digits, dots, dashes or underscores.",
        ));
    }
    let snapshot = sidecar.live.load_full();
    let config = &snapshot.config;
    let address = parts
        .headers
        .get(headers::CLIENT_ADDRESS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let now = sidecar.clock.now_ms();
    if !sidecar
        .pages
        .signups
        .try_take(address, config.dashboard.signups_per_hour, now)
    {
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ups from your address in the last hour. Try again later.",
        ));
    }
    let (tiers, name, ttl) = (
        config.tiers.clone(),
        user.clone(),
        config.dashboard.session_ttl.as_millis() as u64,
    );
    let credentials = sidecar.credentials.clone();
    let created = sidecar
        .with_db("sign-up", move |conn| {
            if crate::auth::store::user_has_keys(conn, &name).map_err(|e| e.to_string())? {
                return Ok(None);
            }
            let minted = crate::auth::create_key(conn, &name, None, &tiers)?;
            credentials.reload_keys(conn).map_err(|e| e.to_string())?;
            let token = session::open(conn, &name, &minted.hash_hex, now, ttl)
                .map_err(|e| e.to_string())?;
            Ok(Some((minted.secret, token)))
        })
        .await?;
    let Some((key, token)) = created else {
        return Ok(again("That name is taken: choose another."));
    };
    tracing::info!(user = %user, "signed up on the dashboard");
    let page = render(&SignedUp {
        nav: Nav {
            user: Some(user.clone()),
            csrf: session::csrf_token(&sidecar.internal_secret, &token),
        },
        gateway: public_base(&parts),
        user,
        key,
        tiers: tier_cards(config)
            .into_iter()
            .filter(|t| t.checkout_url.is_some())
            .collect(),
    });
    Ok(with_cookie(page, Some(session::cookie(&token, ttl / 1000))))
}

/// The gateway's address as the browser used it, for the `.env` lines shown after sign-up.
fn public_base(parts: &Parts) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = match parts
        .headers
        .get(headers::X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ if host.starts_with("127.") || host.starts_with("localhost") => "http",
        _ => "https",
    };
    format!("{scheme}://{host}")
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninForm<'a> {
    nav: Nav,
    csrf: String,
    error: &'a str,
}

/// `GET /signin`.
pub async fn signin_form(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
) -> Result<Response, PageError> {
    let (parts, _) = request.into_parts();
    let user = session::current(&sidecar, &parts).await?;
    if user.is_some() {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let token = form_token(&sidecar, &parts);
    let page = render(&SigninForm {
        nav: Nav::of(None),
        csrf: token.csrf,
        error: "",
    });
    Ok(with_cookie(page, token.set_cookie))
}

#[derive(Deserialize)]
struct SigninFields {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /signin`.
pub async fn signin(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
) -> Result<Response, PageError> {
    let (parts, body) = request.into_parts();
    let bytes = session::read_form(Request::from_parts(parts.clone(), body)).await?;
    let fields: SigninFields = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| PageError::bad_request("This form could not be read."))?;
    check_form_token(&sidecar, &parts, &fields.csrf)?;
    let key = fields.key.trim().to_owned();
    let record = sidecar.credentials.keys.load().verify(&key).cloned();
    let Some(record) = record else {
        let token = form_token(&sidecar, &parts);
        let mut page = render(&SigninForm {
            nav: Nav::of(None),
            csrf: token.csrf,
            error: "That is not an active gateway key. Keys start with exo_ and are shown once \
                    when they are made.",
        });
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(page);
    };
    let config = sidecar.live.load_full().config.clone();
    let ttl = config.dashboard.session_ttl.as_millis() as u64;
    let (user, key_hash, now) = (
        record.user.clone(),
        session::digest(&key),
        sidecar.clock.now_ms(),
    );
    let token = sidecar
        .with_db("sign-in", move |conn| {
            session::open(conn, &user, &key_hash, now, ttl).map_err(|e| e.to_string())
        })
        .await?;
    tracing::info!(user = %record.user, key = %record.id, "signed in on the dashboard");
    Ok(with_cookie(
        Redirect::to("/dashboard").into_response(),
        Some(session::cookie(&token, ttl / 1000)),
    ))
}

#[derive(Deserialize)]
pub struct SignoutFields {}

/// `POST /signout`: the session ends on the server, and the cookie goes.
pub async fn signout(
    State(sidecar): State<Arc<Sidecar>>,
    submitted: Submitted<SignoutFields>,
) -> Result<Response, PageError> {
    let token = submitted.user.token().to_owned();
    sidecar
        .with_db("sign-out", move |conn| {
            session::close(conn, &token).map_err(|e| e.to_string())
        })
        .await?;
    Ok(with_cookie(
        Redirect::to("/").into_response(),
        Some(session::removed_cookie()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ups_are_limited_per_address_over_an_hour() {
        let limiter = SignupLimiter::default();
        assert!(limiter.try_take("a", 2, 0));
        assert!(limiter.try_take("a", 2, 1_000));
        assert!(!limiter.try_take("a", 2, 2_000));
        assert!(limiter.try_take("b", 2, 2_000), "another address");
        assert!(
            limiter.try_take("a", 2, 3_600_000),
            "an hour after the first"
        );
    }

    #[test]
    fn new_user_names_are_plain() {
        assert!(valid_new_user("ana.lopez"));
        assert!(valid_new_user("team-7"));
        for bad in [
            "ab",
            "Ana",
            "-ana",
            "a b",
            "ana@example.com",
            &"a".repeat(65),
        ] {
            assert!(!valid_new_user(bad), "{bad}");
        }
    }
}
