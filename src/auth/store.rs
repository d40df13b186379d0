//! SQL for keys and Codex tokens. Blocking: called from the `exoclaw keys` command, the admin
//! and sidecar services (inside `spawn_blocking`) and the credential sync worker; never from the
//! request path. The many-statement write (`flush_last_used`) is a `write_transaction`; the others
//! are single statements, each its own transaction that waits for the write lock.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::codex::TokenCipher;
use super::keys::{KeyRecord, MintedKey};
use crate::ledger::connection::write_transaction;

/// A key as `keys list` and `/admin/keys` show it: never the key itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyListing {
    pub id: String,
    pub user: String,
    pub tier: Option<String>,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

pub fn insert_key(
    conn: &Connection,
    minted: &MintedKey,
    user: &str,
    tier: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO api_keys (id, user_id, tier, key_hash, key_prefix) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![minted.id, user, tier, minted.hash_hex, minted.shown_prefix],
    )?;
    Ok(())
}

pub fn list_keys(conn: &Connection) -> rusqlite::Result<Vec<KeyListing>> {
    let mut stmt = conn.prepare(
        "SELECT id, user_id, tier, key_prefix, created_at, last_used_at, revoked_at
         FROM api_keys ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KeyListing {
            id: r.get(0)?,
            user: r.get(1)?,
            tier: r.get(2)?,
            prefix: r.get(3)?,
            created_at: r.get(4)?,
            last_used_at: r.get(5)?,
            revoked_at: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Revokes a key; `Ok(false)` when no active key has that id.
pub fn revoke_key(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE api_keys SET revoked_at = datetime('now') WHERE id = ?1 AND revoked_at IS NULL",
        params![id],
    )?;
    Ok(changed > 0)
}

/// Revokes every active key of every user whose id starts with `prefix` (compared literally:
/// `_` and `%` are not wildcards); returns those users, sorted. Run it inside a
/// `write_transaction` so the list and the revocation agree (`onboard::cohort::revoke`).
pub fn revoke_keys_by_user_prefix(
    conn: &Connection,
    prefix: &str,
) -> rusqlite::Result<Vec<String>> {
    const MATCHES: &str = "substr(user_id, 1, length(?1)) = ?1 AND revoked_at IS NULL";
    let mut stmt = conn.prepare(&format!(
        "SELECT DISTINCT user_id FROM api_keys WHERE {MATCHES} ORDER BY user_id"
    ))?;
    let users = stmt
        .query_map(params![prefix], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    conn.execute(
        &format!("UPDATE api_keys SET revoked_at = datetime('now') WHERE {MATCHES}"),
        params![prefix],
    )?;
    Ok(users)
}

/// Which of `users` hold an active key.
pub fn users_with_active_keys(
    conn: &Connection,
    users: &[String],
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL)",
    )?;
    let mut holding = Vec::new();
    for user in users {
        if stmt.query_row(params![user], |r| r.get::<_, bool>(0))? {
            holding.push(user.clone());
        }
    }
    Ok(holding)
}

/// The comped tier of each of `user`'s active keys (None: a key without one); empty when the
/// user holds no active key.
pub fn active_key_tiers(conn: &Connection, user: &str) -> rusqlite::Result<Vec<Option<String>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT tier FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at",
    )?;
    let rows = stmt.query_map(params![user], |r| r.get(0))?;
    rows.collect()
}

/// Every active key, as (hash, record) pairs for a `KeyIndex`.
pub fn load_active_keys(conn: &Connection) -> rusqlite::Result<Vec<([u8; 32], KeyRecord)>> {
    let mut stmt =
        conn.prepare("SELECT key_hash, id, user_id, tier FROM api_keys WHERE revoked_at IS NULL")?;
    let rows = stmt.query_map([], |r| {
        let hash_hex: String = r.get(0)?;
        Ok((
            hash_hex,
            KeyRecord {
                id: r.get(1)?,
                user: r.get(2)?,
                tier: r.get(3)?,
                last_used_ms: AtomicU64::new(0),
            },
        ))
    })?;
    let mut keys = Vec::new();
    for row in rows {
        let (hash_hex, record) = row?;
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(&hash_hex, &mut hash).is_ok() {
            keys.push((hash, record));
        } else {
            tracing::warn!(key_id = %record.id, "skipping a key whose stored hash is malformed");
        }
    }
    Ok(keys)
}

/// Writes in-memory `last used` times (Unix ms) for the given key ids, in one transaction.
pub fn flush_last_used(conn: &mut Connection, used: &[(String, u64)]) -> rusqlite::Result<()> {
    let tx = write_transaction(conn)?;
    {
        let mut stmt = tx.prepare(
            "UPDATE api_keys SET last_used_at = datetime(?2 / 1000, 'unixepoch') WHERE id = ?1",
        )?;
        for (id, ms) in used {
            stmt.execute(params![id, *ms as i64])?;
        }
    }
    tx.commit()
}

/// The change counter `name` (`keys`, `codex_tokens`): it moves whenever those rows change.
pub fn generation(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT generation FROM change_counters WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()
    .map(|g| g.unwrap_or(0))
}

pub fn put_codex_token(
    conn: &Connection,
    user: &str,
    nonce: &[u8; 12],
    ciphertext: &[u8],
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO codex_tokens (user_id, nonce, ciphertext) VALUES (?1, ?2, ?3)
         ON CONFLICT(user_id) DO UPDATE SET nonce = excluded.nonce,
           ciphertext = excluded.ciphertext, updated_at = datetime('now')",
        params![user, &nonce[..], ciphertext],
    )?;
    Ok(())
}

/// Removes a user's token; `Ok(false)` when there was none.
pub fn delete_codex_token(conn: &Connection, user: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM codex_tokens WHERE user_id = ?1", params![user])? > 0)
}

/// Every stored token, decrypted. Rows that fail to open (wrong key, tampered) are skipped with
/// a warning naming the user, never the token.
pub fn load_codex_tokens(
    conn: &Connection,
    cipher: &TokenCipher,
) -> rusqlite::Result<HashMap<String, Arc<str>>> {
    let mut stmt = conn.prepare("SELECT user_id, nonce, ciphertext FROM codex_tokens")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut tokens = HashMap::new();
    for row in rows {
        let (user, nonce, sealed) = row?;
        match cipher.open(&user, &nonce, &sealed) {
            Some(token) => {
                tokens.insert(user, Arc::from(token));
            }
            None => {
                tracing::warn!(%user, "a stored Codex token does not decrypt with the configured key; skipped")
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::ledger::migrations::apply(&mut conn).unwrap();
        conn
    }

    #[test]
    fn keys_round_trip_and_revoke_moves_the_generation() {
        let mut conn = db();
        let g0 = generation(&conn, "keys").unwrap();
        let minted = keys::mint();
        insert_key(&conn, &minted, "ana", Some("tier2")).unwrap();
        let g1 = generation(&conn, "keys").unwrap();
        assert!(g1 > g0);
        let active = load_active_keys(&conn).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].0, keys::hash(&minted.secret));
        assert_eq!(active[0].1.tier.as_deref(), Some("tier2"));

        flush_last_used(&mut conn, &[(minted.id.clone(), 1_700_000_000_000)]).unwrap();
        assert_eq!(
            generation(&conn, "keys").unwrap(),
            g1,
            "last-used never forces a reload"
        );
        let listed = list_keys(&conn).unwrap();
        assert_eq!(
            listed[0].last_used_at.as_deref(),
            Some("2023-11-14 22:13:20")
        );

        assert!(revoke_key(&conn, &minted.id).unwrap());
        assert!(!revoke_key(&conn, &minted.id).unwrap());
        assert!(generation(&conn, "keys").unwrap() > g1);
        assert!(load_active_keys(&conn).unwrap().is_empty());
    }

    #[test]
    fn stored_keys_are_hashes_only() {
        let conn = db();
        let minted = keys::mint();
        insert_key(&conn, &minted, "ana", None).unwrap();
        let stored: String = conn
            .query_row(
                "SELECT key_hash || key_prefix || id FROM api_keys",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!stored.contains(&minted.secret));
    }

    #[test]
    fn codex_tokens_round_trip_encrypted() {
        let conn = db();
        let cipher = TokenCipher::from_hex(&"11".repeat(32)).unwrap();
        let (nonce, sealed) = cipher.seal("ana", "oauth_ana").unwrap();
        put_codex_token(&conn, "ana", &nonce, &sealed).unwrap();
        let loaded = load_codex_tokens(&conn, &cipher).unwrap();
        assert_eq!(loaded.get("ana").map(|t| &**t), Some("oauth_ana"));
        // A row moved to another user does not decrypt for them.
        conn.execute("UPDATE codex_tokens SET user_id = 'bob'", [])
            .unwrap();
        assert!(load_codex_tokens(&conn, &cipher).unwrap().is_empty());
        assert!(delete_codex_token(&conn, "bob").unwrap());
        assert!(!delete_codex_token(&conn, "bob").unwrap());
    }
}
