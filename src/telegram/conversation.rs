//! What the bot does with one update from the inbox: the conversation's rules and its words.
//!
//! - A stranger (no pairing) is told how to pair, whatever they write; `/start CODE` or the code
//!   alone pairs them, within `AttemptLimiter`'s budget of wrong codes. Nothing of theirs
//!   reaches a node.
//! - A paired user's commands: `/help`, `/skills` (the tenant's enabled skills, ✅ ready or ⚠️
//!   with a short reason), `/status` (tier, this month's use and what is left), `/unpair`.
//! - A paired user's text becomes a run of the tenant through `runs::submit`, exactly as an API
//!   run (the template's gates, the subscription, the month's quotas), in the chat's own session
//!   (`tenant/<id>/telegram/<user>`), with the idempotency key `telegram-<update_id>`: an update
//!   processed twice starts one run. The answer comes later, from the sender.
//! - Only private chats are served: in a group the bot answers only commands addressed to it,
//!   to say so, and never runs a tenant's agent there.
//!
//! Replies to commands are planned into the outbox as `update:<update_id>`, so processing an
//! update again never sends its reply twice. A failure of the database or the queue leaves the
//! update for another attempt, after a backoff.
//!
//! Not for: storing (`store`), sending (`sender`), parsing (`update`).

use std::time::Duration;

use serde_json::json;

use super::bot::Bot;
use super::pairing::{PairingCode, Redeemer};
use super::reply::{self, MAX_MESSAGE_UTF16};
use super::store::{self, AwaitedRun, ClaimedUpdate, Redeemed};
use super::update::{ChatKind, Command, Message, Update, User};
use crate::api_error::ApiError;
use crate::config::telegram::{Telegram, MESSAGE_INPUT};
use crate::config::{Config, Limit};
use crate::runs::submit::{self, Submission, Submitted};
use crate::skills::diagnostics;
use crate::skills::policy;
use crate::tenants::{self, Tenant};

/// Handles a claimed update and ends its claim: done, or to be tried again after a backoff.
pub(super) async fn process(bot: &Bot, settings: &Telegram, claimed: ClaimedUpdate) {
    let (update_id, attempt) = (claimed.update_id, claimed.attempt);
    match handle(bot, settings, &claimed).await {
        Ok(()) => {
            let now = bot.clock.now_ms();
            let _ = bot
                .with_db("telegram inbox", move |conn| {
                    store::complete(conn, update_id, attempt, now)
                })
                .await;
        }
        Err(error) => {
            let backoff = Duration::from_secs(1 << attempt.min(6));
            tracing::warn!(
                update = update_id,
                attempt,
                "telegram update not processed, tried again in {}s: {error}",
                backoff.as_secs()
            );
            let available = bot.clock.now_ms() + backoff.as_millis() as u64;
            let _ = bot
                .with_db("telegram inbox", move |conn| {
                    store::retry_later(conn, update_id, attempt, available, &error)
                })
                .await;
        }
    }
}

/// An error worth another attempt (the database, the queue); everything else is answered.
type Transient = String;

fn transient(e: ApiError) -> Transient {
    format!("{} ({})", e.message, e.code)
}

async fn handle(bot: &Bot, settings: &Telegram, claimed: &ClaimedUpdate) -> Result<(), Transient> {
    let update = match Update::parse(claimed.body.as_bytes()) {
        Ok(update) => update,
        Err(e) => {
            // The webhook parsed it before storing it: only a change of this code gets here.
            tracing::warn!(update = claimed.update_id, "telegram update dropped: {e}");
            return Ok(());
        }
    };
    let Some(Message {
        from: Some(from),
        chat,
        text,
        ..
    }) = update.message
    else {
        return Ok(());
    };
    if from.is_bot {
        return Ok(());
    }
    let command = text
        .as_deref()
        .map(|t| Command::classify(t, &settings.bot_username));
    let chat_id = chat.id;
    let say = |text: String| Reply {
        reply_id: format!("update:{}", update.update_id),
        chat_id,
        text,
    };
    if chat.kind != ChatKind::Private {
        return match command {
            Some(Command::Start { .. } | Command::Help | Command::Skills | Command::Status)
            | Some(Command::Unpair | Command::Unknown { .. }) => {
                plan(bot, say(PRIVATE_ONLY.to_owned())).await
            }
            _ => Ok(()),
        };
    }
    let user_id = from.id;
    let pairing = bot
        .with_db("telegram pairing", move |conn| {
            store::pairing_of_user(conn, user_id)
        })
        .await
        .map_err(transient)?;
    let answer = match (command, pairing) {
        (None, None) => Some(how_to_pair(settings)),
        (None, Some(_)) => Some(TEXT_ONLY.to_owned()),
        (Some(Command::OtherBot), _) => None,
        (Some(Command::Start { payload: Some(p) }), _) => {
            Some(pair(bot, &from, chat_id, &p).await?)
        }
        (Some(Command::Start { payload: None }), None) => Some(how_to_pair(settings)),
        (Some(Command::Start { payload: None }), Some(p)) => {
            let name = tenant_name(bot, &p.tenant_id).await?;
            Some(format!(
                "You are talking to the agent of {name}. Send a message and it answers here.\n\n{HELP}"
            ))
        }
        (Some(Command::Code { code, .. }), None) => {
            Some(pair(bot, &from, chat_id, code.as_str()).await?)
        }
        (Some(Command::Help), Some(_)) => Some(HELP.to_owned()),
        (Some(Command::Help), None) => Some(how_to_pair(settings)),
        (Some(Command::Unknown { name }), Some(_)) => {
            Some(format!("I do not know /{name}. /help lists what I can do."))
        }
        (Some(Command::Unpair), Some(p)) => Some(unpair(bot, user_id, &p.tenant_id).await?),
        (Some(Command::Unpair), None) => Some("You are not paired with any agent.".to_owned()),
        (Some(Command::Skills), Some(p)) => Some(skills(bot, &p.tenant_id, &p.owner).await?),
        (Some(Command::Status), Some(p)) => Some(status(bot, &p.owner).await?),
        (Some(_), None) => Some(how_to_pair(settings)),
        (Some(Command::Text(text) | Command::Code { text, .. }), Some(p)) => {
            let asked = Asked {
                update_id: update.update_id,
                chat_id,
                user_id,
                text,
            };
            start_run(bot, settings, &p.tenant_id, &p.owner, asked).await?
        }
    };
    match answer {
        Some(text) => plan(bot, say(text)).await,
        None => Ok(()),
    }
}

struct Reply {
    reply_id: String,
    chat_id: i64,
    text: String,
}

/// Puts a reply in the outbox (the first plan of `reply_id` stands) and wakes the sender.
async fn plan(bot: &Bot, reply: Reply) -> Result<(), Transient> {
    let parts = reply::split(&reply.text, MAX_MESSAGE_UTF16);
    let now = bot.clock.now_ms();
    bot.with_db("telegram outbox", move |conn| {
        store::plan_reply(conn, &reply.reply_id, reply.chat_id, &parts, now)
    })
    .await
    .map_err(transient)?;
    bot.wake_sender();
    Ok(())
}

const PRIVATE_ONLY: &str =
    "I only talk in private chats: open a chat with me to talk to your agent.";
const TEXT_ONLY: &str = "I can only read text messages for now: please type your question.";
const HELP: &str = "Send me a message and your agent answers here.\n\n\
/skills – the agent's skills and whether they are ready\n\
/status – your plan and what is left this month\n\
/unpair – stop talking to this agent\n\
/help – this list";

fn how_to_pair(settings: &Telegram) -> String {
    format!(
        "Hi! I connect you to an agent, but you are not paired with one yet.\n\n\
         Ask the agent's owner for a pairing code (it is 8 letters and digits), then send it to \
         me like this:\n/start CODE\n\nOr open the link they give you: \
         https://t.me/{}?start=CODE",
        settings.bot_username
    )
}

/// Pairs the sender with the tenant of `code`, within the budget of wrong codes.
async fn pair(bot: &Bot, from: &User, chat_id: i64, code: &str) -> Result<String, Transient> {
    if let Err(wait) = bot.limiter.check(from.id) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return Ok(format!(
            "Too many wrong codes. Please wait {minutes} minute{} and try again.",
            if minutes == 1 { "" } else { "s" }
        ));
    }
    let Some(code) = PairingCode::parse(code) else {
        bot.limiter.failed(from.id);
        return Ok(WRONG_CODE.to_owned());
    };
    let (user_id, username, first_name) = (from.id, from.username.clone(), from.first_name.clone());
    let now = bot.clock.now_ms();
    let redeemed = bot
        .with_db("telegram pairing", move |conn| {
            let who = Redeemer {
                telegram_user_id: user_id,
                chat_id,
                username: username.as_deref(),
                first_name: &first_name,
            };
            store::redeem_code(conn, &code.hash(), &who, now)
        })
        .await
        .map_err(transient)?;
    let pairing = match redeemed {
        Redeemed::Paired { pairing, .. } => pairing,
        Redeemed::Unknown => {
            bot.limiter.failed(from.id);
            return Ok(WRONG_CODE.to_owned());
        }
        Redeemed::Expired => {
            bot.limiter.failed(from.id);
            return Ok("That code has expired: codes work for one hour. Ask for a new one.".into());
        }
        Redeemed::AlreadyUsed => {
            bot.limiter.failed(from.id);
            return Ok(
                "That code was already used: each code works once. Ask for a new one.".into(),
            );
        }
    };
    bot.limiter.succeeded(from.id);
    tracing::info!(
        tenant = %pairing.tenant_id,
        pairing = pairing.id,
        "telegram user paired"
    );
    let name = tenant_name(bot, &pairing.tenant_id).await?;
    Ok(format!(
        "✅ You are paired with {name}. Send a message and the agent answers here.\n\n{HELP}"
    ))
}

const WRONG_CODE: &str =
    "That is not a valid pairing code. Check it with whoever gave it to you: a code is 8 \
     letters and digits, like /start K7QM2XPA.";

async fn unpair(bot: &Bot, user_id: i64, tenant_id: &str) -> Result<String, Transient> {
    let name = tenant_name(bot, tenant_id).await?;
    bot.with_db("telegram pairing", move |conn| {
        store::unpair_user(conn, user_id)
    })
    .await
    .map_err(transient)?;
    Ok(format!(
        "You are no longer paired with {name}. Send a new code to pair again."
    ))
}

/// The tenant, if it still exists.
async fn tenant(bot: &Bot, tenant_id: &str) -> Result<Option<Tenant>, Transient> {
    let id = tenant_id.to_owned();
    bot.with_db("tenants", move |conn| tenants::store::get(conn, &id, None))
        .await
        .map_err(transient)
}

async fn tenant_name(bot: &Bot, tenant_id: &str) -> Result<String, Transient> {
    Ok(match tenant(bot, tenant_id).await? {
        Some(t) => format!("“{}”", t.name),
        None => "an agent that no longer exists".to_owned(),
    })
}

/// The tier the owner's runs go under: the comped tier of their keys (the highest priority
/// among them), else what they pay for, else the default; None when they hold no active key,
/// which stops their agent as it stops their API calls.
async fn owner_tier(bot: &Bot, config: &Config, owner: &str) -> Result<Option<String>, Transient> {
    let user = owner.to_owned();
    let keys = bot
        .with_db("keys", move |conn| {
            crate::auth::store::active_key_tiers(conn, &user)
        })
        .await
        .map_err(transient)?;
    if keys.is_empty() {
        return Ok(None);
    }
    let comped = keys
        .iter()
        .flatten()
        .filter_map(|name| config.tiers.get_key_value(name))
        .max_by_key(|(_, tier)| tier.priority)
        .map(|(name, _)| name.as_str());
    let (tier, _) = crate::billing::resolve_tier(
        config,
        &bot.billing.plans.load(),
        owner,
        comped,
        bot.clock.now_ms(),
    );
    Ok(Some(tier.to_owned()))
}

struct Asked {
    update_id: i64,
    chat_id: i64,
    user_id: i64,
    text: String,
}

/// Starts the run that answers `asked`; None when it started (the answer comes later), or what
/// to tell the user instead.
async fn start_run(
    bot: &Bot,
    settings: &Telegram,
    tenant_id: &str,
    owner: &str,
    asked: Asked,
) -> Result<Option<String>, Transient> {
    let Some(tenant) = tenant(bot, tenant_id).await? else {
        let user_id = asked.user_id;
        bot.with_db("telegram pairing", move |conn| {
            store::unpair_user(conn, user_id)
        })
        .await
        .map_err(transient)?;
        return Ok(Some(
            "The agent you were paired with has been deleted, so you are unpaired. Ask its \
             owner for a new code."
                .to_owned(),
        ));
    };
    let snapshot = bot.live.load_full();
    let config = &snapshot.config;
    let Some(tier) = owner_tier(bot, config, owner).await? else {
        return Ok(Some(
            "⚠️ This agent's owner has no active gateway key, so the agent cannot run. Please \
             tell them."
                .to_owned(),
        ));
    };
    let submission = Submission {
        session: Some(tenants::chat_session(&tenant.id, asked.user_id)),
        tenant,
        owner: owner.to_owned(),
        tier,
        template: settings.template.clone(),
        input: json!({ MESSAGE_INPUT: asked.text }),
        idempotency_key: Some(format!("telegram-{}", asked.update_id)),
        provider_key: None,
    };
    let run = match submit::submit(&bot.runs, config, &bot.billing, submission).await {
        Ok(Submitted::Created(run) | Submitted::Existing(run)) => run,
        Err(e) if e.status() >= 500 => return Err(transient(e)),
        Err(e) => return Ok(Some(format!("⚠️ {}", e.message))),
    };
    let awaited = AwaitedRun {
        run_id: run.id.clone(),
        update_id: asked.update_id,
        chat_id: asked.chat_id,
        created_ms: bot.clock.now_ms(),
    };
    let user_id = asked.user_id;
    bot.with_db("telegram runs", move |conn| {
        store::await_run(conn, &awaited, user_id)
    })
    .await
    .map_err(transient)?;
    tracing::info!(run = %run.id, tenant = %run.tenant_id, "telegram message queued as a run");
    bot.wake_sender();
    Ok(None)
}

/// `/skills`: the tenant's enabled skills on its runtime, ✅ ready or ⚠️ with why not.
async fn skills(bot: &Bot, tenant_id: &str, owner: &str) -> Result<String, Transient> {
    let Some(tenant) = tenant(bot, tenant_id).await? else {
        return Ok("The agent you were paired with no longer exists.".to_owned());
    };
    let snapshot = bot.live.load_full();
    let config = &snapshot.config;
    let tier = owner_tier(bot, config, owner)
        .await?
        .unwrap_or_else(|| config.default_tier.clone());
    let runtime = tenants::runtime_pool(config, &tier, &tenant).0.to_owned();
    let Some(cache) = bot.skills.get(&runtime) else {
        return Ok("This agent's runtime does not list its skills.".to_owned());
    };
    let served = match cache.get().await {
        Ok(served) => served,
        Err(failure) => {
            tracing::warn!(runtime, "skills inventory unavailable: {}", failure.reason);
            return Ok("The agent's skills cannot be read right now; try again shortly.".into());
        }
    };
    let (id, packs, now) = (
        tenant.id.clone(),
        config.skills.packs.clone(),
        bot.clock.now_ms(),
    );
    let policy = bot
        .with_db("skills policy", move |conn| {
            crate::skills::store::bootstrap(conn, &id, &packs, now)?;
            crate::skills::store::load(conn, &id)
        })
        .await
        .map_err(transient)?;
    let view = policy::view(&served.inventory, &policy, false);
    let lines: Vec<String> = view
        .skills
        .iter()
        .filter(|s| s.policy.enabled && s.policy.allowed)
        .map(|s| {
            let name = match &s.skill.emoji {
                Some(emoji) => format!("{emoji} {}", s.skill.name),
                None => s.skill.name.clone(),
            };
            match s.ready {
                true => format!("✅ {name}"),
                false => format!("⚠️ {name} – {}", diagnostics::short_reason(&s.skill)),
            }
        })
        .collect();
    if lines.is_empty() {
        return Ok(format!(
            "“{}” has no skills enabled. Its owner turns them on in the dashboard.",
            tenant.name
        ));
    }
    Ok(format!(
        "Skills of “{}”:\n\n{}",
        tenant.name,
        lines.join("\n")
    ))
}

/// `/status`: the owner's tier, the month's requests against the quota, the runs it allows.
async fn status(bot: &Bot, owner: &str) -> Result<String, Transient> {
    let snapshot = bot.live.load_full();
    let config = &snapshot.config;
    let now = bot.clock.now_ms();
    let Some(tier_name) = owner_tier(bot, config, owner).await? else {
        return Ok("This agent's owner has no active gateway key, so the agent cannot run.".into());
    };
    let (tier_name, tier) = config.tier(Some(&tier_name));
    let used = bot.billing.quotas.used(owner, now);
    let requests = match tier.monthly_requests {
        Some(limit) => format!(
            "{used} of {limit} this month ({} left)",
            limit.saturating_sub(used)
        ),
        None => format!("{used} this month (no monthly limit)"),
    };
    let runs = match tier.runs_per_month {
        Limit::Unlimited => "no monthly limit".to_owned(),
        Limit::Count(n) => format!("up to {n} a month"),
    };
    let mut text = format!("Plan: {tier_name}\nRequests: {requests}\nAgent runs: {runs}");
    if bot.billing.lapsed(config, owner, now) {
        text.push_str("\n\n⚠️ The subscription is no longer active, so the agent cannot run.");
        if let Some(url) = &config.stripe.upgrade_url {
            text.push_str(&format!(" Renew it at {url}"));
        }
    } else if let Some(url) = &config.stripe.upgrade_url {
        text.push_str(&format!("\n\nMore at {url}"));
    }
    Ok(text)
}
