//! Per-user request rate limits: an exact GCRA (generic cell rate algorithm) keyed by user.
//!
//! A user with a limit of `N` per minute has a bucket that holds `N` requests and refills one
//! request every `60 s / N`. GCRA keeps one number per user instead of a counter and a timestamp:
//! the instant at which the bucket will be full again (the "theoretical arrival time"). A request
//! at `now` is allowed when, after adding one emission interval to that instant, the bucket is
//! still no more than one minute's worth "in debt"; a refused request changes nothing.
//!
//! What this guarantees, exactly and at millisecond resolution:
//! - `N` requests at the same instant are allowed and the `N + 1`-th is refused;
//! - afterwards one more request is allowed every `60 s / N` (50/min: every 1200 ms);
//! - a user idle for 60 s has the full `N` again;
//! - there is no fixed window, so no double burst at a window edge: `N` requests at 59.9 s and
//!   another `N` at 60.0 s is impossible, the second batch gets what refilled in 0.1 s.
//!
//! What it does not guarantee: a sliding-60-s count of at most `N`. A user who empties a full
//! bucket and then keeps sending as fast as it refills gets `N - 1` more in the following 59.9 s;
//! that is the nature of any token bucket whose capacity equals one minute's rate.
//!
//! Exactness: the emission interval `60 000 / N` ms is kept as whole milliseconds plus a remainder
//! in units of `1/N` ms, so there is no rounding for any `N` (7/min is exact, not 8571 ms).
//!
//! Keys: a user id is reduced to a 64-bit SipHash with random keys chosen at start-up, so clients
//! cannot craft colliding ids. Two users whose hashes collide share a bucket; for `n` active users
//! the chance that any pair collides is about `n² / 2⁶⁵`: ≈ 3 × 10⁻⁸ for a million users.
//!
//! Memory: each tracked user is one `std::collections::HashMap` slot of 24 bytes (8-byte key;
//! 16-byte `FullAt`: the instant in ms, its sub-ms remainder, and the limit that remainder is
//! counted in) plus one control byte. The tables are 64 power-of-two shards kept at most 7/8
//! full, so after growth they are between 7/16 and 7/8 full: 29–57 bytes per user, i.e. 29–57 MB
//! per million active users. Exactly 1,000,000 users lands just past a growth step (15 625 per
//! shard > 14 336 = 7/8 of 16 384), giving 64 × 32 768 slots × 25 B ≈ 52.4 MB. The limits bench
//! (`cargo bench --bench limits`) inserts a million users and prints this layout estimate next
//! to the process's VmRSS growth; on x86_64 Linux with glibc it measured +52 780 KiB (≈ 54 B per
//! user). Users whose bucket is full again carry no information and are dropped by
//! [`RateLimiter::sweep`], which also shrinks tables that emptied, so memory tracks users active
//! in the last minute, not users ever seen.
//!
//! Not for: monthly quotas, concurrency limits, or failed-authentication throttling (see
//! [`crate::limits::auth_guard`]). This module does no I/O and never reads a clock: every call
//! takes `now_ms` (Unix milliseconds, from [`crate::clock`]).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The window every limit is expressed in.
const MINUTE_MS: u64 = 60_000;

/// Shards keep lock hold times short and contention low; 64 is plenty for a few dozen cores.
const SHARDS: usize = 64;

/// The outcome of one [`RateLimiter::check`], with what the caller needs for the
/// `x-ratelimit-*` and `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed. When true, it has been counted.
    pub allowed: bool,
    /// The per-minute limit the decision was made under.
    pub limit: u32,
    /// How many more requests could be sent right now, after this one (0 when refused).
    pub remaining: u32,
    /// Milliseconds until the bucket is full again (all of `limit` available), rounded up.
    pub reset_ms: u64,
    /// When refused: milliseconds until the next request would be allowed, rounded up; 0 when
    /// allowed. For `Retry-After`, round up to whole seconds at the caller.
    pub retry_after_ms: u64,
}

impl RateDecision {
    /// A limit of zero refuses everything. No wait helps under that limit, but the limit itself
    /// may change (a tier upgrade), so the client is told to come back in a minute.
    fn refused_by_zero_limit() -> RateDecision {
        RateDecision {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset_ms: 0,
            retry_after_ms: MINUTE_MS,
        }
    }
}

/// Per-user GCRA state for every user active in the last minute.
pub struct RateLimiter {
    /// Keyed SipHash, keys drawn once per process, so user ids cannot be chosen to collide.
    user_hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// One shard's users: 64-bit user hash → when that user's bucket is full again.
type Shard = HashMap<u64, FullAt, BuildHasherDefault<AlreadyHashed>>;

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter {
            user_hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// Checks and, when allowed, counts one request for `user` under `per_minute`.
    ///
    /// `per_minute == 0` refuses every request. A limit that differs from the one the user's
    /// bucket was last filled under (a tier change) keeps the fraction of the bucket in use: a
    /// user who used 90 of 100 and is moved to 10/min has 1 left; one who emptied 50/min and is
    /// moved to 100/min still waits, but refills one request every 0.6 s. The conversion rounds
    /// towards the stricter side by less than `1/per_minute` ms.
    pub fn check(&self, user: &str, per_minute: u32, now_ms: u64) -> RateDecision {
        let Some(per_minute) = NonZeroU32::new(per_minute) else {
            return RateDecision::refused_by_zero_limit();
        };
        let key = self.user_hasher.hash_one(user);
        let mut shard = self.shard(key);

        let start = match shard.get(&key) {
            Some(full_at) => full_at.rescaled(per_minute).not_before(now_ms),
            None => FullAt::at(now_ms, per_minute),
        };
        let after = start.plus_one_request();
        let debt_after = after.since(now_ms);
        if debt_after.fits_in_a_minute() {
            shard.insert(key, after);
            RateDecision {
                allowed: true,
                limit: per_minute.get(),
                remaining: debt_after.requests_left(),
                reset_ms: debt_after.ceil_ms(),
                retry_after_ms: 0,
            }
        } else {
            RateDecision {
                allowed: false,
                limit: per_minute.get(),
                remaining: 0,
                reset_ms: start.since(now_ms).ceil_ms(),
                retry_after_ms: debt_after.beyond_a_minute().ceil_ms(),
            }
        }
    }

    /// Drops state for users whose bucket is full again (equivalent to never seen); returns how
    /// many were dropped. Meant for a background task every few seconds, so memory tracks active
    /// users only. A shard left at most a quarter full is shrunk to twice its size, which returns
    /// memory after a spike without resizing back and forth on every sweep.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let before = shard.len();
            shard.retain(|_, full_at| !full_at.is_reached_by(now_ms));
            dropped += before - shard.len();
            if shard.len() <= shard.capacity() / 4 {
                let keep = shard.len().saturating_mul(2);
                shard.shrink_to(keep);
            }
        }
        dropped
    }

    /// Users with state right now: active within the last minute and not yet swept.
    pub fn tracked_users(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Heap bytes held by the tables, estimated from the layout of std's `HashMap` (hashbrown):
    /// power-of-two slot counts, usable capacity 7/8 of the slots, one control byte per slot plus
    /// one 16-byte group. An estimate for a gauge, not an allocator measurement.
    pub fn estimated_heap_bytes(&self) -> usize {
        const SLOT_BYTES: usize = std::mem::size_of::<(u64, FullAt)>() + 1;
        const GROUP_WIDTH: usize = 16;
        self.shards
            .iter()
            .map(|shard| {
                let slots = match lock(shard).capacity() {
                    0 => 0,
                    small @ 1..=7 => small + 1,
                    capacity => capacity / 7 * 8,
                };
                if slots == 0 {
                    0
                } else {
                    slots * SLOT_BYTES + GROUP_WIDTH
                }
            })
            .sum()
    }

    /// The shard for a user hash. It takes bits 32..38 because `HashMap` indexes slots with the
    /// low bits and tags them with the top seven; using either here would leave every key in a
    /// shard agreeing on those bits and degrade that shard's table.
    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(key >> 32) as usize % SHARDS])
    }
}

/// Takes a shard lock even if a thread panicked while holding it: every update is a single
/// `insert` or `retain`, so a shard is never left half-changed.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The instant a user's bucket is full again, exactly: `ms + frac / per_minute` milliseconds
/// since the Unix epoch, with `frac < per_minute`. Keeping the limit alongside lets the
/// sub-millisecond part stay exact for any limit and be converted when the limit changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FullAt {
    ms: u64,
    frac: u32,
    per_minute: NonZeroU32,
}

impl FullAt {
    fn at(now_ms: u64, per_minute: NonZeroU32) -> FullAt {
        FullAt {
            ms: now_ms,
            frac: 0,
            per_minute,
        }
    }

    /// The same instant in units of `1/per_minute` ms, rounded up (stricter) when inexact.
    fn rescaled(self, per_minute: NonZeroU32) -> FullAt {
        if self.per_minute == per_minute {
            return self;
        }
        let scaled = u64::from(self.frac) * u64::from(per_minute.get());
        let old = u64::from(self.per_minute.get());
        // frac < old, so the quotient is below `per_minute` before rounding up, and at most
        // `per_minute` after; the carry below handles that one case.
        let frac = scaled.div_ceil(old);
        FullAt {
            ms: self.ms,
            frac: 0,
            per_minute,
        }
        .plus_frac(frac)
    }

    /// `max(self, now)`: a bucket cannot be fuller than full.
    fn not_before(self, now_ms: u64) -> FullAt {
        if self.is_reached_by(now_ms) {
            FullAt::at(now_ms, self.per_minute)
        } else {
            self
        }
    }

    fn is_reached_by(self, now_ms: u64) -> bool {
        self.ms < now_ms || (self.ms == now_ms && self.frac == 0)
    }

    /// One emission interval (`60 000 / per_minute` ms) later.
    fn plus_one_request(self) -> FullAt {
        let per_minute = u64::from(self.per_minute.get());
        let whole_ms = MINUTE_MS / per_minute;
        let frac = MINUTE_MS % per_minute;
        FullAt {
            ms: self.ms.saturating_add(whole_ms),
            ..self
        }
        .plus_frac(frac)
    }

    /// Adds `frac / per_minute` ms, where `frac <= per_minute`.
    fn plus_frac(self, frac: u64) -> FullAt {
        let per_minute = u64::from(self.per_minute.get());
        let total = u64::from(self.frac) + frac;
        let (ms, frac) = if total >= per_minute {
            (self.ms.saturating_add(1), total - per_minute)
        } else {
            (self.ms, total)
        };
        FullAt {
            ms,
            // Below `per_minute`, which is a u32.
            frac: u32::try_from(frac).unwrap_or(u32::MAX),
            per_minute: self.per_minute,
        }
    }

    /// How far this instant lies after `now_ms`; callers ensure it is not before.
    fn since(self, now_ms: u64) -> Debt {
        Debt {
            ms: self.ms.saturating_sub(now_ms),
            frac: self.frac,
            per_minute: self.per_minute,
        }
    }
}

/// How long until a bucket is full: `ms + frac / per_minute` milliseconds. A bucket may be at
/// most one minute in debt; each request adds one emission interval.
#[derive(Debug, Clone, Copy)]
struct Debt {
    ms: u64,
    frac: u32,
    per_minute: NonZeroU32,
}

impl Debt {
    fn fits_in_a_minute(self) -> bool {
        self.ms < MINUTE_MS || (self.ms == MINUTE_MS && self.frac == 0)
    }

    /// How many more emission intervals fit before the debt exceeds a minute. Only meaningful
    /// when the debt fits in a minute.
    fn requests_left(self) -> u32 {
        let per_minute = u64::from(self.per_minute.get());
        // (60 000 - debt) / (60 000 / N), in units of 1/N ms: ((60 000 - ms)·N - frac) / 60 000.
        let headroom = MINUTE_MS.saturating_sub(self.ms) * per_minute;
        let left = headroom.saturating_sub(u64::from(self.frac)) / MINUTE_MS;
        u32::try_from(left).unwrap_or(u32::MAX)
    }

    /// The part of the debt beyond one minute: how long until it fits again.
    fn beyond_a_minute(self) -> Debt {
        Debt {
            ms: self.ms.saturating_sub(MINUTE_MS),
            ..self
        }
    }

    fn ceil_ms(self) -> u64 {
        self.ms.saturating_add(u64::from(self.frac > 0))
    }
}

/// A `Hasher` for keys that already are keyed hashes: passes the `u64` through instead of
/// hashing it a second time.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Not used for `u64` keys; folds bytes in so that any other key type would still work.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arbitrary instant, not aligned to a minute.
    const T0: u64 = 1_760_000_012_345;

    fn allowed_of(limiter: &RateLimiter, user: &str, per_minute: u32, now: u64, n: u32) -> u32 {
        (0..n)
            .filter(|_| limiter.check(user, per_minute, now).allowed)
            .count() as u32
    }

    #[test]
    fn sixty_at_once_under_fifty_per_minute_allows_exactly_fifty() {
        let limiter = RateLimiter::new();
        let decisions: Vec<_> = (0..60).map(|_| limiter.check("ana", 50, T0)).collect();
        assert!(decisions[..50].iter().all(|d| d.allowed));
        assert!(decisions[50..].iter().all(|d| !d.allowed));

        assert_eq!(decisions[0].remaining, 49);
        assert_eq!(decisions[0].reset_ms, 1_200);
        assert_eq!(decisions[49].remaining, 0);
        assert_eq!(decisions[49].reset_ms, 60_000);
        let refused = decisions[50];
        assert_eq!(refused.limit, 50);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_ms, 60_000);
        assert_eq!(refused.retry_after_ms, 1_200);
    }

    #[test]
    fn one_more_request_refills_every_emission_interval() {
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 60), 50);
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 1_199, 5), 0);
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 1_200, 5), 1);
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 2_400, 5), 1);
    }

    #[test]
    fn a_full_minute_refills_the_whole_bucket() {
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 60), 50);
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 60_000, 60), 50);
    }

    #[test]
    fn limits_that_do_not_divide_a_minute_are_exact() {
        // 7/min: an interval of 8571.43 ms, which whole milliseconds cannot hold.
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 7, T0, 10), 7);
        assert_eq!(allowed_of(&limiter, "ana", 7, T0 + 8_571, 1), 0);
        assert_eq!(allowed_of(&limiter, "ana", 7, T0 + 8_572, 1), 1);
        // Exactly a minute after the burst the bucket is full, not one request short.
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 7, T0, 7), 7);
        assert_eq!(allowed_of(&limiter, "ana", 7, T0 + 60_000, 10), 7);
        // Every later request becomes due at exactly ceil(n · 60 000 / 7) ms, without drift.
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 7, T0, 7), 7);
        for n in 1..=700u64 {
            let due = T0 + (n * 60_000).div_ceil(7);
            assert_eq!(allowed_of(&limiter, "ana", 7, due - 1, 1), 0, "n = {n}");
            assert_eq!(allowed_of(&limiter, "ana", 7, due, 1), 1, "n = {n}");
        }
    }

    #[test]
    fn no_double_burst_at_a_minute_edge() {
        let limiter = RateLimiter::new();
        let minute = 1_760_000_040_000 / MINUTE_MS * MINUTE_MS;
        assert_eq!(allowed_of(&limiter, "ana", 50, minute + 59_900, 50), 50);
        assert!(allowed_of(&limiter, "ana", 50, minute + 60_000, 50) <= 1);
        let within_next_second: u32 = (1..=1_000)
            .map(|ms| allowed_of(&limiter, "ana", 50, minute + 60_000 + ms, 50))
            .sum();
        assert!(within_next_second <= 1, "{within_next_second}");
    }

    #[test]
    fn users_are_limited_independently() {
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 60), 50);
        assert_eq!(allowed_of(&limiter, "bruno", 50, T0, 60), 50);
        assert_eq!(allowed_of(&limiter, "carla", 5, T0, 10), 5);
        assert_eq!(limiter.tracked_users(), 3);
    }

    #[test]
    fn refused_requests_do_not_consume_capacity() {
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 50), 50);
        // A client hammering while empty must not push its own refill further away.
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 600, 10_000), 0);
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 1_200, 5), 1);
        assert_eq!(allowed_of(&limiter, "ana", 50, T0 + 60_000 + 1_200, 60), 50);
    }

    #[test]
    fn a_zero_limit_refuses_everything_and_stores_nothing() {
        let limiter = RateLimiter::new();
        let decision = limiter.check("ana", 0, T0);
        assert_eq!(decision, RateDecision::refused_by_zero_limit());
        assert_eq!(limiter.tracked_users(), 0);
    }

    #[test]
    fn sweep_drops_only_full_buckets() {
        let limiter = RateLimiter::new();
        limiter.check("light", 60, T0); // full again at T0 + 1 s
        assert_eq!(allowed_of(&limiter, "heavy", 60, T0, 60), 60); // full at T0 + 60 s
        assert_eq!(limiter.tracked_users(), 2);

        assert_eq!(limiter.sweep(T0 + 999), 0);
        assert_eq!(limiter.sweep(T0 + 1_000), 1);
        assert_eq!(limiter.tracked_users(), 1);
        assert_eq!(allowed_of(&limiter, "heavy", 60, T0 + 1_000, 5), 1);
        assert_eq!(limiter.sweep(T0 + 60_999), 0);
        assert_eq!(limiter.sweep(T0 + 61_000), 1);
        assert_eq!(limiter.tracked_users(), 0);
        // Dropped means forgotten: the full bucket is there again.
        assert_eq!(allowed_of(&limiter, "light", 60, T0 + 61_000, 70), 60);
    }

    #[test]
    fn a_tier_change_keeps_the_fraction_of_the_bucket_in_use() {
        // Downgrade: 90 of 100 used is 90 % of the bucket; 90 % of 10 leaves 1.
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 100, T0, 90), 90);
        let decision = limiter.check("ana", 10, T0);
        assert!(decision.allowed);
        assert_eq!(decision.limit, 10);
        assert_eq!(decision.remaining, 0);
        assert_eq!(allowed_of(&limiter, "ana", 10, T0, 5), 0);

        // Upgrade with an empty bucket: still empty, but it refills at the new rate.
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 50), 50);
        assert_eq!(allowed_of(&limiter, "ana", 100, T0, 5), 0);
        assert_eq!(allowed_of(&limiter, "ana", 100, T0 + 600, 5), 1);
        assert_eq!(allowed_of(&limiter, "ana", 100, T0 + 60_600, 200), 100);

        // Upgrade with a half-used bucket: half of the new bucket is free at once.
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 25), 25);
        assert_eq!(allowed_of(&limiter, "ana", 100, T0, 200), 50);
    }

    #[test]
    fn a_tier_change_to_an_inexact_limit_rounds_towards_strict() {
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 7, T0, 1), 1); // 1/7 of the bucket in use
        assert_eq!(allowed_of(&limiter, "ana", 3, T0, 10), 2); // 1/7 of 3 rounds up to 1 used
        assert_eq!(allowed_of(&limiter, "ana", 3, T0 + 60_000, 10), 3);
    }

    #[test]
    fn a_clock_that_steps_back_does_not_panic_or_refill() {
        let limiter = RateLimiter::new();
        assert_eq!(allowed_of(&limiter, "ana", 50, T0, 50), 50);
        let decision = limiter.check("ana", 50, T0 - 5_000);
        assert!(!decision.allowed);
        assert_eq!(decision.reset_ms, 65_000);
        assert_eq!(decision.retry_after_ms, 6_200);
        assert!(limiter.check("bruno", 50, 0).allowed);
        // At the end of representable time arithmetic saturates instead of overflowing.
        assert!(limiter.check("carla", 1, u64::MAX).allowed);
        limiter.check("carla", 1, u64::MAX);
    }

    #[test]
    fn the_largest_limit_still_counts() {
        let limiter = RateLimiter::new();
        let first = limiter.check("ana", u32::MAX, T0);
        assert!(first.allowed);
        assert_eq!(first.remaining, u32::MAX - 1);
        assert_eq!(first.reset_ms, 1);
    }

    #[test]
    fn a_million_users_are_tracked_and_then_swept_away() {
        let limiter = RateLimiter::new();
        for i in 0..1_000_000u32 {
            assert!(limiter.check(&format!("user-{i}"), 60, T0).allowed);
        }
        assert_eq!(limiter.tracked_users(), 1_000_000);
        let bytes = limiter.estimated_heap_bytes();
        // 64 shards of 32 768 slots of 25 bytes: see the module docs.
        assert!((25_000_000..60_000_000).contains(&bytes), "{bytes}");

        assert_eq!(limiter.sweep(T0 + 1_000), 1_000_000);
        assert_eq!(limiter.tracked_users(), 0);
        assert_eq!(limiter.estimated_heap_bytes(), 0);
    }
}
