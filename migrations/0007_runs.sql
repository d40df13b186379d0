-- 0007: the durable run queue (`runs::queue::sqlite`): agent runs from enqueue to a final
-- state, and the bookkeeping that lets a claim take the next run without reading the queue.
--
-- A lane is (tenant_id, agent): its runs go one at a time, in `lane_pos` order. `run_lanes`
-- holds one row per lane ever used, rewritten by the queue in the same transaction as every
-- change to the lane's runs: its head (the first unfinished run, the only one that may run),
-- whether the head is running, and when the lane and its tenant were last served. A claim walks
-- `idx_run_lanes_ready`, which holds only lanes whose head is waiting, already in claim order
-- (priority, then the tenant served least recently): the first entry is usually the answer.
--
-- Tenant ids are plain TEXT, with no foreign key to `tenants`: a tenant's runs are its history.
-- Times are Unix ms. Indexes on `runs` are partial where only unfinished runs are looked up,
-- so they stay as small as the queue while finished runs pile up.

CREATE TABLE IF NOT EXISTS runs (
  seq              INTEGER PRIMARY KEY,        -- insertion order: the list cursor
  id               TEXT    NOT NULL UNIQUE,    -- "run_" + 26 base32 chars, chosen by the caller
  tenant_id        TEXT    NOT NULL,
  owner            TEXT    NOT NULL,           -- the gateway user who owns the tenant
  template         TEXT    NOT NULL,
  agent            TEXT    NOT NULL,           -- the OpenClaw agent: (tenant_id, agent) is the lane
  input            TEXT    NOT NULL,           -- the caller's input object, JSON text
  prompt           TEXT    NOT NULL,           -- the rendered instructions sent to the node
  idempotency_key  TEXT,
  priority         INTEGER NOT NULL,           -- the owner's tier priority: higher first
  max_attempts     INTEGER NOT NULL,
  timeout_ms       INTEGER NOT NULL,           -- per attempt
  byok             INTEGER NOT NULL,           -- 1: a provider key rides in memory (never here)
  pool             TEXT,                       -- the pinned runtime pool; NULL: the tier's
  tier             TEXT    NOT NULL,           -- the tier the run was accepted under
  session          TEXT,                       -- the OpenClaw sub-session; NULL: the run's own
  status           TEXT    NOT NULL CHECK (status IN
                     ('queued', 'running', 'succeeded', 'failed', 'canceled', 'dead')),
  attempts         INTEGER NOT NULL DEFAULT 0, -- claims that counted
  created_ms       INTEGER NOT NULL,
  started_ms       INTEGER,                    -- the first claim
  finished_ms      INTEGER,                    -- set in a final state only
  available_ms     INTEGER NOT NULL,           -- a queued run may be claimed from then on
  lane_pos         INTEGER NOT NULL,           -- order in the lane: a ticket at enqueue and retry
  lease_token      INTEGER,                    -- while running: the claim's fencing token
  lease_expires_ms INTEGER,                    -- while running
  error_code       TEXT,                       -- the latest failed attempt's error
  error_message    TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  pruned           INTEGER NOT NULL DEFAULT 0  -- 1: its artifacts were pruned
);
-- Idempotency keys are unique per tenant, forever (a key answers its run whatever its status).
CREATE UNIQUE INDEX IF NOT EXISTS idx_runs_idempotency
  ON runs(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_runs_owner_created ON runs(owner, created_ms);  -- run_owner_counts
CREATE INDEX IF NOT EXISTS idx_runs_owner ON runs(owner, seq);                 -- list
CREATE INDEX IF NOT EXISTS idx_runs_tenant ON runs(tenant_id, seq);            -- list
-- List by status; also finds the few running runs whose lease expired.
CREATE INDEX IF NOT EXISTS idx_runs_status ON runs(status, seq);
-- A lane's unfinished runs in order: its head is the first.
CREATE INDEX IF NOT EXISTS idx_runs_lane
  ON runs(tenant_id, agent, lane_pos) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS idx_runs_owner_running ON runs(owner) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS idx_runs_byok
  ON runs(seq) WHERE byok = 1 AND status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS idx_runs_unpruned
  ON runs(finished_ms) WHERE finished_ms IS NOT NULL AND pruned = 0;

CREATE TABLE IF NOT EXISTS run_lanes (
  tenant_id         TEXT    NOT NULL,
  agent             TEXT    NOT NULL,
  head_seq          INTEGER,                   -- runs.seq of the first unfinished run; NULL: none
  head_owner        TEXT,                      -- the head's owner, priority and availability
  head_priority     INTEGER NOT NULL DEFAULT 0,
  head_tier         TEXT,
  head_available_ms INTEGER NOT NULL DEFAULT 0,
  running           INTEGER NOT NULL DEFAULT 0, -- 1: the head is running
  tenant_served     INTEGER NOT NULL DEFAULT 0, -- the ticket of the tenant's latest claim; 0: never
  lane_served       INTEGER NOT NULL DEFAULT 0, -- the ticket of this lane's latest claim
  PRIMARY KEY (tenant_id, agent)
);
-- Lanes whose head waits, in claim order. A head still backing off is skipped by the claim.
CREATE INDEX IF NOT EXISTS idx_run_lanes_ready
  ON run_lanes(head_priority DESC, tenant_served, lane_served, head_seq)
  WHERE running = 0 AND head_seq IS NOT NULL;

-- One counter for what must only grow: fencing tokens, lane positions, "served" stamps.
CREATE TABLE IF NOT EXISTS run_tickets (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  last INTEGER NOT NULL
);
INSERT OR IGNORE INTO run_tickets (id, last) VALUES (1, 0);

-- Runs each owner created since a monthly limit's start (`since_ms`), so the limit check reads
-- one row instead of counting the month: counted from `runs` the first time a start is asked
-- for (an owner's earlier starts are dropped then), kept by triggers from then on. A run's owner
-- and created_ms never change.
CREATE TABLE IF NOT EXISTS run_owner_counts (
  owner    TEXT    NOT NULL,
  since_ms INTEGER NOT NULL,
  runs     INTEGER NOT NULL,
  PRIMARY KEY (owner, since_ms)
);
CREATE TRIGGER IF NOT EXISTS runs_owner_count_insert AFTER INSERT ON runs BEGIN
  UPDATE run_owner_counts SET runs = runs + 1
  WHERE owner = NEW.owner AND since_ms <= NEW.created_ms;
END;
CREATE TRIGGER IF NOT EXISTS runs_owner_count_delete AFTER DELETE ON runs BEGIN
  UPDATE run_owner_counts SET runs = runs - 1
  WHERE owner = OLD.owner AND since_ms <= OLD.created_ms;
END;

-- Runs per status for metrics, kept by triggers so no write path can forget it.
CREATE TABLE IF NOT EXISTS run_status_counts (
  status TEXT    PRIMARY KEY,
  runs   INTEGER NOT NULL
);
INSERT OR IGNORE INTO run_status_counts (status, runs) VALUES
  ('queued', 0), ('running', 0), ('succeeded', 0), ('failed', 0), ('canceled', 0), ('dead', 0);
CREATE TRIGGER IF NOT EXISTS runs_count_insert AFTER INSERT ON runs BEGIN
  UPDATE run_status_counts SET runs = runs + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER IF NOT EXISTS runs_count_update AFTER UPDATE OF status ON runs
  WHEN OLD.status <> NEW.status BEGIN
  UPDATE run_status_counts SET runs = runs - 1 WHERE status = OLD.status;
  UPDATE run_status_counts SET runs = runs + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER IF NOT EXISTS runs_count_delete AFTER DELETE ON runs BEGIN
  UPDATE run_status_counts SET runs = runs - 1 WHERE status = OLD.status;
END;
