-- 0011: the dashboard's sign-in sessions (`dashboard::session`).
--
-- A session is a random 256-bit token in an HttpOnly cookie; only its SHA-256 is stored, so a
-- read of the database signs nobody in. It stands for the gateway key it was opened with
-- (`key_hash`, the key's own SHA-256 as in `api_keys`): revoking that key ends the session.
-- Signing out deletes the row; expired rows are deleted as sessions are opened.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
  token_hash  TEXT    PRIMARY KEY,              -- hex SHA-256 of the cookie's token
  user_id     TEXT    NOT NULL,
  key_hash    TEXT    NOT NULL,                 -- hex SHA-256 of the gateway key signed in with
  created_ms  INTEGER NOT NULL,
  expires_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_dashboard_sessions_expiry ON dashboard_sessions(expires_ms);
