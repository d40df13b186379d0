//! The runtime-skills settings: where each pool's skills inventory comes from
//! (`pools.NAME.skills_inventory`) and the packs operators offer (`skills.packs`).
//!
//! Not here: fetching, caching or merging anything (`crate::skills`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::bounds::MAX_TIMEOUT;
use super::file::{SkillsInventorySection, SkillsSection};
use super::{duration_or, err, text, ConfigError};

/// Default time an inventory is served before it is fetched again.
pub const DEFAULT_INVENTORY_TTL: Duration = Duration::from_secs(60);
/// Default longest a fetch may take.
pub const DEFAULT_INVENTORY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most arguments of an inventory command.
const MAX_ARGS: usize = 64;

/// A pool's inventory source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillsInventory {
    pub from: InventoryFrom,
    pub timeout: Duration,
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryFrom {
    /// An `http://` URL answering the JSON of `openclaw skills list --json`.
    Url(String),
    /// A program and its arguments, run without a shell (`ssh mac-mini openclaw skills list
    /// --json`).
    Command(Vec<String>),
}

/// The operators' skill packs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skills {
    pub packs: BTreeMap<String, Vec<String>>,
}

/// The seed's packs, used when the file names none.
pub fn default_packs() -> BTreeMap<String, Vec<String>> {
    let pack = |skills: &[&str]| skills.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    BTreeMap::from([
        (
            "basic".to_owned(),
            pack(&["weather", "web-search", "summarize"]),
        ),
        (
            "creator".to_owned(),
            pack(&["web-search", "summarize", "image-gen"]),
        ),
        (
            "ops".to_owned(),
            pack(&["shell-readonly", "github", "uptime"]),
        ),
    ])
}

pub(super) fn skills(raw: Option<SkillsSection>) -> Result<Skills, ConfigError> {
    let SkillsSection { packs } = raw.unwrap_or_default();
    let packs = packs.unwrap_or_else(default_packs);
    crate::skills::policy::check_packs(&packs).map_err(|message| {
        // The message starts with the key's path.
        let (path, rest) = message
            .split_once(": ")
            .unwrap_or(("skills.packs", &message));
        err(path, rest)
    })?;
    Ok(Skills { packs })
}

pub(super) fn inventory(
    at: &str,
    raw: Option<SkillsInventorySection>,
) -> Result<Option<SkillsInventory>, ConfigError> {
    let Some(SkillsInventorySection {
        url,
        command,
        timeout,
        ttl,
    }) = raw
    else {
        return Ok(None);
    };
    let at = format!("{at}.skills_inventory");
    let from = match (url, command) {
        (Some(url), None) => {
            text::plain(&format!("{at}.url"), &url)?;
            let parsed = url
                .parse::<http::Uri>()
                .ok()
                .filter(|u| u.scheme_str() == Some("http") && u.host().is_some());
            if parsed.is_none() {
                return Err(err(
                    format!("{at}.url"),
                    format!("{url:?} is not an http:// URL (on the tailnet, plain HTTP)"),
                ));
            }
            InventoryFrom::Url(url)
        }
        (None, Some(argv)) => {
            if argv.is_empty() || argv.len() > MAX_ARGS {
                return Err(err(
                    format!("{at}.command"),
                    format!("a program and its arguments: 1-{MAX_ARGS} words"),
                ));
            }
            for (i, arg) in argv.iter().enumerate() {
                if arg.chars().any(|c| c.is_control()) || (i == 0 && arg.trim().is_empty()) {
                    return Err(err(
                        format!("{at}.command[{i}]"),
                        "must be plain text (the command runs without a shell)",
                    ));
                }
            }
            InventoryFrom::Command(argv)
        }
        _ => {
            return Err(err(
                at,
                "give either `url` or `command` (the argv of `openclaw skills list --json`)",
            ))
        }
    };
    Ok(Some(SkillsInventory {
        from,
        timeout: duration_or(
            &format!("{at}.timeout"),
            timeout,
            DEFAULT_INVENTORY_TIMEOUT,
            MAX_TIMEOUT,
        )?,
        ttl: duration_or(
            &format!("{at}.ttl"),
            ttl,
            DEFAULT_INVENTORY_TTL,
            Duration::from_secs(24 * 3600),
        )?,
    }))
}
