//! The durable run queue: the contract every storage backend keeps (`RunQueue`) and the types it
//! speaks. No SQL here: `sqlite` is the embedded implementation, and PostgreSQL comes later as a
//! second one, so nothing in this file names a table, a connection or a driver's error.
//!
//! A run's life: `enqueue` commits it (queued) before the caller acknowledges it; a worker
//! `claim`s it under a lease (running), `renew`s the lease while the node works, and `finish`es
//! it: succeeded, failed, canceled, or back to queued with backoff for another attempt (dead once
//! its attempts are spent). A worker that stops renewing loses the run to `expire_leases`. Every
//! write a worker makes carries its `Lease`, whose fencing token is new on every claim, so a
//! worker whose run was taken away changes nothing with its late writes.
//!
//! Order: a *lane* is (tenant, agent), the agent's session on its node. Within a lane runs go one
//! at a time, in order; a lane whose first run is backing off waits, nothing overtakes it. Across
//! lanes: higher priority first, then the tenant served least recently, so one tenant's thousand
//! queued runs do not starve another tenant's one.
//!
//! Blocking: every method may wait for storage. Callers run them on a blocking thread
//! (`spawn_blocking`) and never hold anything across an await.
//!
//! Not for: the workers, talking to nodes, templates, or per-owner concurrency limits (the
//! caller's `admit` closure applies those from its in-memory tiers).

pub mod sqlite;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, RngCore};

pub use sqlite::SqliteQueue;

/// The queue's results: `QueueError` unless said otherwise.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// Where a run is in its life. The last four are final (`is_terminal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Dead,
}

impl RunStatus {
    /// Every status, in the order of a run's life.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Canceled,
        RunStatus::Dead,
    ];

    /// The lowercase name used in the API and in storage: "queued", "running", ...
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
            RunStatus::Dead => "dead",
        }
    }

    /// Final: the run will not be claimed again unless an operator `retry`s it.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no `RunStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown run status {:?}", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A run to accept: everything the caller decided before enqueueing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Chosen by the caller (`new_run_id`), so it can be logged before the run is stored.
    pub id: String,
    pub tenant_id: String,
    /// The gateway user who owns the tenant.
    pub owner: String,
    pub template: String,
    /// The OpenClaw agent; (tenant_id, agent) is the run's lane.
    pub agent: String,
    /// The caller's input object, JSON text (for display).
    pub input: String,
    /// The rendered instructions sent to the node.
    pub prompt: String,
    /// Unique per tenant: enqueueing the same key again answers the run it created.
    pub idempotency_key: Option<String>,
    /// The owner's tier priority: higher is claimed first.
    pub priority: u8,
    /// At least 1 (0 is stored as 1).
    pub max_attempts: u32,
    /// Per attempt.
    pub timeout_ms: u64,
    /// A provider key rides in memory with this run; it is never stored.
    pub byok: bool,
    /// The runtime pool pinned for this run's tenant (None: the tier's).
    pub pool: Option<String>,
    /// The tier the run was accepted under (a key's comped tier counts): its node calls and
    /// the owner's concurrent-run cap follow it.
    pub tier: String,
    /// The OpenClaw sub-session the run works in; None: its own (`tenant/<t>/run/<r>`).
    pub session: Option<String>,
}

/// A stored run: what was enqueued, and where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub tenant_id: String,
    pub owner: String,
    pub template: String,
    pub agent: String,
    pub input: String,
    pub prompt: String,
    pub idempotency_key: Option<String>,
    pub priority: u8,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub byok: bool,
    pub pool: Option<String>,
    pub tier: String,
    pub session: Option<String>,
    pub status: RunStatus,
    /// Claims so far that counted (a graceful `release` takes its claim back; `retry` resets).
    pub attempts: u32,
    pub created_ms: u64,
    /// The first claim (cleared by an operator's `retry`: the run starts over).
    pub started_ms: Option<u64>,
    /// Set when the run reaches a final state.
    pub finished_ms: Option<u64>,
    /// When a queued run may next be claimed (later than now while backing off).
    pub available_ms: u64,
    /// The error of the latest attempt that failed, kept through later attempts and `retry`.
    pub last_error: Option<RunError>,
    pub cancel_requested: bool,
    /// Insertion order: newest is highest; the list cursor.
    pub seq: i64,
}

/// Why an attempt failed: a machine-readable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    pub code: String,
    pub message: String,
}

/// A run a worker now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub run: Run,
    pub lease: Lease,
}

/// The right to write a running run's outcome. The token is new on every claim and never
/// reused, so a write under an older lease finds the token changed and does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub token: i64,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored, queued.
    Created(Run),
    /// The tenant already has a run with this idempotency key, the same template and input:
    /// that run (whatever its status), nothing stored.
    Existing(Run),
    /// The key was used for a different template or input: nothing stored; the caller answers 409.
    KeyReused(Run),
    /// The owner has created `used` runs since the limit's start: nothing stored.
    OverMonthlyLimit { used: u64 },
}

/// Runs the owner created since `since_ms` must stay below `limit` for a new one to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyLimit {
    pub since_ms: u64,
    pub limit: u64,
}

/// The run a claim would take next, shown to the caller's `admit` before it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub tenant_id: &'a str,
    pub owner: &'a str,
    /// The owner's runs running now (across all their tenants).
    pub running_for_owner: u32,
    pub priority: u8,
    /// The tier the candidate run was accepted under.
    pub tier: &'a str,
}

/// How a worker's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Final: no retry.
    Failed(RunError),
    /// Try again after a backoff, unless the attempts are spent: then dead, with this error. A run
    /// whose cancel was requested becomes canceled instead.
    Retry(RunError),
    /// The worker stopped the run because its cancel was requested.
    Canceled,
}

/// What `renew` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Extended: keep working.
    Held,
    /// Extended, but someone asked to cancel the run: stop it and finish with `Outcome::Canceled`.
    CancelRequested,
    /// The lease is no longer this worker's (expired and taken, or the run finished): stop and
    /// write nothing.
    Lost,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued: now canceled.
    Canceled(Run),
    /// It is running: `cancel_requested` is set and the worker stops it (`renew` tells it).
    Requested(Run),
    /// Already final: unchanged.
    AlreadyFinished(Run),
    NotFound,
}

/// How long a run waits before its next attempt.
///
/// `delay = min(max, base * 2^(attempts - 1)) * uniform(0.5, 1.0)`: exponential in the attempts
/// already made, capped, then "equal jitter" scales it by a random factor in [0.5, 1.0] so runs
/// that failed together (a node went down) do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `attempts` attempts (at least 1 counts as 1), with random jitter.
    pub fn delay(&self, attempts: u32) -> Duration {
        self.jittered(attempts, rand::rng().random_range(0.5..=1.0))
    }

    /// The wait after `attempts` attempts scaled by `jitter` (clamped to [0.5, 1.0]).
    pub fn jittered(&self, attempts: u32, jitter: f64) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        let ceiling = self
            .base
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max));
        ceiling.mul_f64(jitter.clamp(0.5, 1.0))
    }
}

/// Which runs `list` answers, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    pub owner: Option<String>,
    pub tenant_id: Option<String>,
    pub status: Option<RunStatus>,
    /// 1..=100 (clamped).
    pub limit: u32,
    /// The cursor: only runs older than this `seq` (a previous page's `next_cursor`).
    pub before_seq: Option<i64>,
}

/// One page of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// Pass as `before_seq` for the next page; None on the last page.
    pub next_cursor: Option<i64>,
}

/// What `expire_leases` did with a run whose worker stopped renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// Queued again, after a backoff; `last_error` is "lease_expired".
    Requeued(Run),
    /// Its attempts were spent: dead, `last_error` "lease_expired".
    Dead(Run),
    /// Its cancel had been requested: canceled.
    Canceled(Run),
}

/// The error code `expire_leases` records.
pub const LEASE_EXPIRED: &str = "lease_expired";

/// The queue's storage failed (an internal error: the caller answers 500 and logs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(String);

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run queue: {}", self.0)
    }
}

impl std::error::Error for QueueError {}

/// A new run id: "run_" and 26 lowercase base32 characters (130 random bits).
pub fn new_run_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 26];
    rand::rng().fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    format!("run_{chars}")
}

/// The durable run queue. Sync: callers run it on a blocking thread. Every method that changes
/// more than one row does so in one transaction.
pub trait RunQueue: Send + Sync {
    /// Accepts `run`, queued and available at `now_ms`, unless its idempotency key was used
    /// before or the owner is over `limit`. The key lookup, the monthly count and the insert
    /// are one transaction: two enqueues cannot both pass the limit.
    fn enqueue(&self, run: NewRun, limit: Option<MonthlyLimit>, now_ms: u64) -> Result<Enqueued>;

    /// Takes the next run under a lease of `lease_for`, or None when nothing may run now.
    ///
    /// Eligible: the first unfinished run of each lane, when it is queued and available (not
    /// backing off) and no run of its lane is running. Among those: highest priority, then the
    /// tenant served least recently, then the lane served least recently, then the oldest.
    /// `admit` sees each candidate in that order; a refused one is skipped, the next one tried.
    /// The claimed run is running, `attempts` + 1, `started_ms` set if unset, with a new token.
    fn claim(
        &self,
        now_ms: u64,
        lease_for: Duration,
        admit: &mut dyn FnMut(&Candidate<'_>) -> bool,
    ) -> Result<Option<Claimed>>;

    /// Extends the lease to `now_ms + lease_for` if it is still held (token matches, running).
    fn renew(&self, lease: &Lease, now_ms: u64, lease_for: Duration) -> Result<Renewal>;

    /// Records how the attempt ended, if the lease is still held (else None, nothing changed).
    /// `Retry` queues the run again after `backoff` (or makes it dead when its attempts are
    /// spent, or canceled when its cancel was requested). `last_error` is set by `Failed` and
    /// `Retry`; `finished_ms` by every final state.
    fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        backoff: &Backoff,
        now_ms: u64,
    ) -> Result<Option<Run>>;

    /// Graceful stop (the gateway shuts down): if the lease is held, the run is queued again,
    /// available now, and this attempt does not count. A run whose cancel was requested is
    /// canceled instead. False if the lease was not held.
    fn release(&self, lease: &Lease, now_ms: u64) -> Result<bool>;

    /// Every running run whose lease ran out by `now_ms` is queued again after `backoff`, or
    /// dead when its attempts are spent (both with error "lease_expired"), or canceled when
    /// its cancel was requested.
    fn expire_leases(&self, now_ms: u64, backoff: &Backoff) -> Result<Vec<Expired>>;

    /// Cancels a queued run at once; asks the worker of a running one to stop.
    fn cancel(&self, run_id: &str, now_ms: u64) -> Result<CancelOutcome>;

    /// Cancels every queued run of the tenant and asks for every running one to stop; returns
    /// how many runs were either.
    fn cancel_tenant(&self, tenant_id: &str, now_ms: u64) -> Result<u64>;

    /// Operator: a failed, dead or canceled run is queued again, available now, at the END of
    /// its lane, with `attempts` 0, `cancel_requested` cleared, `started_ms` and `finished_ms`
    /// cleared, `last_error` kept. None for an unknown run or one that is not failed, dead or
    /// canceled (a succeeded run is not retried).
    fn retry(&self, run_id: &str, now_ms: u64) -> Result<Option<Run>>;

    /// A queued run that can never run (its in-memory BYOK key was lost in a restart) fails
    /// with `error`. None if the run is not queued.
    fn fail_queued(&self, run_id: &str, error: RunError, now_ms: u64) -> Result<Option<Run>>;

    fn get(&self, run_id: &str) -> Result<Option<Run>>;

    /// Runs matching `filter`, newest first, a page at a time.
    fn list(&self, filter: &RunFilter) -> Result<RunPage>;

    /// How many runs are in each status (every status, zeros included), for metrics. Cheap.
    fn counts_by_status(&self) -> Result<Vec<(RunStatus, u64)>>;

    /// Ids of unfinished runs whose provider key rides in memory: after a restart those keys
    /// are gone, so the caller fails them (`fail_queued`).
    fn queued_byok(&self) -> Result<Vec<String>>;

    /// Ids of up to `limit` finished runs, oldest first, that finished before `cutoff_ms` and
    /// whose artifacts are not pruned yet.
    fn finished_before(&self, cutoff_ms: u64, limit: u32) -> Result<Vec<String>>;

    /// Marks the runs' artifacts pruned: `finished_before` no longer answers them.
    fn mark_pruned(&self, ids: &[String]) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
        assert_eq!(
            "Queued".parse::<RunStatus>(),
            Err(UnknownStatus("Queued".into()))
        );
        let terminal: Vec<_> = RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        use RunStatus::*;
        assert_eq!(terminal, [Succeeded, Failed, Canceled, Dead]);
    }

    #[test]
    fn run_ids_are_run_and_26_base32_characters() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_ne!(a, b);
        let chars = a.strip_prefix("run_").unwrap();
        assert_eq!(chars.len(), 26, "{a}");
        assert!(
            chars
                .bytes()
                .all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')),
            "{a}"
        );
    }

    #[test]
    fn backoff_doubles_per_attempt_up_to_max_then_jitters_down_to_half() {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let full: Vec<_> = (1..=7)
            .map(|n| backoff.jittered(n, 1.0).as_secs())
            .collect();
        assert_eq!(full, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.jittered(0, 1.0), Duration::from_secs(2));
        assert_eq!(backoff.jittered(3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff.jittered(3, 0.1), Duration::from_secs(4), "clamped");
        assert_eq!(backoff.jittered(u32::MAX, 1.0), Duration::from_secs(60));
        for _ in 0..100 {
            let d = backoff.delay(3);
            assert!((Duration::from_secs(4)..=Duration::from_secs(8)).contains(&d));
        }
    }
}
