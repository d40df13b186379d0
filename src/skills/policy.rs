//! A tenant's skills policy, and what it makes of a runtime's inventory: the merged view
//! (`GET /api/runtime/skills`), edits (`PATCH`), packs, the first-bootstrap rule and the two
//! remediation strategies. Pure functions over values: no SQL, no I/O, no clock.
//!
//! Not for: storing the policy (`store`), fetching the inventory (`source`), explaining why a
//! skill is unavailable (`diagnostics`).
//!
//! **Each skill's policy** is three flags. `allowed=false`: disallowed for the tenant;
//! `enabled=false`: installed and visible, but disabled; `hidden=true`: left out of the view
//! unless asked for. A skill the tenant's policy does not name has `DEFAULT_FLAGS`: allowed, not
//! enabled, not hidden. Skills are opt-in, so a runtime that gains a skill does not hand it to
//! every tenant; packs and `enable_ready` are how a tenant opts in, and a new tenant starts with
//! the `basic` pack. `effectiveReady` is `ready && allowed && enabled`; `hidden` changes only
//! what is shown.
//!
//! **Changes, not states.** Every edit returns the entries to write (`Vec<SkillPolicy>`), only
//! those whose flags differ from what the tenant has now (a `PATCH` writes every entry it names,
//! since the owner said so explicitly). The caller stores them; `Policy::apply` does the same in
//! memory.
//!
//! What ExoClaw enforces with this is what it shows, offers and sends; the node's own
//! configuration (its `skills.entries.*.enabled`, bundled allowlist and agent filters) stays the
//! node's: see the module docs of `skills`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::inventory::{check_skill_name, Inventory, Skill};

/// One skill's flags in a tenant's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub allowed: bool,
    pub enabled: bool,
    pub hidden: bool,
}

/// The flags of a skill the tenant's policy does not name: allowed, but not enabled until the
/// tenant opts in.
pub const DEFAULT_FLAGS: Flags = Flags {
    allowed: true,
    enabled: false,
    hidden: false,
};

/// One entry of a tenant's policy, as stored and as `PATCH` and the edits return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillPolicy {
    pub name: String,
    pub allowed: bool,
    pub enabled: bool,
    pub hidden: bool,
}

impl SkillPolicy {
    pub fn new(name: impl Into<String>, flags: Flags) -> SkillPolicy {
        let Flags {
            allowed,
            enabled,
            hidden,
        } = flags;
        SkillPolicy {
            name: name.into(),
            allowed,
            enabled,
            hidden,
        }
    }

    pub fn flags(&self) -> Flags {
        Flags {
            allowed: self.allowed,
            enabled: self.enabled,
            hidden: self.hidden,
        }
    }
}

/// A tenant's policy: the entries it names explicitly; every other skill has `DEFAULT_FLAGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    entries: BTreeMap<String, Flags>,
}

impl Policy {
    pub fn from_entries(entries: impl IntoIterator<Item = SkillPolicy>) -> Policy {
        let mut policy = Policy::default();
        policy.apply(entries);
        policy
    }

    /// The skill's flags: its entry's, or `DEFAULT_FLAGS`.
    pub fn flags(&self, name: &str) -> Flags {
        self.entries.get(name).copied().unwrap_or(DEFAULT_FLAGS)
    }

    /// Whether the policy names the skill.
    pub fn is_explicit(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The explicit entries, by name.
    pub fn entries(&self) -> impl Iterator<Item = SkillPolicy> + '_ {
        self.entries
            .iter()
            .map(|(name, flags)| SkillPolicy::new(name, *flags))
    }

    /// Writes `changes` over the entries, as the store does.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = SkillPolicy>) {
        for change in changes {
            let flags = change.flags();
            self.entries.insert(change.name, flags);
        }
    }

    /// The entry to write to give `name` these flags, or None when it has them already.
    fn change(&self, name: &str, flags: Flags) -> Option<SkillPolicy> {
        (self.flags(name) != flags).then(|| SkillPolicy::new(name, flags))
    }
}

/// Why an edit was refused; `Display` names the offending field or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A `PATCH` with more entries than `MAX_PATCH_ENTRIES`.
    TooManyEntries {
        max: usize,
    },
    InvalidName {
        index: usize,
        reason: &'static str,
    },
    DuplicateName {
        index: usize,
        name: String,
    },
    UnknownPack {
        name: String,
    },
    UnknownStrategy {
        name: String,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::TooManyEntries { max } => {
                write!(f, "policies: more than {max} entries in one request")
            }
            PolicyError::InvalidName { index, reason } => {
                write!(f, "policies[{index}].name {reason}")
            }
            PolicyError::DuplicateName { index, name } => {
                write!(f, "policies[{index}].name: {name:?} is named twice")
            }
            PolicyError::UnknownPack { name } => write!(f, "pack: no pack is called {name:?}"),
            PolicyError::UnknownStrategy { name } => write!(
                f,
                "strategy: {name:?} is not one of \"hide_unavailable\", \"enable_ready\""
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

// ---- The merged view ----------------------------------------------------------------------

/// A skill's policy as the view shows it: its flags, and whether the tenant's policy names it
/// (`explicit=false`: the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    pub allowed: bool,
    pub enabled: bool,
    pub hidden: bool,
    pub explicit: bool,
}

impl PolicyView {
    pub fn of(policy: &Policy, name: &str) -> PolicyView {
        let Flags {
            allowed,
            enabled,
            hidden,
        } = policy.flags(name);
        PolicyView {
            allowed,
            enabled,
            hidden,
            explicit: policy.is_explicit(name),
        }
    }
}

/// One skill of the view: its inventory fields (as the node named them), whether the node has it
/// ready, the tenant's policy for it, and whether the tenant can use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillView {
    #[serde(flatten)]
    pub skill: Skill,
    pub ready: bool,
    pub policy: PolicyView,
    pub effective_ready: bool,
}

/// What `GET /api/runtime/skills` shows of a tenant's runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillsView {
    /// The runtime's skills, in the node's order, hidden ones left out unless asked for.
    pub skills: Vec<SkillView>,
    /// How many skills were left out as hidden (0 with `includeHidden`).
    pub hidden: usize,
    /// Skills the tenant's policy enables and allows that the runtime does not have, by name
    /// (hidden ones left out unless asked for).
    pub not_installed: Vec<String>,
}

/// Merges a runtime's inventory with a tenant's policy.
pub fn view(inventory: &Inventory, policy: &Policy, include_hidden: bool) -> SkillsView {
    let mut skills = Vec::with_capacity(inventory.skills.len());
    let mut hidden = 0;
    for skill in &inventory.skills {
        let policy = PolicyView::of(policy, &skill.name);
        if policy.hidden && !include_hidden {
            hidden += 1;
            continue;
        }
        let ready = skill.is_ready();
        skills.push(SkillView {
            skill: skill.clone(),
            ready,
            policy,
            effective_ready: ready && policy.allowed && policy.enabled,
        });
    }
    SkillsView {
        skills,
        hidden,
        not_installed: not_installed(inventory, policy, include_hidden),
    }
}

/// Explicit entries that are allowed and enabled for skills the runtime lacks.
pub fn not_installed(inventory: &Inventory, policy: &Policy, include_hidden: bool) -> Vec<String> {
    let installed: HashSet<&str> = inventory.skills.iter().map(|s| s.name.as_str()).collect();
    policy
        .entries
        .iter()
        .filter(|(name, f)| {
            f.allowed
                && f.enabled
                && (include_hidden || !f.hidden)
                && !installed.contains(name.as_str())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

// ---- Edits --------------------------------------------------------------------------------

/// Most entries one `PATCH` may carry.
pub const MAX_PATCH_ENTRIES: usize = 256;

/// One entry of `PATCH /api/runtime/skills`: the flags given change, the others keep what the
/// tenant has now (or `DEFAULT_FLAGS`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillPolicyPatch {
    pub name: String,
    #[serde(default)]
    pub allowed: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub hidden: Option<bool>,
}

/// The entries a `PATCH` writes: every skill it names, with the flags it gives over the current
/// ones. Names are checked like a node's (`inventory::check_skill_name`) and may not repeat; a
/// name the runtime does not have is fine (a policy may come before the install).
pub fn patch(
    policy: &Policy,
    patches: &[SkillPolicyPatch],
) -> Result<Vec<SkillPolicy>, PolicyError> {
    if patches.len() > MAX_PATCH_ENTRIES {
        return Err(PolicyError::TooManyEntries {
            max: MAX_PATCH_ENTRIES,
        });
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(patches.len());
    for (index, p) in patches.iter().enumerate() {
        let SkillPolicyPatch {
            name,
            allowed,
            enabled,
            hidden,
        } = p;
        check_skill_name(name).map_err(|reason| PolicyError::InvalidName { index, reason })?;
        if !seen.insert(name.as_str()) {
            return Err(PolicyError::DuplicateName {
                index,
                name: name.clone(),
            });
        }
        let now = policy.flags(name);
        out.push(SkillPolicy::new(
            name,
            Flags {
                allowed: allowed.unwrap_or(now.allowed),
                enabled: enabled.unwrap_or(now.enabled),
                hidden: hidden.unwrap_or(now.hidden),
            },
        ));
    }
    Ok(out)
}

// ---- Packs --------------------------------------------------------------------------------

/// Named lists of skills that operators define (`skills.packs` in the YAML): `basic`, `creator`,
/// `ops`, or any other name.
pub type Packs = BTreeMap<String, Vec<String>>;

/// The pack a tenant gets on its first runtime bootstrap.
pub const BOOTSTRAP_PACK: &str = "basic";

/// Checks operators' packs at config load: names not empty, skill names valid and not repeated
/// within a pack. The error names the offending key (`skills.packs.basic[2]`).
pub fn check_packs(packs: &Packs) -> Result<(), String> {
    for (pack, skills) in packs {
        if pack.trim().is_empty() || pack.chars().any(char::is_control) {
            return Err(format!("skills.packs: {pack:?} is not a valid pack name"));
        }
        let mut seen = HashSet::new();
        for (i, skill) in skills.iter().enumerate() {
            check_skill_name(skill)
                .map_err(|why| format!("skills.packs.{pack}[{i}]: the skill name {why}"))?;
            if !seen.insert(skill.as_str()) {
                return Err(format!(
                    "skills.packs.{pack}[{i}]: {skill:?} is listed twice"
                ));
            }
        }
    }
    Ok(())
}

/// What applying a pack does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackApplied {
    /// The entries to write: each skill of the pack enabled and shown.
    pub changes: Vec<SkillPolicy>,
    /// Skills of the pack the tenant's policy disallows: a pack never lifts a disallow (a
    /// `PATCH` with `allowed: true` does).
    pub kept_disallowed: Vec<String>,
}

/// Applies pack `name`: each of its skills becomes enabled and not hidden, keeping `allowed`.
pub fn apply_pack(policy: &Policy, packs: &Packs, name: &str) -> Result<PackApplied, PolicyError> {
    let skills = packs.get(name).ok_or_else(|| PolicyError::UnknownPack {
        name: name.to_owned(),
    })?;
    let mut applied = PackApplied {
        changes: Vec::new(),
        kept_disallowed: Vec::new(),
    };
    let mut seen = HashSet::new();
    for skill in skills.iter().filter(|s| seen.insert(s.as_str())) {
        let now = policy.flags(skill);
        if !now.allowed {
            applied.kept_disallowed.push(skill.clone());
            continue;
        }
        let target = Flags {
            allowed: true,
            enabled: true,
            hidden: false,
        };
        applied.changes.extend(policy.change(skill, target));
    }
    Ok(applied)
}

/// The first-bootstrap rule's answer for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A new tenant with no policy: write these entries (the `basic` pack; empty when operators
    /// define no `basic`) and mark it bootstrapped.
    Apply(Vec<SkillPolicy>),
    /// The tenant has a policy already (it was edited before its runtime first came up): only
    /// mark it bootstrapped.
    HasPolicy,
    /// Bootstrapped before: nothing to do, even if its policy is empty now.
    AlreadyBootstrapped,
}

/// The first-bootstrap rule: a tenant gets `basic` on its first runtime bootstrap, only when it
/// has no policy yet. `store::bootstrap` applies it inside one transaction.
pub fn first_bootstrap(policy: &Policy, bootstrapped: bool, packs: &Packs) -> Bootstrap {
    if bootstrapped {
        return Bootstrap::AlreadyBootstrapped;
    }
    if !policy.is_empty() {
        return Bootstrap::HasPolicy;
    }
    let entries = match apply_pack(policy, packs, BOOTSTRAP_PACK) {
        Ok(applied) => applied.changes,
        Err(_) => Vec::new(),
    };
    Bootstrap::Apply(entries)
}

// ---- Remediation --------------------------------------------------------------------------

/// How `POST /api/runtime/skills/remediate` changes a policy to match the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Disables and hides every skill the runtime has but cannot run (not ready).
    #[default]
    HideUnavailable,
    /// Enables and shows every ready skill the tenant's policy allows.
    EnableReady,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::HideUnavailable => "hide_unavailable",
            Strategy::EnableReady => "enable_ready",
        }
    }
}

impl FromStr for Strategy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Strategy, PolicyError> {
        match s {
            "hide_unavailable" => Ok(Strategy::HideUnavailable),
            "enable_ready" => Ok(Strategy::EnableReady),
            other => Err(PolicyError::UnknownStrategy {
                name: other.to_owned(),
            }),
        }
    }
}

/// The entries `strategy` writes for this runtime. Only skills in the inventory are touched;
/// `allowed` is never changed, and `enable_ready` skips disallowed skills.
pub fn remediate(inventory: &Inventory, policy: &Policy, strategy: Strategy) -> Vec<SkillPolicy> {
    inventory
        .skills
        .iter()
        .filter_map(|skill| {
            let now = policy.flags(&skill.name);
            let target = match (strategy, skill.is_ready()) {
                (Strategy::HideUnavailable, false) => Flags {
                    enabled: false,
                    hidden: true,
                    ..now
                },
                (Strategy::EnableReady, true) if now.allowed => Flags {
                    enabled: true,
                    hidden: false,
                    ..now
                },
                _ => return None,
            };
            policy.change(&skill.name, target)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(name: &str, ready: bool) -> Skill {
        Skill {
            name: name.into(),
            eligible: Some(ready),
            ..Skill::default()
        }
    }

    fn inventory(skills: &[(&str, bool)]) -> Inventory {
        Inventory {
            skills: skills.iter().map(|&(n, r)| skill(n, r)).collect(),
            ..Inventory::default()
        }
    }

    fn flags(allowed: bool, enabled: bool, hidden: bool) -> Flags {
        Flags {
            allowed,
            enabled,
            hidden,
        }
    }

    fn packs() -> Packs {
        let list = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Packs::from([
            (
                "basic".into(),
                list(&["weather", "web-search", "summarize"]),
            ),
            (
                "creator".into(),
                list(&["web-search", "summarize", "image-gen"]),
            ),
            ("ops".into(), list(&["shell-readonly", "github", "uptime"])),
        ])
    }

    /// The merge, one skill at a time: (ready on the node, its policy entry, include_hidden)
    /// → None when left out, or (effectiveReady, the policy shown).
    type MergeCase = (bool, Option<Flags>, bool, Option<(bool, PolicyView)>);

    #[test]
    fn the_merge_as_a_table() {
        let t = true;
        let f = false;
        #[rustfmt::skip]
        let cases: &[MergeCase] = &[
            // No entry: the defaults, opt-in.
            (t, None,                  f, Some((f, PolicyView { allowed: t, enabled: f, hidden: f, explicit: f }))),
            (f, None,                  f, Some((f, PolicyView { allowed: t, enabled: f, hidden: f, explicit: f }))),
            // Allowed and enabled: effective only when ready.
            (t, Some(flags(t, t, f)),  f, Some((t, PolicyView { allowed: t, enabled: t, hidden: f, explicit: t }))),
            (f, Some(flags(t, t, f)),  f, Some((f, PolicyView { allowed: t, enabled: t, hidden: f, explicit: t }))),
            // Disabled or disallowed: never effective.
            (t, Some(flags(t, f, f)),  f, Some((f, PolicyView { allowed: t, enabled: f, hidden: f, explicit: t }))),
            (t, Some(flags(f, t, f)),  f, Some((f, PolicyView { allowed: f, enabled: t, hidden: f, explicit: t }))),
            (t, Some(flags(f, f, f)),  f, Some((f, PolicyView { allowed: f, enabled: f, hidden: f, explicit: t }))),
            // Hidden: left out, unless asked for; hiding does not change effectiveReady.
            (t, Some(flags(t, t, t)),  f, None),
            (t, Some(flags(t, t, t)),  t, Some((t, PolicyView { allowed: t, enabled: t, hidden: t, explicit: t }))),
            (f, Some(flags(t, f, t)),  f, None),
            (f, Some(flags(t, f, t)),  t, Some((f, PolicyView { allowed: t, enabled: f, hidden: t, explicit: t }))),
        ];
        for (i, &(ready, entry, include_hidden, expected)) in cases.iter().enumerate() {
            let inv = inventory(&[("s", ready)]);
            let policy = Policy::from_entries(entry.map(|f| SkillPolicy::new("s", f)));
            let view = view(&inv, &policy, include_hidden);
            let got = view.skills.first().map(|v| {
                assert_eq!(v.ready, ready, "case {i}");
                assert_eq!(
                    v.skill, inv.skills[0],
                    "case {i}: the inventory fields pass through"
                );
                (v.effective_ready, v.policy)
            });
            assert_eq!(got, expected, "case {i}");
            assert_eq!(view.hidden, usize::from(expected.is_none()), "case {i}");
        }
    }

    #[test]
    fn the_view_keeps_the_nodes_order_and_lists_what_the_policy_wants_but_the_node_lacks() {
        let inv = inventory(&[("weather", true), ("github", false), ("summarize", true)]);
        let policy = Policy::from_entries([
            SkillPolicy::new("summarize", flags(true, true, false)),
            SkillPolicy::new("image-gen", flags(true, true, false)),
            SkillPolicy::new("secret", flags(true, true, true)),
            SkillPolicy::new("off", flags(true, false, false)),
            SkillPolicy::new("banned", flags(false, true, false)),
        ]);
        let v = view(&inv, &policy, false);
        let names: Vec<&str> = v.skills.iter().map(|s| s.skill.name.as_str()).collect();
        assert_eq!(names, ["weather", "github", "summarize"]);
        assert_eq!(v.not_installed, ["image-gen"]);
        assert_eq!(
            view(&inv, &policy, true).not_installed,
            ["image-gen", "secret"]
        );
    }

    #[test]
    fn the_view_serializes_inventory_fields_flat_beside_policy_and_effective_ready() {
        let inv = crate::skills::inventory::parse(
            br#"{"skills": [{"name": "weather", "eligible": true, "emoji": "x", "source": "openclaw-bundled"}]}"#,
        )
        .unwrap();
        let policy = Policy::from_entries([SkillPolicy::new("weather", flags(true, true, false))]);
        let value = serde_json::to_value(view(&inv, &policy, false)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "skills": [{
                    "name": "weather", "emoji": "x", "eligible": true, "source": "openclaw-bundled",
                    "missing": {"bins": [], "anyBins": [], "env": [], "config": [], "os": []},
                    "ready": true,
                    "policy": {"allowed": true, "enabled": true, "hidden": false, "explicit": true},
                    "effectiveReady": true
                }],
                "hidden": 0,
                "notInstalled": []
            })
        );
    }

    #[test]
    fn a_patch_writes_every_entry_it_names_over_the_current_flags() {
        let policy = Policy::from_entries([SkillPolicy::new("a", flags(true, true, false))]);
        let body = serde_json::json!([
            {"name": "a", "hidden": true},
            {"name": "b", "enabled": true},
            {"name": "c"},
            {"name": "d", "allowed": false, "enabled": false, "hidden": true},
        ]);
        let patches: Vec<SkillPolicyPatch> = serde_json::from_value(body).unwrap();
        assert_eq!(
            patch(&policy, &patches).unwrap(),
            [
                SkillPolicy::new("a", flags(true, true, true)),
                SkillPolicy::new("b", flags(true, true, false)),
                SkillPolicy::new("c", DEFAULT_FLAGS),
                SkillPolicy::new("d", flags(false, false, true)),
            ]
        );
    }

    #[test]
    fn a_bad_patch_is_refused_naming_the_entry() {
        let p = |name: &str| SkillPolicyPatch {
            name: name.into(),
            allowed: None,
            enabled: Some(true),
            hidden: None,
        };
        let policy = Policy::default();
        let e = patch(&policy, &[p("a"), p("")]).unwrap_err();
        assert_eq!(e.to_string(), "policies[1].name must not be empty");
        let e = patch(&policy, &[p("a"), p("b"), p("a")]).unwrap_err();
        assert_eq!(e.to_string(), "policies[2].name: \"a\" is named twice");
        let many: Vec<_> = (0..=MAX_PATCH_ENTRIES)
            .map(|i| p(&format!("s{i}")))
            .collect();
        assert!(matches!(
            patch(&policy, &many),
            Err(PolicyError::TooManyEntries { .. })
        ));
        // Unknown keys in the body name themselves.
        let e = serde_json::from_value::<SkillPolicyPatch>(
            serde_json::json!({"name": "a", "enable": true}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `enable`"), "{e}");
    }

    #[test]
    fn a_pack_enables_and_shows_its_skills_but_never_lifts_a_disallow() {
        let policy = Policy::from_entries([
            SkillPolicy::new("web-search", flags(false, false, false)),
            SkillPolicy::new("summarize", flags(true, true, false)),
            SkillPolicy::new("image-gen", flags(true, false, true)),
        ]);
        let applied = apply_pack(&policy, &packs(), "creator").unwrap();
        assert_eq!(
            applied,
            PackApplied {
                // summarize is enabled and shown already: no change.
                changes: vec![SkillPolicy::new("image-gen", flags(true, true, false))],
                kept_disallowed: vec!["web-search".into()],
            }
        );
        let e = apply_pack(&policy, &packs(), "gamer").unwrap_err();
        assert_eq!(e.to_string(), "pack: no pack is called \"gamer\"");
    }

    #[test]
    fn applied_changes_make_the_pack_effective_where_the_node_is_ready() {
        let inv = inventory(&[
            ("shell-readonly", true),
            ("github", false),
            ("uptime", true),
        ]);
        let mut policy = Policy::default();
        policy.apply(apply_pack(&policy, &packs(), "ops").unwrap().changes);
        let v = view(&inv, &policy, false);
        let effective: Vec<(&str, bool)> = v
            .skills
            .iter()
            .map(|s| (s.skill.name.as_str(), s.effective_ready))
            .collect();
        assert_eq!(
            effective,
            [
                ("shell-readonly", true),
                ("github", false),
                ("uptime", true)
            ]
        );
        // Applying it again changes nothing.
        assert!(apply_pack(&policy, &packs(), "ops")
            .unwrap()
            .changes
            .is_empty());
    }

    #[test]
    fn first_bootstrap_gives_basic_only_to_a_tenant_with_no_policy() {
        let empty = Policy::default();
        let Bootstrap::Apply(entries) = first_bootstrap(&empty, false, &packs()) else {
            panic!("a new tenant gets basic");
        };
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["weather", "web-search", "summarize"]);
        assert!(entries
            .iter()
            .all(|e| e.flags() == flags(true, true, false)));

        let edited = Policy::from_entries([SkillPolicy::new("github", flags(true, true, false))]);
        assert_eq!(
            first_bootstrap(&edited, false, &packs()),
            Bootstrap::HasPolicy
        );
        assert_eq!(
            first_bootstrap(&empty, true, &packs()),
            Bootstrap::AlreadyBootstrapped
        );
        // Without a basic pack the tenant is still bootstrapped, with nothing.
        assert_eq!(
            first_bootstrap(&empty, false, &Packs::new()),
            Bootstrap::Apply(vec![])
        );
    }

    #[test]
    fn packs_are_checked_naming_the_key() {
        assert!(check_packs(&packs()).is_ok());
        let mut bad = packs();
        bad.get_mut("ops").unwrap().push("github".into());
        assert_eq!(
            check_packs(&bad).unwrap_err(),
            "skills.packs.ops[3]: \"github\" is listed twice"
        );
        let mut bad = packs();
        bad.get_mut("basic").unwrap()[1] = " web".into();
        assert_eq!(
            check_packs(&bad).unwrap_err(),
            "skills.packs.basic[1]: the skill name must not start or end with whitespace"
        );
        bad = Packs::from([(" ".into(), vec![])]);
        assert!(check_packs(&bad).unwrap_err().starts_with("skills.packs: "));
    }

    /// Both strategies over one runtime, as (skill, ready, entry before) → entry written.
    type RemediationCase = (
        &'static str,
        bool,
        Option<Flags>,
        Option<Flags>,
        Option<Flags>,
    );

    #[test]
    fn remediation_strategies_as_a_table() {
        let t = true;
        let f = false;
        #[rustfmt::skip]
        let cases: &[RemediationCase] = &[
            // name, ready, before,             hide_unavailable writes, enable_ready writes
            ("a", t, None,                      None,                    Some(flags(t, t, f))),
            ("b", f, None,                      Some(flags(t, f, t)),    None),
            ("c", f, Some(flags(t, t, f)),      Some(flags(t, f, t)),    None),
            ("d", f, Some(flags(f, f, f)),      Some(flags(f, f, t)),    None),
            ("e", f, Some(flags(t, f, t)),      None,                    None),
            ("g", t, Some(flags(t, f, t)),      None,                    Some(flags(t, t, f))),
            ("h", t, Some(flags(f, f, t)),      None,                    None),
            ("i", t, Some(flags(t, t, f)),      None,                    None),
        ];
        let inv = Inventory {
            skills: cases.iter().map(|c| skill(c.0, c.1)).collect(),
            ..Inventory::default()
        };
        let policy = Policy::from_entries(
            cases
                .iter()
                .filter_map(|c| c.2.map(|f| SkillPolicy::new(c.0, f))),
        );
        for (strategy, column) in [(Strategy::HideUnavailable, 3), (Strategy::EnableReady, 4)] {
            let expected: Vec<SkillPolicy> = cases
                .iter()
                .filter_map(|c| {
                    let written = if column == 3 { c.3 } else { c.4 };
                    written.map(|f| SkillPolicy::new(c.0, f))
                })
                .collect();
            assert_eq!(remediate(&inv, &policy, strategy), expected, "{strategy:?}");
        }
    }

    #[test]
    fn remediation_then_view_shows_only_what_the_tenant_can_use() {
        let inv = inventory(&[("weather", true), ("github", false), ("summarize", true)]);
        let mut policy = Policy::default();
        policy.apply(remediate(&inv, &policy, Strategy::EnableReady));
        policy.apply(remediate(&inv, &policy, Strategy::HideUnavailable));
        let v = view(&inv, &policy, false);
        let shown: Vec<(&str, bool)> = v
            .skills
            .iter()
            .map(|s| (s.skill.name.as_str(), s.effective_ready))
            .collect();
        assert_eq!(shown, [("weather", true), ("summarize", true)]);
        assert_eq!(v.hidden, 1);
    }

    #[test]
    fn strategies_parse_by_their_wire_names() {
        assert_eq!(Strategy::default(), Strategy::HideUnavailable);
        for s in [Strategy::HideUnavailable, Strategy::EnableReady] {
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let e = "hide_all".parse::<Strategy>().unwrap_err();
        assert!(e.to_string().starts_with("strategy: \"hide_all\""), "{e}");
    }
}
