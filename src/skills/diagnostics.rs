//! Why a runtime's skills are unavailable (`GET /api/runtime/skills/diagnostics`): each skill
//! that is not ready with its reasons and missing requirements, and a summary — how many skills
//! lack each kind of requirement, and which distinct binaries, variables, config paths and
//! platforms are missing, so an operator installs `gh` once rather than reading twelve entries.
//!
//! Not for: changing the policy (`policy::remediate` acts on the same readiness), or fetching
//! the inventory (`source`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::inventory::{Inventory, Missing, RequirementKind, Skill};
use super::policy::{not_installed, Policy, PolicyView};

/// Why a skill is not ready, in the order they are reported; a skill may have several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// Turned off in the node's own config (`skills.entries.<key>.enabled: false`).
    Disabled,
    /// A bundled skill outside the node's bundled allowlist.
    BlockedByAllowlist,
    /// Excluded by the listed agent's skill filter.
    BlockedByAgentFilter,
    /// Built for other platforms (`missing.os`): installing will not help.
    PlatformIncompatible,
    /// Binaries, variables or config the node lacks.
    MissingRequirements,
    /// Not eligible, and the node said no more (or did not say whether it is eligible).
    NotEligible,
}

/// Why `skill` is not ready; empty exactly when it is.
pub fn reasons(skill: &Skill) -> Vec<Reason> {
    if skill.is_ready() {
        return Vec::new();
    }
    let missing = &skill.missing;
    let other_missing = [
        RequirementKind::Bins,
        RequirementKind::AnyBins,
        RequirementKind::Env,
        RequirementKind::Config,
    ]
    .iter()
    .any(|&k| !missing.of(k).is_empty());
    let found: Vec<Reason> = [
        (skill.disabled == Some(true), Reason::Disabled),
        (
            skill.blocked_by_allowlist == Some(true),
            Reason::BlockedByAllowlist,
        ),
        (
            skill.blocked_by_agent_filter == Some(true),
            Reason::BlockedByAgentFilter,
        ),
        (!missing.os.is_empty(), Reason::PlatformIncompatible),
        (other_missing, Reason::MissingRequirements),
    ]
    .into_iter()
    .filter_map(|(present, reason)| present.then_some(reason))
    .collect();
    if found.is_empty() {
        vec![Reason::NotEligible]
    } else {
        found
    }
}

/// Why `skill` is not ready, in a few words (`needs gh, GITHUB_TOKEN`, `only on darwin`), for
/// the Telegram bot's `/skills` and the dashboard; empty when it is ready.
pub fn short_reason(skill: &Skill) -> String {
    let m = &skill.missing;
    let needs: Vec<&str> = m
        .bins
        .iter()
        .chain(&m.any_bins)
        .chain(&m.env)
        .chain(&m.config)
        .map(String::as_str)
        .collect();
    if !needs.is_empty() {
        return format!("needs {}", needs.join(", "));
    }
    match reasons(skill).first() {
        None => String::new(),
        Some(Reason::Disabled) => "turned off on the node".into(),
        Some(Reason::BlockedByAllowlist) => "not in the node's allowlist".into(),
        Some(Reason::BlockedByAgentFilter) => "not available to this agent".into(),
        Some(Reason::PlatformIncompatible) => format!("only on {}", m.os.join(", ")),
        Some(_) => "not available on the node".into(),
    }
}

/// One skill the runtime has but cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnavailableSkill {
    pub name: String,
    pub reasons: Vec<Reason>,
    pub missing: Missing,
    /// The tenant's policy for it, so a hidden one can be told apart.
    pub policy: PolicyView,
}

/// One kind of requirement across the unavailable skills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindSummary {
    /// How many unavailable skills lack something of this kind.
    pub skills: usize,
    /// The distinct missing items, sorted.
    pub items: Vec<String>,
}

/// Counts and distinct items per kind, keyed by the kinds' JSON names (`bins`, `anyBins`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingSummary {
    pub bins: KindSummary,
    pub any_bins: KindSummary,
    pub env: KindSummary,
    pub config: KindSummary,
    pub os: KindSummary,
}

impl MissingSummary {
    fn of_mut(&mut self, kind: RequirementKind) -> &mut KindSummary {
        match kind {
            RequirementKind::Bins => &mut self.bins,
            RequirementKind::AnyBins => &mut self.any_bins,
            RequirementKind::Env => &mut self.env,
            RequirementKind::Config => &mut self.config,
            RequirementKind::Os => &mut self.os,
        }
    }
}

/// The summary of a runtime's diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub ready: usize,
    pub unavailable: usize,
    /// How many unavailable skills have each reason (a skill may count under several).
    pub reasons: BTreeMap<Reason, usize>,
    pub missing: MissingSummary,
}

/// What `GET /api/runtime/skills/diagnostics` answers for one tenant's runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostics {
    pub summary: Summary,
    /// Every skill that is not ready, hidden ones included, in the node's order.
    pub unavailable: Vec<UnavailableSkill>,
    /// Skills the tenant's policy enables that the runtime does not have at all.
    pub not_installed: Vec<String>,
}

/// Diagnoses a runtime's inventory for a tenant.
pub fn diagnose(inventory: &Inventory, policy: &Policy) -> Diagnostics {
    let mut summary = Summary {
        total: inventory.skills.len(),
        ..Summary::default()
    };
    let mut items: BTreeMap<RequirementKind, BTreeSet<&str>> = BTreeMap::new();
    let mut unavailable = Vec::new();
    for skill in &inventory.skills {
        let why = reasons(skill);
        if why.is_empty() {
            summary.ready += 1;
            continue;
        }
        for &reason in &why {
            *summary.reasons.entry(reason).or_default() += 1;
        }
        for kind in RequirementKind::ALL {
            let missing = skill.missing.of(kind);
            if !missing.is_empty() {
                summary.missing.of_mut(kind).skills += 1;
                items
                    .entry(kind)
                    .or_default()
                    .extend(missing.iter().map(String::as_str));
            }
        }
        unavailable.push(UnavailableSkill {
            name: skill.name.clone(),
            reasons: why,
            missing: skill.missing.clone(),
            policy: PolicyView::of(policy, &skill.name),
        });
    }
    for (kind, set) in items {
        summary.missing.of_mut(kind).items = set.into_iter().map(str::to_owned).collect();
    }
    summary.unavailable = unavailable.len();
    Diagnostics {
        summary,
        unavailable,
        not_installed: not_installed(inventory, policy, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skills::inventory::parse;
    use crate::skills::policy::{Flags, SkillPolicy};

    fn newest() -> Inventory {
        let path = format!(
            "{}/tests/fixtures/skills/list-newest.json",
            env!("CARGO_MANIFEST_DIR")
        );
        parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn each_unavailable_skill_says_why() {
        let inv = newest();
        let d = diagnose(&inv, &Policy::default());
        let why: Vec<(&str, &[Reason])> = d
            .unavailable
            .iter()
            .map(|u| (u.name.as_str(), u.reasons.as_slice()))
            .collect();
        use Reason::*;
        assert_eq!(
            why,
            [
                ("github", &[MissingRequirements][..]),
                ("image-gen", &[MissingRequirements]),
                ("uptime", &[BlockedByAgentFilter]),
                ("coding-agent", &[MissingRequirements]),
                ("voice-call", &[MissingRequirements]),
                ("imsg", &[PlatformIncompatible, MissingRequirements]),
                ("nano-pdf", &[Disabled, MissingRequirements]),
                ("sag", &[BlockedByAllowlist, MissingRequirements]),
            ]
        );
        assert_eq!(d.unavailable[0].missing.bins, ["gh"]);
    }

    #[test]
    fn the_summary_counts_kinds_and_lists_distinct_items() {
        let d = diagnose(&newest(), &Policy::default());
        let s = &d.summary;
        assert_eq!((s.total, s.ready, s.unavailable), (12, 4, 8));
        assert_eq!(s.reasons[&Reason::MissingRequirements], 7);
        assert_eq!(s.reasons[&Reason::Disabled], 1);
        assert!(!s.reasons.contains_key(&Reason::NotEligible));
        assert_eq!(
            s.missing.bins,
            KindSummary {
                skills: 4,
                items: vec!["gh".into(), "imsg".into(), "nano-pdf".into(), "sag".into()],
            }
        );
        assert_eq!(
            s.missing.any_bins.items,
            ["claude", "codex", "opencode", "pi"]
        );
        assert_eq!(
            s.missing.env.items,
            ["ELEVENLABS_API_KEY", "OPENAI_API_KEY"]
        );
        assert_eq!(s.missing.env.skills, 2);
        assert_eq!(
            s.missing.config.items,
            ["plugins.entries.voice-call.enabled"]
        );
        assert_eq!(
            (s.missing.os.skills, s.missing.os.items.as_slice()),
            (1, &["darwin".to_string()][..])
        );

        let value = serde_json::to_value(s).unwrap();
        assert_eq!(value["reasons"]["blockedByAgentFilter"], 1);
        assert_eq!(value["missing"]["anyBins"]["skills"], 1);
    }

    #[test]
    fn an_unexplained_ineligible_skill_is_not_eligible() {
        let inv =
            parse(br#"{"skills": [{"name": "a"}, {"name": "b", "eligible": false}]}"#).unwrap();
        let d = diagnose(&inv, &Policy::default());
        assert!(d
            .unavailable
            .iter()
            .all(|u| u.reasons == [Reason::NotEligible]));
        assert_eq!(d.summary.missing, MissingSummary::default());
    }

    #[test]
    fn diagnostics_show_the_policy_and_what_the_runtime_lacks() {
        let hidden = Flags {
            allowed: true,
            enabled: false,
            hidden: true,
        };
        let wanted = Flags {
            allowed: true,
            enabled: true,
            hidden: true,
        };
        let policy = Policy::from_entries([
            SkillPolicy::new("github", hidden),
            SkillPolicy::new("translate", wanted),
        ]);
        let d = diagnose(&newest(), &policy);
        let github = d.unavailable.iter().find(|u| u.name == "github").unwrap();
        assert!(github.policy.hidden && github.policy.explicit);
        assert_eq!(d.not_installed, ["translate"], "hidden ones too");
    }
}
