//! Who is calling, and what credential goes to the node on their behalf.
//!
//! `authenticate` turns a request's headers into an `Identity` (gateway key → user, or the
//! seed's trusting `X-User-ID` mode); `node_credential` decides what authorises the request at
//! the node: the client's own provider key (BYOK) or the user's stored Codex token. Both read
//! in-memory snapshots held by `Credentials`; SQLite is only touched by `store` from background
//! work.

pub mod codex;
pub mod keys;
pub mod store;
pub mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use pingora::http::RequestHeader;
use rusqlite::Connection;

use crate::api_error::ApiError;
use crate::config::{Auth, AuthMode, Tier};
use crate::headers;
use codex::{CodexIndex, TokenCipher};
use keys::{KeyIndex, KeyRecord};

/// The live credential snapshots, shared by the proxy, the sidecar, the admin API and the sync
/// worker.
pub struct Credentials {
    pub keys: ArcSwap<KeyIndex>,
    pub codex: ArcSwap<CodexIndex>,
    pub cipher: Option<TokenCipher>,
    db_path: PathBuf,
    /// Held from reading a table to storing its snapshot: two reloads that overlap (the admin
    /// API's and the sync worker's) would otherwise let the one that read first store last,
    /// putting back a snapshot without the newest key until the next change.
    reloading: Mutex<()>,
}

impl Credentials {
    /// Loads every active key and Codex token. Blocking: start-up only.
    pub fn load(db_path: &Path, cipher: Option<TokenCipher>) -> Result<Arc<Credentials>, String> {
        let credentials = Credentials {
            keys: ArcSwap::from_pointee(KeyIndex::default()),
            codex: ArcSwap::from_pointee(CodexIndex::default()),
            cipher,
            db_path: db_path.to_owned(),
            reloading: Mutex::new(()),
        };
        let conn = credentials.open_db()?;
        credentials
            .reload_keys(&conn)
            .and_then(|()| credentials.reload_codex(&conn))
            .map_err(|e| format!("cannot load credentials from {}: {e}", db_path.display()))?;
        Ok(Arc::new(credentials))
    }

    /// A new connection to the database, for blocking work off the request path; it waits for
    /// locks (see `ledger::connection`).
    pub fn open_db(&self) -> Result<Connection, String> {
        crate::ledger::connection::connect(&self.db_path)
    }

    pub fn reload_keys(&self, conn: &Connection) -> rusqlite::Result<()> {
        let _reloading = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let active = store::load_active_keys(conn)?;
        let previous = self.keys.load();
        self.keys
            .store(Arc::new(KeyIndex::build(active, Some(&previous))));
        Ok(())
    }

    pub fn reload_codex(&self, conn: &Connection) -> rusqlite::Result<()> {
        let _reloading = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tokens = match &self.cipher {
            Some(cipher) => store::load_codex_tokens(conn, cipher)?,
            None => Default::default(),
        };
        self.codex.store(Arc::new(CodexIndex::new(tokens)));
        Ok(())
    }
}

/// Mints a key for `user` (with an optional comped tier), stores its hash, and returns the key
/// to show once. Used by `exoclaw keys create` and `POST /admin/keys`.
pub fn create_key(
    conn: &Connection,
    user: &str,
    tier: Option<&str>,
    known_tiers: &BTreeMap<String, Tier>,
) -> Result<keys::MintedKey, String> {
    if !headers::is_well_formed_id(user.as_bytes()) {
        return Err(format!(
            "`{user}` is not a valid user id (1-128 characters of A-Z a-z 0-9 - _ . : @)"
        ));
    }
    if let Some(tier) = tier.filter(|t| !known_tiers.contains_key(*t)) {
        let known: Vec<&str> = known_tiers.keys().map(String::as_str).collect();
        return Err(format!(
            "`{tier}` is not a tier (tiers: {})",
            known.join(", ")
        ));
    }
    let minted = keys::mint();
    store::insert_key(conn, &minted, user, tier)
        .map_err(|e| format!("cannot store the key: {e}"))?;
    Ok(minted)
}

/// The user of a request that names none (`require_key: false` without `X-User-ID`).
pub const ANONYMOUS: &str = "anonymous";

/// The caller, as far as the gateway can vouch for them.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    /// The verified gateway key, when one was presented.
    pub key: Option<Arc<KeyRecord>>,
    /// The gateway key travelled in `Authorization`, which must then not reach the node.
    pub authorization_holds_gateway_key: bool,
}

impl Identity {
    /// A caller no gateway key vouches for: a webhook sender or a kit downloader, who prove
    /// themselves otherwise (a signature, a one-time link).
    pub fn without_key(user: &str) -> Identity {
        Identity {
            user: user.to_owned(),
            key: None,
            authorization_holds_gateway_key: false,
        }
    }
}

/// Identifies the caller from the request headers.
pub fn authenticate(
    req: &RequestHeader,
    auth: &Auth,
    keys: &KeyIndex,
) -> Result<Identity, ApiError> {
    // One value each: a second value could carry what the first was checked against.
    for name in [
        http::header::AUTHORIZATION.as_str(),
        headers::GATEWAY_KEY,
        headers::USER_ID,
    ] {
        if req.headers.get_all(name).iter().count() > 1 {
            return Err(ApiError::invalid_request(
                "duplicate_header",
                format!("The request carries more than one {name} header. Send one."),
            ));
        }
    }
    let claimed = match req.headers.get(headers::USER_ID) {
        None => None,
        Some(v) if headers::is_well_formed_id(v.as_bytes()) => {
            Some(String::from_utf8_lossy(v.as_bytes()).into_owned())
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "invalid_user_id",
                "X-User-ID must be 1-128 characters of A-Z a-z 0-9 - _ . : @",
            ))
        }
    };
    let header_key = req
        .headers
        .get(headers::GATEWAY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let bearer_key = headers::bearer(&req.headers).filter(|b| keys::is_gateway_key(b));
    let presented = match (header_key, bearer_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::unauthenticated(
                "conflicting_gateway_keys",
                "X-Gateway-Key and Authorization carry two different gateway keys. Send one.",
            ))
        }
        (Some(k), _) | (None, Some(k)) => Some(k),
        (None, None) => None,
    };
    let authorization_holds_gateway_key = bearer_key.is_some();
    match presented {
        Some(presented) => {
            let record = keys.verify(presented).ok_or_else(|| {
                ApiError::unauthenticated(
                    "invalid_api_key",
                    "Invalid or revoked gateway key. Check the exo_… key in your .env, or ask \
                     the operator for a new one.",
                )
            })?;
            if claimed.as_deref().is_some_and(|c| c != record.user) {
                return Err(ApiError::unauthenticated(
                    "user_mismatch",
                    "X-User-ID does not match the user of this gateway key. Remove X-User-ID; \
                     the key identifies you.",
                ));
            }
            Ok(Identity {
                user: record.user.clone(),
                key: Some(record.clone()),
                authorization_holds_gateway_key,
            })
        }
        None if auth.require_key => Err(ApiError::unauthenticated(
            "missing_gateway_key",
            "Missing gateway key. Send it as the header X-Gateway-Key: exo_… (or as \
             Authorization: Bearer exo_… when you bring no provider key).",
        )),
        None => Ok(Identity {
            user: claimed.unwrap_or_else(|| ANONYMOUS.to_owned()),
            key: None,
            authorization_holds_gateway_key,
        }),
    }
}

/// What authorises a request at the node. Its `Debug` shows the kind, never the secret.
#[derive(Clone, PartialEq)]
pub enum NodeCredential {
    /// BYOK: the client's `Authorization` value (`Bearer sk-…`), forwarded verbatim.
    ProviderKey(http::HeaderValue),
    /// Codex: the user's stored token, sent as `X-Codex-Token`.
    CodexToken(Arc<str>),
}

impl std::fmt::Debug for NodeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeCredential::ProviderKey(_) => f.write_str("ProviderKey(…)"),
            NodeCredential::CodexToken(_) => f.write_str("CodexToken(…)"),
        }
    }
}

pub fn node_credential(
    req: &RequestHeader,
    mode: AuthMode,
    identity: &Identity,
    codex: &CodexIndex,
) -> Result<NodeCredential, ApiError> {
    match mode {
        AuthMode::Byok => {
            let has_provider_key = !identity.authorization_holds_gateway_key
                && headers::bearer(&req.headers).is_some_and(|b| !b.is_empty());
            match req.headers.get(http::header::AUTHORIZATION) {
                Some(value) if has_provider_key => Ok(NodeCredential::ProviderKey(value.clone())),
                _ => Err(ApiError::unauthenticated(
                    "missing_provider_key",
                    "Missing provider key. Set Authorization: Bearer sk-… to your own OpenAI \
                     key (OPENAI_API_KEY in your .env), and send your gateway key as \
                     X-Gateway-Key: exo_….",
                )),
            }
        }
        AuthMode::Codex => codex
            .token_for(&identity.user)
            .map(|t| NodeCredential::CodexToken(t.clone()))
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "no_codex_session",
                    "No Codex session. Store your Codex OAuth token first: `bash setup.sh --auth \
                     codex` (PUT /api/oauth/codex with your gateway key).",
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn auth(require_key: bool) -> Auth {
        Auth {
            mode: AuthMode::Byok,
            require_key,
            admin_token_env: "A".into(),
            token_key_env: "T".into(),
            token_key_file: None,
            failed_auth_per_minute: 20,
        }
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn index_with(secret: &str, user: &str) -> KeyIndex {
        KeyIndex::build(
            [(
                keys::hash(secret),
                KeyRecord {
                    id: "key_1".into(),
                    user: user.into(),
                    tier: None,
                    last_used_ms: AtomicU64::new(0),
                },
            )],
            None,
        )
    }

    const KEY: &str = "exo_0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_key_identifies_its_user_from_either_header() {
        let index = index_with(KEY, "ana");
        let via_header = authenticate(&request(&[("x-gateway-key", KEY)]), &auth(true), &index);
        assert_eq!(via_header.unwrap().user, "ana");
        let bearer = format!("Bearer {KEY}");
        let via_bearer =
            authenticate(&request(&[("authorization", &bearer)]), &auth(true), &index).unwrap();
        assert_eq!(via_bearer.user, "ana");
        assert!(via_bearer.authorization_holds_gateway_key);
    }

    #[test]
    fn missing_forged_and_conflicting_keys_are_refused() {
        let index = index_with(KEY, "ana");
        let code = |headers: &[(&str, &str)]| {
            authenticate(&request(headers), &auth(true), &index)
                .unwrap_err()
                .code
        };
        assert_eq!(code(&[]), "missing_gateway_key");
        assert_eq!(code(&[("x-gateway-key", "exo_forged")]), "invalid_api_key");
        assert_eq!(
            code(&[("x-gateway-key", KEY), ("x-user-id", "bob")]),
            "user_mismatch"
        );
        assert_eq!(
            code(&[
                ("x-gateway-key", KEY),
                ("authorization", "Bearer exo_other")
            ]),
            "conflicting_gateway_keys"
        );
        assert_eq!(code(&[("x-user-id", "bad id")]), "invalid_user_id");
        assert_eq!(
            code(&[
                ("x-gateway-key", KEY),
                ("authorization", "Bearer sk-ana"),
                ("authorization", &format!("Bearer {KEY}"))
            ]),
            "duplicate_header"
        );
    }

    #[test]
    fn trusting_mode_uses_x_user_id_or_anonymous() {
        let index = KeyIndex::default();
        let ana = authenticate(&request(&[("x-user-id", "ana")]), &auth(false), &index);
        assert_eq!(ana.unwrap().user, "ana");
        let anon = authenticate(&request(&[]), &auth(false), &index).unwrap();
        assert_eq!(anon.user, "anonymous");
    }

    #[test]
    fn byok_needs_a_provider_key_that_is_not_the_gateway_key() {
        let index = index_with(KEY, "ana");
        let codex = CodexIndex::default();
        let bearer = format!("Bearer {KEY}");
        let req = request(&[("authorization", &bearer)]);
        let id = authenticate(&req, &auth(true), &index).unwrap();
        let e = node_credential(&req, AuthMode::Byok, &id, &codex).unwrap_err();
        assert_eq!(e.code, "missing_provider_key");
        assert!(e.message.contains("Authorization: Bearer sk-"));

        let req = request(&[("x-gateway-key", KEY), ("authorization", "Bearer sk-ana")]);
        let id = authenticate(&req, &auth(true), &index).unwrap();
        assert_eq!(
            node_credential(&req, AuthMode::Byok, &id, &codex),
            Ok(NodeCredential::ProviderKey(http::HeaderValue::from_static(
                "Bearer sk-ana"
            )))
        );
    }

    #[test]
    fn codex_sends_only_the_callers_own_token() {
        let index = index_with(KEY, "ana");
        let codex = CodexIndex::new(
            [("bob".to_owned(), Arc::from("oauth_bob"))]
                .into_iter()
                .collect(),
        );
        let req = request(&[("x-gateway-key", KEY)]);
        let id = authenticate(&req, &auth(true), &index).unwrap();
        let e = node_credential(&req, AuthMode::Codex, &id, &codex).unwrap_err();
        assert!(e.message.starts_with("No Codex session."));
    }
}
