-- 0002: gateway keys and Codex OAuth tokens.
--
-- Keys are stored only as SHA-256 hashes of the full key (keys carry 192 random bits, so a hash
-- cannot be reversed by enumeration). Codex tokens are stored encrypted (ChaCha20-Poly1305, the
-- user id as associated data, so a row moved to another user fails to decrypt).
-- `change_counters` lets a running gateway notice, with one cheap query, that another process
-- (the `exoclaw keys` command) changed keys, and reload them from memory within a second.

CREATE TABLE IF NOT EXISTS api_keys (
  id           TEXT    PRIMARY KEY,          -- key_<hex>, safe to show and log
  user_id      TEXT    NOT NULL,
  tier         TEXT,                         -- NULL: the user's own tier (default_tier)
  key_hash     TEXT    NOT NULL UNIQUE,      -- hex SHA-256 of the whole key
  key_prefix   TEXT    NOT NULL,             -- first characters, to recognise a key in lists
  created_at   TEXT    NOT NULL DEFAULT (datetime('now')),
  last_used_at TEXT,
  revoked_at   TEXT
);
CREATE INDEX IF NOT EXISTS idx_api_keys_user ON api_keys(user_id);

CREATE TABLE IF NOT EXISTS codex_tokens (
  user_id      TEXT    PRIMARY KEY,
  nonce        BLOB    NOT NULL,
  ciphertext   BLOB    NOT NULL,
  updated_at   TEXT    NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS change_counters (
  name         TEXT    PRIMARY KEY,
  generation   INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO change_counters (name, generation) VALUES ('keys', 0), ('codex_tokens', 0);

CREATE TRIGGER IF NOT EXISTS api_keys_inserted AFTER INSERT ON api_keys BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'keys';
END;
CREATE TRIGGER IF NOT EXISTS api_keys_changed AFTER UPDATE OF user_id, tier, key_hash, revoked_at ON api_keys BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'keys';
END;
CREATE TRIGGER IF NOT EXISTS api_keys_deleted AFTER DELETE ON api_keys BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'keys';
END;
CREATE TRIGGER IF NOT EXISTS codex_tokens_inserted AFTER INSERT ON codex_tokens BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'codex_tokens';
END;
CREATE TRIGGER IF NOT EXISTS codex_tokens_changed AFTER UPDATE ON codex_tokens BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'codex_tokens';
END;
CREATE TRIGGER IF NOT EXISTS codex_tokens_deleted AFTER DELETE ON codex_tokens BEGIN
  UPDATE change_counters SET generation = generation + 1 WHERE name = 'codex_tokens';
END;
