//! The operator commands behind `exoclaw keys …`: they work on the database named by the config
//! file, so a running gateway picks their changes up within a second (see `auth::sync`).

use crate::auth::{self, store};
use crate::config::Config;
use crate::ledger;

/// `exoclaw keys create --user ID [--tier T]`: prints the new key once.
pub fn keys_create(config: &Config, user: &str, tier: Option<&str>) -> Result<(), String> {
    let conn = ledger::open(&config.database)?;
    let minted = auth::create_key(&conn, user, tier, &config.tiers)?;
    let (tier_name, _) = config.tier(tier);
    println!("{}", minted.secret);
    eprintln!(
        "Created {} for user `{user}` (tier {tier_name}). This is the only time the key is shown.",
        minted.id
    );
    Ok(())
}

/// `exoclaw keys list [--json]`: never shows keys, only their ids and prefixes.
pub fn keys_list(config: &Config, as_json: bool) -> Result<(), String> {
    let conn = ledger::open(&config.database)?;
    let keys = store::list_keys(&conn).map_err(|e| format!("cannot list keys: {e}"))?;
    if as_json {
        let text = serde_json::to_string_pretty(&keys).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<16} {:<20} {:<10} {:<12} {:<19} {:<19} STATUS",
        "ID", "USER", "TIER", "PREFIX", "CREATED", "LAST USED"
    );
    for k in keys {
        println!(
            "{:<16} {:<20} {:<10} {:<12} {:<19} {:<19} {}",
            k.id,
            k.user,
            k.tier.as_deref().unwrap_or("-"),
            format!("{}…", k.prefix),
            k.created_at,
            k.last_used_at.as_deref().unwrap_or("never"),
            if k.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
        );
    }
    Ok(())
}

/// `exoclaw keys revoke ID`.
pub fn keys_revoke(config: &Config, id: &str) -> Result<(), String> {
    let conn = ledger::open(&config.database)?;
    if store::revoke_key(&conn, id).map_err(|e| format!("cannot revoke: {e}"))? {
        eprintln!("Revoked {id}. A running gateway refuses it within a second.");
        Ok(())
    } else {
        Err(format!(
            "no active key has the id `{id}` (see `exoclaw keys list`)"
        ))
    }
}
