//! SQL for one-time kit links (`onboard_links`, migration 0005). Blocking: called from the
//! `exoclaw onboard` command and from the sidecar inside `spawn_blocking`; never from the
//! request path.
//!
//! Claiming a link reads and writes in one `write_transaction` (`BEGIN IMMEDIATE`): the write
//! lock is held from the read, so of two downloads of one link at the same moment exactly one
//! finds it unused and marks it, and the other sees it used.

use rusqlite::{params, Connection, OptionalExtension};

use crate::ledger::connection::write_transaction;

/// A link to store: only the token's hash, never the token.
#[derive(Debug, Clone, Copy)]
pub struct NewLink<'a> {
    pub token_hash: &'a str,
    pub user: &'a str,
    pub key_id: &'a str,
    pub kit_zip: &'a [u8],
    pub created_ms: u64,
    pub expires_ms: u64,
}

/// What a download attempt gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The link was live and is now used: here is the kit, this once.
    Kit { user: String, zip: Vec<u8> },
    /// The link exists but can no longer be used.
    Gone(GoneReason),
    /// No link has this token.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    Used,
    Expired,
    Revoked,
}

pub fn insert_link(conn: &Connection, link: &NewLink<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO onboard_links (token_hash, user_id, key_id, kit_zip, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            link.token_hash,
            link.user,
            link.key_id,
            link.kit_zip,
            ms(link.created_ms),
            ms(link.expires_ms)
        ],
    )?;
    Ok(())
}

/// Uses the link with this token hash at `now_ms`, once: the first call on a live link gets
/// the kit and clears it from the table; every later one gets `Gone(Used)`. Also clears the
/// kits of links that have expired, which hold keys in the clear for nobody.
pub fn claim(conn: &mut Connection, token_hash: &str, now_ms: u64) -> rusqlite::Result<Claim> {
    let now = ms(now_ms);
    let tx = write_transaction(conn)?;
    let row = tx
        .query_row(
            "SELECT user_id, kit_zip, expires_ms, used_ms, revoked_ms
             FROM onboard_links WHERE token_hash = ?1",
            params![token_hash],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    let claim = match row {
        None => Claim::Unknown,
        Some((_, _, _, Some(_used), _)) => Claim::Gone(GoneReason::Used),
        Some((_, _, _, _, Some(_revoked))) => Claim::Gone(GoneReason::Revoked),
        Some((_, _, expires, _, _)) if now >= expires => Claim::Gone(GoneReason::Expired),
        Some((_, None, _, _, _)) => Claim::Gone(GoneReason::Revoked),
        Some((user, Some(zip), _, _, _)) => {
            tx.execute(
                "UPDATE onboard_links SET used_ms = ?2, kit_zip = NULL WHERE token_hash = ?1",
                params![token_hash, now],
            )?;
            Claim::Kit { user, zip }
        }
    };
    tx.execute(
        "UPDATE onboard_links SET kit_zip = NULL WHERE kit_zip IS NOT NULL AND expires_ms <= ?1",
        params![now],
    )?;
    tx.commit()?;
    Ok(claim)
}

/// Withdraws the unused links of every user whose id starts with `prefix`; returns how many.
/// Part of a caller's transaction (`cohort::revoke` revokes the keys in the same one).
pub fn revoke_links_by_user_prefix(
    conn: &Connection,
    prefix: &str,
    now_ms: u64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE onboard_links SET revoked_ms = ?2, kit_zip = NULL
         WHERE substr(user_id, 1, length(?1)) = ?1 AND used_ms IS NULL AND revoked_ms IS NULL",
        params![prefix, ms(now_ms)],
    )
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::ledger;

    fn link<'a>(hash: &'a str, user: &'a str, expires_ms: u64) -> NewLink<'a> {
        NewLink {
            token_hash: hash,
            user,
            key_id: "key_1",
            kit_zip: b"PK-zip",
            created_ms: 1_000,
            expires_ms,
        }
    }

    #[test]
    fn a_link_gives_its_kit_once_then_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open(&dir.path().join("t.db")).unwrap();
        insert_link(&conn, &link("h1", "trainee-01", 10_000)).unwrap();
        assert_eq!(
            claim(&mut conn, "h1", 2_000).unwrap(),
            Claim::Kit {
                user: "trainee-01".into(),
                zip: b"PK-zip".to_vec()
            }
        );
        assert_eq!(
            claim(&mut conn, "h1", 2_001).unwrap(),
            Claim::Gone(GoneReason::Used)
        );
        assert_eq!(claim(&mut conn, "nope", 2_002).unwrap(), Claim::Unknown);
        let kept: Option<Vec<u8>> = conn
            .query_row("SELECT kit_zip FROM onboard_links", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, None, "a used kit no longer holds the key");
    }

    #[test]
    fn expired_and_revoked_links_are_gone_and_lose_their_kits() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open(&dir.path().join("t.db")).unwrap();
        insert_link(&conn, &link("old", "trainee-01", 5_000)).unwrap();
        insert_link(&conn, &link("other", "trainee-02", 5_000)).unwrap();
        insert_link(&conn, &link("may", "may-ana", 50_000)).unwrap();
        insert_link(&conn, &link("june", "june-bo", 50_000)).unwrap();
        assert_eq!(
            claim(&mut conn, "old", 5_000).unwrap(),
            Claim::Gone(GoneReason::Expired)
        );
        let kits: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM onboard_links WHERE kit_zip IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            kits, 2,
            "both expired kits were cleared, the live ones kept"
        );

        assert_eq!(revoke_links_by_user_prefix(&conn, "may", 6_000).unwrap(), 1);
        assert_eq!(
            claim(&mut conn, "may", 6_001).unwrap(),
            Claim::Gone(GoneReason::Revoked)
        );
        assert!(matches!(
            claim(&mut conn, "june", 6_002).unwrap(),
            Claim::Kit { .. }
        ));
        // `_` is not a wildcard: the prefix is compared literally.
        assert_eq!(
            revoke_links_by_user_prefix(&conn, "jun_", 7_000).unwrap(),
            0
        );
    }

    #[test]
    fn two_concurrent_claims_of_one_link_give_one_kit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = ledger::open(&path).unwrap();
        insert_link(&conn, &link("h", "trainee-01", u64::MAX / 2)).unwrap();
        let start = Arc::new(Barrier::new(4));
        let claims: Vec<Claim> = (0..4)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut conn = ledger::connection::connect(&path).unwrap();
                    start.wait();
                    claim(&mut conn, "h", 2_000).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let kits = claims
            .iter()
            .filter(|c| matches!(c, Claim::Kit { .. }))
            .count();
        assert_eq!(kits, 1, "{claims:?}");
    }
}
