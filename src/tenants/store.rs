//! The `tenants` table: every SQL statement about tenants, and nothing else.
//!
//! Callers run these on a blocking thread with their own connection. Every read for a user
//! filters by owner, so a tenant of someone else is simply not found.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Tenant;
use crate::ledger::connection::write_transaction;

const COLUMNS: &str = "id, owner, name, pool, created_ms, updated_ms";

fn tenant(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get(0)?,
        owner: row.get(1)?,
        name: row.get(2)?,
        pool: row.get(3)?,
        created_ms: row.get::<_, i64>(4)? as u64,
        updated_ms: row.get::<_, i64>(5)? as u64,
    })
}

/// What `create` did.
#[derive(Debug)]
pub enum Created {
    Tenant(Tenant),
    /// The owner already has `used` tenants, as many as their tier allows.
    OverLimit {
        used: u64,
    },
}

/// Creates a tenant if the owner has fewer than `max` (None: no limit), in one transaction so
/// two requests at once cannot both pass the limit.
pub fn create(
    conn: &mut Connection,
    id: &str,
    owner: &str,
    name: &str,
    max: Option<u64>,
    now_ms: u64,
) -> rusqlite::Result<Created> {
    let tx = write_transaction(conn)?;
    let used: i64 = tx.query_row(
        "SELECT COUNT(*) FROM tenants WHERE owner = ?1 AND deleted_ms IS NULL",
        params![owner],
        |r| r.get(0),
    )?;
    let used = used as u64;
    if max.is_some_and(|max| used >= max) {
        return Ok(Created::OverLimit { used });
    }
    tx.execute(
        "INSERT INTO tenants (id, owner, name, pool, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, NULL, ?4, ?4)",
        params![id, owner, name, now_ms as i64],
    )?;
    tx.commit()?;
    Ok(Created::Tenant(Tenant {
        id: id.to_owned(),
        owner: owner.to_owned(),
        name: name.to_owned(),
        pool: None,
        created_ms: now_ms,
        updated_ms: now_ms,
    }))
}

/// The owner's tenants, oldest first.
pub fn list(conn: &Connection, owner: &str) -> rusqlite::Result<Vec<Tenant>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tenants WHERE owner = ?1 AND deleted_ms IS NULL
         ORDER BY created_ms, id"
    ))?;
    let rows = stmt.query_map(params![owner], tenant)?;
    rows.collect()
}

/// Every tenant, for operators.
pub fn list_all(conn: &Connection) -> rusqlite::Result<Vec<Tenant>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tenants WHERE deleted_ms IS NULL ORDER BY created_ms, id"
    ))?;
    let rows = stmt.query_map([], tenant)?;
    rows.collect()
}

/// The tenant `id` if it exists and `owner` owns it (None: operators' view, any owner).
pub fn get(conn: &Connection, id: &str, owner: Option<&str>) -> rusqlite::Result<Option<Tenant>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1 AND deleted_ms IS NULL"),
        params![id],
        tenant,
    )
    .optional()
    .map(|found| found.filter(|t| owner.is_none_or(|o| t.owner == o)))
}

/// Renames the owner's tenant; None when it is not theirs.
pub fn rename(
    conn: &Connection,
    id: &str,
    owner: &str,
    name: &str,
    now_ms: u64,
) -> rusqlite::Result<Option<Tenant>> {
    let changed = conn.execute(
        "UPDATE tenants SET name = ?3, updated_ms = ?4
         WHERE id = ?1 AND owner = ?2 AND deleted_ms IS NULL",
        params![id, owner, name, now_ms as i64],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    get(conn, id, Some(owner))
}

/// Deletes the owner's tenant; false when it is not theirs.
pub fn delete(conn: &Connection, id: &str, owner: &str, now_ms: u64) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE tenants SET deleted_ms = ?3, updated_ms = ?3
         WHERE id = ?1 AND owner = ?2 AND deleted_ms IS NULL",
        params![id, owner, now_ms as i64],
    )?;
    Ok(changed == 1)
}

/// Pins a tenant's runs to `pool` (None: back to the owner's tier's pool); false when unknown.
pub fn pin(conn: &Connection, id: &str, pool: Option<&str>, now_ms: u64) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE tenants SET pool = ?2, updated_ms = ?3 WHERE id = ?1 AND deleted_ms IS NULL",
        params![id, pool, now_ms as i64],
    )?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::ledger::open(&path).unwrap();
        let conn = crate::ledger::connection::connect(&path).unwrap();
        (dir, conn)
    }

    fn created(c: Created) -> Tenant {
        match c {
            Created::Tenant(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_limit_counts_only_the_owners_live_tenants() {
        let (_dir, mut conn) = db();
        created(create(&mut conn, "ten_a", "ana", "one", Some(1), 1).unwrap());
        assert!(matches!(
            create(&mut conn, "ten_b", "ana", "two", Some(1), 2).unwrap(),
            Created::OverLimit { used: 1 }
        ));
        // Another owner is not counted.
        created(create(&mut conn, "ten_c", "bo", "bo's", Some(1), 3).unwrap());
        // A deleted tenant frees its place.
        assert!(delete(&conn, "ten_a", "ana", 4).unwrap());
        created(create(&mut conn, "ten_d", "ana", "again", Some(1), 5).unwrap());
        // No limit.
        created(create(&mut conn, "ten_e", "ana", "more", None, 6).unwrap());
        let names: Vec<String> = list(&conn, "ana")
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["again", "more"]);
    }

    #[test]
    fn another_owners_tenant_is_not_found_for_anything() {
        let (_dir, mut conn) = db();
        created(create(&mut conn, "ten_a", "ana", "mine", None, 1).unwrap());
        assert!(get(&conn, "ten_a", Some("bo")).unwrap().is_none());
        assert!(rename(&conn, "ten_a", "bo", "taken", 2).unwrap().is_none());
        assert!(!delete(&conn, "ten_a", "bo", 3).unwrap());
        let mine = get(&conn, "ten_a", Some("ana")).unwrap().unwrap();
        assert_eq!((mine.name.as_str(), mine.updated_ms), ("mine", 1));
        assert!(
            get(&conn, "ten_a", None).unwrap().is_some(),
            "operators see it"
        );
    }

    #[test]
    fn rename_pin_and_delete() {
        let (_dir, mut conn) = db();
        created(create(&mut conn, "ten_a", "ana", "old", None, 1).unwrap());
        let renamed = rename(&conn, "ten_a", "ana", "new", 2).unwrap().unwrap();
        assert_eq!((renamed.name.as_str(), renamed.updated_ms), ("new", 2));
        assert!(pin(&conn, "ten_a", Some("dedicated"), 3).unwrap());
        assert_eq!(
            get(&conn, "ten_a", None).unwrap().unwrap().pool.as_deref(),
            Some("dedicated")
        );
        assert!(pin(&conn, "ten_a", None, 4).unwrap());
        assert_eq!(get(&conn, "ten_a", None).unwrap().unwrap().pool, None);
        assert!(delete(&conn, "ten_a", "ana", 5).unwrap());
        assert!(get(&conn, "ten_a", Some("ana")).unwrap().is_none());
        assert!(!delete(&conn, "ten_a", "ana", 6).unwrap(), "only once");
        assert!(!pin(&conn, "ten_a", Some("x"), 7).unwrap());
        assert!(list_all(&conn).unwrap().is_empty());
    }
}
