//! The web dashboard's settings (`dashboard:`) and what the pricing page shows of each tier
//! (`tiers.NAME.price`, `.checkout_url`).
//!
//! Not here: the pages (`crate::dashboard`).

use std::time::Duration;

use super::bounds::within;
use super::file::DashboardSection;
use super::{duration_or, err, text, ConfigError};

const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const MAX_SESSION_TTL: Duration = Duration::from_secs(90 * 24 * 60 * 60);
const DEFAULT_SIGNUPS_PER_HOUR: u32 = 5;
/// Past this, the per-address limit stops meaning anything.
const MAX_SIGNUPS_PER_HOUR: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// Whether `/signup` makes accounts (an operator turns it off for a closed workshop).
    pub signup: bool,
    /// Accounts one address may make per hour.
    pub signups_per_hour: u32,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
}

impl Default for Dashboard {
    fn default() -> Dashboard {
        Dashboard {
            signup: true,
            signups_per_hour: DEFAULT_SIGNUPS_PER_HOUR,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

pub(super) fn dashboard(raw: Option<DashboardSection>) -> Result<Dashboard, ConfigError> {
    let DashboardSection {
        signup,
        signups_per_hour,
        session_ttl,
    } = raw.unwrap_or_default();
    let defaults = Dashboard::default();
    Ok(Dashboard {
        signup: signup.unwrap_or(defaults.signup),
        signups_per_hour: within(
            "dashboard.signups_per_hour",
            signups_per_hour.unwrap_or(defaults.signups_per_hour),
            1,
            MAX_SIGNUPS_PER_HOUR,
        )?,
        session_ttl: duration_or(
            "dashboard.session_ttl",
            session_ttl,
            defaults.session_ttl,
            MAX_SESSION_TTL,
        )?,
    })
}

/// A tier's price as the pricing page shows it (`"$99 / month"`): plain text, short.
pub(super) fn price(at: &str, raw: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(price) = raw else { return Ok(None) };
    text::plain(at, &price)?;
    if price.chars().count() > 40 {
        return Err(err(at, "at most 40 characters"));
    }
    Ok(Some(price))
}

/// Where a tier is bought: a Stripe Payment Link or Checkout URL (`https://buy.stripe.com/…`).
/// The signup page adds `client_reference_id=<user>`, which the webhook reads as the user.
pub(super) fn checkout_url(at: &str, raw: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(url) = raw else { return Ok(None) };
    text::plain(at, &url)?;
    let parsed = url
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("https") && u.host().is_some() && u.query().is_none());
    if parsed.is_none() {
        return Err(err(
            at,
            format!("{url:?} is not an https:// URL without a query (the signup page adds one)"),
        ));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_yaml(&format!(
            "server: {{ listen: \"127.0.0.1:8787\" }}\n\
             pools: {{ openclaw: {{ nodes: [ {{ name: n, addr: \"127.0.0.1:18789\" }} ] }} }}\n{yaml}"
        ))
    }

    #[test]
    fn signup_is_on_by_default_and_limited_per_address() {
        let config = load("").unwrap();
        assert!(config.dashboard.signup);
        assert_eq!(config.dashboard.signups_per_hour, 5);
        assert_eq!(config.dashboard.session_ttl.as_secs(), 7 * 24 * 3600);
        let closed = load("dashboard: { signup: false, session_ttl: 12h }\n").unwrap();
        assert!(!closed.dashboard.signup);
        assert_eq!(closed.dashboard.session_ttl.as_secs(), 12 * 3600);
        for (yaml, path) in [
            (
                "dashboard: { signups_per_hour: 0 }\n",
                "dashboard.signups_per_hour",
            ),
            (
                "dashboard: { session_ttl: 365d }\n",
                "dashboard.session_ttl",
            ),
            ("dashboard: { sign_up: true }\n", "dashboard"),
        ] {
            assert!(load(yaml).unwrap_err().path.starts_with(path), "{yaml}");
        }
    }

    #[test]
    fn a_tier_shows_a_price_and_a_checkout_link() {
        let tiers = |extra: &str| {
            format!("tiers: {{ workshop: {{ requests_per_minute: 50 }}, tier1: {{ requests_per_minute: 50, {extra} }} }}\n")
        };
        let config = load(&tiers(
            "price: \"$99 / month\", checkout_url: \"https://buy.stripe.com/test_abc\"",
        ))
        .unwrap();
        let tier1 = &config.tiers["tier1"];
        assert_eq!(tier1.price.as_deref(), Some("$99 / month"));
        assert_eq!(
            tier1.checkout_url.as_deref(),
            Some("https://buy.stripe.com/test_abc")
        );
        for extra in [
            "checkout_url: \"http://buy.stripe.com/x\"",
            "checkout_url: \"https://buy.stripe.com/x?a=b\"",
        ] {
            assert_eq!(
                load(&tiers(extra)).unwrap_err().path,
                "tiers.tier1.checkout_url"
            );
        }
    }
}
