//! Shared pieces for the ledger's unit tests: a migrated database file in a temp dir, realistic
//! rows, and polling for what a background thread does.
//!
//! Test-only; nothing here is compiled into the gateway.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::record::RequestRecord;
use crate::clock::{ManualClock, SharedClock};

pub(crate) const DAY_MS: u64 = 86_400_000;
/// 2025-10-10 00:00:00 UTC.
pub(crate) const MIDNIGHT: u64 = 1_760_054_400_000;

/// A migrated database file; the directory lives as long as the returned guard.
pub(crate) fn temp_ledger() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ledger.db");
    drop(super::open(&path).expect("open ledger"));
    (dir, path)
}

pub(crate) fn manual_clock(now_ms: u64) -> (Arc<ManualClock>, SharedClock) {
    let clock = Arc::new(ManualClock::new(now_ms));
    (Arc::clone(&clock), clock)
}

/// A successful, node-reported chat completion by `user` at `created_ms`.
pub(crate) fn row(user: &str, created_ms: u64, n: u64) -> RequestRecord {
    RequestRecord {
        request_id: format!("req_{n:016x}"),
        user_id: user.into(),
        endpoint: "/v1/chat/completions".into(),
        method: "POST".into(),
        status: 200,
        latency_ms: 100,
        created_ms,
        ip_hash: Some("ab".repeat(32)),
        model: Some("gpt-4o-mini".into()),
        node: Some("node-a".into()),
        prompt_tokens: Some(10),
        completion_tokens: Some(20),
        total_tokens: Some(30),
        tokens_est: 30,
        streamed: false,
        tokens_reported: true,
        error_type: None,
        run_id: None,
    }
}

pub(crate) fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Polls `done` every few milliseconds; panics (failing the test) after `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
