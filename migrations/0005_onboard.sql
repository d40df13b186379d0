-- 0005: one-time download links for trainee kits (`exoclaw onboard`, `GET /onboard/<token>`).
--
-- A link's token (256 random bits) is stored only as its SHA-256 hash, so the table cannot be
-- turned back into working links. The kit ZIP itself is stored here, not as a path: the gateway
-- need not share a working directory with the command that built it. A kit holds its trainee's
-- gateway key in the clear, so `kit_zip` is cleared as soon as the link is used, expires (on
-- the next download attempt of any link) or is revoked: a key lives in plain text only while
-- its link can still be used.

CREATE TABLE IF NOT EXISTS onboard_links (
  token_hash   TEXT    PRIMARY KEY,          -- hex SHA-256 of the token
  user_id      TEXT    NOT NULL,
  key_id       TEXT    NOT NULL,             -- the api_keys row whose key the kit carries
  kit_zip      BLOB,                         -- NULL once used, expired or revoked
  created_ms   INTEGER NOT NULL,             -- Unix ms
  expires_ms   INTEGER NOT NULL,             -- Unix ms; the link answers 410 from then on
  used_ms      INTEGER,                      -- set once, by the one download that succeeded
  revoked_ms   INTEGER                       -- set by `exoclaw onboard revoke`
);
CREATE INDEX IF NOT EXISTS idx_onboard_links_user ON onboard_links(user_id);
