//! The bot at work: what the webhook hands over, and the background service that answers.
//!
//! `Bot` is shared by the webhook handler and the service. The webhook calls `accept`, which
//! parses the update and commits it to the inbox before the 200, then wakes the service. The
//! service (`BotService`) runs two loops:
//!
//! - **inbox**: claims updates one chat at a time in `update_id` order and lets `conversation`
//!   decide each one: pair, answer a command, or start a run of the tenant. Replies to commands
//!   go to the outbox (reply id `update:<update_id>`); a run's answer comes later.
//! - **outbox** (`sender`): answers the runs chats wait for once they end, shows "typing…"
//!   meanwhile, sends the outbox's parts in order at the pacer's rate, retries a 429 after its
//!   `retry_after`, and prunes what is old.
//!
//! The settings are read from the live config at each step, so a reload that adds, changes or
//! removes `telegram:` takes effect without a restart. The token and the webhook secret are read
//! from the environment variables the config names; neither is ever logged.
//!
//! Not for: SQL (`store`), texts and decisions (`conversation`), the Bot API call (`bot_api`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Notify;
use zeroize::Zeroizing;

use super::bot_api::{BotApi, BotToken};
use super::pairing::AttemptLimiter;
use super::reply::Pacer;
use super::store;
use super::update::{Update, UpdateError};
use crate::api_error::ApiError;
use crate::billing::Billing;
use crate::clock::SharedClock;
use crate::config::telegram::Telegram;
use crate::ledger::connection::SharedConnection;
use crate::metrics::Metrics;
use crate::runs::RunService;
use crate::skills::cache::Inventories;
use crate::state::LiveSnapshot;

/// How long a claimed update is the worker's before another may claim it.
pub const INBOX_LEASE: Duration = Duration::from_secs(60);
/// How often the loops look for work nobody woke them for (a reload, another process).
const POLL: Duration = Duration::from_millis(500);
/// Updates one round of the inbox loop handles before it looks at shutdown again.
const INBOX_ROUND: usize = 50;

/// What the webhook did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Committed to the inbox.
    Stored,
    /// Its `update_id` was there already: a redelivery, ignored.
    Duplicate,
    /// Not a message (an edit, a reaction…): nothing to do.
    Ignored,
}

impl Accepted {
    pub fn as_str(self) -> &'static str {
        match self {
            Accepted::Stored => "accepted",
            Accepted::Duplicate => "duplicate",
            Accepted::Ignored => "ignored",
        }
    }
}

/// Why the webhook refused an update.
#[derive(Debug)]
pub enum Refused {
    Invalid(UpdateError),
    Storage(ApiError),
}

/// The bot's shared state.
pub struct Bot {
    pub(super) live: LiveSnapshot,
    pub(super) clock: SharedClock,
    db: Arc<SharedConnection>,
    pub(super) runs: Arc<RunService>,
    pub(super) billing: Arc<Billing>,
    pub(super) skills: Arc<Inventories>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) pacer: Pacer,
    pub(super) limiter: AttemptLimiter,
    inbox: Notify,
    outbox: Notify,
    /// The Bot API client for the settings it was made with.
    api: Mutex<Option<(ApiSettings, Arc<BotApi>)>>,
    /// Said once: the token's variable is empty, so nothing can be sent.
    warned_no_token: AtomicBool,
}

#[derive(Clone, PartialEq, Eq)]
struct ApiSettings {
    api_base: String,
    token_env: String,
}

impl Bot {
    pub fn new(
        live: LiveSnapshot,
        clock: SharedClock,
        database: &std::path::Path,
        runs: Arc<RunService>,
        billing: Arc<Billing>,
        skills: Arc<Inventories>,
        metrics: Arc<Metrics>,
    ) -> Bot {
        Bot {
            live,
            pacer: Pacer::new(clock.clone()),
            limiter: AttemptLimiter::new(clock.clone()),
            clock,
            db: Arc::new(SharedConnection::new(database)),
            runs,
            billing,
            skills,
            metrics,
            inbox: Notify::new(),
            outbox: Notify::new(),
            api: Mutex::new(None),
            warned_no_token: AtomicBool::new(false),
        }
    }

    /// The bot's settings now; None when the config has no `telegram:`.
    pub fn settings(&self) -> Option<Telegram> {
        self.live.load().config.telegram.clone()
    }

    /// The webhook secret from the environment variable the settings name; None when unset.
    pub fn webhook_secret(settings: &Telegram) -> Option<Zeroizing<String>> {
        std::env::var(&settings.webhook_secret_env)
            .ok()
            .filter(|s| !s.is_empty())
            .map(Zeroizing::new)
    }

    /// The webhook's work after the secret matched: parse, commit, wake the worker.
    pub async fn accept(&self, body: &[u8]) -> Result<Accepted, Refused> {
        let update = Update::parse(body).map_err(Refused::Invalid)?;
        let Some(chat_id) = update.chat_id() else {
            return Ok(Accepted::Ignored);
        };
        let body = String::from_utf8_lossy(body).into_owned();
        let (update_id, now) = (update.update_id, self.clock.now_ms());
        let stored = self
            .with_db("telegram inbox", move |conn| {
                store::enqueue(conn, update_id, chat_id, &body, now)
            })
            .await
            .map_err(Refused::Storage)?;
        if !stored {
            return Ok(Accepted::Duplicate);
        }
        self.inbox.notify_one();
        Ok(Accepted::Stored)
    }

    /// Runs blocking SQL with the bot's connection.
    pub(super) async fn with_db<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.db.clone();
        crate::local_http::blocking(context, move || {
            db.with(|conn| work(conn).map_err(|e| e.to_string()))
        })
        .await
    }

    /// Tells the sender there is something to send.
    pub(super) fn wake_sender(&self) {
        self.outbox.notify_one();
    }

    /// The Bot API client for the current settings; None (said once in the log) while the
    /// token's variable is empty.
    pub(super) fn api(&self, settings: &Telegram) -> Option<Arc<BotApi>> {
        let wanted = ApiSettings {
            api_base: settings.api_base.clone(),
            token_env: settings.bot_token_env.clone(),
        };
        let mut slot = self.api.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made_with, api)) = slot.as_ref() {
            if *made_with == wanted {
                return Some(api.clone());
            }
        }
        let token = std::env::var(&wanted.token_env)
            .ok()
            .and_then(|t| BotToken::new(t).ok());
        let Some(token) = token else {
            if !self.warned_no_token.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "telegram: the environment variable {} holds no bot token: the bot cannot \
                     answer until it is set (then restart)",
                    wanted.token_env
                );
            }
            return None;
        };
        match BotApi::new(&wanted.api_base, token) {
            Ok(api) => {
                let api = Arc::new(api);
                *slot = Some((wanted, api.clone()));
                Some(api)
            }
            Err(e) => {
                tracing::error!("telegram: {e}");
                None
            }
        }
    }
}

/// The background service: the inbox loop and the sender loop.
pub struct BotService {
    pub bot: Arc<Bot>,
}

#[async_trait]
impl BackgroundService for BotService {
    async fn start(&self, shutdown: ShutdownWatch) {
        tokio::join!(
            inbox_loop(&self.bot, shutdown.clone()),
            super::sender::run(&self.bot, shutdown),
        );
    }
}

async fn inbox_loop(bot: &Bot, mut shutdown: ShutdownWatch) {
    loop {
        if let Some(settings) = bot.settings() {
            for _ in 0..INBOX_ROUND {
                let now = bot.clock.now_ms();
                let claimed = bot
                    .with_db("telegram inbox", move |conn| {
                        store::claim(conn, now, INBOX_LEASE)
                    })
                    .await;
                match claimed {
                    Ok(Some(update)) => super::conversation::process(bot, &settings, update).await,
                    Ok(None) | Err(_) => break,
                }
            }
        }
        tokio::select! {
            _ = bot.inbox.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// Waits for the sender's next reason to look: woken, `wait` passed (capped at the poll
/// interval), or shutdown (true).
pub(super) async fn sender_pause(
    bot: &Bot,
    wait: Option<Duration>,
    shutdown: &mut ShutdownWatch,
) -> bool {
    let wait = wait.map_or(POLL, |w| w.min(POLL));
    tokio::select! {
        _ = bot.outbox.notified() => false,
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.changed() => true,
    }
}
