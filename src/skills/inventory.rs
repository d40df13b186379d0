//! A runtime's skills as OpenClaw reports them: the JSON of `openclaw skills list --json`, parsed
//! into bounded, typed values, and the one definition of a *ready* skill.
//!
//! Not for: where the JSON comes from (`source`), or what a tenant may use (`policy`).
//!
//! **The shape**, read in OpenClaw's source (`openclaw/openclaw`, `src/cli/skills-cli.format.ts`,
//! `formatSkillsList` with `opts.json`; the entry type in `src/skills/discovery/status.ts`,
//! formerly `src/agents/skills-status.ts`):
//!
//! ```json
//! {"workspaceDir": "…", "managedSkillsDir": "…",
//!  "skills": [{"name": "weather", "description": "…", "emoji": "🌤️", "eligible": true,
//!    "disabled": false, "blockedByAllowlist": false, "blockedByAgentFilter": false,
//!    "modelVisible": true, "userInvocable": true, "commandVisible": true,
//!    "source": "openclaw-bundled", "bundled": true, "primaryEnv": "…", "homepage": "…",
//!    "missing": {"bins": [], "anyBins": [], "env": [], "config": [], "os": []}}]}
//! ```
//!
//! Every value is a string, a boolean, or (under `missing`) a list of strings. `emoji`,
//! `primaryEnv` and `homepage` are left out when a skill has none (`JSON.stringify` drops
//! `undefined`). Older releases print less: clawdbot-era ones have no `bundled`; releases before
//! the agent filter have no `blockedByAgentFilter`, `modelVisible`, `userInvocable` or
//! `commandVisible`; some print `parseError`, and forks add their own keys (`quarantined`,
//! `auditStatus`, `capabilities`). So every field is optional and unknown keys are ignored —
//! except a skill's `name` (every release prints it, and it is the key a policy names) and the
//! top-level `skills` list (without it the document is an error envelope, not an inventory).
//!
//! **Readiness.** OpenClaw computes `eligible = !disabled && !blockedByAllowlist &&
//! requirementsSatisfied`; the agent filter (`--agent <id>`) is applied after, and OpenClaw's own
//! `--eligible` listing keeps `eligible && !blockedByAgentFilter`. A skill is ready here when it
//! is `eligible`, not `disabled`, not `blockedByAgentFilter` and not `blockedByAllowlist`. The
//! last test never changes the answer for a real OpenClaw node (eligibility already implies it);
//! it keeps a source that reports `eligible` carelessly from making a blocked bundled skill ready.
//! A missing `eligible` means *not ready*: we do not claim what the node did not say. The agent
//! filter is only reported when the command names an agent (`openclaw skills list --json --agent
//! main`); without it, `blockedByAgentFilter` is always false.
//!
//! **Bounds.** A node is trusted to run agents, not to size our memory: the document is capped
//! (`MAX_INVENTORY_BYTES`), and so are the number of skills, the items of each `missing` list and
//! every string, while parsing (a list stops at its limit, a string is measured before it is
//! copied). A document over a bound is an error, like any malformed one, and every error names
//! the field (`skills[3].missing.bins`).

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Largest inventory document read from a command's stdout or a URL's body.
pub const MAX_INVENTORY_BYTES: usize = 4 * 1024 * 1024;
/// Most skills one inventory may hold (OpenClaw bundles about fifty).
pub const MAX_SKILLS: usize = 2_000;
/// Longest skill name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4_096;
/// Longest path, URL, source or environment variable name, in bytes.
pub const MAX_TEXT_BYTES: usize = 1_024;
/// Longest emoji (a few code points joined), in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Most items in one `missing` list.
pub const MAX_MISSING_ITEMS: usize = 64;
/// Longest item of a `missing` list, in bytes.
pub const MAX_MISSING_ITEM_BYTES: usize = 256;
/// Longest error message kept from a parse error (serde quotes offending values).
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// One runtime's skills, in the order the node listed them, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_skills_dir: Option<String>,
    pub skills: Vec<Skill>,
}

/// One skill as the node reports it. `None`: the node's release does not print that field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skill {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by_allowlist: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by_agent_filter: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_visible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_invocable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_visible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    pub missing: Missing,
}

/// The requirements a skill lacks on its node. A list the node did not print is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Missing {
    /// Binaries that must all be on `PATH`.
    pub bins: Vec<String>,
    /// Binaries of which one would do: OpenClaw lists the whole group when none is found.
    pub any_bins: Vec<String>,
    /// Environment variables (or a skill's API key in OpenClaw's config).
    pub env: Vec<String>,
    /// OpenClaw config paths that must be truthy.
    pub config: Vec<String>,
    /// Platforms the skill supports, listed when the node runs none of them.
    pub os: Vec<String>,
}

/// The kinds of requirement under `missing`, in OpenClaw's order, with their JSON names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequirementKind {
    Bins,
    AnyBins,
    Env,
    Config,
    Os,
}

impl RequirementKind {
    pub const ALL: [RequirementKind; 5] = [
        RequirementKind::Bins,
        RequirementKind::AnyBins,
        RequirementKind::Env,
        RequirementKind::Config,
        RequirementKind::Os,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequirementKind::Bins => "bins",
            RequirementKind::AnyBins => "anyBins",
            RequirementKind::Env => "env",
            RequirementKind::Config => "config",
            RequirementKind::Os => "os",
        }
    }
}

impl Missing {
    pub fn of(&self, kind: RequirementKind) -> &[String] {
        let Missing {
            bins,
            any_bins,
            env,
            config,
            os,
        } = self;
        match kind {
            RequirementKind::Bins => bins,
            RequirementKind::AnyBins => any_bins,
            RequirementKind::Env => env,
            RequirementKind::Config => config,
            RequirementKind::Os => os,
        }
    }

    pub fn is_empty(&self) -> bool {
        RequirementKind::ALL.iter().all(|&k| self.of(k).is_empty())
    }
}

impl Skill {
    /// Ready on its node: eligible, not disabled, not excluded by the agent filter, not blocked
    /// by the bundled allowlist (see the module docs for why the last one is checked too).
    pub fn is_ready(&self) -> bool {
        self.eligible == Some(true)
            && self.disabled != Some(true)
            && self.blocked_by_agent_filter != Some(true)
            && self.blocked_by_allowlist != Some(true)
    }
}

impl Inventory {
    /// The skill called `name`, if the node has it.
    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.iter().find(|s| s.name == name)
    }
}

/// Why an inventory was refused: the field (a path such as `skills[3].eligible`) and what was
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed skills inventory at {}: {}",
            self.path, self.message
        )
    }
}

impl std::error::Error for InventoryError {}

impl InventoryError {
    fn new(path: impl Into<String>, message: impl fmt::Display) -> InventoryError {
        let message = message.to_string();
        let message = match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        InventoryError {
            path: path.into(),
            message,
        }
    }
}

/// Checks a skill name, from a node or from a tenant's policy: not empty, at most
/// `MAX_NAME_BYTES`, no control characters, no surrounding whitespace.
pub fn check_skill_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("is too long");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    if name.trim() != name {
        return Err("must not start or end with whitespace");
    }
    Ok(())
}

/// Parses the output of `openclaw skills list --json`. Duplicate names keep their first entry
/// (OpenClaw lists skills in precedence order).
pub fn parse(json: &[u8]) -> Result<Inventory, InventoryError> {
    if json.len() > MAX_INVENTORY_BYTES {
        return Err(InventoryError::new(
            "inventory",
            format!("is larger than {MAX_INVENTORY_BYTES} bytes"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let wire: WireInventory = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "inventory".into()
        } else {
            path
        };
        InventoryError::new(path, e.into_inner())
    })?;
    de.end()
        .map_err(|e| InventoryError::new("inventory", format!("trailing content: {e}")))?;
    wire.into_inventory()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireInventory {
    workspace_dir: Option<Text<MAX_TEXT_BYTES>>,
    managed_skills_dir: Option<Text<MAX_TEXT_BYTES>>,
    skills: List<WireSkill, MAX_SKILLS>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSkill {
    name: Text<MAX_NAME_BYTES>,
    description: Option<Text<MAX_DESCRIPTION_BYTES>>,
    emoji: Option<Text<MAX_EMOJI_BYTES>>,
    eligible: Option<bool>,
    disabled: Option<bool>,
    blocked_by_allowlist: Option<bool>,
    blocked_by_agent_filter: Option<bool>,
    model_visible: Option<bool>,
    user_invocable: Option<bool>,
    command_visible: Option<bool>,
    source: Option<Text<MAX_TEXT_BYTES>>,
    bundled: Option<bool>,
    primary_env: Option<Text<MAX_TEXT_BYTES>>,
    homepage: Option<Text<MAX_TEXT_BYTES>>,
    missing: Option<WireMissing>,
}

type MissingList = Option<List<Text<MAX_MISSING_ITEM_BYTES>, MAX_MISSING_ITEMS>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMissing {
    bins: MissingList,
    any_bins: MissingList,
    env: MissingList,
    config: MissingList,
    os: MissingList,
}

impl WireInventory {
    fn into_inventory(self) -> Result<Inventory, InventoryError> {
        let WireInventory {
            workspace_dir,
            managed_skills_dir,
            skills,
        } = self;
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(skills.0.len());
        for (i, wire) in skills.0.into_iter().enumerate() {
            let skill = wire.into_skill();
            check_skill_name(&skill.name)
                .map_err(|why| InventoryError::new(format!("skills[{i}].name"), why))?;
            if seen.insert(skill.name.clone()) {
                out.push(skill);
            }
        }
        Ok(Inventory {
            workspace_dir: workspace_dir.map(Text::into_inner),
            managed_skills_dir: managed_skills_dir.map(Text::into_inner),
            skills: out,
        })
    }
}

impl WireSkill {
    fn into_skill(self) -> Skill {
        let WireSkill {
            name,
            description,
            emoji,
            eligible,
            disabled,
            blocked_by_allowlist,
            blocked_by_agent_filter,
            model_visible,
            user_invocable,
            command_visible,
            source,
            bundled,
            primary_env,
            homepage,
            missing,
        } = self;
        let list = |l: MissingList| -> Vec<String> {
            l.map(|l| l.0.into_iter().map(Text::into_inner).collect())
                .unwrap_or_default()
        };
        let missing = match missing {
            None => Missing::default(),
            Some(WireMissing {
                bins,
                any_bins,
                env,
                config,
                os,
            }) => Missing {
                bins: list(bins),
                any_bins: list(any_bins),
                env: list(env),
                config: list(config),
                os: list(os),
            },
        };
        Skill {
            name: name.into_inner(),
            description: description.map(Text::into_inner),
            emoji: emoji.map(Text::into_inner),
            eligible,
            disabled,
            blocked_by_allowlist,
            blocked_by_agent_filter,
            model_visible,
            user_invocable,
            command_visible,
            source: source.map(Text::into_inner),
            bundled,
            primary_env: primary_env.map(Text::into_inner),
            homepage: homepage.map(Text::into_inner),
            missing,
        }
    }
}

/// A string of at most `MAX` bytes, measured before it is copied.
struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    fn into_inner(self) -> String {
        self.0
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Text<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<const MAX: usize>;
        impl<const MAX: usize> Visitor<'_> for TextVisitor<MAX> {
            type Value = Text<MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {MAX} bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<MAX>, E> {
                if v.len() > MAX {
                    return Err(E::custom(format_args!(
                        "string of {} bytes, longer than {MAX}",
                        v.len()
                    )));
                }
                Ok(Text(v.to_owned()))
            }
        }
        deserializer.deserialize_str(TextVisitor::<MAX>)
    }
}

/// A list of at most `MAX` items: parsing stops at the first item over the limit.
struct List<T, const MAX: usize>(Vec<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for List<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T, const MAX: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for ListVisitor<T, MAX> {
            type Value = List<T, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX} items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T, MAX>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(64));
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX {
                        return Err(de::Error::custom(format_args!("more than {MAX} items")));
                    }
                    items.push(item);
                }
                Ok(List(items))
            }
        }
        deserializer.deserialize_seq(ListVisitor::<T, MAX>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/skills/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn error(json: &str) -> InventoryError {
        parse(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn the_newest_field_set_parses_field_by_field() {
        let inv = parse(&fixture("list-newest.json")).unwrap();
        assert_eq!(
            inv.workspace_dir.as_deref(),
            Some("/Users/claw/.openclaw/workspace")
        );
        assert_eq!(
            inv.managed_skills_dir.as_deref(),
            Some("/Users/claw/.openclaw/skills")
        );
        let weather = inv.get("weather").unwrap();
        assert_eq!(
            weather,
            &Skill {
                name: "weather".into(),
                description: Some(
                    "Get current weather and forecasts (no API key required).".into()
                ),
                emoji: Some("🌤️".into()),
                eligible: Some(true),
                disabled: Some(false),
                blocked_by_allowlist: Some(false),
                blocked_by_agent_filter: Some(false),
                model_visible: Some(true),
                user_invocable: Some(true),
                command_visible: Some(true),
                source: Some("openclaw-bundled".into()),
                bundled: Some(true),
                primary_env: None,
                homepage: Some("https://wttr.in/:help".into()),
                missing: Missing::default(),
            }
        );
        assert!(weather.is_ready());
        let gh = inv.get("github").unwrap();
        assert_eq!(gh.missing.bins, ["gh"]);
        assert!(!gh.is_ready());
        let ready: Vec<&str> = inv
            .skills
            .iter()
            .filter(|s| s.is_ready())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            ready,
            ["weather", "web-search", "summarize", "shell-readonly"]
        );
    }

    #[test]
    fn an_older_field_set_parses_with_the_absent_fields_as_none() {
        let inv = parse(&fixture("list-older.json")).unwrap();
        let weather = inv.get("weather").unwrap();
        assert_eq!(weather.eligible, Some(true));
        assert_eq!(
            (
                weather.bundled,
                weather.blocked_by_agent_filter,
                weather.model_visible,
                weather.user_invocable,
                weather.command_visible
            ),
            (None, None, None, None, None)
        );
        assert!(weather.is_ready(), "an absent agent filter blocks nothing");
        // `parseError` and fork keys are ignored.
        assert!(inv.get("broken").is_some());
        assert_eq!(inv.get("imsg").unwrap().missing.os, ["darwin"]);
        // A `missing` without some of its lists has them empty.
        let inv = parse(br#"{"skills": [{"name": "a", "missing": {"bins": ["x"]}}]}"#).unwrap();
        assert_eq!(inv.skills[0].missing.bins, ["x"]);
        assert!(inv.skills[0].missing.any_bins.is_empty());
    }

    #[test]
    fn readiness_needs_eligible_and_no_block() {
        let base = Skill {
            name: "s".into(),
            eligible: Some(true),
            ..Skill::default()
        };
        assert!(base.is_ready());
        let cases = [
            (
                Skill {
                    eligible: None,
                    ..base.clone()
                },
                "unknown eligibility",
            ),
            (
                Skill {
                    eligible: Some(false),
                    ..base.clone()
                },
                "not eligible",
            ),
            (
                Skill {
                    disabled: Some(true),
                    ..base.clone()
                },
                "disabled",
            ),
            (
                Skill {
                    blocked_by_agent_filter: Some(true),
                    ..base.clone()
                },
                "agent filter",
            ),
            (
                Skill {
                    blocked_by_allowlist: Some(true),
                    ..base.clone()
                },
                "allowlist",
            ),
        ];
        for (skill, why) in cases {
            assert!(!skill.is_ready(), "{why}");
        }
    }

    #[test]
    fn a_minimal_inventory_is_names_only() {
        let inv = parse(br#"{"skills": [{"name": "a"}, {"name": "b", "missing": null}]}"#).unwrap();
        assert_eq!(inv.skills.len(), 2);
        assert!(inv.skills.iter().all(|s| !s.is_ready()));
        assert_eq!(inv.workspace_dir, None);
    }

    #[test]
    fn duplicate_names_keep_the_first_entry() {
        let inv = parse(
            br#"{"skills": [{"name": "a", "source": "workspace"}, {"name": "a", "source": "bundled"}]}"#,
        )
        .unwrap();
        assert_eq!(inv.skills.len(), 1);
        assert_eq!(inv.skills[0].source.as_deref(), Some("workspace"));
    }

    #[test]
    fn a_malformed_inventory_names_the_field() {
        let cases = [
            (
                r#"{"skills": [{"name": "a"}, {"name": "b", "eligible": "yes"}]}"#,
                "skills[1].eligible",
            ),
            (
                r#"{"skills": [{"name": "a", "missing": {"bins": ["x", 3]}}]}"#,
                "skills[0].missing.bins[1]",
            ),
            (
                r#"{"skills": [{"name": "a", "missing": {"env": "KEY"}}]}"#,
                "skills[0].missing.env",
            ),
            (r#"{"skills": [{"description": "no name"}]}"#, "skills[0]"),
            (r#"{"skills": [{"name": ""}]}"#, "skills[0].name"),
            (r#"{"skills": [{"name": "a\u0007"}]}"#, "skills[0].name"),
            (r#"{"skills": {"name": "a"}}"#, "skills"),
            (r#"{"skills": null}"#, "skills"),
            (r#"{"workspaceDir": 7, "skills": []}"#, "workspaceDir"),
            (
                r#"{"ok": false, "error": "gateway unreachable"}"#,
                "inventory",
            ),
            (r#"[]"#, "inventory"),
            (r#""#, "inventory"),
            (r#"{"skills": []} trailing"#, "inventory"),
            (r#"{"skills": [{"name": "a"}"#, "skills"),
        ];
        for (json, path) in cases {
            let e = error(json);
            assert_eq!(e.path, path, "{json}: {e}");
            assert!(e.to_string().contains(path), "{e}");
        }
        assert!(error(r#"{"skills": [{"description": "no name"}]}"#)
            .message
            .contains("missing field `name`"));
    }

    #[test]
    fn sizes_are_bounded_while_parsing() {
        let many = format!(
            r#"{{"skills": [{}]}}"#,
            vec![r#"{"name": "a"}"#; MAX_SKILLS + 1].join(",")
        );
        let e = error(&many);
        assert_eq!(e.path, "skills");
        assert!(e.message.contains("more than 2000 items"), "{e}");

        let long_name = format!(
            r#"{{"skills": [{{"name": "{}"}}]}}"#,
            "n".repeat(MAX_NAME_BYTES + 1)
        );
        assert_eq!(error(&long_name).path, "skills[0].name");

        let long_description = format!(
            r#"{{"skills": [{{"name": "a", "description": "{}"}}]}}"#,
            "d".repeat(MAX_DESCRIPTION_BYTES + 1)
        );
        let e = error(&long_description);
        assert_eq!(e.path, "skills[0].description");
        assert!(e.message.len() < 400, "the message is cut: {e}");

        let bins = vec![r#""b""#; MAX_MISSING_ITEMS + 1].join(",");
        let many_bins =
            format!(r#"{{"skills": [{{"name": "a", "missing": {{"bins": [{bins}]}}}}]}}"#);
        assert_eq!(error(&many_bins).path, "skills[0].missing.bins");

        let huge = vec![b' '; MAX_INVENTORY_BYTES + 1];
        assert!(error(std::str::from_utf8(&huge).unwrap())
            .message
            .contains("larger than"));
    }

    #[test]
    fn a_serde_message_quoting_a_huge_value_is_cut() {
        let json = format!(
            r#"{{"skills": [{{"name": "a", "eligible": "{}"}}]}}"#,
            "y".repeat(10_000)
        );
        let e = error(&json);
        assert_eq!(e.path, "skills[0].eligible");
        assert!(
            e.message.chars().count() <= MAX_ERROR_MESSAGE_CHARS + 1,
            "{e}"
        );
    }

    #[test]
    fn skill_names_are_checked_the_same_everywhere() {
        assert!(check_skill_name("web-search").is_ok());
        assert!(check_skill_name("My Skill").is_ok());
        for bad in ["", " a", "a ", "a\nb", &"x".repeat(MAX_NAME_BYTES + 1)] {
            assert!(check_skill_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_inventory_serializes_back_in_openclaws_names() {
        let inv = parse(&fixture("list-newest.json")).unwrap();
        let value = serde_json::to_value(inv.get("github").unwrap()).unwrap();
        assert_eq!(value["blockedByAgentFilter"], false);
        assert_eq!(value["missing"]["anyBins"], serde_json::json!([]));
        assert_eq!(value["missing"]["bins"], serde_json::json!(["gh"]));
        assert!(value.get("primaryEnv").is_none());
    }
}
