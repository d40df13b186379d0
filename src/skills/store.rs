//! The `skill_policies` and `skill_bootstraps` tables: every SQL statement about skills
//! policies, and nothing else.
//!
//! Not for: deciding what to write (`policy` computes the entries; `bootstrap` asks
//! `policy::first_bootstrap`), or who may read a tenant (callers check ownership with the
//! tenants' store first: every statement here takes a tenant id and touches that tenant only).
//!
//! Callers run these on a blocking thread with their own connection (`ledger::connection`).
//! Writes of several rows go through `write_transaction`, so concurrent edits wait for each
//! other instead of failing, and a tenant's rule "`basic` only when it has no policy yet" is
//! checked and applied under one lock.

use rusqlite::{params, Connection, OptionalExtension};

use super::policy::{first_bootstrap, Bootstrap, Packs, Policy, SkillPolicy, BOOTSTRAP_PACK};
use crate::ledger::connection::write_transaction;

/// Most entries one tenant's policy may hold: as many as an inventory may list.
pub const MAX_POLICY_ENTRIES: usize = super::inventory::MAX_SKILLS;

/// A tenant's policy: its explicit entries.
pub fn load(conn: &Connection, tenant_id: &str) -> rusqlite::Result<Policy> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, allowed, enabled, hidden FROM skill_policies WHERE tenant_id = ?1",
    )?;
    let rows = stmt.query_map(params![tenant_id], |row| {
        Ok(SkillPolicy {
            name: row.get(0)?,
            allowed: row.get(1)?,
            enabled: row.get(2)?,
            hidden: row.get(3)?,
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map(Policy::from_entries)
}

/// What `save` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The entries are written.
    Written(usize),
    /// Nothing was written: the tenant's policy would hold more than `max` entries.
    OverLimit { max: usize },
}

/// Writes `entries` (a `PATCH`, a pack, a remediation) over the tenant's policy, all or none.
pub fn save(
    conn: &mut Connection,
    tenant_id: &str,
    entries: &[SkillPolicy],
    now_ms: u64,
) -> rusqlite::Result<Saved> {
    let tx = write_transaction(conn)?;
    upsert(&tx, tenant_id, entries, now_ms)?;
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM skill_policies WHERE tenant_id = ?1",
        params![tenant_id],
        |r| r.get(0),
    )?;
    if count as usize > MAX_POLICY_ENTRIES {
        return Ok(Saved::OverLimit {
            max: MAX_POLICY_ENTRIES,
        });
    }
    tx.commit()?;
    Ok(Saved::Written(entries.len()))
}

fn upsert(
    conn: &Connection,
    tenant_id: &str,
    entries: &[SkillPolicy],
    now_ms: u64,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO skill_policies (tenant_id, name, allowed, enabled, hidden, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tenant_id, name) DO UPDATE SET
           allowed = excluded.allowed, enabled = excluded.enabled, hidden = excluded.hidden,
           updated_ms = excluded.updated_ms",
    )?;
    for SkillPolicy {
        name,
        allowed,
        enabled,
        hidden,
    } in entries
    {
        stmt.execute(params![
            tenant_id,
            name,
            allowed,
            enabled,
            hidden,
            now_ms as i64
        ])?;
    }
    Ok(())
}

/// Whether the tenant had its first runtime bootstrap.
pub fn is_bootstrapped(conn: &Connection, tenant_id: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM skill_bootstraps WHERE tenant_id = ?1)",
        params![tenant_id],
        |r| r.get(0),
    )
}

/// When the tenant was bootstrapped and with which pack (None: it had a policy already, or
/// operators define no `basic`); None when it was not.
pub fn bootstrapped(
    conn: &Connection,
    tenant_id: &str,
) -> rusqlite::Result<Option<(Option<String>, u64)>> {
    conn.query_row(
        "SELECT pack, bootstrapped_ms FROM skill_bootstraps WHERE tenant_id = ?1",
        params![tenant_id],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
    )
    .optional()
}

/// The first runtime bootstrap of a tenant: applies `policy::first_bootstrap` (the `basic` pack
/// for a tenant with no policy yet) and marks the tenant, in one transaction. Safe to call on
/// every bootstrap: after the first, it answers `AlreadyBootstrapped` from a plain read, without
/// taking the write lock (every look at a tenant's skills calls it).
pub fn bootstrap(
    conn: &mut Connection,
    tenant_id: &str,
    packs: &Packs,
    now_ms: u64,
) -> rusqlite::Result<Bootstrap> {
    if is_bootstrapped(conn, tenant_id)? {
        return Ok(Bootstrap::AlreadyBootstrapped);
    }
    // Checked again under the write lock: two first looks at once apply it once.
    let tx = write_transaction(conn)?;
    let decision = first_bootstrap(
        &load(&tx, tenant_id)?,
        is_bootstrapped(&tx, tenant_id)?,
        packs,
    );
    let pack = match &decision {
        Bootstrap::AlreadyBootstrapped => return Ok(decision),
        Bootstrap::HasPolicy => None,
        Bootstrap::Apply(entries) => {
            upsert(&tx, tenant_id, entries, now_ms)?;
            packs.contains_key(BOOTSTRAP_PACK).then_some(BOOTSTRAP_PACK)
        }
    };
    tx.execute(
        "INSERT INTO skill_bootstraps (tenant_id, pack, bootstrapped_ms) VALUES (?1, ?2, ?3)",
        params![tenant_id, pack, now_ms as i64],
    )?;
    tx.commit()?;
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skills::policy::{apply_pack, patch, Flags, SkillPolicyPatch, DEFAULT_FLAGS};

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skills.db");
        crate::ledger::open(&path).unwrap();
        let conn = crate::ledger::connection::connect(&path).unwrap();
        (dir, conn)
    }

    fn packs() -> Packs {
        Packs::from([
            (
                "basic".into(),
                vec!["weather".into(), "web-search".into(), "summarize".into()],
            ),
            ("ops".into(), vec!["github".into(), "uptime".into()]),
        ])
    }

    fn entry(name: &str, allowed: bool, enabled: bool, hidden: bool) -> SkillPolicy {
        SkillPolicy::new(
            name,
            Flags {
                allowed,
                enabled,
                hidden,
            },
        )
    }

    #[test]
    fn saved_entries_load_back_and_overwrite_by_name() {
        let (_dir, mut conn) = db();
        assert!(load(&conn, "ten_a").unwrap().is_empty());
        let first = [
            entry("weather", true, true, false),
            entry("github", false, false, true),
        ];
        assert_eq!(
            save(&mut conn, "ten_a", &first, 1).unwrap(),
            Saved::Written(2)
        );
        assert_eq!(
            load(&conn, "ten_a").unwrap(),
            Policy::from_entries(first.clone())
        );

        save(&mut conn, "ten_a", &[entry("github", true, true, false)], 2).unwrap();
        let policy = load(&conn, "ten_a").unwrap();
        assert_eq!(policy.len(), 2);
        assert_eq!(
            policy.flags("github"),
            entry("github", true, true, false).flags()
        );
        let updated: i64 = conn
            .query_row(
                "SELECT updated_ms FROM skill_policies WHERE tenant_id = 'ten_a' AND name = 'github'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(updated, 2);
    }

    #[test]
    fn tenants_never_see_each_others_policy() {
        let (_dir, mut conn) = db();
        save(
            &mut conn,
            "ten_a",
            &[entry("weather", true, true, false)],
            1,
        )
        .unwrap();
        save(
            &mut conn,
            "ten_b",
            &[entry("weather", false, false, true)],
            1,
        )
        .unwrap();
        assert!(load(&conn, "ten_a").unwrap().flags("weather").enabled);
        assert!(!load(&conn, "ten_b").unwrap().flags("weather").allowed);
        assert!(load(&conn, "ten_c").unwrap().is_empty());
        assert_eq!(
            load(&conn, "ten_c").unwrap().flags("weather"),
            DEFAULT_FLAGS
        );
        // Bootstrapping one tenant marks that tenant only.
        bootstrap(&mut conn, "ten_c", &packs(), 2).unwrap();
        assert!(is_bootstrapped(&conn, "ten_c").unwrap());
        assert!(!is_bootstrapped(&conn, "ten_a").unwrap());
    }

    #[test]
    fn a_tenants_policy_is_bounded_and_an_oversized_save_writes_nothing() {
        let (_dir, mut conn) = db();
        let many: Vec<SkillPolicy> = (0..MAX_POLICY_ENTRIES)
            .map(|i| entry(&format!("s{i}"), true, true, false))
            .collect();
        assert_eq!(
            save(&mut conn, "ten_a", &many, 1).unwrap(),
            Saved::Written(MAX_POLICY_ENTRIES)
        );
        let one_more = [
            entry("extra", true, true, false),
            entry("s0", false, false, false),
        ];
        assert_eq!(
            save(&mut conn, "ten_a", &one_more, 2).unwrap(),
            Saved::OverLimit {
                max: MAX_POLICY_ENTRIES
            }
        );
        let policy = load(&conn, "ten_a").unwrap();
        assert_eq!(policy.len(), MAX_POLICY_ENTRIES);
        assert!(policy.flags("s0").allowed, "rolled back whole");
        // Rewriting existing entries is fine at the limit.
        assert_eq!(
            save(&mut conn, "ten_a", &one_more[1..], 3).unwrap(),
            Saved::Written(1)
        );
    }

    #[test]
    fn the_first_bootstrap_gives_basic_once_and_only_to_a_tenant_without_policy() {
        let (_dir, mut conn) = db();
        let Bootstrap::Apply(entries) = bootstrap(&mut conn, "ten_new", &packs(), 5).unwrap()
        else {
            panic!("a new tenant gets basic");
        };
        assert_eq!(entries.len(), 3);
        let policy = load(&conn, "ten_new").unwrap();
        assert!(["weather", "web-search", "summarize"]
            .iter()
            .all(|s| policy.flags(s).enabled));
        assert_eq!(
            bootstrapped(&conn, "ten_new").unwrap(),
            Some((Some("basic".into()), 5))
        );

        // Once: even with its policy changed back, a second bootstrap writes nothing.
        save(
            &mut conn,
            "ten_new",
            &[entry("weather", true, false, true)],
            6,
        )
        .unwrap();
        assert_eq!(
            bootstrap(&mut conn, "ten_new", &packs(), 7).unwrap(),
            Bootstrap::AlreadyBootstrapped
        );
        assert!(!load(&conn, "ten_new").unwrap().flags("weather").enabled);

        // A tenant edited before its runtime came up keeps its own policy.
        save(
            &mut conn,
            "ten_edited",
            &[entry("github", true, true, false)],
            8,
        )
        .unwrap();
        assert_eq!(
            bootstrap(&mut conn, "ten_edited", &packs(), 9).unwrap(),
            Bootstrap::HasPolicy
        );
        assert_eq!(load(&conn, "ten_edited").unwrap().len(), 1);
        assert_eq!(bootstrapped(&conn, "ten_edited").unwrap(), Some((None, 9)));

        // Without a basic pack: marked, with nothing applied.
        assert_eq!(
            bootstrap(&mut conn, "ten_bare", &Packs::new(), 10).unwrap(),
            Bootstrap::Apply(vec![])
        );
        assert_eq!(bootstrapped(&conn, "ten_bare").unwrap(), Some((None, 10)));
        assert!(bootstrapped(&conn, "ten_never").unwrap().is_none());
    }

    #[test]
    fn concurrent_first_bootstraps_apply_basic_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        crate::ledger::open(&path).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let outcomes: Vec<Bootstrap> = (0..4)
            .map(|i| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut conn = crate::ledger::connection::connect(&path).unwrap();
                    barrier.wait();
                    bootstrap(&mut conn, "ten_a", &packs(), i).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let applied = outcomes
            .iter()
            .filter(|o| matches!(o, Bootstrap::Apply(_)))
            .count();
        assert_eq!(applied, 1, "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == Bootstrap::AlreadyBootstrapped)
                .count(),
            3
        );
    }

    #[test]
    fn edits_computed_by_the_policy_module_round_trip_through_the_store() {
        let (_dir, mut conn) = db();
        bootstrap(&mut conn, "ten_a", &packs(), 1).unwrap();
        let policy = load(&conn, "ten_a").unwrap();
        let applied = apply_pack(&policy, &packs(), "ops").unwrap();
        save(&mut conn, "ten_a", &applied.changes, 2).unwrap();
        let patches = [SkillPolicyPatch {
            name: "uptime".into(),
            allowed: Some(false),
            enabled: None,
            hidden: None,
        }];
        let policy = load(&conn, "ten_a").unwrap();
        save(&mut conn, "ten_a", &patch(&policy, &patches).unwrap(), 3).unwrap();
        let policy = load(&conn, "ten_a").unwrap();
        assert_eq!(policy.len(), 5);
        assert_eq!(
            policy.flags("uptime"),
            Flags {
                allowed: false,
                enabled: true,
                hidden: false
            }
        );
    }
}
