//! Schema migrations, embedded from `migrations/*.sql` and applied in order at start.
//!
//! `schema_version` records each applied migration; applying is idempotent, and each migration
//! runs in its own transaction with its version row, so a crash never leaves one half-applied.
//! That transaction takes the write lock before it checks the version, so two processes starting
//! together (a gateway and an `exoclaw keys` command) wait for each other instead of one failing.

use rusqlite::{params, Connection};

use super::connection::write_transaction;

/// Every migration, in order. A migration, once released, is never edited: add a new one.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (2, "keys", include_str!("../../migrations/0002_keys.sql")),
    (
        3,
        "usage_rollup",
        include_str!("../../migrations/0003_usage_rollup.sql"),
    ),
    (
        4,
        "billing",
        include_str!("../../migrations/0004_billing.sql"),
    ),
    (
        5,
        "onboard",
        include_str!("../../migrations/0005_onboard.sql"),
    ),
    (
        6,
        "tenants",
        include_str!("../../migrations/0006_tenants.sql"),
    ),
    (7, "runs", include_str!("../../migrations/0007_runs.sql")),
    (
        8,
        "skills",
        include_str!("../../migrations/0008_skills.sql"),
    ),
    (
        9,
        "telegram",
        include_str!("../../migrations/0009_telegram.sql"),
    ),
    (
        10,
        "telegram runs",
        include_str!("../../migrations/0010_telegram_runs.sql"),
    ),
];

/// Applies the migrations not yet recorded; returns how many ran.
pub fn apply(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
           version    INTEGER PRIMARY KEY,
           name       TEXT NOT NULL,
           applied_at TEXT NOT NULL DEFAULT (datetime('now'))
         );",
    )?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let tx = write_transaction(conn)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_version WHERE version = ?1)",
            params![version],
            |row| row.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_version (version, name) VALUES (?1, ?2)",
                params![version, name],
            )?;
            applied += 1;
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// The highest applied version (0 on an empty database).
pub fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_rerun_as_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(apply(&mut conn).unwrap(), 0);
        assert_eq!(
            current_version(&conn).unwrap(),
            MIGRATIONS.last().unwrap().0
        );
        conn.execute(
            "INSERT INTO requests (user_id, endpoint, status, latency_ms) VALUES ('a', '/v1/x', 200, 5)",
            [],
        )
        .unwrap();
        let total: i64 = conn
            .query_row(
                "SELECT total_requests FROM user_summary WHERE user_id = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(total, 1);
    }

    #[test]
    fn versions_are_strictly_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
