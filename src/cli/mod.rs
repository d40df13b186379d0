//! The operator commands behind `exoclaw keys …`, `exoclaw onboard …` and `exoclaw usage`: they
//! work on the database named by the config file, so a running gateway picks their changes up
//! within a second (see `auth::sync`). `runs` holds `exoclaw runs …` and `tenants …`;
//! `telegram` holds `exoclaw telegram …`, which talk to the Bot API rather than the database.

pub mod runs;
pub mod telegram;

use std::io::IsTerminal;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::auth::{self, store};
use crate::clock::{Clock, SystemClock};
use crate::config::{units, Config};
use crate::ledger::{self, queries};
use crate::onboard::cohort::{self, CohortPlan};
use crate::onboard::{link, sheet};

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

/// `exoclaw onboard --count N --prefix P | --users FILE --url URL [--tier T] [--out DIR]
/// [--link-ttl 7d]`: a key, a kit and a one-time link per trainee, and the printable sheet.
pub fn onboard(config: &Config, plan: &CohortPlan) -> Result<(), String> {
    let mut conn = ledger::open(&config.database)?;
    let issued = cohort::issue(&mut conn, plan, &config.tiers, SystemClock.now_ms())?;
    let (tier_name, _) = config.tier(plan.tier.as_deref());
    for kit in &issued.kits {
        println!("{}\t{}\t{}", kit.user, kit.key_id, kit.zip_path.display());
    }
    eprintln!(
        "Issued {} kits (tier {tier_name}) in {}. Print {}: each QR code is a link that works \
         once, until {}. The folder holds every trainee's key: keep it private, and delete it \
         after the event.",
        issued.kits.len(),
        plan.out_dir.display(),
        issued.sheet_path.display(),
        sheet::utc_label(issued.expires_ms),
    );
    Ok(())
}

/// `exoclaw onboard revoke --prefix P`: every key of the cohort, and its unused links.
pub fn onboard_revoke(config: &Config, prefix: &str) -> Result<(), String> {
    let mut conn = ledger::open(&config.database)?;
    let revoked = cohort::revoke(&mut conn, prefix, SystemClock.now_ms())?;
    for user in &revoked.users {
        println!("{user}");
    }
    eprintln!(
        "Revoked the keys of {} users whose ids start with `{prefix}`, and withdrew {} unused \
         links. A running gateway refuses them within a second.",
        revoked.users.len(),
        revoked.links
    );
    Ok(())
}

/// How `exoclaw usage` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFormat {
    Table,
    Json,
    /// CSV with a header line, for a spreadsheet or a mail merge.
    Csv,
}

/// `exoclaw usage [--since 5m] [--top N] [--watch] [--json | --csv]`: per-user requests, tokens,
/// latency, errors and last seen, read from the ledger (the seed's `watch … SELECT user_id,
/// count(*)`), most requests first; `--top` keeps the N most active users. Kit downloads are
/// left out (see `onboard::link::DOWNLOADER`).
pub fn usage(
    config: &Config,
    since: &str,
    top: Option<usize>,
    watch: bool,
    format: UsageFormat,
) -> Result<(), String> {
    let window = units::parse_duration(since).map_err(|e| format!("--since: {e}"))?;
    let conn = Connection::open_with_flags(&config.database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| {
            format!(
                "cannot open {} ({e}); has the gateway run with this config?",
                config.database.display()
            )
        })?;
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    loop {
        let since_ms = SystemClock
            .now_ms()
            .saturating_sub(window.as_millis() as u64);
        let mut rows =
            queries::usage_since(&conn, since_ms).map_err(|e| format!("cannot read usage: {e}"))?;
        rows.retain(|r| r.user_id != link::DOWNLOADER);
        if let Some(top) = top {
            rows.truncate(top);
        }
        match format {
            UsageFormat::Json => {
                let text = serde_json::to_string(&rows).map_err(|e| e.to_string())?;
                println!("{text}");
            }
            UsageFormat::Csv => print!("{}", usage_csv(&rows)),
            UsageFormat::Table => {
                if watch && std::io::stdout().is_terminal() {
                    // Clear the screen only on a terminal: a file or pipe gets plain tables.
                    print!("\x1b[2J\x1b[H");
                }
                match top {
                    Some(n) => println!("Top {n} users over the last {since}"),
                    None => println!("Usage over the last {since} ({} users)", rows.len()),
                }
                print!("{}", usage_table(&rows));
            }
        }
        if !watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn usage_table(rows: &[queries::UserUsage]) -> String {
    let mut out = format!(
        "{:<24} {:>9} {:>11} {:>12} {:>7}  {}\n",
        "USER", "REQUESTS", "TOKENS", "AVG LATENCY", "ERRORS", "LAST SEEN"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:>9} {:>11} {:>10.0}ms {:>7}  {}\n",
            r.user_id, r.requests, r.total_tokens, r.avg_latency_ms, r.errors, r.last_seen
        ));
    }
    out
}

fn usage_csv(rows: &[queries::UserUsage]) -> String {
    let mut out = String::from(
        "user_id,requests,prompt_tokens,completion_tokens,total_tokens,avg_latency_ms,errors,last_seen\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{:.0},{},{}\n",
            csv_field(&r.user_id),
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.total_tokens,
            r.avg_latency_ms,
            r.errors,
            csv_field(&r.last_seen),
        ));
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("ana"), "ana");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
