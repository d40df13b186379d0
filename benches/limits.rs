//! Micro-benchmarks of the admission limits the proxy checks on every request, and a one-off
//! memory report for a million tracked users.
//! Run: `cargo bench --bench limits -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, Criterion};
use exoclaw::limits::{AuthFailureGuard, RateLimiter};

const T0: u64 = 1_760_000_012_345;

fn rate_limiter(c: &mut Criterion) {
    // 60 000/min refills one request per ms, so advancing the clock 1 ms per call keeps every
    // call on the allowed (writing) path.
    let limiter = RateLimiter::new();
    let mut now = T0;
    c.bench_function("rate/check_hot_user_allowed", |b| {
        b.iter(|| {
            now += 1;
            limiter.check(black_box("trainee-ana"), 60_000, now)
        })
    });

    let limiter = RateLimiter::new();
    for _ in 0..50 {
        limiter.check("trainee-ana", 50, T0);
    }
    c.bench_function("rate/check_hot_user_refused", |b| {
        b.iter(|| limiter.check(black_box("trainee-ana"), 50, T0))
    });

    let users: Vec<String> = (0..100_000).map(|i| format!("trainee-{i}")).collect();
    let limiter = RateLimiter::new();
    let mut next = 0;
    let mut now = T0;
    c.bench_function("rate/check_100k_distinct_users", |b| {
        b.iter(|| {
            next = (next + 1) % users.len();
            now += 1;
            limiter.check(black_box(&users[next]), 600, now)
        })
    });
}

fn auth_guard(c: &mut Criterion) {
    let guard = AuthFailureGuard::new(10);
    let guessing = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    for _ in 0..20 {
        guard.record_failure(guessing, T0);
    }
    let innocent = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    c.bench_function("auth_guard/is_blocked_clean_ip", |b| {
        b.iter(|| guard.is_blocked(black_box(innocent), T0))
    });
    c.bench_function("auth_guard/is_blocked_blocked_ip", |b| {
        b.iter(|| guard.is_blocked(black_box(guessing), T0))
    });
    c.bench_function("auth_guard/record_failure", |b| {
        b.iter(|| guard.record_failure(black_box(guessing), T0))
    });
}

/// Resident set size of this process in KiB, from `/proc/self/status` (Linux only).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Tracks a million distinct users and prints the layout estimate next to the RSS growth. User
/// ids are built one at a time so only the limiter's own memory stays resident.
fn report_memory_per_user() {
    const USERS: usize = 1_000_000;
    let before = resident_kib();
    let limiter = RateLimiter::new();
    for i in 0..USERS {
        limiter.check(&format!("trainee-{i}"), 600, T0);
    }
    let after = resident_kib();
    let estimated = limiter.estimated_heap_bytes();
    println!(
        "memory: tracked_users = {}, layout estimate = {} bytes ({:.1} B/user)",
        limiter.tracked_users(),
        estimated,
        estimated as f64 / USERS as f64
    );
    match (before, after) {
        (Some(before), Some(after)) => println!(
            "memory: VmRSS {before} KiB -> {after} KiB, +{} KiB ({:.1} B/user)",
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 * 1024.0 / USERS as f64
        ),
        _ => println!("memory: VmRSS unavailable (not Linux?)"),
    }
}

criterion_group!(benches, rate_limiter, auth_guard);

fn main() {
    report_memory_per_user();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
