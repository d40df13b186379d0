//! Opening SQLite connections that may write, and starting transactions that write: the one
//! place that knows how, so every write path waits for the lock the same way.
//!
//! **A transaction that writes takes the write lock up front** (`write_transaction`, which is
//! `BEGIN IMMEDIATE`). A deferred transaction (`conn.transaction()`) starts as a reader and
//! asks for the write lock at its first write; if another connection holds that lock, or has
//! committed since this one started reading, SQLite answers `SQLITE_BUSY` at once: the busy
//! timeout does not apply to a read→write upgrade, because waiting there could deadlock. That is
//! how concurrent Stripe webhooks answered 500 "database is locked". Taken at `BEGIN`, the lock
//! is waited for, up to `BUSY_TIMEOUT`, like any other.
//!
//! A single statement outside a transaction (`conn.execute(...)`) is its own transaction and
//! asks for the write lock before it reads, so it waits too; two or more statements that must
//! commit together go through `write_transaction`.
//!
//! Not for: creating the file and migrating the schema (`ledger::open`, which uses `connect`),
//! or the ledger writer's batching policy (`writer`, which shortens the timeout and retries).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// How long a connection waits for a lock another connection holds before `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database at `path` for reading and writing: busy timeout first (so even the
/// pragmas wait for a lock), then WAL (readers never block the writer). `synchronous` stays
/// SQLite's `FULL`: a webhook answered 200 is on disk, since Stripe will not send it again.
pub fn connect(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .map_err(|e| format!("cannot configure database {}: {e}", path.display()))?;
    Ok(conn)
}

/// Begins a transaction that holds the write lock from its start (`BEGIN IMMEDIATE`): it waits
/// for a concurrent writer up to the connection's busy timeout instead of failing when it first
/// writes. Use it for every transaction that may write.
pub fn write_transaction(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// One connection shared by the control plane's blocking work, opened on first use (a
/// connection opened before Pingora's daemon fork would not survive it). Its mutex is taken on
/// a blocking thread and never held across an `.await`.
pub struct SharedConnection {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl SharedConnection {
    pub fn new(path: &Path) -> SharedConnection {
        SharedConnection {
            path: path.to_owned(),
            conn: Mutex::new(None),
        }
    }

    /// Runs `work` with the connection (blocking: call it from a blocking thread).
    pub fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut slot = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(connect(&self.path)?);
        }
        work(slot.as_mut().expect("opened above"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Four connections start together; each counts the rows, then inserts that count: the
    /// shape of a webhook (is this event new? then record it). With `deferred`, all four read
    /// before any writes.
    fn race(deferred: bool) -> (Vec<rusqlite::Result<()>>, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        connect(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (n INTEGER)")
            .unwrap();
        let (start, all_read) = (Arc::new(Barrier::new(4)), Arc::new(Barrier::new(4)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, start, all_read) = (path.clone(), start.clone(), all_read.clone());
                std::thread::spawn(move || {
                    let mut conn = connect(&path).unwrap();
                    start.wait();
                    let tx = if deferred {
                        conn.transaction()?
                    } else {
                        write_transaction(&mut conn)?
                    };
                    let n: i64 = tx.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?;
                    if deferred {
                        all_read.wait();
                    }
                    tx.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    tx.commit()
                })
            })
            .collect();
        let results = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let conn = connect(&path).unwrap();
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        let counts = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (results, counts)
    }

    #[test]
    fn write_transactions_wait_for_each_other_and_run_one_at_a_time() {
        let (results, counts) = race(false);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(counts, vec![0, 1, 2, 3], "each saw the rows before it");
    }

    #[test]
    fn a_deferred_transaction_that_reads_then_writes_fails_at_once() {
        // What `write_transaction` prevents: the busy timeout does not cover the upgrade.
        let (results, counts) = race(true);
        let busy = results
            .iter()
            .filter(|r| {
                r.as_ref().is_err_and(|e| {
                    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                })
            })
            .count();
        assert_eq!((busy, counts), (3, vec![0]), "{results:?}");
    }
}
