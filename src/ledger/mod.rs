//! The SQLite ledger: opening the database file and applying `migrations/` at start.
//!
//! Only start-up code and background workers touch SQLite; the request path never does: it hands
//! rows to the `writer` thread through a bounded queue. `queries` reads usage back.

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

/// Opens (creating if needed) the database at `path` in WAL mode and brings its schema up to
/// date. Blocking: call it at start-up or from a worker thread, never on the request path.
pub fn open(path: &Path) -> Result<Connection, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut conn = Connection::open(path)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
        .map_err(|e| format!("cannot configure database {}: {e}", path.display()))?;
    migrations::apply(&mut conn).map_err(|e| format!("database {}: {e}", path.display()))?;
    Ok(conn)
}
