//! Operators' sign-in on the admin listener: the admin token buys a browser a session.
//!
//! - **Sign-in** compares the admin token in constant time. A wrong one counts against the
//!   address in an `AuthFailureGuard` (the proxy's guard against key guessing, its own instance,
//!   `auth.failed_auth_per_minute`); past the limit the form answers 429 without comparing.
//! - **The session** is a fresh 256-bit token in the cookie `exoclaw_admin` (`Secure; HttpOnly;
//!   SameSite=Strict; Path=/`). Its own name: cookies do not tell ports apart, and the customer
//!   dashboard's `exoclaw_session` may live on the same host. It lasts `SESSION_TTL` on the
//!   gateway's clock.
//! - **Only a hash is kept, in memory** (`OperatorSessions`), not in a table:
//!   - there is one operator credential, not users: nothing to join sessions to;
//!   - the token comes from the process's environment and may change at a restart: a session
//!     must not outlive the process that checked its token;
//!   - nothing lands on disk for a backup or a copied database to replay;
//!   - the price: a restart or an upgrade signs operators out, and they sign in again.
//! - **CSRF**: every form carries `csrf`, an HMAC of the session's token under a key made at
//!   start (`dashboard::session::csrf_token`); the sign-in form's is an HMAC of a random
//!   `exoclaw_admin_form` cookie, so another site cannot post it either.
//! - **Signing out** forgets the session at once: the cookie is worthless from then on.
//!
//! `Operator` is the extractor of a signed-in page (none: 303 to `/signin`); `OperatorForm<T>`
//! is a form posted by one, CSRF checked (a wrong token: 403, and nothing is done).
//!
//! Not for: the customers' sessions (`dashboard::session`, in the database, one per key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::pages::PageError;
use super::AdminApp;
use crate::dashboard::session::{csrf_token, read_form};
use crate::local_http;

/// The session cookie's name.
pub const COOKIE: &str = "exoclaw_admin";
/// The cookie behind the sign-in form's CSRF token.
pub const FORM_COOKIE: &str = "exoclaw_admin_form";
/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions kept: only holders of the admin token open them, this only bounds memory.
const MAX_SESSIONS: usize = 1024;

/// The signed-in browsers: the SHA-256 of each session's token and when it expires.
pub struct OperatorSessions {
    expiry_by_hash: Mutex<HashMap<[u8; 32], u64>>,
    /// The key of the CSRF tokens, made at start: they die with the process, as sessions do.
    csrf_key: String,
}

impl Default for OperatorSessions {
    fn default() -> Self {
        OperatorSessions {
            expiry_by_hash: Mutex::new(HashMap::new()),
            csrf_key: local_http::new_secret(),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl OperatorSessions {
    /// Opens a session at `now_ms`; returns its token for the cookie. Expired sessions go on
    /// the way, and past `MAX_SESSIONS` the one closest to expiry.
    pub fn open(&self, now_ms: u64) -> String {
        let token = local_http::new_secret();
        let mut sessions = self.lock();
        sessions.retain(|_, expires| *expires > now_ms);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, e)| **e).map(|(h, _)| *h) {
                sessions.remove(&oldest);
            }
        }
        let ttl = SESSION_TTL.as_millis() as u64;
        sessions.insert(digest(&token), now_ms + ttl);
        token
    }

    /// Whether `token` is a session that has not expired or been closed.
    pub fn is_open(&self, token: &str, now_ms: u64) -> bool {
        self.lock()
            .get(&digest(token))
            .is_some_and(|expires| *expires > now_ms)
    }

    /// Ends the session of `token`; false when there was none.
    pub fn close(&self, token: &str) -> bool {
        self.lock().remove(&digest(token)).is_some()
    }

    /// The CSRF token of the session (or form cookie) `token`.
    pub fn csrf(&self, token: &str) -> String {
        csrf_token(&self.csrf_key, token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], u64>> {
        self.expiry_by_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// The `Set-Cookie` value that carries `token` for `SESSION_TTL`.
pub fn cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn removed_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

pub use crate::local_http::cookie_token;

/// The sign-in form's token, and the cookie to set when the browser has none yet.
pub struct FormToken {
    pub csrf: String,
    pub set_cookie: Option<String>,
}

impl FormToken {
    pub fn of(app: &AdminApp, request_headers: &HeaderMap) -> FormToken {
        match cookie_token(request_headers, FORM_COOKIE) {
            Some(value) => FormToken {
                csrf: app.sessions.csrf(&value),
                set_cookie: None,
            },
            None => {
                let value = local_http::new_secret();
                FormToken {
                    csrf: app.sessions.csrf(&value),
                    set_cookie: Some(format!(
                        "{FORM_COOKIE}={value}; Path=/; Max-Age=86400; Secure; HttpOnly; \
                         SameSite=Strict"
                    )),
                }
            }
        }
    }

    /// Whether `presented` is the token of the browser's form cookie.
    pub fn check(
        app: &AdminApp,
        request_headers: &HeaderMap,
        presented: &str,
    ) -> Result<(), PageError> {
        let expected = cookie_token(request_headers, FORM_COOKIE).map(|v| app.sessions.csrf(&v));
        match expected {
            Some(expected)
                if local_http::secret_matches(presented.as_bytes(), expected.as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(PageError::forbidden(
                "This form has expired or did not come from this page. Reload it and try again.",
            )),
        }
    }
}

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The form token of this session.
    pub csrf: String,
    token: String,
}

impl Operator {
    /// The session's token (to sign out).
    pub fn token(&self) -> &str {
        &self.token
    }

    fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        match local_http::secret_matches(presented.as_bytes(), self.csrf.as_bytes()) {
            true => Ok(()),
            false => Err(PageError::forbidden(
                "This form has expired or did not come from this page. Go back, reload the page \
                 and try again.",
            )),
        }
    }
}

impl FromRequestParts<Arc<AdminApp>> for Operator {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AdminApp>,
    ) -> Result<Operator, PageError> {
        let token = cookie_token(&parts.headers, COOKIE).ok_or_else(PageError::sign_in)?;
        if !app.sessions.is_open(&token, app.clock.now_ms()) {
            return Err(PageError::sign_in());
        }
        Ok(Operator {
            csrf: app.sessions.csrf(&token),
            token,
        })
    }
}

/// A form posted by a signed-in operator, its CSRF token checked; `T` ignores the `csrf` field.
pub struct OperatorForm<T> {
    pub operator: Operator,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<Arc<AdminApp>> for OperatorForm<T> {
    type Rejection = PageError;

    async fn from_request(
        request: Request,
        app: &Arc<AdminApp>,
    ) -> Result<OperatorForm<T>, PageError> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, app).await?;
        let bytes = read_form(Request::from_parts(parts, body))
            .await
            .map_err(|_| PageError::bad_request("This form is too large."))?;
        let CsrfField { csrf } = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| PageError::bad_request("This form could not be read."))?;
        operator.check_csrf(&csrf)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::bad_request(format!("This form could not be read: {e}.")))?;
        Ok(OperatorForm { operator, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_open_until_it_expires_or_closes_and_only_its_hash_is_kept() {
        let sessions = OperatorSessions::default();
        let ttl = SESSION_TTL.as_millis() as u64;
        let token = sessions.open(1_000);
        assert_eq!(token.len(), 64);
        assert!(sessions.is_open(&token, 1_000 + ttl - 1));
        assert!(!sessions.is_open(&token, 1_000 + ttl), "expired");
        assert!(!sessions.is_open(&"0".repeat(64), 1_000), "never opened");
        let kept = sessions.lock();
        assert!(kept.contains_key(&digest(&token)));
        assert!(
            !kept.keys().any(|h| hex::encode(h) == token),
            "the token itself is not kept"
        );
        drop(kept);
        assert!(sessions.close(&token));
        assert!(!sessions.is_open(&token, 1_000), "signed out");
        assert!(!sessions.close(&token));
    }

    #[test]
    fn expired_sessions_go_and_the_count_is_bounded() {
        let sessions = OperatorSessions::default();
        let ttl = SESSION_TTL.as_millis() as u64;
        let old = sessions.open(0);
        let fresh = sessions.open(ttl);
        assert_eq!(sessions.lock().len(), 1, "the expired one went");
        assert!(!sessions.is_open(&old, ttl));
        for n in 1..MAX_SESSIONS as u64 {
            sessions.open(ttl + n);
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        let newest = sessions.open(ttl + MAX_SESSIONS as u64);
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(!sessions.is_open(&fresh, ttl + 1), "the oldest made room");
        assert!(sessions.is_open(&newest, ttl + 1));
    }

    #[test]
    fn the_cookie_is_strict_and_csrf_tokens_belong_to_their_session() {
        let c = cookie("abc");
        for part in [
            "exoclaw_admin=abc",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=43200",
        ] {
            assert!(c.contains(part), "{c}");
        }
        let sessions = OperatorSessions::default();
        let other = OperatorSessions::default();
        assert_ne!(sessions.csrf("one"), sessions.csrf("two"));
        assert_ne!(
            sessions.csrf("one"),
            other.csrf("one"),
            "a new process, new tokens"
        );
        let mut h = HeaderMap::new();
        let token = "a".repeat(64);
        h.insert(
            axum::http::header::COOKIE,
            format!("exoclaw_session={}; {COOKIE}={token}", "b".repeat(64))
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_token(&h, COOKIE), Some(token));
        h.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}=short").parse().unwrap(),
        );
        assert_eq!(cookie_token(&h, COOKIE), None);
    }
}
