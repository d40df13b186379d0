//! The shared Telegram bot: one bot for every tenant, which pairs a Telegram user with a tenant
//! once and then carries their messages to the tenant's agent and the answers back.
//!
//! | module | what |
//! |---|---|
//! | `bot` | the state the webhook and the background service share; the service's loops |
//! | `conversation` | one update decided: pairing, commands, a message become a run |
//! | `sender` | ended runs answered, "typing…", the outbox sent in order and paced |
//! | `update` | the webhook's JSON parsed into bounded types; a message's text as a `Command` |
//! | `pairing` | one-time codes (made, hashed, parsed, deep-linked) and the wrong-code limiter |
//! | `reply` | answers split for Telegram (UTF-16), plain text, the pacer, the 429 rule |
//! | `bot_api` | the Bot API client; the token that never prints |
//! | `store` | inbox, pairings, codes, awaited runs and outbox in SQLite (migrations 9, 10) |
//! | `fake` | a fake Bot API server for tests, which records calls and can answer 429 |
//!
//! **The story, end to end:**
//!
//! - Webhook (`POST /api/webhooks/telegram`, the sidecar): the secret header compared in
//!   constant time → `Bot::accept`: `Update::parse` → `store::enqueue` (a redelivered
//!   `update_id` is ignored) → 200. Nothing slow before the 200.
//! - Inbox loop (`bot`): `store::claim` (one chat at a time, in order) →
//!   `conversation::process`: pairing (`AttemptLimiter`, `store::redeem_code`), a command, or
//!   `runs::submit` with the key `telegram-<update_id>` and `store::await_run` → `store::complete`
//!   (or `retry_later` when the database or the queue failed).
//! - Sender loop (`sender`): ended runs' answers → `reply::split` → `store::answer_run`; every
//!   reply's unsent parts → `Pacer::try_acquire` → `BotApi::send_message` → `store::mark_sent`;
//!   a 429 waits its `retry_after` (`reply::retry_delay`, `Pacer::hold`), a refusal for good is
//!   `store::drop_part`.
//! - Owner (`/api/telegram/…`): `PairingCode::generate()` → `store::create_code` → the code and
//!   `code.deep_link(bot)`; `store::pairings_of_tenant`, `store::delete_pairing`.
//! - Operator (`exoclaw telegram …`): `BotApi::set_webhook`, `delete_webhook`,
//!   `get_webhook_info`, `get_me`.

pub mod bot;
pub mod bot_api;
pub mod conversation;
pub mod fake;
pub mod pairing;
pub mod reply;
pub mod sender;
pub mod store;
pub mod update;
