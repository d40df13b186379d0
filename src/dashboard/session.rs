//! Signing in to the dashboard: sessions, the cookie that carries them, and CSRF.
//!
//! - **Sign-in** is with a gateway key. The session is a fresh 256-bit token in the cookie
//!   `exoclaw_session` (`Secure; HttpOnly; SameSite=Strict; Path=/`); the database keeps only its
//!   SHA-256, the user, the SHA-256 of the key, and when it expires (`dashboard.session_ttl`).
//! - **A session stands for its key**: a page checks that key is still active in the live key
//!   index, so revoking the key signs its browsers out at their next page.
//! - **CSRF**: every form carries `csrf`, an HMAC of the session's token under the gateway's
//!   internal secret, compared in constant time; the strict cookie already keeps other sites'
//!   forms from carrying the session, the token also stops a page of ours tricked into posting.
//! - **Signing out** deletes the row: the cookie is worthless from then on.
//!
//! `WebUser` is the extractor of a signed-in page: no valid session redirects to `/signin`.
//! `Submitted<T>` is a form of a signed-in user, CSRF checked.
//!
//! Not for: what the pages show (`public`, `account`), or keys (`auth`).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::PageError;
use crate::headers;
use crate::ledger::connection::write_transaction;
use crate::local_http;
use crate::sidecar::extract::Caller;
use crate::sidecar::Sidecar;

/// The session cookie's name.
pub const COOKIE: &str = "exoclaw_session";
/// Largest form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The SHA-256 of a secret, in hex: what the database keeps of tokens and keys.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Opens a session for `user`, signed in with the key whose SHA-256 is `key_hash`; returns the
/// token for the cookie. Expired sessions are deleted on the way.
pub fn open(
    conn: &mut Connection,
    user: &str,
    key_hash: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> rusqlite::Result<String> {
    let token = local_http::new_secret();
    let tx = write_transaction(conn)?;
    tx.execute(
        "DELETE FROM dashboard_sessions WHERE expires_ms <= ?1",
        params![now_ms as i64],
    )?;
    tx.execute(
        "INSERT INTO dashboard_sessions (token_hash, user_id, key_hash, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            digest(&token),
            user,
            key_hash,
            now_ms as i64,
            (now_ms + ttl_ms) as i64
        ],
    )?;
    tx.commit()?;
    Ok(token)
}

/// A live session: the user and the SHA-256 of the key it was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub user: String,
    pub key_hash: String,
}

/// The session of `token`, unless it expired or was closed.
pub fn find(conn: &Connection, token: &str, now_ms: u64) -> rusqlite::Result<Option<Found>> {
    conn.query_row(
        "SELECT user_id, key_hash FROM dashboard_sessions
         WHERE token_hash = ?1 AND expires_ms > ?2",
        params![digest(token), now_ms as i64],
        |r| {
            Ok(Found {
                user: r.get(0)?,
                key_hash: r.get(1)?,
            })
        },
    )
    .optional()
}

/// Ends the session of `token` (signing out); false when there was none.
pub fn close(conn: &Connection, token: &str) -> rusqlite::Result<bool> {
    let deleted = conn.execute(
        "DELETE FROM dashboard_sessions WHERE token_hash = ?1",
        params![digest(token)],
    )?;
    Ok(deleted == 1)
}

/// The CSRF token of a session: an HMAC of its token, so it needs no storage and dies with it.
pub fn csrf_token(internal_secret: &str, session_token: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(internal_secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(b"dashboard csrf\0");
    mac.update(session_token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Set-Cookie` value that carries `token` for `max_age_secs`.
pub fn cookie(token: &str, max_age_secs: u64) -> String {
    format!("{COOKIE}={token}; Path=/; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes the cookie.
pub fn removed_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

/// The session token the browser sent, if any.
pub fn token_from(request_headers: &HeaderMap) -> Option<String> {
    local_http::cookie_token(request_headers, COOKIE)
}

/// A signed-in user of a page.
#[derive(Debug, Clone)]
pub struct WebUser {
    /// The user as the API's handlers see a caller: by key, with the key's comped tier.
    pub caller: Caller,
    /// The form token of this session.
    pub csrf: String,
    /// The session's token (to sign out).
    token: String,
}

impl WebUser {
    pub fn user(&self) -> &str {
        &self.caller.user
    }

    /// Whether a form's `csrf` is this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        match local_http::secret_matches(presented.as_bytes(), self.csrf.as_bytes()) {
            true => Ok(()),
            false => Err(PageError::forbidden(
                "This form has expired or did not come from this page. Go back, reload the \
                 page and try again.",
            )),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The browser's session, if it has a live one: None otherwise (a public page then shows the
/// signed-out header).
pub async fn current(sidecar: &Arc<Sidecar>, parts: &Parts) -> Result<Option<WebUser>, PageError> {
    through_gateway(sidecar, &parts.headers)?;
    let Some(token) = token_from(&parts.headers) else {
        return Ok(None);
    };
    let now = sidecar.clock.now_ms();
    let lookup = token.clone();
    let found = sidecar
        .with_db("dashboard session", move |conn| {
            find(conn, &lookup, now).map_err(|e| e.to_string())
        })
        .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    // The key it was opened with must still be active: a revoked key signs its browsers out.
    let Some(key_hash) = hex::decode(&found.key_hash)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
    else {
        return Ok(None);
    };
    let keys = sidecar.credentials.keys.load();
    let Some(record) = keys.by_hash(&key_hash).filter(|r| r.user == found.user) else {
        return Ok(None);
    };
    Ok(Some(WebUser {
        caller: Caller {
            user: record.user.clone(),
            by_key: true,
            tier: record.tier.clone(),
        },
        csrf: csrf_token(&sidecar.internal_secret, &token),
        token,
    }))
}

/// Pages come through the proxy, which vouches for them with the internal secret.
fn through_gateway(sidecar: &Sidecar, request_headers: &HeaderMap) -> Result<(), PageError> {
    let secret = request_headers
        .get(headers::INTERNAL_SECRET)
        .map_or(&[][..], |v| v.as_bytes());
    match local_http::secret_matches(secret, sidecar.internal_secret.as_bytes()) {
        true => Ok(()),
        false => Err(PageError::not_found()),
    }
}

impl FromRequestParts<Arc<Sidecar>> for WebUser {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        sidecar: &Arc<Sidecar>,
    ) -> Result<WebUser, PageError> {
        current(sidecar, parts)
            .await?
            .ok_or_else(PageError::sign_in)
    }
}

/// A visitor who may or may not be signed in (public pages show the right header).
pub struct MaybeWebUser(pub Option<WebUser>);

impl FromRequestParts<Arc<Sidecar>> for MaybeWebUser {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        sidecar: &Arc<Sidecar>,
    ) -> Result<MaybeWebUser, PageError> {
        Ok(MaybeWebUser(current(sidecar, parts).await?))
    }
}

/// A form posted by a signed-in user, its CSRF token checked; `T` ignores the `csrf` field.
pub struct Submitted<T> {
    pub user: WebUser,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<Arc<Sidecar>> for Submitted<T> {
    type Rejection = PageError;

    async fn from_request(
        request: Request,
        sidecar: &Arc<Sidecar>,
    ) -> Result<Submitted<T>, PageError> {
        let (mut parts, body) = request.into_parts();
        let user = WebUser::from_request_parts(&mut parts, sidecar).await?;
        let bytes = read_form(Request::from_parts(parts, body)).await?;
        let CsrfField { csrf } = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| PageError::bad_request("This form could not be read."))?;
        user.check_csrf(&csrf)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::bad_request(format!("This form could not be read: {e}.")))?;
        Ok(Submitted { user, form })
    }
}

/// A form's body, at most `MAX_FORM_BYTES`.
pub async fn read_form(request: Request) -> Result<bytes::Bytes, PageError> {
    crate::sidecar::extract::read_body(request, MAX_FORM_BYTES)
        .await
        .map_err(|_| PageError::bad_request("This form is too large."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::connection::connect;

    #[test]
    fn a_session_is_found_by_its_token_until_it_expires_or_closes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("t.db")).unwrap();
        crate::ledger::migrations::apply(&mut conn).unwrap();
        let token = open(&mut conn, "ana", "ab", 1_000, 500).unwrap();
        assert_eq!(token.len(), 64);
        let found = find(&conn, &token, 1_499).unwrap().unwrap();
        assert_eq!(found.user, "ana");
        assert_eq!(find(&conn, &token, 1_500).unwrap(), None, "expired");
        let stored: String = conn
            .query_row("SELECT token_hash FROM dashboard_sessions", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_ne!(stored, token, "only the hash is stored");
        assert!(close(&conn, &token).unwrap());
        assert_eq!(find(&conn, &token, 1_000).unwrap(), None, "signed out");
        // Opening another session deletes the expired ones.
        let old = open(&mut conn, "bob", "cd", 2_000, 10).unwrap();
        open(&mut conn, "bob", "cd", 3_000, 10).unwrap();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM dashboard_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        assert_eq!(find(&conn, &old, 2_005).unwrap(), None);
    }

    #[test]
    fn the_cookie_is_strict_and_the_csrf_token_belongs_to_its_session() {
        let c = cookie("abc", 60);
        for part in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert_ne!(csrf_token("s", "one"), csrf_token("s", "two"));
        assert_ne!(csrf_token("s", "one"), csrf_token("t", "one"));
        let mut h = HeaderMap::new();
        let token = "a".repeat(64);
        h.insert(
            axum::http::header::COOKIE,
            format!("other=1; {COOKIE}={token}").parse().unwrap(),
        );
        assert_eq!(token_from(&h), Some(token));
        h.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}=short").parse().unwrap(),
        );
        assert_eq!(token_from(&h), None);
    }
}
