//! Retention for the `requests` table: raw rows older than a cut-off are folded into the per-user
//! daily rollup `usage_daily` (migration 0003) and deleted, so the ledger's size follows the
//! retention rather than the gateway's age.
//!
//! Only the ledger writer thread calls this: it is the only writer of `requests`, so pruning
//! never competes with inserts for the write lock. Each call moves one bounded chunk (oldest rows
//! first) in one transaction, so a large backlog never holds the lock for long; the writer calls
//! again, between batches of new rows, until a chunk comes back short. The rollup and the delete
//! commit together: a request is counted either as a raw row or inside a `usage_daily` row, never
//! both and never neither.
//!
//! Not for: reading usage (`queries` merges both tables), or deciding when to prune (the writer).

use rusqlite::{params, Connection};

use super::connection::write_transaction;

/// The ids of the chunk being moved, chosen once so the rollup and the delete see the same rows.
const PICK_CHUNK: &str = "
    INSERT INTO temp.prune_ids (id)
    SELECT id FROM requests
    WHERE created_at < datetime(?1 / 1000, 'unixepoch')
    ORDER BY created_at, id
    LIMIT ?2";

/// Adds the chunk to the daily rows, merging into days that earlier runs already rolled up.
/// (`WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint.)
const ROLL_UP_CHUNK: &str = "
    INSERT INTO usage_daily (day, user_id, requests, errors, prompt_tokens, completion_tokens,
                             total_tokens, latency_ms_sum, last_seen)
    SELECT date(r.created_at), r.user_id, COUNT(*),
           SUM(CASE WHEN r.status >= 400 OR r.status = 0 THEN 1 ELSE 0 END),
           SUM(COALESCE(r.prompt_tokens, 0)),
           SUM(COALESCE(r.completion_tokens, 0)),
           SUM(COALESCE(r.total_tokens, r.tokens_est, 0)),
           SUM(r.latency_ms),
           MAX(r.created_at)
    FROM requests r JOIN temp.prune_ids p ON p.id = r.id
    WHERE true
    GROUP BY date(r.created_at), r.user_id
    ON CONFLICT (day, user_id) DO UPDATE SET
      requests          = requests + excluded.requests,
      errors            = errors + excluded.errors,
      prompt_tokens     = prompt_tokens + excluded.prompt_tokens,
      completion_tokens = completion_tokens + excluded.completion_tokens,
      total_tokens      = total_tokens + excluded.total_tokens,
      latency_ms_sum    = latency_ms_sum + excluded.latency_ms_sum,
      last_seen         = MAX(last_seen, excluded.last_seen)";

/// Moves at most `max_rows` rows created before `cutoff_ms` (Unix ms, compared at the second
/// granularity of `created_at`) into `usage_daily`, in one transaction. Returns how many moved:
/// fewer than `max_rows` means none older than the cut-off remain.
pub(crate) fn roll_up_older_than(
    conn: &mut Connection,
    cutoff_ms: u64,
    max_rows: usize,
) -> rusqlite::Result<usize> {
    let cutoff = i64::try_from(cutoff_ms).unwrap_or(i64::MAX);
    let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let tx = write_transaction(conn)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY);
         DELETE FROM temp.prune_ids;",
    )?;
    let moved = tx
        .prepare_cached(PICK_CHUNK)?
        .execute(params![cutoff, limit])?;
    if moved > 0 {
        tx.prepare_cached(ROLL_UP_CHUNK)?.execute([])?;
        tx.prepare_cached("DELETE FROM requests WHERE id IN (SELECT id FROM temp.prune_ids)")?
            .execute([])?;
        tx.execute("DELETE FROM temp.prune_ids", [])?;
    }
    tx.commit()?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::{DAY_MS, MIDNIGHT};
    use crate::ledger::{self, migrations};

    fn insert(conn: &Connection, user: &str, created_ms: u64, status: u16, tokens: Option<i64>) {
        conn.execute(
            "INSERT INTO requests (user_id, endpoint, status, latency_ms, tokens_est, total_tokens,
                                   prompt_tokens, completion_tokens, created_at)
             VALUES (?1, '/v1/chat/completions', ?2, 10, 7, ?3, 1, 2,
                     datetime(?4 / 1000, 'unixepoch'))",
            params![user, status, tokens, created_ms as i64],
        )
        .unwrap();
    }

    fn daily(conn: &Connection) -> Vec<(String, String, i64, i64, i64, i64, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT day, user_id, requests, errors, total_tokens, latency_ms_sum, last_seen
                 FROM usage_daily ORDER BY day, user_id",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn moves_old_rows_in_bounded_chunks_and_merges_days() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = ledger::open(&dir.path().join("ledger.db")).unwrap();
        let old_day = MIDNIGHT - 10 * DAY_MS;
        insert(&conn, "ana", old_day + 1_000, 200, Some(30));
        insert(&conn, "ana", old_day + 2_000, 500, None);
        insert(&conn, "ana", old_day + 3_000, 0, Some(5));
        insert(&conn, "bo", old_day + DAY_MS + 4_000, 429, Some(1));
        insert(&conn, "ana", MIDNIGHT + 5_000, 200, Some(100));

        let cutoff = MIDNIGHT - DAY_MS;
        assert_eq!(roll_up_older_than(&mut conn, cutoff, 3).unwrap(), 3);
        assert_eq!(roll_up_older_than(&mut conn, cutoff, 3).unwrap(), 1);
        assert_eq!(roll_up_older_than(&mut conn, cutoff, 3).unwrap(), 0);

        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1, "the recent row stays raw");
        assert_eq!(
            daily(&conn),
            vec![
                (
                    "2025-09-30".into(),
                    "ana".into(),
                    3,
                    2,
                    30 + 7 + 5,
                    30,
                    "2025-09-30 00:00:03".into()
                ),
                (
                    "2025-10-01".into(),
                    "bo".into(),
                    1,
                    1,
                    1,
                    10,
                    "2025-10-01 00:00:04".into()
                ),
            ]
        );

        // A late row for a day already rolled up adds to it rather than replacing it.
        insert(&conn, "ana", old_day + 500, 200, Some(8));
        assert_eq!(roll_up_older_than(&mut conn, cutoff, 3).unwrap(), 1);
        let merged = &daily(&conn)[0];
        assert_eq!((merged.2, merged.3, merged.4, merged.5), (4, 2, 50, 40));
        assert_eq!(
            merged.6, "2025-09-30 00:00:03",
            "last_seen keeps the latest"
        );
    }

    #[test]
    fn opening_a_file_twice_applies_the_rollup_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        drop(ledger::open(&path).unwrap());
        let mut conn = ledger::open(&path).unwrap();
        assert_eq!(migrations::apply(&mut conn).unwrap(), 0);
        assert_eq!(
            migrations::current_version(&conn).unwrap(),
            migrations::MIGRATIONS.last().unwrap().0
        );
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'usage_daily'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }
}
