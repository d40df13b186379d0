//! Issuing a cohort's kits, and revoking the cohort after the event.
//!
//! `issue` creates, in one write transaction, a gateway key and a one-time link per trainee,
//! and writes into the output folder each trainee's ZIP (`<user>-kit.zip`), the PNG of their
//! link's QR code (`<user>.png`) and the printable `index.html`. The transaction commits only
//! once every file is written: a failure leaves no half-issued cohort behind (at worst some
//! files, which are overwritten by the next run).
//!
//! `revoke` revokes every key of the users whose ids start with a prefix and withdraws their
//! unused links, in one transaction; a running gateway refuses the keys within a second (the
//! key sync notices the change counter, see `auth::sync`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::kit::{self, KitSettings};
use super::sheet::{self, Card};
use super::{link, qr, store};
use crate::auth::{self, store as key_store};
use crate::config::Tier;
use crate::ledger::connection::write_transaction;

/// Pixels a QR module in the PNGs (a 6 cm code when printed at 150 dpi or so).
const PNG_SCALE: usize = 8;

/// What to issue.
#[derive(Debug, Clone)]
pub struct CohortPlan {
    pub users: Vec<String>,
    /// A tier for every key; `None`: each trainee's own tier (the config's `default_tier`
    /// until they subscribe to another).
    pub tier: Option<String>,
    /// The gateway's public base URL: in each `.env`, and the base of the links.
    pub gateway_url: String,
    pub out_dir: PathBuf,
    pub link_ttl: Duration,
}

/// One issued kit.
#[derive(Debug, Clone)]
pub struct IssuedKit {
    pub user: String,
    pub key_id: String,
    pub zip_path: PathBuf,
    pub png_path: PathBuf,
}

/// What `issue` made.
#[derive(Debug, Clone)]
pub struct Issued {
    pub kits: Vec<IssuedKit>,
    pub sheet_path: PathBuf,
    pub expires_ms: u64,
}

pub fn issue(
    conn: &mut Connection,
    plan: &CohortPlan,
    tiers: &BTreeMap<String, Tier>,
    now_ms: u64,
) -> Result<Issued, String> {
    let url = plan.gateway_url.trim_end_matches('/');
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        return Err(format!(
            "--url `{url}` must be the gateway's public address, e.g. https://gateway.example"
        ));
    }
    let ttl_ms = u64::try_from(plan.link_ttl.as_millis()).unwrap_or(u64::MAX);
    if ttl_ms == 0 {
        return Err("--link-ttl must be longer than 0".to_owned());
    }
    let expires_ms = now_ms.saturating_add(ttl_ms);
    let tx = write_transaction(conn).map_err(|e| format!("cannot write the database: {e}"))?;
    let holding = key_store::users_with_active_keys(&tx, &plan.users)
        .map_err(|e| format!("cannot read keys: {e}"))?;
    if !holding.is_empty() {
        return Err(format!(
            "{} already hold an active key (from an earlier kit?): revoke them first \
             (`exoclaw onboard revoke --prefix …`) or choose other names",
            holding.join(", ")
        ));
    }
    std::fs::create_dir_all(&plan.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", plan.out_dir.display()))?;
    let mut kits = Vec::with_capacity(plan.users.len());
    let mut cards = Vec::with_capacity(plan.users.len());
    for user in &plan.users {
        let minted = auth::create_key(&tx, user, plan.tier.as_deref(), tiers)?;
        let zip = kit::zip(&KitSettings {
            gateway_url: url,
            gateway_key: &minted.secret,
            user,
        })?;
        let token = link::new_token();
        let sealed = link::seal_kit(&token, &zip)?;
        store::insert_link(
            &tx,
            &store::NewLink {
                token_hash: &link::token_hash(&token),
                user,
                key_id: &minted.id,
                kit_zip: &sealed,
                created_ms: now_ms,
                expires_ms,
            },
        )
        .map_err(|e| format!("cannot store the link for {user}: {e}"))?;
        let link = link::url(url, &token);
        let zip_path = plan.out_dir.join(kit::zip_name(user));
        let png_path = plan.out_dir.join(format!("{user}.png"));
        write(&zip_path, &zip)?;
        write(&png_path, &qr::png(&qr::encode(&link)?, PNG_SCALE, user)?)?;
        cards.push(Card {
            user: user.clone(),
            link,
        });
        kits.push(IssuedKit {
            user: user.clone(),
            key_id: minted.id,
            zip_path,
            png_path,
        });
    }
    let sheet_path = plan.out_dir.join("index.html");
    write(&sheet_path, sheet::html(&cards, expires_ms)?.as_bytes())?;
    tx.commit()
        .map_err(|e| format!("cannot commit the kits: {e}"))?;
    Ok(Issued {
        kits,
        sheet_path,
        expires_ms,
    })
}

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Users whose keys were revoked.
    pub users: Vec<String>,
    /// Unused links withdrawn.
    pub links: usize,
}

pub fn revoke(conn: &mut Connection, prefix: &str, now_ms: u64) -> Result<Revoked, String> {
    if prefix.is_empty() {
        return Err("--prefix must not be empty: that would revoke every key".to_owned());
    }
    let tx = write_transaction(conn).map_err(|e| format!("cannot write the database: {e}"))?;
    let users = key_store::revoke_keys_by_user_prefix(&tx, prefix)
        .map_err(|e| format!("cannot revoke keys: {e}"))?;
    let links = store::revoke_links_by_user_prefix(&tx, prefix, now_ms)
        .map_err(|e| format!("cannot withdraw links: {e}"))?;
    tx.commit().map_err(|e| format!("cannot commit: {e}"))?;
    Ok(Revoked { users, links })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger;

    fn tiers() -> BTreeMap<String, Tier> {
        let config = crate::config::Config::from_yaml(
            "server: { listen: \"127.0.0.1:1\" }\npools: { openclaw: { nodes: [ { name: n, addr: \"127.0.0.1:1\" } ] } }\n",
        )
        .unwrap();
        config.tiers.clone()
    }

    #[test]
    fn a_cohort_is_issued_once_and_revoked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open(&dir.path().join("t.db")).unwrap();
        let plan = CohortPlan {
            users: vec!["t-01".into(), "t-02".into()],
            tier: None,
            gateway_url: "https://gw.example/".into(),
            out_dir: dir.path().join("kits"),
            link_ttl: Duration::from_secs(3600),
        };
        let issued = issue(&mut conn, &plan, &tiers(), 1_000).unwrap();
        assert_eq!(issued.kits.len(), 2);
        assert_eq!(issued.expires_ms, 1_000 + 3_600_000);
        for kit in &issued.kits {
            assert!(kit.zip_path.ends_with(format!("{}-kit.zip", kit.user)));
            assert!(std::fs::read(&kit.png_path)
                .unwrap()
                .starts_with(b"\x89PNG"));
        }
        let html = std::fs::read_to_string(&issued.sheet_path).unwrap();
        assert_eq!(html.matches("https://gw.example/onboard/").count(), 2);

        let again = issue(&mut conn, &plan, &tiers(), 2_000).unwrap_err();
        assert!(
            again.contains("t-01, t-02 already hold an active key"),
            "{again}"
        );

        let revoked = revoke(&mut conn, "t-", 3_000).unwrap();
        assert_eq!(
            revoked,
            Revoked {
                users: vec!["t-01".into(), "t-02".into()],
                links: 2
            }
        );
        assert_eq!(revoke(&mut conn, "t-", 4_000).unwrap().users.len(), 0);
        assert!(revoke(&mut conn, "", 4_000).is_err());
        issue(&mut conn, &plan, &tiers(), 5_000).expect("a revoked cohort can be issued again");
    }

    #[test]
    fn a_bad_url_or_tier_issues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open(&dir.path().join("t.db")).unwrap();
        let mut plan = CohortPlan {
            users: vec!["t-01".into()],
            tier: None,
            gateway_url: "gateway.example".into(),
            out_dir: dir.path().join("kits"),
            link_ttl: Duration::from_secs(3600),
        };
        assert!(issue(&mut conn, &plan, &tiers(), 1_000).is_err());
        plan.gateway_url = "https://gw.example".into();
        plan.tier = Some("platinum".into());
        let e = issue(&mut conn, &plan, &tiers(), 1_000).unwrap_err();
        assert!(e.contains("`platinum` is not a tier"), "{e}");
        let keys: i64 = conn
            .query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, 0);
    }
}
