//! Accepting a run: the checks and the enqueue shared by every way a run is started — the API
//! (`POST /api/runs`) and a Telegram message.
//!
//! In order: the template exists and the tier may use it; the subscription has not lapsed; the
//! tier includes runs and the month's requests are not used up; the input fits the template; then
//! one transaction checks the idempotency key and the month's run count and writes the run. A
//! BYOK key is put beside the run before it can be claimed, and taken back if nothing was
//! written. Every refusal is the `ApiError` the caller answers with.
//!
//! Not for: finding the caller's tenant (callers pass one they own), or HTTP.

use serde_json::Value;

use super::byok::ProviderKey;
use super::queue::{self, Enqueued, MonthlyLimit, NewRun, Run};
use super::{template, RunService};
use crate::api_error::{shown, ApiError, ErrorKind};
use crate::billing::quota::Month;
use crate::billing::Billing;
use crate::config::{Config, Limit};
use crate::tenants::Tenant;

/// A run to start.
pub struct Submission {
    /// The tenant, which the caller has checked `owner` owns.
    pub tenant: Tenant,
    pub owner: String,
    /// The tier the owner's request runs under.
    pub tier: String,
    pub template: String,
    pub input: Value,
    pub idempotency_key: Option<String>,
    pub provider_key: Option<ProviderKey>,
    /// The OpenClaw sub-session to work in; None: one of the run's own. A Telegram chat names
    /// one per tenant and Telegram user, so the agent remembers the conversation.
    pub session: Option<String>,
}

/// What `submit` did.
#[derive(Debug)]
pub enum Submitted {
    Created(Run),
    /// The idempotency key named an earlier run with the same template and input: that run.
    Existing(Run),
}

/// Checks and queues a run.
pub async fn submit(
    runs: &RunService,
    config: &Config,
    billing: &Billing,
    submission: Submission,
) -> Result<Submitted, ApiError> {
    let Submission {
        tenant,
        owner,
        tier: tier_name,
        template: template_id,
        input,
        idempotency_key,
        provider_key,
        session,
    } = submission;
    let now = runs.clock.now_ms();
    let (tier_name, tier) = config.tier(Some(&tier_name));
    let upgrade = config.stripe.upgrade_url.as_deref();
    let Some(template) = config
        .templates
        .get(&template_id)
        .filter(|t| t.allows_tier(tier_name))
    else {
        return Err(match config.templates.contains_key(&template_id) {
            true => ApiError::tier_limit(
                "template_not_in_tier",
                format!(
                    "The template `{}` is not available on your tier `{tier_name}`.",
                    shown(&template_id)
                ),
                upgrade,
            ),
            false => ApiError::new(
                ErrorKind::NotFound,
                "template_not_found",
                format!("There is no template `{}`.", shown(&template_id)),
            ),
        });
    };
    if billing.lapsed(config, &owner, now) {
        return Err(ApiError::tier_limit(
            "subscription_inactive",
            "Your subscription is no longer active, so no run can start.".to_owned(),
            upgrade,
        ));
    }
    if tier.runs_per_month == Limit::Count(0) {
        return Err(ApiError::tier_limit(
            "runs_not_in_tier",
            format!("Your tier `{tier_name}` does not include agent runs."),
            upgrade,
        ));
    }
    if let Some(limit) = tier.monthly_requests {
        if billing.quotas.used(&owner, now) >= limit {
            return Err(ApiError::tier_limit(
                "quota_exceeded",
                format!("You have used this month's {limit} requests of tier `{tier_name}`."),
                upgrade,
            ));
        }
    }
    let prompt = template::render(template, &input)
        .map_err(|m| ApiError::invalid_request("invalid_input", m))?;
    if let Some(key) = &idempotency_key {
        let ok = !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ApiError::invalid_request(
                "invalid_idempotency_key",
                "`idempotency_key` must be 1-255 visible ASCII characters.",
            ));
        }
    }
    let run = NewRun {
        id: queue::new_run_id(),
        tenant_id: tenant.id.clone(),
        owner: owner.clone(),
        tier: tier_name.to_owned(),
        template: template_id,
        agent: template.agent.clone(),
        input: input.to_string(),
        prompt,
        idempotency_key,
        priority: tier.priority,
        max_attempts: template.max_attempts,
        timeout_ms: template.timeout.as_millis() as u64,
        byok: provider_key.is_some(),
        pool: tenant.pool.clone(),
        session,
    };
    let run_id = run.id.clone();
    // The key is in place before the run can be claimed.
    if let Some(key) = provider_key {
        runs.byok.insert(&run_id, key);
    }
    let runs_per_month = tier.runs_per_month;
    let limit = runs_per_month.count().map(|limit| MonthlyLimit {
        since_ms: Month::of_unix_ms(now).start_ms(),
        limit,
    });
    let enqueued = runs.with_queue(move |q| q.enqueue(run, limit, now)).await;
    let created = match enqueued {
        Ok(Enqueued::Created(run)) => run,
        other => {
            runs.byok.remove(&run_id);
            return match other? {
                Enqueued::Existing(run) => Ok(Submitted::Existing(run)),
                Enqueued::KeyReused(_) => Err(ApiError::new(
                    ErrorKind::Conflict,
                    "idempotency_key_reused",
                    "This idempotency key was already used for a different run in this tenant.",
                )),
                Enqueued::OverMonthlyLimit { used } => Err(ApiError::tier_limit(
                    "run_limit_reached",
                    format!(
                        "Your tier `{tier_name}` allows {} runs a month and you have started {used}.",
                        runs_per_month.count().unwrap_or(0)
                    ),
                    upgrade,
                )),
                Enqueued::Created(_) => unreachable!("handled above"),
            };
        }
    };
    tracing::info!(
        user = %owner,
        tenant = %created.tenant_id,
        run = %created.id,
        template = %created.template,
        byok = created.byok,
        "run queued"
    );
    runs.wake();
    Ok(Submitted::Created(created))
}
