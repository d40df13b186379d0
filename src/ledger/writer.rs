//! The ledger's single writer: takes finished-request rows from the proxy without ever blocking
//! it, and writes them to SQLite in batches on one background thread.
//!
//! The request path calls [`LedgerWriter::record`], which only *tries* to push the row into a
//! bounded queue: when the queue is full the row is counted as dropped. A slow, locked or full
//! database therefore costs the gateway usage rows, never request latency. The `exoclaw-ledger`
//! thread is the only writer of `requests` in the process. It writes rows in batches, one
//! transaction each; it keeps a batch and retries it with backoff while SQLite is busy or failing,
//! so an accepted row is not lost to a transient error; and, when a retention is set, it folds old
//! rows into `usage_daily` (see `retention`).
//!
//! Not for: building rows (`record`), opening or migrating the database (`ledger::open`), or
//! reading usage back (`queries`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use rusqlite::{params, Connection, ErrorCode};

use super::connection::write_transaction;
use super::record::RequestRecord;
use super::retention;
use crate::clock::SharedClock;

/// How long one SQLite call may wait for another connection's lock. Short on purpose: the retry
/// loop, not SQLite, decides how long to keep waiting, and it logs while it does.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause after the first failed write of a batch; doubles on each failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this long for repeated write failures, and one for dropped rows.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// While gathering a batch, how often the writer looks for more rows (see `WriterThread::fill`).
const GATHER_POLL: Duration = Duration::from_millis(10);
/// Largest accepted `queue_capacity`: its slots are allocated at start. Config validation
/// refuses more (so `check` and a reload do too); this is the same bound, not a second one.
const MAX_QUEUE_CAPACITY: usize = crate::config::bounds::MAX_LEDGER_QUEUE_CAPACITY;
/// After a failed rollup, try again this soon (or at the next `prune_interval`, if sooner).
const PRUNE_RETRY: Duration = Duration::from_secs(60);

/// The writer's internal limits; tests shrink them.
#[derive(Debug, Clone, Copy)]
struct WriterLimits {
    /// Most rows one rollup transaction moves. It holds the write lock meanwhile, and the writer
    /// serves no queued rows: 50,000 rows take about a second on a 1M-row table on a 2-core VM.
    prune_chunk_rows: usize,
    /// Once shutdown has begun, how long the writer keeps retrying a failing database before it
    /// gives up on the rows it holds, so a dead disk cannot stop the process from exiting.
    shutdown_grace: Duration,
}

const DEFAULT_LIMITS: WriterLimits = WriterLimits {
    prune_chunk_rows: 50_000,
    shutdown_grace: Duration::from_secs(30),
};

/// How the writer batches, how much it buffers, and how long raw rows are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Rows the queue holds before `record` starts dropping them. The queue's slots are
    /// allocated up front (`size_of::<RequestRecord>()`, about 300 bytes, each, plus the rows'
    /// strings once filled); this bounds what the ledger holds while the database stalls.
    pub queue_capacity: usize,
    /// Most rows written in one transaction. Large batches matter: each row lands at a random
    /// place in the `request_id` index, and a WAL commit writes every page it dirtied, so rows
    /// per commit, not rows, set the cost (on a 2M-row table on a 2-core VM: about 17,000 rows/s
    /// with batches of 1,000, 25,000 with 5,000, 37,000 with 20,000).
    pub batch_size: usize,
    /// Longest a row waits in a partial batch: a batch is written this long after its first row
    /// arrived even when it is not full.
    pub flush_interval: Duration,
    /// Raw rows older than this (by `created_ms`, against the injected clock) are folded into the
    /// daily rollup `usage_daily` and deleted. `None` keeps every row.
    pub retention: Option<Duration>,
    /// How often the rollup runs (and once at start). Used only when `retention` is set.
    pub prune_interval: Duration,
}

impl Default for LedgerSettings {
    fn default() -> LedgerSettings {
        LedgerSettings {
            queue_capacity: 65_536,
            batch_size: 5_000,
            flush_interval: Duration::from_millis(200),
            retention: None,
            prune_interval: Duration::from_secs(3_600),
        }
    }
}

/// Counters for `/admin/usage`, metrics and tests. Every count is since `start`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq, Eq)]
pub struct LedgerStats {
    /// Rows accepted but not yet committed: those in the queue plus the batch being written.
    /// Approximate while rows are moving.
    pub queued: u64,
    /// Rows committed to `requests`.
    pub written: u64,
    /// Rows not recorded: refused because the queue was full or the writer had stopped, or (only
    /// when the database kept failing through the whole shutdown grace) abandoned at shutdown.
    pub dropped: u64,
    /// Failed write transactions (each retry of a batch counts, as does a failed rollup).
    pub write_errors: u64,
    /// `LedgerSettings::queue_capacity`, to read `queued` against.
    pub queue_capacity: u64,
}

/// Shared between the callers of `record` and the writer thread. Relaxed ordering throughout:
/// these are statistics, and `shutdown` joins the thread before anyone needs final values.
#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    stopping: AtomicBool,
}

/// The handle the proxy keeps (in an `Arc`) to record finished requests.
pub struct LedgerWriter {
    /// `None` once shutdown has begun. Dropping the last sender is what tells the thread that no
    /// more rows can arrive, so it drains the queue and exits. An atomic swap rather than a lock
    /// keeps `record` from ever waiting on `shutdown`.
    sender: ArcSwapOption<SyncSender<RequestRecord>>,
    counters: Arc<Counters>,
    /// Taken (and joined) by the first `shutdown`; the lock makes a concurrent second call wait
    /// for the drain instead of returning early.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// What `launch` needs, until it runs (see `prepare`).
    pending: Mutex<Option<PendingStart>>,
    queue_capacity: u64,
}

struct PendingStart {
    db_path: std::path::PathBuf,
    receiver: mpsc::Receiver<RequestRecord>,
    settings: LedgerSettings,
    clock: SharedClock,
    limits: WriterLimits,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl LedgerWriter {
    /// Opens its own connection to `db_path` (already migrated by `ledger::open`) and starts ONE
    /// writer thread (std::thread, named "exoclaw-ledger").
    ///
    /// Blocking (it opens the database): call it at start-up. Fails on settings that cannot
    /// work, an unopenable database, or a thread that cannot be spawned.
    pub fn start(
        db_path: &Path,
        settings: LedgerSettings,
        clock: SharedClock,
    ) -> Result<LedgerWriter, String> {
        LedgerWriter::start_with_limits(db_path, settings, clock, DEFAULT_LIMITS)
    }

    fn start_with_limits(
        db_path: &Path,
        settings: LedgerSettings,
        clock: SharedClock,
        limits: WriterLimits,
    ) -> Result<LedgerWriter, String> {
        let writer = LedgerWriter::prepare_with_limits(db_path, settings, clock, limits)?;
        writer.launch()?;
        Ok(writer)
    }

    /// Like `start`, but the writer thread (and its database connection) only starts with
    /// `launch`. Rows recorded before that wait in the queue. This is for a process that forks
    /// after building its services (Pingora's daemon mode): a thread or an SQLite connection
    /// made before a fork does not survive it.
    pub fn prepare(
        db_path: &Path,
        settings: LedgerSettings,
        clock: SharedClock,
    ) -> Result<LedgerWriter, String> {
        LedgerWriter::prepare_with_limits(db_path, settings, clock, DEFAULT_LIMITS)
    }

    fn prepare_with_limits(
        db_path: &Path,
        settings: LedgerSettings,
        clock: SharedClock,
        limits: WriterLimits,
    ) -> Result<LedgerWriter, String> {
        check_settings(&settings)?;
        // Fail now, not in the background, when the database cannot be opened.
        drop(super::open(db_path)?);
        let (sender, receiver) = mpsc::sync_channel(settings.queue_capacity);
        let queue_capacity = u64::try_from(settings.queue_capacity).unwrap_or(u64::MAX);
        Ok(LedgerWriter {
            sender: ArcSwapOption::new(Some(Arc::new(sender))),
            counters: Arc::new(Counters::default()),
            thread: Mutex::new(None),
            pending: Mutex::new(Some(PendingStart {
                db_path: db_path.to_owned(),
                receiver,
                settings,
                clock,
                limits,
            })),
            queue_capacity,
        })
    }

    /// Opens the writer's connection and starts its thread; does nothing once started.
    pub fn launch(&self) -> Result<(), String> {
        let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        let PendingStart {
            db_path,
            receiver,
            settings,
            clock,
            limits,
        } = pending;
        let conn = super::open(&db_path)?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| format!("cannot configure database {}: {e}", db_path.display()))?;
        let writer = WriterThread {
            conn,
            receiver,
            settings,
            clock,
            counters: Arc::clone(&self.counters),
            limits,
            failure_log: LogThrottle::default(),
            drop_log: LogThrottle::default(),
            dropped_reported: 0,
            failing_while_stopping: None,
            abandoned: 0,
        };
        let thread = std::thread::Builder::new()
            .name("exoclaw-ledger".into())
            .spawn(move || writer.run())
            .map_err(|e| format!("cannot start the ledger writer thread: {e}"))?;
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(())
    }

    /// Non-blocking: try_send into a bounded channel; when full, counts the row as dropped (never
    /// blocks, never fails the request).
    ///
    /// Safe to call from any number of threads at once. It never waits for SQLite or for the
    /// writer: a few atomic operations (about 80 ns), except for the first row of a batch, whose
    /// send wakes the parked writer thread (microseconds; see `benches/ledger.rs`). After
    /// `shutdown` every row is dropped.
    pub fn record(&self, record: RequestRecord) {
        let sender = self.sender.load();
        let Some(sender) = sender.as_deref() else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Counted before the send so the writer can never subtract a row not yet added.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if sender.try_send(record).is_err() {
            // Full, or the writer thread is gone: either way the request goes on without its row.
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> LedgerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LedgerStats {
            queued: load(&self.counters.queued),
            written: load(&self.counters.written),
            dropped: load(&self.counters.dropped),
            write_errors: load(&self.counters.write_errors),
            queue_capacity: self.queue_capacity,
        }
    }

    /// Graceful stop: stops accepting, drains EVERYTHING already queued into SQLite, joins the
    /// thread. Idempotent; also called from Drop.
    ///
    /// Blocking: it waits for the drain, which normally takes milliseconds, so call it (and drop
    /// the last handle) outside async tasks or through `spawn_blocking`. If the database keeps
    /// failing, the writer retries for a grace period (30 s) before abandoning the rows it still
    /// holds (counted as dropped, and logged), so shutdown cannot hang forever on a dead disk.
    pub fn shutdown(&self) {
        // Rows queued before a launch that never came still deserve their drain.
        if let Err(e) = self.launch() {
            tracing::error!("ledger: cannot start the writer to drain the queue: {e}");
        }
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        self.counters.stopping.store(true, Ordering::Relaxed);
        // A `record` that loaded the sender just before this keeps it alive until its send is
        // done, so its row is in the queue before the writer can see the channel disconnect.
        drop(self.sender.swap(None));
        if let Some(handle) = thread.take() {
            if handle.join().is_err() {
                tracing::error!("ledger: the writer thread panicked; the rows it held are lost");
            }
        }
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn check_settings(settings: &LedgerSettings) -> Result<(), String> {
    let LedgerSettings {
        queue_capacity,
        batch_size,
        flush_interval: _,
        retention,
        prune_interval,
    } = settings;
    if *queue_capacity == 0 || *queue_capacity > MAX_QUEUE_CAPACITY {
        return Err(format!(
            "ledger queue_capacity must be between 1 and {MAX_QUEUE_CAPACITY} (the queue is \
             allocated up front), not {queue_capacity}"
        ));
    }
    if *batch_size == 0 {
        return Err("ledger batch_size must be at least 1".into());
    }
    if retention.is_some() && prune_interval.is_zero() {
        return Err("ledger prune_interval must be more than zero when retention is set".into());
    }
    Ok(())
}

/// `Instant::now() + after`, or `None` ("never") when that is beyond what `Instant` can hold.
fn deadline_after(after: Duration) -> Option<Instant> {
    Instant::now().checked_add(after)
}

fn as_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Lets a repeated condition log once per `LOG_EVERY` instead of once per occurrence.
#[derive(Debug, Default)]
struct LogThrottle {
    last: Option<Instant>,
}

impl LogThrottle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        let ready = self
            .last
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY);
        if ready {
            self.last = Some(now);
        }
        ready
    }
}

/// Everything the `exoclaw-ledger` thread owns.
struct WriterThread {
    conn: Connection,
    receiver: Receiver<RequestRecord>,
    settings: LedgerSettings,
    clock: SharedClock,
    counters: Arc<Counters>,
    limits: WriterLimits,
    failure_log: LogThrottle,
    drop_log: LogThrottle,
    /// The dropped count at the last "queue full" log line.
    dropped_reported: u64,
    /// When a write first failed after shutdown began; the shutdown grace runs from here.
    failing_while_stopping: Option<Instant>,
    /// Rows given up at shutdown (also counted as dropped).
    abandoned: u64,
}

impl WriterThread {
    fn run(mut self) {
        // Retention runs once at start, then every prune_interval.
        let mut next_prune = self.settings.retention.map(|_| Instant::now());
        // Reused for every batch; a huge batch_size grows it on demand rather than up front.
        let mut batch = Vec::with_capacity(self.settings.batch_size.min(10_000));
        loop {
            if next_prune.is_some_and(|due| Instant::now() >= due) {
                next_prune = self.prune();
            }
            // Wait for the first row of a batch (waking for the next rollup if one is due).
            let first = match next_prune {
                Some(due) => match self
                    .receiver
                    .recv_timeout(due.saturating_duration_since(Instant::now()))
                {
                    Ok(row) => row,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.receiver.recv() {
                    Ok(row) => row,
                    Err(_) => break,
                },
            };
            batch.push(first);
            let more_may_come = self.fill(&mut batch);
            self.write(&mut batch);
            if !more_may_come {
                break;
            }
        }
        self.report_drops();
        if self.abandoned > 0 {
            tracing::error!(
                "ledger: {} accepted usage rows were lost because the database failed through \
                 the shutdown grace",
                self.abandoned
            );
        }
    }

    /// Adds rows to `batch` until it holds `batch_size` or `flush_interval` has passed since its
    /// first row. Returns false once the queue is empty and every sender is gone (shutdown).
    ///
    /// It sleeps between looks at the queue rather than parking on it: while a receiver is
    /// parked, every `try_send` pays a futex wake-up (microseconds) on the request thread; while
    /// it sleeps, a send is a few atomic operations. Only the first row of a batch wakes the
    /// thread.
    fn fill(&self, batch: &mut Vec<RequestRecord>) -> bool {
        let deadline = deadline_after(self.settings.flush_interval);
        while batch.len() < self.settings.batch_size {
            match self.receiver.try_recv() {
                Ok(row) => {
                    batch.push(row);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => {}
            }
            let left = deadline.map_or(GATHER_POLL, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(GATHER_POLL));
        }
        true
    }

    /// Commits `batch` and empties it, retrying with backoff for as long as it takes. Only during
    /// shutdown, and only after `shutdown_grace` of failures, does it give the rows up.
    fn write(&mut self, batch: &mut Vec<RequestRecord>) {
        let rows = batch.len() as u64;
        let mut backoff = FIRST_BACKOFF;
        let mut failures: u64 = 0;
        let mut failing_since = None;
        loop {
            let error = match insert_batch(&mut self.conn, batch) {
                Ok(()) => {
                    self.counters.written.fetch_add(rows, Ordering::Relaxed);
                    self.counters.queued.fetch_sub(rows, Ordering::Relaxed);
                    batch.clear();
                    self.failing_while_stopping = None;
                    if let Some(since) = failing_since {
                        tracing::warn!(
                            "ledger: writes succeed again after {failures} failed attempts over \
                             {:.1?}; the {rows} rows held meanwhile are written",
                            Instant::now().duration_since(since)
                        );
                    }
                    self.report_drops();
                    return;
                }
                Err(error) => error,
            };
            failures += 1;
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            let since = *failing_since.get_or_insert_with(Instant::now);
            self.report_write_failure(&error, rows, failures, since);
            if self.shutdown_grace_is_over() {
                if self.abandoned == 0 {
                    tracing::error!(
                        "ledger: the database still fails after the shutdown grace ({error}); \
                         giving up on the usage rows not yet written"
                    );
                }
                self.abandoned += rows;
                self.counters.dropped.fetch_add(rows, Ordering::Relaxed);
                self.counters.queued.fetch_sub(rows, Ordering::Relaxed);
                batch.clear();
                return;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn shutdown_grace_is_over(&mut self) -> bool {
        if !self.counters.stopping.load(Ordering::Relaxed) {
            return false;
        }
        let since = *self.failing_while_stopping.get_or_insert_with(Instant::now);
        Instant::now().duration_since(since) >= self.limits.shutdown_grace
    }

    /// One line per `LOG_EVERY` however often the retry loop fails.
    fn report_write_failure(
        &mut self,
        error: &rusqlite::Error,
        rows: u64,
        failures: u64,
        since: Instant,
    ) {
        if !self.failure_log.ready() {
            return;
        }
        let failing_for = Instant::now().duration_since(since);
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if matches!(
            error.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        ) {
            tracing::warn!(
                "ledger: another connection holds the database's write lock ({error}); holding \
                 {rows} rows and retrying (attempt {failures}, {failing_for:.1?} so far, \
                 {dropped} rows dropped since start while the queue was full)"
            );
        } else {
            tracing::error!(
                "ledger: cannot write usage rows ({error}); holding {rows} rows and retrying \
                 (attempt {failures}, {failing_for:.1?} so far, {dropped} rows dropped since \
                 start while the queue was full)"
            );
        }
    }

    /// Logs, at most once per `LOG_EVERY`, that rows were dropped since the last report.
    fn report_drops(&mut self) {
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_reported && self.drop_log.ready() {
            tracing::warn!(
                "ledger: {} usage rows dropped because the queue (capacity {}) was full; \
                 {dropped} since start",
                dropped - self.dropped_reported,
                self.settings.queue_capacity
            );
            self.dropped_reported = dropped;
        }
    }

    /// Folds one chunk of rows older than the retention into `usage_daily`; returns when the next
    /// chunk is due: at once (after the queue has been served) while old rows remain.
    fn prune(&mut self) -> Option<Instant> {
        let retention = self.settings.retention?;
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = self.clock.now_ms().saturating_sub(retention_ms);
        let chunk = self.limits.prune_chunk_rows;
        match retention::roll_up_older_than(&mut self.conn, cutoff_ms, chunk) {
            Ok(moved) => {
                if moved > 0 {
                    tracing::info!(
                        "ledger: folded {moved} rows older than the retention into usage_daily"
                    );
                }
                if moved >= chunk {
                    Some(Instant::now())
                } else {
                    deadline_after(self.settings.prune_interval)
                }
            }
            Err(error) => {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                if self.failure_log.ready() {
                    tracing::warn!("ledger: cannot apply the retention yet ({error}); will retry");
                }
                deadline_after(self.settings.prune_interval.min(PRUNE_RETRY))
            }
        }
    }
}

const INSERT_ROW: &str = "
    INSERT INTO requests (user_id, endpoint, status, latency_ms, tokens_est, ip_hash, created_at,
                          request_id, method, model, node, prompt_tokens, completion_tokens,
                          total_tokens, streamed, tokens_reported, error_type, run_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, datetime(?7 / 1000, 'unixepoch'),
            ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// Writes `batch` in one `write_transaction`: it takes the write lock up front, so a busy
/// database fails here, before any row, and the whole batch is retried.
fn insert_batch(conn: &mut Connection, batch: &[RequestRecord]) -> rusqlite::Result<()> {
    let tx = write_transaction(conn)?;
    {
        let mut insert = tx.prepare_cached(INSERT_ROW)?;
        for row in batch {
            let RequestRecord {
                request_id,
                user_id,
                endpoint,
                method,
                status,
                latency_ms,
                created_ms,
                ip_hash,
                model,
                node,
                prompt_tokens,
                completion_tokens,
                total_tokens,
                tokens_est,
                streamed,
                tokens_reported,
                error_type,
                run_id,
            } = row;
            insert.execute(params![
                user_id,
                endpoint,
                status,
                as_sql_int(*latency_ms),
                as_sql_int(*tokens_est),
                ip_hash,
                as_sql_int(*created_ms),
                request_id,
                method,
                model,
                node,
                prompt_tokens.map(as_sql_int),
                completion_tokens.map(as_sql_int),
                total_tokens.map(as_sql_int),
                streamed,
                tokens_reported,
                error_type,
                run_id,
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::queries::usage_since;
    use crate::ledger::test_support::{
        count, manual_clock, row, temp_ledger, wait_until, DAY_MS, MIDNIGHT,
    };
    use crate::ledger::{self, migrations};

    const WAIT: Duration = Duration::from_secs(10);

    fn settings(queue_capacity: usize, batch_size: usize) -> LedgerSettings {
        LedgerSettings {
            queue_capacity,
            batch_size,
            flush_interval: Duration::from_millis(5),
            retention: None,
            prune_interval: Duration::from_secs(3_600),
        }
    }

    #[test]
    fn every_recorded_row_is_written_by_shutdown() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let writer = LedgerWriter::start(&path, settings(1_000, 64), clock).unwrap();
        for n in 0..500 {
            writer.record(row("ana", MIDNIGHT + n, n));
        }
        writer.shutdown();
        let stats = writer.stats();
        assert_eq!(
            stats,
            LedgerStats {
                queued: 0,
                written: 500,
                dropped: 0,
                write_errors: 0,
                queue_capacity: 1_000,
            }
        );
        let conn = ledger::open(&path).unwrap();
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM requests"), 500);
        // Every column lands where the schema says, with the seed's created_at format.
        let stored: (
            String,
            String,
            String,
            i64,
            i64,
            i64,
            String,
            String,
            i64,
            i64,
            String,
        ) = conn
            .query_row(
                "SELECT request_id, user_id, method, status, latency_ms, tokens_est, ip_hash,
                        created_at, streamed, tokens_reported, model
                 FROM requests WHERE request_id = 'req_0000000000000007'",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            stored,
            (
                "req_0000000000000007".into(),
                "ana".into(),
                "POST".into(),
                200,
                100,
                30,
                "ab".repeat(32),
                "2025-10-10 00:00:00".into(),
                0,
                1,
                "gpt-4o-mini".into(),
            )
        );
    }

    #[test]
    fn shutdown_is_idempotent_and_later_rows_count_as_dropped() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let writer = LedgerWriter::start(&path, settings(100, 10), clock).unwrap();
        writer.record(row("ana", MIDNIGHT, 1));
        writer.shutdown();
        writer.shutdown();
        writer.record(row("ana", MIDNIGHT, 2));
        let stats = writer.stats();
        assert_eq!((stats.written, stats.dropped, stats.queued), (1, 1, 0));
    }

    #[test]
    fn dropping_the_writer_drains_the_queue() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        {
            let writer = LedgerWriter::start(&path, settings(1_000, 7), clock).unwrap();
            for n in 0..300 {
                writer.record(row("bo", MIDNIGHT, n));
            }
        }
        let conn = ledger::open(&path).unwrap();
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM requests"), 300);
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let refused = |s: LedgerSettings| {
            LedgerWriter::start(&path, s, Arc::clone(&clock))
                .err()
                .unwrap()
        };
        assert!(refused(settings(0, 10)).contains("queue_capacity"));
        assert!(refused(settings(MAX_QUEUE_CAPACITY + 1, 10)).contains("queue_capacity"));
        assert!(refused(settings(10, 0)).contains("batch_size"));
        let mut no_interval = settings(10, 10);
        no_interval.retention = Some(Duration::from_secs(60));
        no_interval.prune_interval = Duration::ZERO;
        assert!(refused(no_interval).contains("prune_interval"));
    }

    #[test]
    fn concurrent_records_are_all_written_or_counted_as_dropped() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let writer = Arc::new(LedgerWriter::start(&path, settings(1_024, 256), clock).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let writer = Arc::clone(&writer);
                std::thread::spawn(move || {
                    for n in 0..10_000 {
                        writer.record(row(&format!("user-{t}"), MIDNIGHT + n, t * 100_000 + n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        writer.shutdown();
        let stats = writer.stats();
        assert_eq!(stats.written + stats.dropped, 80_000, "{stats:?}");
        assert!(
            stats.written >= 1_024,
            "the first queue-full is always accepted"
        );
        assert_eq!(stats.queued, 0);
        let conn = ledger::open(&path).unwrap();
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM requests") as u64,
            stats.written
        );
    }

    #[test]
    fn a_locked_database_stalls_the_writer_without_losing_accepted_rows() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let writer = LedgerWriter::start(&path, settings(16, 8), clock).unwrap();
        let blocker = ledger::open(&path).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let locked_at = Instant::now();

        let offered = 1_000;
        for n in 0..offered {
            writer.record(row("ana", MIDNIGHT + n, n));
        }
        wait_until("the writer has hit the lock", WAIT, || {
            writer.stats().write_errors >= 1
        });
        std::thread::sleep(Duration::from_secs(1).saturating_sub(locked_at.elapsed()));

        let stalled = writer.stats();
        let accepted = offered - stalled.dropped;
        assert_eq!(stalled.written, 0);
        assert_eq!(stalled.queued, accepted, "held rows show as queued");
        assert!(
            (16..=16 + 8).contains(&accepted),
            "queue plus one batch: {stalled:?}"
        );

        blocker.execute_batch("COMMIT").unwrap();
        writer.shutdown();
        let after = writer.stats();
        assert_eq!(after.written, accepted, "{after:?}");
        assert_eq!(after.dropped, stalled.dropped, "nothing accepted is lost");
        assert_eq!(after.queued, 0);
        assert!(after.write_errors >= 1);
        assert_eq!(
            count(&blocker, "SELECT COUNT(*) FROM requests") as u64,
            accepted
        );
    }

    #[test]
    fn a_failing_write_keeps_its_batch_until_the_database_recovers() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let writer = LedgerWriter::start(&path, settings(100, 10), clock).unwrap();
        // Not a lock: the table is gone, so every insert fails with a plain SQL error.
        let admin = ledger::open(&path).unwrap();
        admin
            .execute_batch("ALTER TABLE requests RENAME TO requests_parked")
            .unwrap();
        for n in 0..25 {
            writer.record(row("ana", MIDNIGHT, n));
        }
        wait_until("a write has failed", WAIT, || {
            writer.stats().write_errors >= 2
        });
        admin
            .execute_batch("ALTER TABLE requests_parked RENAME TO requests")
            .unwrap();
        writer.shutdown();
        let stats = writer.stats();
        assert_eq!((stats.written, stats.dropped), (25, 0), "{stats:?}");
        assert_eq!(count(&admin, "SELECT COUNT(*) FROM requests"), 25);
    }

    #[test]
    fn shutdown_gives_up_after_the_grace_when_the_database_never_recovers() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        let limits = WriterLimits {
            shutdown_grace: Duration::from_millis(300),
            ..DEFAULT_LIMITS
        };
        let writer =
            LedgerWriter::start_with_limits(&path, settings(100, 10), clock, limits).unwrap();
        let blocker = ledger::open(&path).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        for n in 0..25 {
            writer.record(row("ana", MIDNIGHT, n));
        }
        wait_until("the writer has hit the lock", WAIT, || {
            writer.stats().write_errors >= 1
        });
        let started = Instant::now();
        writer.shutdown();
        assert!(started.elapsed() < WAIT);
        let stats = writer.stats();
        assert_eq!((stats.written, stats.dropped, stats.queued), (0, 25, 0));
        blocker.execute_batch("COMMIT").unwrap();
    }

    /// Alice has three rows ten days ago (one failed) and two recent ones; Bo two rows nine days
    /// ago (one the client abandoned, one with only an estimate).
    fn old_and_recent_rows(now: u64) -> Vec<RequestRecord> {
        let ten_days_ago = MIDNIGHT - 10 * DAY_MS;
        let mut rows = Vec::new();
        for (n, hour) in [1, 2, 3].into_iter().enumerate() {
            let mut r = row("alice", ten_days_ago + hour * 3_600_000, n as u64);
            if hour == 2 {
                r.status = 502;
                r.error_type = Some("upstream_timeout".into());
            }
            rows.push(r);
        }
        let mut abandoned = row("bo", ten_days_ago + DAY_MS + 60_000, 10);
        abandoned.status = 0;
        abandoned.latency_ms = 40;
        rows.push(abandoned);
        let mut estimated = row("bo", ten_days_ago + DAY_MS + 120_000, 11);
        estimated.total_tokens = None;
        estimated.prompt_tokens = None;
        estimated.completion_tokens = None;
        estimated.tokens_est = 99;
        estimated.tokens_reported = false;
        rows.push(estimated);
        rows.push(row("alice", now - 3_600_000, 20));
        rows.push(row("alice", now - 1_800_000, 21));
        rows
    }

    #[test]
    fn retention_at_start_folds_old_rows_into_the_rollup_and_usage_still_counts_them() {
        let (_dir, path) = temp_ledger();
        let now = MIDNIGHT + 12 * 3_600_000;
        let (_, clock) = manual_clock(now);
        let writer = LedgerWriter::start(&path, settings(100, 10), Arc::clone(&clock)).unwrap();
        for r in old_and_recent_rows(now) {
            writer.record(r);
        }
        writer.shutdown();
        let conn = ledger::open(&path).unwrap();
        let month_ago = now - 30 * DAY_MS;
        let before = usage_since(&conn, month_ago).unwrap();

        // Chunks of two rows, so the five old rows take three transactions.
        let mut keep_a_week = settings(100, 10);
        keep_a_week.retention = Some(Duration::from_millis(7 * DAY_MS));
        let limits = WriterLimits {
            prune_chunk_rows: 2,
            ..DEFAULT_LIMITS
        };
        let writer =
            LedgerWriter::start_with_limits(&path, keep_a_week.clone(), clock, limits).unwrap();
        wait_until("the old rows are rolled up", WAIT, || {
            count(&conn, "SELECT COUNT(*) FROM requests") == 2
        });
        writer.shutdown();

        assert_eq!(count(&conn, "SELECT COUNT(*) FROM usage_daily"), 2);
        assert_eq!(
            count(&conn, "SELECT SUM(requests) FROM usage_daily"),
            5,
            "each old row is in the rollup exactly once"
        );
        let after = usage_since(&conn, month_ago).unwrap();
        assert_eq!(
            after, before,
            "a window past the cut-off still sees every row"
        );
        assert_eq!(after[0].user_id, "alice");
        assert_eq!((after[0].requests, after[0].errors), (5, 1));
        assert_eq!((after[1].requests, after[1].errors), (2, 1));
        assert_eq!(after[1].total_tokens, 30 + 99);

        // A window after the cut-off sees only raw rows, and none of the rollup.
        let recent = usage_since(&conn, now - 2 * 3_600_000).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(
            (recent[0].user_id.as_str(), recent[0].requests),
            ("alice", 2)
        );
    }

    #[test]
    fn retention_runs_every_prune_interval_against_the_injected_clock() {
        let (_dir, path) = temp_ledger();
        let (manual, clock) = manual_clock(MIDNIGHT);
        let mut keep_a_week = settings(100, 10);
        keep_a_week.retention = Some(Duration::from_millis(7 * DAY_MS));
        keep_a_week.prune_interval = Duration::from_millis(20);
        let writer = LedgerWriter::start(&path, keep_a_week, clock).unwrap();
        for n in 0..3 {
            writer.record(row("ana", MIDNIGHT, n));
        }
        wait_until("rows are written", WAIT, || writer.stats().written == 3);
        std::thread::sleep(Duration::from_millis(60));
        let conn = ledger::open(&path).unwrap();
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM usage_daily"), 0);

        manual.advance(8 * DAY_MS);
        wait_until("the rows age out", WAIT, || {
            count(&conn, "SELECT COUNT(*) FROM requests") == 0
        });
        writer.shutdown();
        assert_eq!(
            count(
                &conn,
                "SELECT requests FROM usage_daily WHERE day = '2025-10-10'"
            ),
            3
        );
        assert_eq!(writer.stats().write_errors, 0);
    }

    #[test]
    fn restarting_the_writer_reapplies_no_migration() {
        let (_dir, path) = temp_ledger();
        let (_, clock) = manual_clock(MIDNIGHT);
        for _ in 0..2 {
            LedgerWriter::start(&path, settings(10, 10), Arc::clone(&clock))
                .unwrap()
                .shutdown();
        }
        let mut conn = ledger::open(&path).unwrap();
        assert_eq!(migrations::apply(&mut conn).unwrap(), 0);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM schema_version") as usize,
            migrations::MIGRATIONS.len()
        );
    }
}
