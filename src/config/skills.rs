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
    /// An `http://` or `https://` URL answering the JSON of `openclaw skills list --json`.
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
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if parsed.is_none() {
                return Err(err(
                    format!("{at}.url"),
                    format!("{url:?} is not an http:// or https:// URL"),
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

#[cfg(test)]
mod tests {
    use crate::config::skills::InventoryFrom;
    use crate::config::Config;

    fn load(pool_extra: &str, top: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_yaml(&format!(
            "server: {{ listen: \"127.0.0.1:8787\" }}\n{top}pools:\n  openclaw:\n{pool_extra}    \
             nodes: [ {{ name: n, addr: \"127.0.0.1:18789\" }} ]\n"
        ))
    }

    #[test]
    fn an_inventory_comes_from_a_url_or_a_command_not_both() {
        let url = load(
            "    skills_inventory: { url: \"http://100.82.244.127:18790/skills.json\" }\n",
            "",
        )
        .unwrap();
        let inventory = url.pools["openclaw"].skills_inventory.clone().unwrap();
        assert_eq!(
            inventory.from,
            InventoryFrom::Url("http://100.82.244.127:18790/skills.json".into())
        );
        assert_eq!(inventory.ttl, super::DEFAULT_INVENTORY_TTL);
        let command = load(
            "    skills_inventory: { command: [ssh, mac-mini, openclaw, skills, list, --json], ttl: 5m }\n",
            "",
        )
        .unwrap();
        let inventory = command.pools["openclaw"].skills_inventory.clone().unwrap();
        assert!(matches!(inventory.from, InventoryFrom::Command(ref argv) if argv.len() == 6));
        let cases = [
            (
                "    skills_inventory: { ttl: 5m }\n",
                "pools.openclaw.skills_inventory",
            ),
            (
                "    skills_inventory: { url: \"http://a/x\", command: [x] }\n",
                "pools.openclaw.skills_inventory",
            ),
            (
                "    skills_inventory: { url: \"ftp://a/x\" }\n",
                "pools.openclaw.skills_inventory.url",
            ),
            (
                "    skills_inventory: { command: [] }\n",
                "pools.openclaw.skills_inventory.command",
            ),
            (
                "    skills_inventory: { url: \"http://a/x\", ttl: 30d }\n",
                "pools.openclaw.skills_inventory.ttl",
            ),
        ];
        for (yaml, path) in cases {
            let e = load(yaml, "").unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e}");
        }
    }

    #[test]
    fn packs_default_to_the_seeds_and_are_checked() {
        let config = load("", "").unwrap();
        assert_eq!(
            config.skills.packs["basic"],
            ["weather", "web-search", "summarize"]
        );
        assert_eq!(config.skills.packs.len(), 3);
        let e = load("", "skills: { packs: { basic: [weather, weather] } }\n").unwrap_err();
        assert!(e.path.starts_with("skills.packs.basic"), "{e}");
    }
}
