//! Which pool a request goes to: ordered rules, first match wins.
//!
//! A rule matches a path prefix and/or the request's `model` (exact or prefix), e.g. `gemma*` →
//! the NoClaw pool, `/v1/memory` → Hermes. Where no rule with conditions matches, the caller's
//! tier decides (its `pool`, which defaults to the catch-all route): that is how tier3 reaches
//! its dedicated node while model-specific traffic still goes where it must.

use serde_json::Value;

use crate::config::{ModelMatch, RouteRule};

pub struct Router {
    rules: Vec<RouteRule>,
    needs_model: bool,
}

impl Router {
    pub fn new(rules: &[RouteRule]) -> Router {
        Router {
            needs_model: rules.iter().any(|r| r.model.is_some()),
            rules: rules.to_vec(),
        }
    }

    /// True when some rule looks at the model, so request bodies must be read before routing.
    pub fn needs_model(&self) -> bool {
        self.needs_model
    }

    /// The pool for a request: the first rule whose conditions all match, else `tier_pool`.
    pub fn pool_for<'a>(&'a self, path: &str, model: Option<&str>, tier_pool: &'a str) -> &'a str {
        self.rules
            .iter()
            .filter(|rule| !rule.is_catch_all())
            .find(|rule| {
                let path_ok = rule
                    .path_prefix
                    .as_deref()
                    .is_none_or(|prefix| path.starts_with(prefix));
                let model_ok = match (&rule.model, model) {
                    (None, _) => true,
                    (Some(ModelMatch::Exact(m)), Some(model)) => m == model,
                    (Some(ModelMatch::Prefix(p)), Some(model)) => model.starts_with(p.as_str()),
                    (Some(_), None) => false,
                };
                path_ok && model_ok
            })
            .map_or(tier_pool, |rule| rule.pool.as_str())
    }
}

/// The top-level `model` of a JSON request body.
pub fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<Value>,
    }
    let parsed: ModelOnly = serde_json::from_slice(body).ok()?;
    parsed.model?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: Option<&str>, model: Option<ModelMatch>, pool: &str) -> RouteRule {
        RouteRule {
            path_prefix: path.map(str::to_owned),
            model,
            pool: pool.into(),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_the_tier_decides_the_rest() {
        let router = Router::new(&[
            rule(None, Some(ModelMatch::Prefix("gemma".into())), "noclaw"),
            rule(Some("/v1/memory"), None, "hermes"),
            rule(None, Some(ModelMatch::Exact("gpt-4o".into())), "openclaw"),
            rule(None, None, "openclaw"),
        ]);
        assert!(router.needs_model());
        assert_eq!(
            router.pool_for("/v1/chat/completions", Some("gemma3:27b"), "dedicated"),
            "noclaw"
        );
        assert_eq!(
            router.pool_for("/v1/memory/search", None, "dedicated"),
            "hermes"
        );
        assert_eq!(
            router.pool_for("/v1/chat/completions", Some("gpt-4o"), "dedicated"),
            "openclaw"
        );
        assert_eq!(
            router.pool_for("/v1/chat/completions", Some("gpt-4o-mini"), "dedicated"),
            "dedicated"
        );
        assert_eq!(
            router.pool_for("/v1/chat/completions", None, "openclaw"),
            "openclaw"
        );
    }

    #[test]
    fn the_model_is_read_from_the_top_level_only() {
        assert_eq!(
            model_of(br#"{"messages":[{"model":"x"}],"model":"gemma3"}"#).as_deref(),
            Some("gemma3")
        );
        assert_eq!(model_of(br#"{"model":5}"#), None);
        assert_eq!(model_of(b"not json"), None);
    }
}
