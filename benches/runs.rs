//! Benchmarks of the run queue on a real SQLite file in a temp dir, `synchronous = FULL` (the
//! queue's durability promise: one fsync per committed transaction): how many runs per second
//! `enqueue` accepts, and how long a `claim` takes with 100,000 runs queued, across 1,000
//! tenants and all in one tenant.
//! Run: `cargo bench --bench runs -- --warm-up-time 1 --measurement-time 3`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exoclaw::ledger;
use exoclaw::runs::queue::{
    new_run_id, Backoff, Candidate, Enqueued, MonthlyLimit, NewRun, Outcome, RunQueue, SqliteQueue,
};

const T0: u64 = 1_760_000_012_345;
const QUEUED: usize = 100_000;
const LEASE: Duration = Duration::from_secs(300);
const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(10),
    max: Duration::from_secs(600),
};
const MONTH_START: u64 = T0 - 20 * 24 * 3_600_000;

/// The `n`th run of a queue spread over `tenants` tenants, each with three agents (lanes); one
/// owner per three tenants, with tier priorities 0 to 2; an idempotency key on every run.
fn run(n: usize, tenants: usize) -> NewRun {
    let tenant = n % tenants;
    let owner = tenant / 3;
    NewRun {
        id: new_run_id(),
        tenant_id: format!("tenant-{tenant}"),
        owner: format!("owner-{owner}"),
        template: "summarize-page".into(),
        agent: format!("agent-{}", (n / tenants) % 3),
        input: format!(r#"{{"url":"https://example.com/articles/{n}","words":200}}"#),
        prompt: format!(
            "Summarize https://example.com/articles/{n} in 200 words for a general reader."
        ),
        idempotency_key: Some(format!("key-{n}")),
        priority: (owner % 3) as u8,
        max_attempts: 3,
        timeout_ms: 600_000,
        byok: false,
        pool: None,
        tier: "tier1".into(),
        session: None,
    }
}

fn open(path: &Path) -> SqliteQueue {
    drop(ledger::open(path).expect("migrate"));
    SqliteQueue::open(path).expect("open the queue")
}

fn enqueue(queue: &SqliteQueue, run: NewRun, limit: Option<MonthlyLimit>) {
    let enqueued = queue.enqueue(run, limit, T0).expect("enqueue");
    assert!(matches!(enqueued, Enqueued::Created(_)), "{enqueued:?}");
}

/// A database file on disk holding `runs` queued runs over `tenants` tenants. Filled through
/// `enqueue` in memory-backed storage (fsyncs there cost nothing), then copied to `dir`.
fn queued_database(dir: &Path, runs: usize, tenants: usize) -> PathBuf {
    let scratch = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("scratch dir");
    let filling = scratch.path().join("runs.db");
    let queue = open(&filling);
    let started = Instant::now();
    for n in 0..runs {
        enqueue(&queue, run(n, tenants), None);
    }
    println!(
        "filled {runs} runs over {tenants} tenants in {:?} (no fsync: {})",
        started.elapsed(),
        filling.display()
    );
    drop(queue); // The last connection checkpoints the WAL into the file.
    let path = dir.join(format!("runs-{runs}-{tenants}.db"));
    std::fs::copy(&filling, &path).expect("copy the database");
    path
}

/// Runs accepted per second, each committed on its own (idempotency lookup, the owner's
/// monthly count, insert, lane), into a queue that grows as it is measured. Across 1,000 tenants
/// whose owners are far from their limit of 10,000 a month; and for one owner who created
/// 10,000 runs this month already, under a limit of 100,000 (the kept count must make this
/// cost the same).
fn enqueue_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("runs_enqueue");
    group.throughput(Throughput::Elements(1));
    let scenarios = [
        ("1000_tenants", 0, 1_000, 10_000),
        ("one_owner_10000_this_month", 10_000, 1, 100_000),
    ];
    for (name, before, tenants, limit) in scenarios {
        let queue = if before == 0 {
            open(&dir.path().join("runs.db"))
        } else {
            SqliteQueue::open(&queued_database(dir.path(), before, tenants)).expect("open")
        };
        let limit = Some(MonthlyLimit {
            since_ms: MONTH_START,
            limit,
        });
        let mut next = before;
        group.bench_function(name, |b| {
            b.iter_custom(|count| {
                let runs: Vec<_> = (next..next + count as usize)
                    .map(|n| run(n, tenants))
                    .collect();
                next += runs.len();
                let started = Instant::now();
                for run in runs {
                    enqueue(&queue, run, limit);
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// The time of one `claim` (choosing the lane, taking the run, committing), with 100,000 runs
/// queued. Each claimed run is finished, untimed, so its lane offers its next run.
/// "top_tier_full": `admit` refuses every priority-2 candidate (their owners are at their
/// concurrency limit), so each claim walks past a third of the 3,000 ready lanes first.
fn claim_latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("runs_claim_100k_queued");
    group.sample_size(50);
    let scenarios: [(usize, &[&str]); 2] = [
        (1_000, &["1000_tenants", "1000_tenants_top_tier_full"]),
        (1, &["one_tenant"]),
    ];
    for (tenants, names) in scenarios {
        let queue = SqliteQueue::open(&queued_database(dir.path(), QUEUED, tenants)).expect("open");
        let mut now = T0;
        for &name in names {
            let top_tier_full = name.ends_with("top_tier_full");
            let mut admit = |candidate: &Candidate<'_>| !top_tier_full || candidate.priority < 2;
            group.bench_function(name, |b| {
                b.iter_custom(|count| {
                    let mut took = Duration::ZERO;
                    for _ in 0..count {
                        now += 1;
                        let started = Instant::now();
                        let claimed = queue.claim(now, LEASE, &mut admit).expect("claim");
                        took += started.elapsed();
                        let claimed = claimed.expect("a run to claim");
                        let finished =
                            queue.finish(&claimed.lease, Outcome::Succeeded, &BACKOFF, now);
                        assert!(finished.expect("finish").is_some());
                    }
                    took
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, enqueue_throughput, claim_latency);
criterion_main!(benches);
