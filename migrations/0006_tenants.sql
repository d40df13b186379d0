-- 0006: the agent service's tenants, and which agent run a ledger row belongs to.
--
-- A tenant is a project owned by one gateway user. Deleting one sets `deleted_ms` (its runs stay
-- in the ledger and the run history; its name and id answer 404 from then on). `pool` is an
-- operator's pin: the pool (for example one dedicated node) the tenant's runs go to instead of
-- its owner's tier's pool.

CREATE TABLE IF NOT EXISTS tenants (
  id          TEXT    PRIMARY KEY,          -- "ten_" + random
  owner       TEXT    NOT NULL,             -- the gateway user
  name        TEXT    NOT NULL,
  pool        TEXT,                         -- operator's pin; NULL: the owner's tier's pool
  created_ms  INTEGER NOT NULL,
  updated_ms  INTEGER NOT NULL,
  deleted_ms  INTEGER                       -- NULL while the tenant exists
);
CREATE INDEX IF NOT EXISTS idx_tenants_owner ON tenants(owner, deleted_ms);

-- A run worker's node calls are ledger rows like any client's, tagged with their run.
ALTER TABLE requests ADD COLUMN run_id TEXT;
CREATE INDEX IF NOT EXISTS idx_requests_run ON requests(run_id) WHERE run_id IS NOT NULL;
