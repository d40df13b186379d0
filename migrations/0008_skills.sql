-- 0008: runtime skills (`skills::store`): each tenant's skills policy, and which tenants have had
-- their first runtime bootstrap.
--
-- A policy names only the skills a tenant has set; every other skill has the defaults
-- (`skills::policy::DEFAULT_FLAGS`: allowed, not enabled, not hidden). A tenant gets the `basic`
-- pack on its first runtime bootstrap only when it has no policy yet; `skill_bootstraps` records
-- that the rule ran, so it runs once per tenant even if the policy is emptied later.
--
-- Tenant ids are plain TEXT, with no foreign key to `tenants` (like `runs`): a deleted tenant
-- answers 404 before its policy is read. Times are Unix ms.

CREATE TABLE IF NOT EXISTS skill_policies (
  tenant_id  TEXT    NOT NULL,
  name       TEXT    NOT NULL,                           -- the skill's name as OpenClaw lists it
  allowed    INTEGER NOT NULL CHECK (allowed IN (0, 1)), -- 0: disallowed for the tenant
  enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)), -- 0: installed and visible, but disabled
  hidden     INTEGER NOT NULL CHECK (hidden IN (0, 1)),  -- 1: left out unless includeHidden
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS skill_bootstraps (
  tenant_id       TEXT    PRIMARY KEY,
  pack            TEXT,                                  -- the pack applied; NULL: none was
  bootstrapped_ms INTEGER NOT NULL
);
