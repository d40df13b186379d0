//! Benchmarks of the usage ledger's writer: how many rows per second the `exoclaw-ledger` thread
//! commits to a real SQLite file, and what `LedgerWriter::record` adds to the request path.
//! Run: `cargo bench --bench ledger -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use exoclaw::clock::{SharedClock, SystemClock};
use exoclaw::headers;
use exoclaw::ledger::{self, record::RequestRecord, writer::LedgerSettings, writer::LedgerWriter};

const T0: u64 = 1_760_000_012_345;
const ROWS_PER_RUN: usize = 200_000;

/// Rows shaped like the proxy's: 500 users, random request ids, a keyed IP hash, mostly
/// successful node-reported chat completions with some rate-limited and streamed ones.
fn realistic_rows(count: usize, first: usize) -> Vec<RequestRecord> {
    (first..first + count)
        .map(|n| {
            let limited = n % 50 == 0;
            RequestRecord {
                request_id: headers::new_request_id(),
                user_id: format!("trainee-{}", n % 500),
                endpoint: "/v1/chat/completions".into(),
                method: "POST".into(),
                status: if limited { 429 } else { 200 },
                latency_ms: 40 + (n % 900) as u64,
                created_ms: T0 + n as u64,
                ip_hash: Some(format!("{:064x}", n % 2_000)),
                model: Some("gpt-4o-mini".into()),
                node: Some(format!("node-{}", n % 4)),
                prompt_tokens: (!limited).then_some(300 + (n % 100) as u64),
                completion_tokens: (!limited).then_some(120),
                total_tokens: (!limited).then_some(420 + (n % 100) as u64),
                tokens_est: if limited { 0 } else { 420 },
                streamed: n % 3 == 0,
                tokens_reported: !limited,
                error_type: limited.then(|| "rate_limit_exceeded".into()),
                run_id: None,
            }
        })
        .collect()
}

fn settings(queue_capacity: usize) -> LedgerSettings {
    LedgerSettings {
        queue_capacity,
        ..LedgerSettings::default()
    }
}

fn start(path: &Path, queue_capacity: usize) -> LedgerWriter {
    let clock: SharedClock = Arc::new(SystemClock);
    LedgerWriter::start(path, settings(queue_capacity), clock).expect("start the ledger writer")
}

/// Rows per second from the first `record` until `shutdown` has committed the last row, into a
/// fresh database file each run (the queue holds the whole run, so nothing is dropped).
fn writer_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger_writer");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(ROWS_PER_RUN as u64));
    group.bench_function("record_200k_and_drain", |b| {
        b.iter_custom(|runs| {
            let mut total = Duration::ZERO;
            for _ in 0..runs {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("ledger.db");
                drop(ledger::open(&path).expect("open ledger"));
                let rows = realistic_rows(ROWS_PER_RUN, 0);
                let writer = start(&path, ROWS_PER_RUN);
                let started = Instant::now();
                for row in rows {
                    writer.record(row);
                }
                writer.shutdown();
                total += started.elapsed();
                let stats = writer.stats();
                assert_eq!(stats.written, ROWS_PER_RUN as u64, "{stats:?}");
            }
            total
        })
    });
    group.finish();
}

/// Time `record` takes on the calling thread: when the row is accepted while the writer is busy
/// gathering and writing (the steady state under load), and when the queue is full (the database
/// is stalled and the row is dropped).
fn record_cost(c: &mut Criterion) {
    const CHUNK: usize = 50_000;
    const CAPACITY: usize = 4 * CHUNK;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ledger.db");
    drop(ledger::open(&path).expect("open ledger"));

    let mut group = c.benchmark_group("ledger_record");
    group.throughput(Throughput::Elements(1));

    let writer = start(&path, CAPACITY);
    let mut next = 0;
    group.bench_function("accepted", |b| {
        b.iter_custom(|calls| {
            let mut total = Duration::ZERO;
            let mut left = calls as usize;
            while left > 0 {
                // Untimed: leave room for the whole chunk, so every timed call is accepted.
                while writer.stats().queued as usize > CAPACITY - CHUNK {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let rows = realistic_rows(left.min(CHUNK), next);
                next += rows.len();
                left -= rows.len();
                let started = Instant::now();
                for row in rows {
                    writer.record(black_box(row));
                }
                total += started.elapsed();
            }
            total
        })
    });
    writer.shutdown();
    assert_eq!(writer.stats().dropped, 0, "{:?}", writer.stats());

    let writer = start(&path, 1);
    let blocker = ledger::open(&path).expect("open ledger");
    blocker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("hold the write lock");
    group.bench_function("queue_full_dropped", |b| {
        b.iter_custom(|calls| {
            let mut total = Duration::ZERO;
            let mut left = calls as usize;
            while left > 0 {
                let rows = realistic_rows(left.min(CHUNK), next);
                next += rows.len();
                left -= rows.len();
                let started = Instant::now();
                for row in rows {
                    writer.record(black_box(row));
                }
                total += started.elapsed();
            }
            total
        })
    });
    blocker.execute_batch("COMMIT").expect("release the lock");
    writer.shutdown();
    group.finish();
}

/// One-off report (not a Criterion measurement, whose iteration counts cannot include the idle
/// time needed before each call): the cost of the `record` that finds the writer parked waiting
/// for a batch's first row, and so pays a thread wake-up. Every other call of a batch is the
/// cheap path measured above.
fn record_waking_the_writer(_: &mut Criterion) {
    const SAMPLES: usize = 300;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ledger.db");
    drop(ledger::open(&path).expect("open ledger"));
    let writer = start(&path, 1_000);
    let mut took: Vec<Duration> = realistic_rows(SAMPLES, 0)
        .into_iter()
        .map(|row| {
            // Let the previous row be written and the writer park again.
            while writer.stats().queued > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(2));
            let started = Instant::now();
            writer.record(black_box(row));
            started.elapsed()
        })
        .collect();
    writer.shutdown();
    took.sort();
    println!(
        "ledger_record/first_of_batch_wakes_writer: median {:?}, p99 {:?} over {SAMPLES} calls",
        took[SAMPLES / 2],
        took[SAMPLES * 99 / 100]
    );
}

criterion_group!(
    benches,
    writer_throughput,
    record_cost,
    record_waking_the_writer
);
criterion_main!(benches);
