-- 0003: the daily usage rollup that retention folds old `requests` rows into.
--
-- When a retention is configured, the ledger writer moves rows older than the cut-off into one row
-- per (UTC day, user) here and deletes them, in the same transaction, so every request is counted
-- exactly once: either as a raw row in `requests` or inside a `usage_daily` row. Reads merge both
-- (see src/ledger/queries.rs). Rolling more rows into an existing day adds to its counters.

CREATE TABLE IF NOT EXISTS usage_daily (
  day               TEXT    NOT NULL,            -- 'YYYY-MM-DD', UTC date of created_at
  user_id           TEXT    NOT NULL,
  requests          INTEGER NOT NULL DEFAULT 0,
  errors            INTEGER NOT NULL DEFAULT 0,  -- status >= 400, or 0 (client left before any response)
  prompt_tokens     INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  total_tokens      INTEGER NOT NULL DEFAULT 0,  -- total_tokens when reported, else tokens_est
  latency_ms_sum    INTEGER NOT NULL DEFAULT 0,
  last_seen         TEXT    NOT NULL,            -- latest created_at folded into this row
  PRIMARY KEY (day, user_id)
) WITHOUT ROWID;
