//! The bot's way out: answers for the runs chats wait for, "typing…" while they work, and the
//! outbox sent to Telegram in order, at the pacer's rate, exactly as planned.
//!
//! Each round:
//! 1. **Answer ended runs.** For each run a chat waits for (`store::awaited_runs`): once it has
//!    ended, its answer (the run's `output.md`, or why it failed) is split and planned into the
//!    outbox under the run's id, and the chat stops waiting, in one transaction. A run still
//!    queued or working shows "typing…" in its chat, renewed every few seconds.
//! 2. **Send.** For each reply with unsent parts, oldest first, the parts go in order: a part
//!    waits for the pacer's slot, is sent, and is marked sent. A 429 keeps that part (and the
//!    chat, through the pacer) until its `retry_after` has passed on the clock; a failure to
//!    reach Telegram backs off; a refusal for good (the user blocked the bot) drops the part.
//!    Retry state lives in memory: after a restart, a part is simply tried again.
//! 3. **Prune**, hourly: what ended more than two days ago.
//!
//! The waits are measured on the injected clock, so tests move time instead of sleeping.
//!
//! Not for: deciding what to say (`conversation`), splitting and pacing rules (`reply`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pingora::server::ShutdownWatch;

use super::bot::{sender_pause, Bot};
use super::bot_api::{BotApi, BotApiError, ChatAction};
use super::reply::{self, MAX_MESSAGE_UTF16};
use super::store;
use crate::runs::queue::{Run, RunStatus};

/// How often "typing…" is renewed: Telegram shows it for five seconds.
const TYPING_EVERY_MS: u64 = 4_500;
/// Runs looked at, and replies sent from, per round.
const ROUND: usize = 100;
/// How long what has ended is kept (longer than Telegram redelivers an update).
const RETENTION_MS: u64 = 2 * 24 * 60 * 60 * 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// A part that failed: how often, and not to be tried before when (clock ms).
struct Retry {
    attempts: u32,
    not_before_ms: u64,
}

#[derive(Default)]
struct SenderState {
    /// When each chat was last shown "typing…" (clock ms).
    typing_at: HashMap<i64, u64>,
    retries: HashMap<(String, u32), Retry>,
}

pub(super) async fn run(bot: &Bot, mut shutdown: ShutdownWatch) {
    let mut state = SenderState::default();
    let mut pruned_at = Instant::now();
    loop {
        let mut wait = None;
        if let Some(settings) = bot.settings() {
            let api = bot.api(&settings);
            answer_ended_runs(bot, api.as_deref(), &mut state).await;
            if let Some(api) = &api {
                wait = send(bot, api, &mut state).await;
            }
        }
        if pruned_at.elapsed() >= PRUNE_EVERY {
            prune(bot).await;
            pruned_at = Instant::now();
        }
        if sender_pause(bot, wait, &mut shutdown).await {
            break;
        }
    }
}

async fn answer_ended_runs(bot: &Bot, api: Option<&BotApi>, state: &mut SenderState) {
    let Ok(awaited) = bot
        .with_db("telegram runs", |conn| store::awaited_runs(conn, ROUND))
        .await
    else {
        return;
    };
    let mut waiting_chats = Vec::new();
    for awaited in awaited {
        let id = awaited.run_id.clone();
        let Ok(run) = bot.runs.with_queue(move |q| q.get(&id)).await else {
            continue;
        };
        match run {
            Some(run) if !run.status.is_terminal() => waiting_chats.push(awaited.chat_id),
            run => {
                let answer = answer_text(bot, run.as_ref()).await;
                let parts = reply::split(&answer, MAX_MESSAGE_UTF16);
                let now = bot.clock.now_ms();
                let _ = bot
                    .with_db("telegram outbox", move |conn| {
                        store::answer_run(conn, &awaited, &parts, now)
                    })
                    .await;
            }
        }
    }
    let Some(api) = api else { return };
    let now = bot.clock.now_ms();
    state
        .typing_at
        .retain(|chat, _| waiting_chats.contains(chat));
    for chat in waiting_chats {
        let due = state
            .typing_at
            .get(&chat)
            .is_none_or(|&at| now.saturating_sub(at) >= TYPING_EVERY_MS);
        if due {
            state.typing_at.insert(chat, now);
            if let Err(e) = api.send_chat_action(chat, ChatAction::Typing).await {
                tracing::debug!(chat, "telegram typing not shown: {e}");
            }
        }
    }
}

/// What the chat is told when its run ended.
async fn answer_text(bot: &Bot, run: Option<&Run>) -> String {
    let Some(run) = run else {
        return "⚠️ The agent's run for this message is gone; please ask again.".to_owned();
    };
    match run.status {
        RunStatus::Succeeded => match bot.runs.artifacts.get(&run.id, "output.md").await {
            Ok(Some((_, bytes))) => {
                let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                match text.is_empty() {
                    true => "(The agent finished without a word.)".to_owned(),
                    false => text,
                }
            }
            Ok(None) => "⚠️ The agent's answer is no longer kept; please ask again.".to_owned(),
            Err(e) => {
                tracing::error!(run = %run.id, "cannot read the run's answer: {e}");
                "⚠️ The agent's answer could not be read; please ask again.".to_owned()
            }
        },
        RunStatus::Canceled => "The agent's run for this message was canceled.".to_owned(),
        _ => match &run.last_error {
            Some(error) => format!("⚠️ The agent could not answer: {}", error.message),
            None => "⚠️ The agent could not answer.".to_owned(),
        },
    }
}

/// Sends what the outbox holds; returns how long until a held part may go, if one waits.
async fn send(bot: &Bot, api: &BotApi, state: &mut SenderState) -> Option<Duration> {
    let replies = bot
        .with_db("telegram outbox", |conn| {
            store::replies_with_unsent(conn, ROUND)
        })
        .await
        .ok()?;
    let mut wait: Option<Duration> = None;
    let mut note = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
    for reply_id in replies {
        let id = reply_id.clone();
        let Ok(parts) = bot
            .with_db("telegram outbox", move |conn| {
                store::unsent_parts(conn, &id)
            })
            .await
        else {
            continue;
        };
        for part in parts {
            let key = (part.reply_id.clone(), part.part);
            let now = bot.clock.now_ms();
            if let Some(retry) = state.retries.get(&key) {
                if retry.not_before_ms > now {
                    note(Duration::from_millis(retry.not_before_ms - now));
                    break;
                }
            }
            if let Err(d) = bot.pacer.try_acquire(part.chat_id) {
                note(d);
                break;
            }
            match api.send_message(part.chat_id, &part.text).await {
                Ok(sent) => {
                    state.retries.remove(&key);
                    bot.metrics
                        .telegram_messages
                        .with_label_values(&["sent"])
                        .inc();
                    let now = bot.clock.now_ms();
                    let (reply_id, n) = (part.reply_id.clone(), part.part);
                    let _ = bot
                        .with_db("telegram outbox", move |conn| {
                            store::mark_sent(conn, &reply_id, n, sent.message_id, now)
                        })
                        .await;
                }
                Err(error) => {
                    let attempts = state.retries.get(&key).map_or(0, |r| r.attempts) + 1;
                    match reply::retry_delay(&error, attempts) {
                        Some(delay) => {
                            if matches!(error, BotApiError::RateLimited { .. }) {
                                bot.pacer.hold(part.chat_id, delay);
                            }
                            tracing::warn!(
                                reply = %part.reply_id,
                                part = part.part,
                                attempts,
                                "telegram message not sent, tried again in {}s: {error}",
                                delay.as_secs()
                            );
                            bot.metrics
                                .telegram_messages
                                .with_label_values(&["retried"])
                                .inc();
                            let not_before_ms = bot.clock.now_ms() + delay.as_millis() as u64;
                            state.retries.insert(
                                key,
                                Retry {
                                    attempts,
                                    not_before_ms,
                                },
                            );
                            note(delay);
                            break;
                        }
                        None => {
                            state.retries.remove(&key);
                            tracing::warn!(
                                reply = %part.reply_id,
                                part = part.part,
                                attempts,
                                "telegram message dropped: {error}"
                            );
                            bot.metrics
                                .telegram_messages
                                .with_label_values(&["dropped"])
                                .inc();
                            let now = bot.clock.now_ms();
                            let (reply_id, n, why) =
                                (part.reply_id.clone(), part.part, error.to_string());
                            let _ = bot
                                .with_db("telegram outbox", move |conn| {
                                    store::drop_part(conn, &reply_id, n, &why, now)
                                })
                                .await;
                        }
                    }
                }
            }
        }
    }
    wait
}

async fn prune(bot: &Bot) {
    let before = bot.clock.now_ms().saturating_sub(RETENTION_MS);
    match bot
        .with_db("telegram prune", move |conn| store::prune(conn, before))
        .await
    {
        Ok(0) | Err(_) => {}
        Ok(n) => tracing::info!(rows = n, "telegram: pruned what ended two days ago"),
    }
}
