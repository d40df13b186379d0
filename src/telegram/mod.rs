//! The shared Telegram bot (issue 17), its domain core: one bot for every tenant, which pairs a
//! Telegram user with a tenant once and then carries their messages to the tenant's agent and
//! the answers back. It has no routes, reads no config and starts no task: the webhook handler,
//! the worker and the `exoclaw telegram` commands call it.
//!
//! | module | what |
//! |---|---|
//! | `update` | the webhook's JSON parsed into bounded types; a message's text as a `Command` |
//! | `pairing` | one-time codes (made, hashed, parsed, deep-linked) and the wrong-code limiter |
//! | `reply` | answers split for Telegram (UTF-16), plain text, the pacer, the 429 rule |
//! | `bot_api` | the Bot API client; the token that never prints |
//! | `store` | inbox, pairings, codes and outbox in SQLite (migration 9) |
//! | `fake` | a fake Bot API server for tests, which records calls and can answer 429 |
//!
//! **The story each caller tells:**
//!
//! - Webhook (`POST /api/webhooks/telegram`), after the secret header matched in constant time:
//!   `Update::parse(body)?` → `store::enqueue(conn, update_id, chat_id, body, now)` (updates with
//!   no message are answered 200 and dropped) → 200. Nothing slow before the 200.
//! - Worker, in a loop: `store::claim(conn, now, lease)` → `Update::parse` →
//!   `Command::classify(text, bot)`. Unpaired: `Start { payload }` / `Code` →
//!   `AttemptLimiter::check` → `store::redeem_code(conn, &code.hash(), &redeemer, now)` →
//!   `failed`/`succeeded`; anything else gets how-to-pair instructions. Paired
//!   (`store::pairing_of_user`): `/skills`, `/status`, `/unpair` (`store::unpair_user`), or a
//!   run of the tenant. Then `store::complete` (or `retry_later`).
//! - Replying: `reply::split(answer, MAX_MESSAGE_UTF16)` → `store::plan_reply(conn, run_id,
//!   chat, &parts, now)` → for each part: `Pacer::try_acquire` (wait what it says) →
//!   `BotApi::send_message` → `store::mark_sent`; on an error `reply::retry_delay` (a 429: its
//!   `retry_after`, and `Pacer::hold`), or `store::drop_part` when it is final.
//! - Owner: `PairingCode::generate()` → `store::create_code(conn, &code.hash(), tenant, owner,
//!   now)` → show `code` and `code.deep_link(bot)`; `store::pairings_of_tenant`,
//!   `store::delete_pairing`.
//! - Operator: `BotApi::set_webhook`, `delete_webhook`, `get_webhook_info`, `get_me`.

pub mod bot_api;
pub mod fake;
pub mod pairing;
pub mod reply;
pub mod store;
pub mod update;
