//! Billing: Stripe webhooks, the subscription state that sets each user's tier, and monthly
//! quotas.
//!
//! Webhooks are verified (`stripe_signature`), parsed (`events`) and applied in one SQLite
//! transaction each (`store`) by the sidecar; `state_order` decides which of two states wins. The request path reads only memory: a `PlanIndex`
//! snapshot (reloaded within a second of any change) and the `QuotaCounters`.

pub mod events;
pub mod quota;
pub mod state_order;
pub mod store;
pub mod stripe_signature;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rusqlite::Connection;

use crate::config::{Config, Tier};
use quota::{Month, QuotaCounters};
use store::PlanRow;

/// Statuses that keep a subscription's tier (`past_due` does too, for the grace period).
const ENTITLED: [&str; 2] = ["active", "trialing"];

/// Immutable snapshot of every user's subscriptions.
#[derive(Debug, Default)]
pub struct PlanIndex {
    by_user: HashMap<String, Vec<PlanRow>>,
}

impl PlanIndex {
    pub fn new(rows: Vec<PlanRow>) -> PlanIndex {
        let mut by_user: HashMap<String, Vec<PlanRow>> = HashMap::new();
        for row in rows {
            by_user.entry(row.user.clone()).or_default().push(row);
        }
        for plans in by_user.values_mut() {
            plans.sort_by_key(|p| std::cmp::Reverse(p.state_created));
        }
        PlanIndex { by_user }
    }

    /// The tier `user` pays for right now: the newest subscription that is active, trialing,
    /// or past due for less than `grace_secs`.
    pub fn entitled_tier(&self, user: &str, now_secs: i64, grace_secs: i64) -> Option<&str> {
        self.by_user.get(user)?.iter().find_map(|plan| {
            let entitled = ENTITLED.contains(&plan.status.as_str())
                || (plan.status == "past_due"
                    && plan
                        .past_due_since
                        .is_some_and(|since| now_secs - since < grace_secs));
            entitled.then_some(plan.tier.as_deref()).flatten()
        })
    }

    /// The user had a subscription and it no longer entitles them to its tier (canceled,
    /// unpaid, or past due beyond the grace period).
    pub fn lapsed(&self, user: &str, now_secs: i64, grace_secs: i64) -> bool {
        self.by_user.contains_key(user) && self.entitled_tier(user, now_secs, grace_secs).is_none()
    }

    /// The status of the user's newest subscription (`none` without one).
    pub fn status(&self, user: &str) -> &str {
        self.by_user
            .get(user)
            .and_then(|plans| plans.first())
            .map_or("none", |p| p.status.as_str())
    }
}

/// The tier a request runs under: a key's comped tier first, then the tier the user pays for,
/// then the default tier. Tier names no longer in the config fall through to the next choice.
pub fn resolve_tier<'c>(
    config: &'c Config,
    plans: &PlanIndex,
    user: &str,
    key_tier: Option<&str>,
    now_ms: u64,
) -> (&'c str, &'c Tier) {
    let grace = config.stripe.past_due_grace.as_secs() as i64;
    let paid = plans.entitled_tier(user, (now_ms / 1000) as i64, grace);
    [key_tier, paid]
        .into_iter()
        .flatten()
        .find_map(|name| config.tiers.get_key_value(name))
        .map(|(name, tier)| (name.as_str(), tier))
        .unwrap_or_else(|| config.tier(None))
}

/// Subscriptions and quota counters, shared by the proxy, the sidecar and the workers.
#[derive(Default)]
pub struct Billing {
    pub plans: ArcSwap<PlanIndex>,
    pub quotas: QuotaCounters,
    /// Held from reading subscriptions to storing the snapshot: of two webhooks that reload at
    /// once, the one that read first could otherwise store last and hide the other's change
    /// until the next sync.
    reloading: Mutex<()>,
}

impl Billing {
    /// The user had a subscription that no longer entitles them (canceled, unpaid, or past due
    /// beyond `stripe.past_due_grace`): nothing new may start for them.
    pub fn lapsed(&self, config: &Config, user: &str, now_ms: u64) -> bool {
        let grace = config.stripe.past_due_grace.as_secs() as i64;
        self.plans
            .load()
            .lapsed(user, (now_ms / 1000) as i64, grace)
    }

    /// Loads subscriptions and this month's counts. Blocking: start-up only.
    pub fn load(conn: &Connection, now_ms: u64) -> rusqlite::Result<Arc<Billing>> {
        let billing = Billing::default();
        billing.reload_plans(conn)?;
        billing
            .quotas
            .load(store::load_month(conn, Month::of_unix_ms(now_ms))?);
        Ok(Arc::new(billing))
    }

    pub fn reload_plans(&self, conn: &Connection) -> rusqlite::Result<()> {
        let _reloading = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.plans
            .store(Arc::new(PlanIndex::new(store::load_plans(conn)?)));
        Ok(())
    }

    /// Writes changed quota counters; on failure they stay pending for the next flush.
    pub fn flush_quotas(&self, conn: &mut Connection) -> rusqlite::Result<usize> {
        let dirty = self.quotas.take_dirty();
        if dirty.is_empty() {
            return Ok(0);
        }
        match store::save_counts(conn, &dirty) {
            Ok(()) => Ok(dirty.len()),
            Err(e) => {
                self.quotas.restore_dirty(dirty);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(tier: &str, status: &str, created: i64, past_due_since: Option<i64>) -> PlanRow {
        PlanRow {
            user: "ana".into(),
            tier: Some(tier.into()),
            status: status.into(),
            state_created: created,
            past_due_since,
        }
    }

    #[test]
    fn entitlement_follows_status_and_grace() {
        let index = PlanIndex::new(vec![plan("tier2", "past_due", 100, Some(100))]);
        assert_eq!(index.entitled_tier("ana", 150, 100), Some("tier2"));
        assert_eq!(index.entitled_tier("ana", 200, 100), None, "grace over");
        let index = PlanIndex::new(vec![plan("tier1", "canceled", 100, None)]);
        assert_eq!(index.entitled_tier("ana", 0, 100), None);
        assert_eq!(index.status("ana"), "canceled");
        assert_eq!(index.status("bob"), "none");
        let index = PlanIndex::new(vec![
            plan("tier1", "active", 100, None),
            plan("tier3", "active", 200, None),
        ]);
        assert_eq!(
            index.entitled_tier("ana", 0, 0),
            Some("tier3"),
            "newest wins"
        );
    }
}
