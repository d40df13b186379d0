-- 0001: the usage ledger. The seed's `requests` table and `user_summary` view, extended with what
-- operators need to answer "who used the gateway, how often, at what cost, and what went wrong".

CREATE TABLE IF NOT EXISTS requests (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id           TEXT    NOT NULL,
  endpoint          TEXT    NOT NULL,
  status            INTEGER NOT NULL,
  latency_ms        INTEGER NOT NULL,
  tokens_est        INTEGER DEFAULT 0,
  ip_hash           TEXT,
  created_at        TEXT    DEFAULT (datetime('now')),
  -- extensions
  request_id        TEXT,
  method            TEXT,
  model             TEXT,
  node              TEXT,
  prompt_tokens     INTEGER,
  completion_tokens INTEGER,
  total_tokens      INTEGER,
  streamed          INTEGER NOT NULL DEFAULT 0,  -- 1 when the answer was an SSE stream
  tokens_reported   INTEGER NOT NULL DEFAULT 0,  -- 1: usage from the node; 0: estimated from bytes
  error_type        TEXT                         -- the gateway's error type, NULL on success
);

CREATE INDEX IF NOT EXISTS idx_user_id ON requests(user_id);
CREATE INDEX IF NOT EXISTS idx_created ON requests(created_at);
CREATE INDEX IF NOT EXISTS idx_request_id ON requests(request_id);

-- Live monitoring view
CREATE VIEW IF NOT EXISTS user_summary AS
SELECT
  user_id,
  COUNT(*)        AS total_requests,
  SUM(tokens_est) AS total_tokens,
  AVG(latency_ms) AS avg_latency,
  MAX(created_at) AS last_seen
FROM requests
GROUP BY user_id;
