//! The agent service's settings: agent templates (`templates:`), the run workers (`runs:`),
//! where run outputs are kept (`artifacts:`), and the tier limits that gate them.
//!
//! Validated here, once, like the rest of the config: a template whose instructions name an
//! input it does not declare, a tier that does not exist, or an agent name a node could not
//! take is an error at load or reload, with the key's path. Not here: rendering a template with
//! a caller's input (`runs::template`), or running anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::bounds::{duration_within, within, MAX_TIMEOUT};
use super::file::{
    ArtifactsSection, BackoffSection, LimitValue, RunsSection, TemplateInputSection,
    TemplateSection,
};
use super::{duration_or, err, text, ConfigError, Tier};

/// A tier's allowance of something countable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many (0: none at all).
    Count(u64),
    Unlimited,
}

impl Limit {
    /// Whether `used` more would still be within the limit after one more.
    pub fn allows_one_more(self, used: u64) -> bool {
        match self {
            Limit::Count(n) => used < n,
            Limit::Unlimited => true,
        }
    }

    /// The count, for messages and `MonthlyLimit`s; `None` when unlimited.
    pub fn count(self) -> Option<u64> {
        match self {
            Limit::Count(n) => Some(n),
            Limit::Unlimited => None,
        }
    }
}

/// Most of anything a tier may count (tenants, runs a month): far beyond use, inside `i64`.
pub const MAX_LIMIT: u64 = 10_000_000_000;
/// Most runs of one user working at once.
pub const MAX_CONCURRENT_RUNS: u32 = 10_000;
/// Most run workers: each holds one node request open.
pub const MAX_WORKERS: usize = 1_000;
/// Most attempts of one run.
pub const MAX_ATTEMPTS: u32 = 20;
/// Longest input field: a run's input is held in memory and stored with the run.
pub const MAX_INPUT_LEN: usize = 1_000_000;
/// Longest a run's attempt may take.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest artifacts are kept.
pub const MAX_ARTIFACT_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Default longest input field, in characters.
pub const DEFAULT_INPUT_MAX_LEN: usize = 20_000;
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_WORKERS: usize = 4;
/// A worker renews its lease three times per lease: a run's worker that died is noticed after
/// at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(2);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const DEFAULT_ARTIFACT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// An agent template: what a run of it sends to which agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub description: String,
    /// The OpenClaw agent: the node gets `model: "openclaw/<agent>"`.
    pub agent: String,
    /// The prompt, with `{{field}}` placeholders for the inputs.
    pub instructions: String,
    pub inputs: BTreeMap<String, TemplateInput>,
    /// The tiers whose users may run it; `None`: every tier.
    pub tiers: Option<Vec<String>>,
    /// Longest one attempt may take.
    pub timeout: Duration,
    pub max_attempts: u32,
}

impl Template {
    pub fn allows_tier(&self, tier: &str) -> bool {
        self.tiers
            .as_ref()
            .is_none_or(|tiers| tiers.iter().any(|t| t == tier))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateInput {
    pub required: bool,
    /// Longest value, in characters.
    pub max_len: usize,
    /// What a form shows; the field's name when not set.
    pub label: String,
    pub description: Option<String>,
    /// A form shows a text area rather than one line.
    pub multiline: bool,
}

/// The run workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Runs {
    /// Runs working at once (changes on reload).
    pub workers: usize,
    /// How long a claimed run stays a worker's without a renewal.
    pub lease: Duration,
    /// How often idle workers look for runs whose backoff has passed.
    pub poll_interval: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// Where run outputs are kept, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts {
    pub dir: PathBuf,
    pub retention: Duration,
    pub prune_interval: Duration,
}

pub(super) fn limit(path: &str, raw: Option<LimitValue>) -> Result<Limit, ConfigError> {
    match raw {
        None => Ok(Limit::Count(0)),
        Some(LimitValue::Count(n)) => within(path, n, 0, MAX_LIMIT).map(Limit::Count),
        Some(LimitValue::Word(w)) if w == "unlimited" => Ok(Limit::Unlimited),
        Some(LimitValue::Word(w)) => Err(err(
            path,
            format!("`{w}` is neither a number nor `unlimited`"),
        )),
    }
}

pub(super) fn concurrent_runs(path: &str, raw: Option<u32>) -> Result<u32, ConfigError> {
    within(path, raw.unwrap_or(1), 1, MAX_CONCURRENT_RUNS)
}

/// An agent name or template id: what a URL, a model name and a metric label can carry.
fn identifier(path: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            format!("{value:?} must be 1-64 characters of A-Z a-z 0-9 - _"),
        ))
    }
}

/// The `{{name}}` placeholders of `instructions`, in order; an unclosed or malformed one is
/// an error.
pub fn placeholders(instructions: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = instructions;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed with `}}`".to_owned())?;
        let name = after[..end].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "`{{{{{}}}}}` is not a placeholder: use {{{{name}}}} with A-Z a-z 0-9 _",
                &after[..end]
            ));
        }
        found.push(name);
        rest = &after[end + 2..];
    }
    Ok(found)
}

pub(super) fn templates(
    raw: Option<BTreeMap<String, TemplateSection>>,
    tiers: &BTreeMap<String, Tier>,
) -> Result<BTreeMap<String, Template>, ConfigError> {
    let mut templates = BTreeMap::new();
    for (id, section) in raw.unwrap_or_default() {
        let at = format!("templates.{}", id.escape_debug());
        identifier(&at, &id)?;
        let TemplateSection {
            name,
            description,
            agent,
            instructions,
            inputs,
            tiers: allowed,
            timeout,
            max_attempts,
        } = section;
        text::plain(&format!("{at}.name"), &name)?;
        identifier(&format!("{at}.agent"), &agent)?;
        if instructions.trim().is_empty() {
            return Err(err(format!("{at}.instructions"), "must not be empty"));
        }
        let mut checked = BTreeMap::new();
        for (field, input) in inputs.unwrap_or_default() {
            let path = format!("{at}.inputs.{}", field.escape_debug());
            checked.insert(field.clone(), template_input(&path, &field, input)?);
        }
        let used = placeholders(&instructions).map_err(|m| err(format!("{at}.instructions"), m))?;
        if let Some(unknown) = used.iter().find(|p| !checked.contains_key(**p)) {
            let known: Vec<&str> = checked.keys().map(String::as_str).collect();
            return Err(err(
                format!("{at}.instructions"),
                format!(
                    "`{{{{{unknown}}}}}` is not one of the template's inputs ({})",
                    known.join(", ")
                ),
            ));
        }
        if let Some(allowed) = &allowed {
            for (i, tier) in allowed.iter().enumerate() {
                if !tiers.contains_key(tier) {
                    let known: Vec<&str> = tiers.keys().map(String::as_str).collect();
                    return Err(err(
                        format!("{at}.tiers[{i}]"),
                        format!("`{tier}` is not a tier (tiers: {})", known.join(", ")),
                    ));
                }
            }
        }
        let timeout = duration_or(
            &format!("{at}.timeout"),
            timeout,
            DEFAULT_RUN_TIMEOUT,
            MAX_RUN_TIMEOUT,
        )?;
        let max_attempts = within(
            &format!("{at}.max_attempts"),
            max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            1,
            MAX_ATTEMPTS,
        )?;
        templates.insert(
            id,
            Template {
                name,
                description: description.unwrap_or_default(),
                agent,
                instructions,
                inputs: checked,
                tiers: allowed,
                timeout,
                max_attempts,
            },
        );
    }
    Ok(templates)
}

fn template_input(
    path: &str,
    field: &str,
    raw: TemplateInputSection,
) -> Result<TemplateInput, ConfigError> {
    if field.is_empty()
        || field.len() > 64
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(err(
            path,
            "an input's name is 1-64 characters of A-Z a-z 0-9 _",
        ));
    }
    let TemplateInputSection {
        required,
        max_len,
        label,
        description,
        multiline,
    } = raw;
    let max_len = within(
        &format!("{path}.max_len"),
        max_len.unwrap_or(DEFAULT_INPUT_MAX_LEN),
        1,
        MAX_INPUT_LEN,
    )?;
    if let Some(label) = &label {
        text::plain(&format!("{path}.label"), label)?;
    }
    Ok(TemplateInput {
        required: required.unwrap_or(false),
        max_len,
        label: label.unwrap_or_else(|| field.to_owned()),
        description,
        multiline: multiline.unwrap_or(max_len > 200),
    })
}

pub(super) fn runs(raw: Option<RunsSection>) -> Result<Runs, ConfigError> {
    let RunsSection {
        workers,
        lease,
        poll_interval,
        backoff,
    } = raw.unwrap_or_default();
    let BackoffSection { base, max } = backoff.unwrap_or_default();
    let workers = within(
        "runs.workers",
        workers.unwrap_or(DEFAULT_WORKERS),
        0,
        MAX_WORKERS,
    )?;
    let lease = duration_or("runs.lease", lease, DEFAULT_LEASE, MAX_TIMEOUT)?;
    if lease < Duration::from_secs(1) {
        return Err(err("runs.lease", "must be at least 1s"));
    }
    let poll_interval = duration_or(
        "runs.poll_interval",
        poll_interval,
        DEFAULT_POLL_INTERVAL,
        Duration::from_secs(60),
    )?;
    let backoff_base = duration_or("runs.backoff.base", base, DEFAULT_BACKOFF_BASE, MAX_TIMEOUT)?;
    let backoff_max = duration_or(
        "runs.backoff.max",
        max,
        DEFAULT_BACKOFF_MAX,
        MAX_RUN_TIMEOUT,
    )?;
    if backoff_max < backoff_base {
        return Err(err(
            "runs.backoff.max",
            "must be at least `runs.backoff.base`",
        ));
    }
    Ok(Runs {
        workers,
        lease,
        poll_interval,
        backoff_base,
        backoff_max,
    })
}

pub(super) fn artifacts(
    raw: Option<ArtifactsSection>,
    database: &Path,
) -> Result<Artifacts, ConfigError> {
    let ArtifactsSection {
        dir,
        retention,
        prune_interval,
    } = raw.unwrap_or_default();
    let dir = match dir {
        Some(dir) => {
            text::plain("artifacts.dir", &dir)?;
            PathBuf::from(dir)
        }
        None => database
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("artifacts"),
    };
    let retention = duration_or(
        "artifacts.retention",
        retention,
        DEFAULT_ARTIFACT_RETENTION,
        MAX_ARTIFACT_RETENTION,
    )?;
    let prune_interval = duration_or(
        "artifacts.prune_interval",
        prune_interval,
        DEFAULT_PRUNE_INTERVAL,
        Duration::from_secs(7 * 24 * 3600),
    )?;
    duration_within("artifacts.retention", retention, MAX_ARTIFACT_RETENTION)?;
    Ok(Artifacts {
        dir,
        retention,
        prune_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_malformed_ones_refused() {
        assert_eq!(
            placeholders("Summarize for {{audience}}: {{ text }}").unwrap(),
            vec!["audience", "text"]
        );
        assert!(placeholders("no placeholders").unwrap().is_empty());
        assert!(placeholders("open {{text").is_err());
        assert!(placeholders("{{two words}}").is_err());
        assert!(placeholders("{{}}").is_err());
    }

    fn load(templates: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::from_yaml(&format!(
            "server: {{ listen: \"127.0.0.1:8787\" }}\n\
             pools: {{ openclaw: {{ nodes: [ {{ name: n, addr: \"127.0.0.1:18789\" }} ] }} }}\n\
             tiers: {{ workshop: {{ requests_per_minute: 5 }}, tier1: {{ requests_per_minute: 5 }} }}\n\
             templates:\n{templates}"
        ))
    }

    #[test]
    fn templates_are_checked_against_their_inputs_tiers_and_agents() {
        let ok = load(
            "  summarize: { name: S, agent: main, instructions: \"For {{who}}\",\n\
             \x20   inputs: { who: { required: true } }, tiers: [tier1] }\n",
        )
        .unwrap();
        let t = &ok.templates["summarize"];
        assert_eq!(
            (t.max_attempts, t.timeout),
            (DEFAULT_MAX_ATTEMPTS, DEFAULT_RUN_TIMEOUT)
        );
        assert!(t.allows_tier("tier1") && !t.allows_tier("workshop"));
        assert_eq!(t.inputs["who"].max_len, DEFAULT_INPUT_MAX_LEN);
        let cases = [
            (
                "  s: { name: S, agent: main, instructions: \"{{missing}}\" }\n",
                "templates.s.instructions",
            ),
            (
                "  s: { name: S, agent: main, instructions: hi, tiers: [gold] }\n",
                "templates.s.tiers[0]",
            ),
            (
                "  s: { name: S, agent: \"main agent\", instructions: hi }\n",
                "templates.s.agent",
            ),
            (
                "  s: { name: S, agent: main, instructions: hi, inputs: { \"a-b\": {} } }\n",
                "templates.s.inputs.a-b",
            ),
            (
                "  s: { name: S, agent: main, instructions: hi, colour: red }\n",
                "templates.s",
            ),
        ];
        for (yaml, path) in cases {
            let e = load(yaml).unwrap_err();
            assert!(e.path.starts_with(path), "{yaml}: {e}");
        }
    }

    #[test]
    fn limits_read_numbers_and_unlimited() {
        assert_eq!(limit("x", None).unwrap(), Limit::Count(0));
        assert_eq!(
            limit("x", Some(LimitValue::Count(3))).unwrap(),
            Limit::Count(3)
        );
        assert_eq!(
            limit("x", Some(LimitValue::Word("unlimited".into()))).unwrap(),
            Limit::Unlimited
        );
        assert_eq!(
            limit("tiers.t.max_tenants", Some(LimitValue::Word("lots".into())))
                .unwrap_err()
                .path,
            "tiers.t.max_tenants"
        );
        assert!(Limit::Count(1).allows_one_more(0));
        assert!(!Limit::Count(1).allows_one_more(1));
        assert!(!Limit::Count(0).allows_one_more(0));
        assert!(Limit::Unlimited.allows_one_more(u64::MAX - 1));
    }
}
