//! The run queue on SQLite, the embedded default: `RunQueue` over the tables of migration 0007.
//!
//! One connection behind a mutex: callers are blocking threads, and SQLite commits one write
//! transaction at a time anyway. Every transaction that writes is a `write_transaction` (`BEGIN
//! IMMEDIATE`), so another process on the same file waits for it instead of failing.
//! `synchronous` stays FULL (SQLite's default, which `connect` keeps): a run acknowledged to its
//! caller survives a power cut, at the price of one fsync per enqueue.
//!
//! Lanes: `run_lanes` mirrors each lane's head. Every change to a run's status or place in its
//! lane ends with `refresh_lane` in the same transaction, which reads the head again from
//! `idx_runs_lane`, so the lane row follows from the runs. Only two writes shortcut it: enqueue
//! makes a new run the head of an empty lane (a new run is always last), and the claim stamps
//! "running" and "served". A claim reads the first ready lane from `idx_run_lanes_ready`
//! instead of searching the runs. The counts (per status, per owner since a limit's start) are
//! kept by triggers on `runs`.
//!
//! A retried run goes to the end of its lane: `seq` is the primary key and the list cursor, so it
//! never changes; a run's place in its lane is a separate `lane_pos`, a ticket taken at enqueue
//! and taken again by `retry`.
//!
//! Not for: the schema (migrations/0007_runs.sql, applied by `ledger::open`), or deciding what
//! to admit (the caller's closure).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};

use super::{
    Backoff, CancelOutcome, Candidate, Claimed, Enqueued, Expired, Lease, MonthlyLimit, NewRun,
    Outcome, QueueError, Renewal, Result, Run, RunError, RunFilter, RunPage, RunQueue, RunStatus,
    LEASE_EXPIRED,
};
use crate::ledger::connection::{connect, write_transaction};

/// The columns `read_run` reads, in its order (a macro so SQL can be assembled with `concat!`).
macro_rules! run_columns {
    () => {
        "seq, id, tenant_id, owner, template, agent, input, prompt, idempotency_key, priority, \
         max_attempts, timeout_ms, byok, pool, status, attempts, created_ms, started_ms, \
         finished_ms, available_ms, error_code, error_message, cancel_requested, tier, session"
    };
}

/// The columns `read_held` reads.
macro_rules! held_columns {
    () => {
        "seq, tenant_id, agent, attempts, max_attempts, cancel_requested"
    };
}

/// The first ready lane in claim order; a head still backing off is skipped.
const READY_LANES: &str = "SELECT tenant_id, agent, head_seq, head_owner, head_priority,
       COALESCE(head_tier, '')
     FROM run_lanes
     WHERE running = 0 AND head_seq IS NOT NULL AND head_available_ms <= ?1
     ORDER BY head_priority DESC, tenant_served, lane_served, head_seq";

/// A lane's head: its first unfinished run.
const LANE_HEAD: &str = "SELECT seq, owner, priority, available_ms, status = 'running', tier
     FROM runs
     WHERE tenant_id = ?1 AND agent = ?2 AND status IN ('queued', 'running')
     ORDER BY lane_pos LIMIT 1";

const RUNNING_FOR_OWNER: &str = "SELECT COUNT(*) FROM runs WHERE owner = ?1 AND status = 'running'";

/// Counts the owner's runs since a limit's start, once per start (then `run_owner_counts`).
const CREATED_SINCE: &str = "SELECT COUNT(*) FROM runs WHERE owner = ?1 AND created_ms >= ?2";

const EXPIRED_LEASES: &str = concat!(
    "SELECT ",
    held_columns!(),
    " FROM runs WHERE status = 'running' AND lease_expires_ms <= ?1"
);

/// The run queue in one SQLite file (see the module docs).
pub struct SqliteQueue {
    path: PathBuf,
    /// Opened on first use: a connection opened before Pingora's daemon fork would not
    /// survive it.
    conn: Mutex<Option<Connection>>,
}

impl SqliteQueue {
    /// The queue in the database at `path`, whose schema `ledger::open` has brought up to date
    /// (it fails, naming the file, when the queue's tables are missing).
    pub fn open(path: &Path) -> Result<SqliteQueue, String> {
        let conn = connect(path)?;
        conn.query_row("SELECT last FROM run_tickets WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| {
            format!(
                "database {}: no run queue (is its schema migrated?): {e}",
                path.display()
            )
        })?;
        Ok(SqliteQueue {
            path: path.to_owned(),
            conn: Mutex::new(None),
        })
    }

    fn conn(&self) -> Result<ConnGuard<'_>> {
        // A panic while the lock was held dropped its transaction, which rolled it back: the
        // connection itself is sound.
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let conn = connect(&self.path).map_err(QueueError)?;
            conn.set_prepared_statement_cache_capacity(64);
            *slot = Some(conn);
        }
        Ok(ConnGuard(slot))
    }
}

/// The queue's connection, held for one call.
struct ConnGuard<'a>(MutexGuard<'a, Option<Connection>>);

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0.as_ref().expect("opened in `conn`")
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.0.as_mut().expect("opened in `conn`")
    }
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError(format!("sqlite: {e}"))
    }
}

impl RunQueue for SqliteQueue {
    fn enqueue(&self, run: NewRun, limit: Option<MonthlyLimit>, now_ms: u64) -> Result<Enqueued> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        if let Some(key) = &run.idempotency_key {
            let existing = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM runs WHERE tenant_id = ?1 AND idempotency_key = ?2"
                ))?
                .query_row(params![run.tenant_id, key], read_run)
                .optional()?;
            if let Some(existing) = existing {
                let same = existing.template == run.template && existing.input == run.input;
                return Ok(if same {
                    Enqueued::Existing(existing)
                } else {
                    Enqueued::KeyReused(existing)
                });
            }
        }
        if let Some(MonthlyLimit { since_ms, limit }) = limit {
            let used = created_since(&tx, &run.owner, since_ms)?;
            if used >= limit {
                tx.commit()?; // Keeps the count, if this was its first reading.
                return Ok(Enqueued::OverMonthlyLimit { used });
            }
        }
        let lane_pos = next_ticket(&tx)?;
        let run = insert(&tx, run, lane_pos, now_ms)?;
        adopt_as_head(&tx, &run)?;
        tx.commit()?;
        Ok(Enqueued::Created(run))
    }

    fn claim(
        &self,
        now_ms: u64,
        lease_for: Duration,
        admit: &mut dyn FnMut(&Candidate<'_>) -> bool,
    ) -> Result<Option<Claimed>> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let Some(lane) = pick_lane(&tx, now_ms, admit)? else {
            return Ok(None);
        };
        let token = next_ticket(&tx)?;
        let expires_ms = now_ms.saturating_add(millis(lease_for));
        let run = tx
            .prepare_cached(concat!(
                "UPDATE runs SET status = 'running', attempts = attempts + 1,
                   started_ms = COALESCE(started_ms, ?2), lease_token = ?3, lease_expires_ms = ?4
                 WHERE seq = ?1 RETURNING ",
                run_columns!()
            ))?
            .query_row(
                params![lane.head_seq, ms(now_ms), token, ms(expires_ms)],
                read_run,
            )?;
        tx.prepare_cached(
            "UPDATE run_lanes SET running = 1, lane_served = ?3 WHERE tenant_id = ?1 AND agent = ?2",
        )?
        .execute(params![lane.tenant_id, lane.agent, token])?;
        tx.prepare_cached("UPDATE run_lanes SET tenant_served = ?2 WHERE tenant_id = ?1")?
            .execute(params![lane.tenant_id, token])?;
        tx.commit()?;
        let lease = Lease {
            run_id: run.id.clone(),
            token,
        };
        Ok(Some(Claimed { run, lease }))
    }

    fn renew(&self, lease: &Lease, now_ms: u64, lease_for: Duration) -> Result<Renewal> {
        let expires_ms = now_ms.saturating_add(millis(lease_for));
        let conn = self.conn()?;
        let cancel_requested: Option<bool> = conn
            .prepare_cached(
                "UPDATE runs SET lease_expires_ms = ?3
                 WHERE id = ?1 AND lease_token = ?2 AND status = 'running'
                 RETURNING cancel_requested",
            )?
            .query_row(params![lease.run_id, lease.token, ms(expires_ms)], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(match cancel_requested {
            None => Renewal::Lost,
            Some(false) => Renewal::Held,
            Some(true) => Renewal::CancelRequested,
        })
    }

    fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        backoff: &Backoff,
        now_ms: u64,
    ) -> Result<Option<Run>> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let Some(held) = held(&tx, lease)? else {
            return Ok(None);
        };
        let (next, error) = match &outcome {
            Outcome::Succeeded => (Next::Final(RunStatus::Succeeded), None),
            Outcome::Failed(error) => (Next::Final(RunStatus::Failed), Some(error)),
            Outcome::Canceled => (Next::Final(RunStatus::Canceled), None),
            Outcome::Retry(error) => (after_failure(&held, backoff, now_ms), Some(error)),
        };
        let run = end_attempt(&tx, &held, next, error, Count::Kept, now_ms)?;
        tx.commit()?;
        Ok(Some(run))
    }

    fn release(&self, lease: &Lease, now_ms: u64) -> Result<bool> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let Some(held) = held(&tx, lease)? else {
            return Ok(false);
        };
        let next = if held.cancel_requested {
            Next::Final(RunStatus::Canceled)
        } else {
            Next::Queued {
                available_ms: now_ms,
            }
        };
        end_attempt(&tx, &held, next, None, Count::TakenBack, now_ms)?;
        tx.commit()?;
        Ok(true)
    }

    fn expire_leases(&self, now_ms: u64, backoff: &Backoff) -> Result<Vec<Expired>> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let expired = tx
            .prepare_cached(EXPIRED_LEASES)?
            .query_map(params![ms(now_ms)], read_held)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let error = RunError {
            code: LEASE_EXPIRED.into(),
            message: "the worker stopped renewing its lease".into(),
        };
        let mut outcomes = Vec::with_capacity(expired.len());
        for held in expired {
            let next = after_failure(&held, backoff, now_ms);
            let error = (!held.cancel_requested).then_some(&error);
            let run = end_attempt(&tx, &held, next, error, Count::Kept, now_ms)?;
            outcomes.push(match run.status {
                RunStatus::Queued => Expired::Requeued(run),
                RunStatus::Dead => Expired::Dead(run),
                _ => Expired::Canceled(run),
            });
        }
        tx.commit()?;
        Ok(outcomes)
    }

    fn cancel(&self, run_id: &str, now_ms: u64) -> Result<CancelOutcome> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let Some(run) = get_run(&tx, run_id)? else {
            return Ok(CancelOutcome::NotFound);
        };
        let outcome = match run.status {
            RunStatus::Queued => {
                let run = tx
                    .prepare_cached(concat!(
                        "UPDATE runs SET status = 'canceled', finished_ms = ?2
                         WHERE seq = ?1 RETURNING ",
                        run_columns!()
                    ))?
                    .query_row(params![run.seq, ms(now_ms)], read_run)?;
                refresh_lane(&tx, &run.tenant_id, &run.agent)?;
                CancelOutcome::Canceled(run)
            }
            RunStatus::Running => CancelOutcome::Requested(
                tx.prepare_cached(concat!(
                    "UPDATE runs SET cancel_requested = 1 WHERE seq = ?1 RETURNING ",
                    run_columns!()
                ))?
                .query_row(params![run.seq], read_run)?,
            ),
            _ => CancelOutcome::AlreadyFinished(run),
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn cancel_tenant(&self, tenant_id: &str, now_ms: u64) -> Result<u64> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        // SET expressions read the row as it was: queued runs are canceled, running ones asked.
        let changed = tx
            .prepare_cached(
                "UPDATE runs SET
                   status = CASE status WHEN 'queued' THEN 'canceled' ELSE status END,
                   finished_ms = CASE status WHEN 'queued' THEN ?2 ELSE finished_ms END,
                   cancel_requested = CASE status WHEN 'running' THEN 1 ELSE cancel_requested END
                 WHERE tenant_id = ?1 AND status IN ('queued', 'running')",
            )?
            .execute(params![tenant_id, ms(now_ms)])?;
        let agents = tx
            .prepare_cached(
                "SELECT agent FROM run_lanes WHERE tenant_id = ?1 AND head_seq IS NOT NULL",
            )?
            .query_map(params![tenant_id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for agent in agents {
            refresh_lane(&tx, tenant_id, &agent)?;
        }
        tx.commit()?;
        Ok(changed as u64)
    }

    fn retry(&self, run_id: &str, now_ms: u64) -> Result<Option<Run>> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let Some(run) = get_run(&tx, run_id)? else {
            return Ok(None);
        };
        if !matches!(
            run.status,
            RunStatus::Failed | RunStatus::Dead | RunStatus::Canceled
        ) {
            return Ok(None);
        }
        let lane_pos = next_ticket(&tx)?;
        let run = tx
            .prepare_cached(concat!(
                "UPDATE runs SET status = 'queued', attempts = 0, cancel_requested = 0,
                   started_ms = NULL, finished_ms = NULL, available_ms = ?2, lane_pos = ?3,
                   pruned = 0
                 WHERE seq = ?1 RETURNING ",
                run_columns!()
            ))?
            .query_row(params![run.seq, ms(now_ms), lane_pos], read_run)?;
        refresh_lane(&tx, &run.tenant_id, &run.agent)?;
        tx.commit()?;
        Ok(Some(run))
    }

    fn fail_queued(&self, run_id: &str, error: RunError, now_ms: u64) -> Result<Option<Run>> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        let run = tx
            .prepare_cached(concat!(
                "UPDATE runs SET status = 'failed', finished_ms = ?2, error_code = ?3,
                   error_message = ?4
                 WHERE id = ?1 AND status = 'queued' RETURNING ",
                run_columns!()
            ))?
            .query_row(
                params![run_id, ms(now_ms), error.code, error.message],
                read_run,
            )
            .optional()?;
        if let Some(run) = &run {
            refresh_lane(&tx, &run.tenant_id, &run.agent)?;
        }
        tx.commit()?;
        Ok(run)
    }

    fn get(&self, run_id: &str) -> Result<Option<Run>> {
        let conn = self.conn()?;
        Ok(get_run(&conn, run_id)?)
    }

    fn list(&self, filter: &RunFilter) -> Result<RunPage> {
        let RunFilter {
            owner,
            tenant_id,
            status,
            limit,
            before_seq,
        } = filter;
        let limit = (*limit).clamp(1, 100) as usize;
        let mut sql = concat!("SELECT ", run_columns!(), " FROM runs WHERE 1").to_owned();
        let mut values = Vec::new();
        let conditions = [
            ("owner =", owner.clone().map(Value::Text)),
            ("tenant_id =", tenant_id.clone().map(Value::Text)),
            ("status =", status.map(|s| Value::Text(s.as_str().into()))),
            ("seq <", before_seq.map(Value::Integer)),
        ];
        for (condition, value) in conditions {
            if let Some(value) = value {
                values.push(value);
                sql.push_str(&format!(" AND {condition} ?{}", values.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
        let conn = self.conn()?;
        let mut runs = conn
            .prepare_cached(&sql)?
            .query_map(params_from_iter(values), read_run)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next_cursor = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(|run| run.seq)
        } else {
            None
        };
        Ok(RunPage { runs, next_cursor })
    }

    fn counts_by_status(&self) -> Result<Vec<(RunStatus, u64)>> {
        let conn = self.conn()?;
        let counted = conn
            .prepare_cached("SELECT status, runs FROM run_status_counts")?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<HashMap<_, _>>>()?;
        Ok(RunStatus::ALL
            .into_iter()
            .map(|status| {
                let runs = counted.get(status.as_str()).copied().unwrap_or(0);
                (status, unsigned(runs))
            })
            .collect())
    }

    fn queued_byok(&self) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let ids = conn
            .prepare_cached(
                "SELECT id FROM runs WHERE byok = 1 AND status IN ('queued', 'running')
                 ORDER BY seq",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    fn finished_before(&self, cutoff_ms: u64, limit: u32) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let ids = conn
            .prepare_cached(
                "SELECT id FROM runs
                 WHERE finished_ms IS NOT NULL AND pruned = 0 AND finished_ms < ?1
                 ORDER BY finished_ms LIMIT ?2",
            )?
            .query_map(params![ms(cutoff_ms), limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    fn mark_pruned(&self, ids: &[String]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_transaction(&mut conn)?;
        {
            let mut mark = tx.prepare_cached("UPDATE runs SET pruned = 1 WHERE id = ?1")?;
            for id in ids {
                mark.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// How many runs `owner` created since `since_ms`: one row of `run_owner_counts`, which the
/// first reading for this start counts from `runs` (dropping the owner's earlier starts).
fn created_since(tx: &Transaction, owner: &str, since_ms: u64) -> rusqlite::Result<u64> {
    let since_ms = ms(since_ms);
    let known: Option<i64> = tx
        .prepare_cached("SELECT runs FROM run_owner_counts WHERE owner = ?1 AND since_ms = ?2")?
        .query_row(params![owner, since_ms], |r| r.get(0))
        .optional()?;
    if let Some(runs) = known {
        return Ok(unsigned(runs));
    }
    let runs: i64 = tx
        .prepare_cached(CREATED_SINCE)?
        .query_row(params![owner, since_ms], |r| r.get(0))?;
    tx.prepare_cached("DELETE FROM run_owner_counts WHERE owner = ?1 AND since_ms < ?2")?
        .execute(params![owner, since_ms])?;
    tx.prepare_cached("INSERT INTO run_owner_counts (owner, since_ms, runs) VALUES (?1, ?2, ?3)")?
        .execute(params![owner, since_ms, runs])?;
    Ok(unsigned(runs))
}

/// Stores `run`, queued and available at `now_ms`, at `lane_pos` in its lane.
fn insert(tx: &Transaction, run: NewRun, lane_pos: i64, now_ms: u64) -> rusqlite::Result<Run> {
    let NewRun {
        id,
        tenant_id,
        owner,
        template,
        agent,
        input,
        prompt,
        idempotency_key,
        priority,
        max_attempts,
        timeout_ms,
        byok,
        pool,
        tier,
        session,
    } = run;
    let max_attempts = max_attempts.max(1);
    let seq = tx
        .prepare_cached(
            "INSERT INTO runs (id, tenant_id, owner, template, agent, input, prompt,
               idempotency_key, priority, max_attempts, timeout_ms, byok, pool, status,
               created_ms, available_ms, lane_pos, tier, session)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'queued', ?14, ?14,
               ?15, ?16, ?17)
             RETURNING seq",
        )?
        .query_row(
            params![
                id,
                tenant_id,
                owner,
                template,
                agent,
                input,
                prompt,
                idempotency_key,
                priority,
                max_attempts,
                ms(timeout_ms),
                byok,
                pool,
                ms(now_ms),
                lane_pos,
                tier,
                session
            ],
            |r| r.get(0),
        )?;
    Ok(Run {
        id,
        tenant_id,
        owner,
        template,
        agent,
        input,
        prompt,
        idempotency_key,
        priority,
        max_attempts,
        timeout_ms,
        byok,
        pool,
        tier,
        session,
        status: RunStatus::Queued,
        attempts: 0,
        created_ms: now_ms,
        started_ms: None,
        finished_ms: None,
        available_ms: now_ms,
        last_error: None,
        cancel_requested: false,
        seq,
    })
}

/// Creates the new run's lane if it is new (sharing its tenant's "served" stamp), and makes the
/// run its head if the lane had no unfinished run: a new run is always last in its lane.
fn adopt_as_head(tx: &Transaction, run: &Run) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO run_lanes (tenant_id, agent, head_seq, head_owner, head_priority,
           head_available_ms, tenant_served, head_tier)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6,
           (SELECT COALESCE(MAX(tenant_served), 0) FROM run_lanes WHERE tenant_id = ?1), ?7)
         ON CONFLICT (tenant_id, agent) DO UPDATE SET
           head_seq = excluded.head_seq, head_owner = excluded.head_owner,
           head_priority = excluded.head_priority, head_available_ms = excluded.head_available_ms,
           head_tier = excluded.head_tier
         WHERE run_lanes.head_seq IS NULL",
    )?
    .execute(params![
        run.tenant_id,
        run.agent,
        run.seq,
        run.owner,
        run.priority,
        ms(run.available_ms),
        run.tier
    ])?;
    Ok(())
}

/// Reads the lane's head again from its runs, after any change to them.
fn refresh_lane(tx: &Transaction, tenant_id: &str, agent: &str) -> rusqlite::Result<()> {
    let head = tx
        .prepare_cached(LANE_HEAD)?
        .query_row(params![tenant_id, agent], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    let (seq, owner, priority, available_ms, running, tier) = match head {
        Some((seq, owner, priority, available_ms, running, tier)) => (
            Some(seq),
            Some(owner),
            priority,
            available_ms,
            running,
            Some(tier),
        ),
        None => (None, None, 0, 0, false, None),
    };
    tx.prepare_cached(
        "UPDATE run_lanes SET head_seq = ?3, head_owner = ?4, head_priority = ?5,
           head_available_ms = ?6, running = ?7, head_tier = ?8
         WHERE tenant_id = ?1 AND agent = ?2",
    )?
    .execute(params![
        tenant_id,
        agent,
        seq,
        owner,
        priority,
        available_ms,
        running,
        tier
    ])?;
    Ok(())
}

/// The lane a claim takes.
struct ReadyLane {
    tenant_id: String,
    agent: String,
    head_seq: i64,
}

/// The first ready lane, in claim order, whose head `admit` accepts.
fn pick_lane(
    tx: &Transaction,
    now_ms: u64,
    admit: &mut dyn FnMut(&Candidate<'_>) -> bool,
) -> rusqlite::Result<Option<ReadyLane>> {
    let mut running_by_owner: HashMap<String, u32> = HashMap::new();
    let mut lanes = tx.prepare_cached(READY_LANES)?;
    let mut rows = lanes.query(params![ms(now_ms)])?;
    while let Some(row) = rows.next()? {
        let tenant_id: String = row.get(0)?;
        let owner: String = row.get(3)?;
        let tier: String = row.get(5)?;
        let running_for_owner = match running_by_owner.get(&owner) {
            Some(&running) => running,
            None => {
                let running = tx
                    .prepare_cached(RUNNING_FOR_OWNER)?
                    .query_row(params![owner], |r| r.get(0))?;
                running_by_owner.insert(owner.clone(), running);
                running
            }
        };
        let candidate = Candidate {
            tenant_id: &tenant_id,
            owner: &owner,
            running_for_owner,
            priority: row.get(4)?,
            tier: &tier,
        };
        if admit(&candidate) {
            return Ok(Some(ReadyLane {
                tenant_id,
                agent: row.get(1)?,
                head_seq: row.get(2)?,
            }));
        }
    }
    Ok(None)
}

/// A running run whose lease is held, with what decides where it goes next.
struct Held {
    seq: i64,
    tenant_id: String,
    agent: String,
    attempts: u32,
    max_attempts: u32,
    cancel_requested: bool,
}

fn read_held(row: &Row<'_>) -> rusqlite::Result<Held> {
    Ok(Held {
        seq: row.get(0)?,
        tenant_id: row.get(1)?,
        agent: row.get(2)?,
        attempts: row.get(3)?,
        max_attempts: row.get(4)?,
        cancel_requested: row.get(5)?,
    })
}

/// The running run `lease` still holds, if it does.
fn held(tx: &Transaction, lease: &Lease) -> rusqlite::Result<Option<Held>> {
    tx.prepare_cached(concat!(
        "SELECT ",
        held_columns!(),
        " FROM runs WHERE id = ?1 AND lease_token = ?2 AND status = 'running'"
    ))?
    .query_row(params![lease.run_id, lease.token], read_held)
    .optional()
}

/// Where a run goes when its attempt ends.
enum Next {
    Final(RunStatus),
    Queued { available_ms: u64 },
}

/// Whether the attempt that ends counts towards `max_attempts`.
#[derive(PartialEq)]
enum Count {
    Kept,
    TakenBack,
}

/// After a failed attempt: canceled if that was asked, dead when the attempts are spent, else
/// queued again after the backoff.
fn after_failure(held: &Held, backoff: &Backoff, now_ms: u64) -> Next {
    if held.cancel_requested {
        Next::Final(RunStatus::Canceled)
    } else if held.attempts >= held.max_attempts {
        Next::Final(RunStatus::Dead)
    } else {
        Next::Queued {
            available_ms: now_ms.saturating_add(millis(backoff.delay(held.attempts))),
        }
    }
}

/// Ends the held run's attempt: moves it to `next`, records `error` (if any; an earlier one is
/// kept otherwise), drops its lease, and refreshes its lane.
fn end_attempt(
    tx: &Transaction,
    held: &Held,
    next: Next,
    error: Option<&RunError>,
    count: Count,
    now_ms: u64,
) -> rusqlite::Result<Run> {
    let (status, available_ms, finished_ms) = match next {
        Next::Final(status) => (status, None, Some(ms(now_ms))),
        Next::Queued { available_ms } => (RunStatus::Queued, Some(ms(available_ms)), None),
    };
    let run = tx
        .prepare_cached(concat!(
            "UPDATE runs SET status = ?2, available_ms = COALESCE(?3, available_ms),
               finished_ms = ?4, error_code = COALESCE(?5, error_code),
               error_message = COALESCE(?6, error_message), attempts = attempts - ?7,
               lease_token = NULL, lease_expires_ms = NULL
             WHERE seq = ?1 RETURNING ",
            run_columns!()
        ))?
        .query_row(
            params![
                held.seq,
                status.as_str(),
                available_ms,
                finished_ms,
                error.map(|e| &e.code),
                error.map(|e| &e.message),
                i64::from(count == Count::TakenBack),
            ],
            read_run,
        )?;
    refresh_lane(tx, &held.tenant_id, &held.agent)?;
    Ok(run)
}

fn get_run(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<Run>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE id = ?1"
    ))?
    .query_row(params![run_id], read_run)
    .optional()
}

/// The next value of the queue's one growing counter (fencing tokens, lane positions, stamps).
fn next_ticket(tx: &Transaction) -> rusqlite::Result<i64> {
    tx.prepare_cached("UPDATE run_tickets SET last = last + 1 WHERE id = 1 RETURNING last")?
        .query_row([], |r| r.get(0))
}

/// A run from the columns of `run_columns!`.
fn read_run(row: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(14)?;
    let status = status
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(14, Type::Text, Box::new(e)))?;
    let last_error = row
        .get::<_, Option<String>>(20)?
        .map(|code| -> rusqlite::Result<RunError> {
            let message = row.get::<_, Option<String>>(21)?.unwrap_or_default();
            Ok(RunError { code, message })
        })
        .transpose()?;
    Ok(Run {
        seq: row.get(0)?,
        id: row.get(1)?,
        tenant_id: row.get(2)?,
        owner: row.get(3)?,
        template: row.get(4)?,
        agent: row.get(5)?,
        input: row.get(6)?,
        prompt: row.get(7)?,
        idempotency_key: row.get(8)?,
        priority: row.get(9)?,
        max_attempts: row.get(10)?,
        timeout_ms: unsigned(row.get(11)?),
        byok: row.get(12)?,
        pool: row.get(13)?,
        status,
        attempts: row.get(15)?,
        created_ms: unsigned(row.get(16)?),
        started_ms: row.get::<_, Option<i64>>(17)?.map(unsigned),
        finished_ms: row.get::<_, Option<i64>>(18)?.map(unsigned),
        available_ms: unsigned(row.get(19)?),
        last_error,
        cancel_requested: row.get(22)?,
        tier: row.get(23)?,
        session: row.get(24)?,
    })
}

/// Unix ms (or a count) as SQLite stores it.
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
