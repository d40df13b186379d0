//! The SQLite ledger: opening the database file and applying `migrations/` at start.
//!
//! Only start-up code and background workers touch SQLite; the request path never does: it hands
//! rows to the `writer` thread through a bounded queue. `queries` reads usage back. Every
//! connection that may write comes from `connection::connect`, and every transaction that writes
//! takes the write lock up front (`connection::write_transaction`), so concurrent writers wait
//! for each other instead of failing with "database is locked".

pub mod connection;
pub mod ip_hash;
pub mod migrations;
pub mod queries;
pub mod record;
mod retention;
#[cfg(test)]
mod test_support;
pub mod writer;

use std::path::Path;

use rusqlite::Connection;

/// Opens (creating if needed) the database at `path` (see `connection::connect`) and brings its
/// schema up to date. Blocking: call it at start-up or from a worker thread, never on the request path.
pub fn open(path: &Path) -> Result<Connection, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut conn = connection::connect(path)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| format!("cannot configure database {}: {e}", path.display()))?;
    migrations::apply(&mut conn).map_err(|e| format!("database {}: {e}", path.display()))?;
    Ok(conn)
}
