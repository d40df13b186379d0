//! The read side of the usage ledger: per-user totals for `exoclaw usage` and `/admin/usage`.
//!
//! Blocking SQLite reads: call them from the command line or a blocking task, never on the
//! request path. They merge the raw `requests` rows with `usage_daily`, where retention has
//! folded older rows, so a window that reaches back past the retention cut-off still counts every
//! request. The two parts have different granularity: raw rows are selected to the second
//! (`created_at` has no milliseconds), rolled-up rows by whole UTC day.
//!
//! Not for: writing rows or applying retention (the ledger writer), or formatting the output.

use rusqlite::{params, Connection};

/// One user's usage over a window.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct UserUsage {
    pub user_id: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// `total_tokens` when the node reported usage, else the estimate `tokens_est`.
    pub total_tokens: u64,
    pub avg_latency_ms: f64,
    /// Requests answered with status >= 400, or 0 (the client left before any response).
    pub errors: u64,
    /// The latest `created_at` in the window (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub last_seen: String,
}

/// Partial totals per user from both tables, then summed. A request lives in exactly one of the
/// two tables (retention moves rows in one transaction), so nothing is counted twice.
///
/// A `usage_daily` row counts when its day is on or after the window's first day and its latest
/// request is in the window. Days after the first are wholly inside the window; on the first day
/// itself, rolled-up requests from earlier that day count too. This only matters when the window
/// starts before the retention cut-off, and then by at most part of one day.
const USAGE_SINCE: &str = "
    WITH since AS (SELECT datetime(?1, 'unixepoch') AS at, date(?1, 'unixepoch') AS day)
    SELECT user_id, SUM(requests) AS requests, SUM(prompt_tokens), SUM(completion_tokens),
           SUM(total_tokens), SUM(latency_ms_sum), SUM(errors), MAX(last_seen)
    FROM (
      SELECT r.user_id, COUNT(*) AS requests,
             SUM(COALESCE(r.prompt_tokens, 0)) AS prompt_tokens,
             SUM(COALESCE(r.completion_tokens, 0)) AS completion_tokens,
             SUM(COALESCE(r.total_tokens, r.tokens_est, 0)) AS total_tokens,
             SUM(r.latency_ms) AS latency_ms_sum,
             SUM(CASE WHEN r.status >= 400 OR r.status = 0 THEN 1 ELSE 0 END) AS errors,
             MAX(r.created_at) AS last_seen
      FROM requests r, since
      WHERE r.created_at >= since.at
      GROUP BY r.user_id
      UNION ALL
      SELECT d.user_id, d.requests, d.prompt_tokens, d.completion_tokens, d.total_tokens,
             d.latency_ms_sum, d.errors, d.last_seen
      FROM usage_daily d, since
      WHERE d.day >= since.day AND d.last_seen >= since.at
    )
    GROUP BY user_id
    ORDER BY requests DESC, user_id";

/// Per-user usage for rows created at or after `since_ms` (Unix ms), most requests first.
///
/// Second granularity for raw rows and day granularity for rows already rolled up by retention
/// (see `USAGE_SINCE`). Users with no request in the window are absent.
pub fn usage_since(conn: &Connection, since_ms: u64) -> rusqlite::Result<Vec<UserUsage>> {
    let since_secs = i64::try_from(since_ms / 1000).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(USAGE_SINCE)?;
    let rows = stmt.query_map(params![since_secs], |row| {
        let count = |i: usize| -> rusqlite::Result<u64> {
            Ok(u64::try_from(row.get::<_, Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
        };
        let requests = count(1)?;
        let latency_ms_sum = count(5)?;
        Ok(UserUsage {
            user_id: row.get(0)?,
            requests,
            prompt_tokens: count(2)?,
            completion_tokens: count(3)?,
            total_tokens: count(4)?,
            avg_latency_ms: if requests == 0 {
                0.0
            } else {
                latency_ms_sum as f64 / requests as f64
            },
            errors: count(6)?,
            last_seen: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger;
    use crate::ledger::record::RequestRecord;
    use crate::ledger::test_support::{manual_clock, row, temp_ledger, MIDNIGHT};
    use crate::ledger::writer::{LedgerSettings, LedgerWriter};

    fn write_all(path: &std::path::Path, rows: Vec<RequestRecord>) {
        let (_, clock) = manual_clock(MIDNIGHT);
        let writer = LedgerWriter::start(path, LedgerSettings::default(), clock).unwrap();
        for r in rows {
            writer.record(r);
        }
        writer.shutdown();
        assert_eq!(writer.stats().dropped, 0);
    }

    #[test]
    fn usage_is_summed_per_user_most_requests_first() {
        let (_dir, path) = temp_ledger();
        let hour = 3_600_000;
        let mut rows = vec![
            // Before the window: never counted.
            row("ana", MIDNIGHT - hour, 0),
            row("ana", MIDNIGHT + hour, 1),
            row("ana", MIDNIGHT + 2 * hour, 2),
            row("ana", MIDNIGHT + 3 * hour + 1_500, 3),
            row("bo", MIDNIGHT + hour, 4),
        ];
        rows[2].status = 429;
        rows[2].latency_ms = 3;
        rows[2].total_tokens = None;
        rows[2].prompt_tokens = None;
        rows[2].completion_tokens = None;
        rows[2].tokens_est = 5;
        rows[3].status = 0;
        rows[3].latency_ms = 200;
        rows[4].status = 500;
        rows[4].total_tokens = Some(1_000);
        write_all(&path, rows);

        let conn = ledger::open(&path).unwrap();
        let usage = usage_since(&conn, MIDNIGHT).unwrap();
        assert_eq!(
            usage,
            vec![
                UserUsage {
                    user_id: "ana".into(),
                    requests: 3,
                    prompt_tokens: 20,
                    completion_tokens: 40,
                    total_tokens: 30 + 5 + 30,
                    avg_latency_ms: (100.0 + 3.0 + 200.0) / 3.0,
                    errors: 2,
                    last_seen: "2025-10-10 03:00:01".into(),
                },
                UserUsage {
                    user_id: "bo".into(),
                    requests: 1,
                    prompt_tokens: 10,
                    completion_tokens: 20,
                    total_tokens: 1_000,
                    avg_latency_ms: 100.0,
                    errors: 1,
                    last_seen: "2025-10-10 01:00:00".into(),
                },
            ]
        );

        let later = usage_since(&conn, MIDNIGHT + 2 * hour).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!((later[0].requests, later[0].errors), (2, 2));
        assert!(usage_since(&conn, MIDNIGHT + 4 * hour).unwrap().is_empty());
        assert!(usage_since(&conn, u64::MAX).unwrap().is_empty());
    }
}
