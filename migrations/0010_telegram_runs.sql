-- 0010: the runs a Telegram chat started, until their answer is in the outbox
-- (`telegram::store`, the conversation section).
--
-- A paired user's message becomes a run (idempotency key `telegram-<update_id>`), and a row here
-- says which chat waits for it. When the run ends, its answer is planned into `telegram_outbox`
-- and `answered_ms` set in the same transaction: a restart between the two plans it again, and
-- the outbox keeps the first plan. Answered rows are pruned with the inbox.
CREATE TABLE IF NOT EXISTS telegram_runs (
  run_id           TEXT    PRIMARY KEY,
  update_id        INTEGER NOT NULL,            -- the message that started it
  chat_id          INTEGER NOT NULL,            -- where the answer goes
  telegram_user_id INTEGER NOT NULL,
  created_ms       INTEGER NOT NULL,
  answered_ms      INTEGER                      -- NULL while the chat waits
);
CREATE INDEX IF NOT EXISTS idx_telegram_runs_waiting
  ON telegram_runs(created_ms) WHERE answered_ms IS NULL;
CREATE INDEX IF NOT EXISTS idx_telegram_runs_answered
  ON telegram_runs(answered_ms) WHERE answered_ms IS NOT NULL;
