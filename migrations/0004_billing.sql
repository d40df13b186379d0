-- 0004: Stripe subscriptions, processed webhook events, and monthly request counts.
--
-- `stripe_subscriptions` holds the newest known state of each Stripe subscription, guarded by the
-- `created` time of the event that set it (Stripe delivers out of order: an older event never
-- overwrites a newer state). `stripe_events` records each processed event id in the same
-- transaction as its effect, so a redelivery changes nothing. `monthly_usage` persists the
-- in-memory quota counters (UTC calendar months, 'YYYY-MM').

CREATE TABLE IF NOT EXISTS stripe_subscriptions (
  subscription_id  TEXT    PRIMARY KEY,   -- sub_…, or the checkout session id for one-off payments
  user_id          TEXT,                  -- from checkout's client_reference_id
  customer_id      TEXT,
  tier             TEXT,
  status           TEXT    NOT NULL,      -- active, trialing, past_due, canceled, unpaid, …
  state_created    INTEGER NOT NULL,      -- `created` (unix s) of the event that set tier/status
  past_due_since   INTEGER,               -- unix s of the failed payment that made it past_due
  updated_at       TEXT    NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS idx_stripe_subscriptions_user ON stripe_subscriptions(user_id);
CREATE INDEX IF NOT EXISTS idx_stripe_subscriptions_customer ON stripe_subscriptions(customer_id);

CREATE TABLE IF NOT EXISTS stripe_events (
  event_id         TEXT    PRIMARY KEY,
  type             TEXT    NOT NULL,
  created          INTEGER NOT NULL,
  outcome          TEXT    NOT NULL,      -- applied, stale, ignored
  processed_at     TEXT    NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS monthly_usage (
  user_id          TEXT    NOT NULL,
  month            TEXT    NOT NULL,      -- 'YYYY-MM', UTC
  requests         INTEGER NOT NULL,
  PRIMARY KEY (user_id, month)
);

INSERT OR IGNORE INTO change_counters (name, generation) VALUES ('subscriptions', 0);
CREATE TRIGGER IF NOT EXISTS stripe_subscriptions_inserted AFTER INSERT ON stripe_subscriptions BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'subscriptions';
END;
CREATE TRIGGER IF NOT EXISTS stripe_subscriptions_changed AFTER UPDATE ON stripe_subscriptions BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'subscriptions';
END;
