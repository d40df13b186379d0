-- 0009: the shared Telegram bot (`telegram::store`): the durable inbox of updates, pairings of
-- Telegram users with tenants and the codes that make them, and the outbox of replies.
--
-- Telegram ids (users, chats, updates, messages) are 64-bit integers. Tenant ids are plain TEXT
-- with no foreign key, as in `runs`. Times are Unix ms.

-- Every update accepted by the webhook, committed before it is answered 200. `update_id` is
-- Telegram's, so a redelivery is an ignored insert. A chat's updates are processed one at a
-- time in `update_id` order: a worker claims the oldest unfinished update of a chat whose head
-- is not running under a live lease. A claim that is never completed (a crash) expires and the
-- update is claimed again: at least once. `attempts` is the claim's fencing token.
CREATE TABLE IF NOT EXISTS telegram_inbox (
  update_id        INTEGER PRIMARY KEY,
  chat_id          INTEGER NOT NULL,
  body             TEXT    NOT NULL,            -- the update's JSON, as received
  received_ms      INTEGER NOT NULL,
  state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN
                     ('pending', 'processing', 'done', 'dead')),
  available_ms     INTEGER NOT NULL,            -- pending: may be claimed from then on
  attempts         INTEGER NOT NULL DEFAULT 0,  -- claims so far
  lease_expires_ms INTEGER,                     -- processing: the claim lapses then
  finished_ms      INTEGER,                     -- done or dead
  error            TEXT                         -- the latest failed attempt's error
);
-- Unfinished updates per chat, in order: each chat's head is its first row.
CREATE INDEX IF NOT EXISTS idx_telegram_inbox_open
  ON telegram_inbox(chat_id, update_id) WHERE state IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS idx_telegram_inbox_finished
  ON telegram_inbox(finished_ms) WHERE finished_ms IS NOT NULL;

-- A Telegram user paired with a tenant: one tenant per user at a time.
CREATE TABLE IF NOT EXISTS telegram_pairings (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: `DELETE …/pairings/{id}`
  telegram_user_id INTEGER NOT NULL UNIQUE,
  tenant_id        TEXT    NOT NULL,
  owner            TEXT    NOT NULL,            -- the tenant's owner, whose runs these become
  chat_id          INTEGER NOT NULL,            -- the private chat the bot answers in
  username         TEXT,                        -- as Telegram showed them at pairing
  first_name       TEXT    NOT NULL,
  created_ms       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_telegram_pairings_tenant ON telegram_pairings(tenant_id, id);

-- One-time pairing codes, by their SHA-256 only. Pending: unused and not expired.
CREATE TABLE IF NOT EXISTS telegram_pairing_codes (
  code_hash   TEXT    PRIMARY KEY,              -- hex SHA-256 of the code
  tenant_id   TEXT    NOT NULL,
  owner       TEXT    NOT NULL,
  created_ms  INTEGER NOT NULL,
  expires_ms  INTEGER NOT NULL,
  used_ms     INTEGER,                          -- NULL until redeemed
  used_by     INTEGER                           -- the Telegram user who redeemed it
);
CREATE INDEX IF NOT EXISTS idx_telegram_pairing_codes_tenant
  ON telegram_pairing_codes(tenant_id, expires_ms) WHERE used_ms IS NULL;

-- Replies, one row per message part, written before the part is sent and marked sent after the
-- Bot API accepted it: a retried run or a restarted worker sends only parts not yet marked. A
-- part Telegram refuses for good (the user blocked the bot) is dropped, not retried forever.
-- `reply_id` is the run id of an agent's answer, or `update:<update_id>` for a command's.
CREATE TABLE IF NOT EXISTS telegram_outbox (
  reply_id    TEXT    NOT NULL,
  part        INTEGER NOT NULL,                 -- 0, 1, … in sending order
  chat_id     INTEGER NOT NULL,
  text        TEXT    NOT NULL,
  created_ms  INTEGER NOT NULL,
  sent_ms     INTEGER,                          -- NULL until Telegram accepted it
  message_id  INTEGER,                          -- Telegram's id of the sent message
  dropped_ms  INTEGER,                          -- set when Telegram refused it for good
  error       TEXT,                             -- why it was dropped
  PRIMARY KEY (reply_id, part)
);
CREATE INDEX IF NOT EXISTS idx_telegram_outbox_unsent
  ON telegram_outbox(created_ms, reply_id, part) WHERE sent_ms IS NULL AND dropped_ms IS NULL;
