//! Throttling of failed authentications per client address, checked before the key is.
//!
//! A client that keeps presenting wrong gateway keys is answered 429 without a key check once it
//! has failed `max_failures_per_minute` times in the last minute. This slows down key guessing
//! and keeps a guessing client from costing a key lookup per attempt. It is not a rate limit for
//! authenticated users ([`crate::limits::rate`] is) and it never blocks a key, only an address.
//!
//! Memory is fixed, whatever the number of addresses: failures are counted in two count-min
//! sketches ([`pingora_limits::estimator::Estimator`]), one for the current minute and one for
//! the previous, rotated on the injected `now_ms` so tests are deterministic.
//! (`pingora_limits::rate::Rate` does the same rotation but on its own monotonic clock.)
//!
//! Approximations, stated plainly:
//! - Count-min sketch: may over-count on collisions, never under-count. An innocent address that
//!   shares a cell in every row with failing addresses can be refused too; it only ever makes the
//!   guard stricter. With the default 4 rows × 8192 columns this is negligible until the failures
//!   of all clients together approach `8192 × max_failures_per_minute` per minute (each cell then
//!   holds about that limit). A distributed guessing attack that large starts refusing other
//!   addresses; size the sketch with [`AuthFailureGuard::with_sketch_size`] if that matters.
//! - Sliding-window estimate (the Cloudflare "counting things" method): the count is all of this
//!   minute's failures plus the previous minute's weighted by how much of that minute is still
//!   within the last 60 s. It is exact for evenly spread failures. For a burst it errs lenient:
//!   an address blocked after exactly `max` failures in one minute is released at the start of
//!   the next (never later than 60 s after the failures), and then gets about one more attempt
//!   per `60 s / max`. A fixed minute holds at most `max` failures from one address that sends
//!   one attempt at a time, so any 60 s span holds at most `2 × max`.
//! - Checking and counting are separate calls, so attempts in flight at the same moment are all
//!   checked before any of them is counted: a client can overshoot `max` by its concurrency once.
//!   The overshoot is counted, so it lengthens that client's block accordingly.
//! - IPv6 clients are counted per /64, the block one subscriber usually gets; counting single
//!   addresses would give a client 2⁶⁴ fresh ones. IPv4-mapped IPv6 counts as the IPv4 address.
//! - At the instant a window is rotated (once a minute), a failure recorded concurrently by
//!   another thread can be dropped. That only makes the guard more lenient, by a failure or two.
//!
//! No I/O, no async, no clock reads: every call takes `now_ms` (Unix ms, from [`crate::clock`]).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use pingora_limits::estimator::Estimator;

const MINUTE_MS: u64 = 60_000;
/// Independent hash rows: an innocent address is over-counted only if it collides in all.
const DEFAULT_ROWS: usize = 4;
/// Cells per row. 4 × 8192 × 8 bytes = 256 KiB per minute window, 512 KiB in all.
const DEFAULT_COLUMNS: usize = 8192;
/// Marks a window whose counters are being cleared for a new minute.
const ROTATING: u64 = u64::MAX;

/// Counts failed authentications per client address over the last minute, in fixed memory.
pub struct AuthFailureGuard {
    max_failures_per_minute: u32,
    /// Even minutes (`now_ms / 60 000`) are counted in `windows[0]`, odd ones in `windows[1]`, so
    /// the previous minute is always the other window.
    windows: [MinuteWindow; 2],
}

/// Failures counted during one minute, tagged with which minute that is.
struct MinuteWindow {
    /// `now_ms / 60 000` of the counts in `failures`, or [`ROTATING`] while they are cleared.
    minute: AtomicU64,
    failures: Estimator,
}

impl AuthFailureGuard {
    /// A guard that refuses an address after `max_failures_per_minute` failures within the last
    /// minute. Zero refuses every address (no failure is tolerated, not even a first attempt);
    /// configuration should reject it unless that is meant.
    pub fn new(max_failures_per_minute: u32) -> Self {
        AuthFailureGuard::with_sketch_size(max_failures_per_minute, DEFAULT_ROWS, DEFAULT_COLUMNS)
    }

    /// Like [`AuthFailureGuard::new`] with a chosen sketch size; memory is
    /// `2 × rows × columns × 8` bytes. Zero rows or columns count as one.
    pub fn with_sketch_size(max_failures_per_minute: u32, rows: usize, columns: usize) -> Self {
        let window = |minute| MinuteWindow {
            // Empty counts are a correct record of any minute, so the initial tag is arbitrary.
            minute: AtomicU64::new(minute),
            failures: Estimator::new(rows.max(1), columns.max(1)),
        };
        AuthFailureGuard {
            max_failures_per_minute,
            windows: [window(0), window(1)],
        }
    }

    /// True when this address has failed too often recently: answer 429 without checking the key.
    pub fn is_blocked(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.recent_failures(ClientKey::of(ip), now_ms)
            .is_over(self.max_failures_per_minute)
    }

    /// Counts one failed authentication from this address at `now_ms`.
    pub fn record_failure(&self, ip: IpAddr, now_ms: u64) {
        let key = ClientKey::of(ip);
        let minute = now_ms / MINUTE_MS;
        let window = self.window_for(minute);
        loop {
            let counted = window.minute.load(Ordering::Acquire);
            if counted == minute {
                window.failures.incr(key, 1);
                return;
            }
            if counted == ROTATING || counted > minute {
                // Another thread is clearing this window for `minute`, or has moved it on to a
                // later minute than this (slightly stale) `now_ms`: drop the failure rather than
                // wait or count it in the wrong minute.
                return;
            }
            if window
                .minute
                .compare_exchange(counted, ROTATING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                window.failures.reset();
                window.minute.store(minute, Ordering::Release);
                window.failures.incr(key, 1);
                return;
            }
        }
    }

    /// Seconds the client should wait (for `Retry-After`): until it would no longer be blocked,
    /// assuming it fails no more. 0 when it is not blocked.
    pub fn retry_after_secs(&self, ip: IpAddr, now_ms: u64) -> u64 {
        let wait_ms = self
            .recent_failures(ClientKey::of(ip), now_ms)
            .ms_until_below(self.max_failures_per_minute);
        wait_ms.div_ceil(1000)
    }

    fn recent_failures(&self, key: ClientKey, now_ms: u64) -> RecentFailures {
        let minute = now_ms / MINUTE_MS;
        RecentFailures {
            previous_minute: minute
                .checked_sub(1)
                .map_or(0, |previous| self.failures_in(previous, key)),
            this_minute: self.failures_in(minute, key),
            elapsed_ms: now_ms % MINUTE_MS,
        }
    }

    /// Failures of `key` in `minute`, or 0 when that minute is not (or no longer) held.
    fn failures_in(&self, minute: u64, key: ClientKey) -> u64 {
        let window = self.window_for(minute);
        if window.minute.load(Ordering::Acquire) != minute {
            return 0;
        }
        // Negative only if a counter overflowed isize, i.e. "very many".
        u64::try_from(window.failures.get(key)).unwrap_or(u64::MAX)
    }

    fn window_for(&self, minute: u64) -> &MinuteWindow {
        &self.windows[(minute % 2) as usize]
    }
}

/// What failures are counted by: the IPv4 address, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(IpAddr);

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !u128::from(u64::MAX);
                    ClientKey(IpAddr::V6(Ipv6Addr::from(network)))
                }
            },
        }
    }
}

/// One address's failure counts around `now`.
#[derive(Debug, Clone, Copy)]
struct RecentFailures {
    previous_minute: u64,
    this_minute: u64,
    /// Milliseconds since this minute began.
    elapsed_ms: u64,
}

impl RecentFailures {
    /// Whether the failures in the last 60 s reach `max`, in units of 1/60 000 failure:
    /// `previous × (60 000 − 1 − elapsed) + this × 60 000 ≥ max × 60 000`. The previous minute's
    /// weight is the share of its milliseconds within `(now − 60 s, now]`, so a failure stops
    /// counting exactly 60 s after the minute it fell in.
    fn is_over(self, max: u32) -> bool {
        self.weighted_at(self.elapsed_ms) >= u128::from(max) * u128::from(MINUTE_MS)
    }

    fn weighted_at(self, elapsed_ms: u64) -> u128 {
        let previous_weight = MINUTE_MS - 1 - elapsed_ms.min(MINUTE_MS - 1);
        u128::from(self.previous_minute) * u128::from(previous_weight)
            + u128::from(self.this_minute) * u128::from(MINUTE_MS)
    }

    /// Milliseconds until [`RecentFailures::is_over`] turns false with no further failures.
    fn ms_until_below(self, max: u32) -> u64 {
        if !self.is_over(max) {
            return 0;
        }
        if max == 0 {
            // Blocked whatever happens; the limit may be raised, so come back in a minute.
            return MINUTE_MS;
        }
        let limit = u128::from(max) * u128::from(MINUTE_MS);
        let to_next_minute = MINUTE_MS - self.elapsed_ms;
        if u64::from(max) <= self.this_minute {
            // This minute alone is over the limit; in the next one it becomes the previous
            // minute, weighted down as that minute passes.
            to_next_minute + first_ms_below(self.this_minute, 0, limit)
        } else {
            // The previous minute's share decides; it shrinks as this minute passes.
            let unblocked_at = first_ms_below(self.previous_minute, self.this_minute, limit);
            unblocked_at.saturating_sub(self.elapsed_ms)
        }
    }
}

/// The first `elapsed` (ms into a minute) at which
/// `previous × (60 000 − 1 − elapsed) + this × 60 000 < limit`, given `this × 60 000 < limit`
/// so that one exists (at the minute's last ms the previous minute weighs nothing).
fn first_ms_below(previous: u64, this: u64, limit: u128) -> u64 {
    let room = limit - u128::from(this) * u128::from(MINUTE_MS);
    if previous == 0 {
        return 0;
    }
    // previous × weight ≤ room − 1  ⇔  weight ≤ (room − 1) / previous
    let max_weight = (room - 1) / u128::from(previous);
    let max_weight = u64::try_from(max_weight).unwrap_or(u64::MAX);
    (MINUTE_MS - 1).saturating_sub(max_weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a minute, and an instant 10 s into it.
    const MINUTE_START: u64 = 29_333_333 * MINUTE_MS;
    const T0: u64 = MINUTE_START + 10_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn fail(guard: &AuthFailureGuard, client: IpAddr, now: u64, times: u32) {
        for _ in 0..times {
            guard.record_failure(client, now);
        }
    }

    #[test]
    fn under_the_threshold_is_not_blocked() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        assert!(!guard.is_blocked(client, T0));
        fail(&guard, client, T0, 4);
        assert!(!guard.is_blocked(client, T0));
        assert_eq!(guard.retry_after_secs(client, T0), 0);
    }

    #[test]
    fn reaching_the_threshold_blocks() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        fail(&guard, client, T0, 5);
        assert!(guard.is_blocked(client, T0));
        // Blocked until this minute ends, 50 s later.
        assert_eq!(guard.retry_after_secs(client, T0), 50);
        assert!(guard.is_blocked(client, MINUTE_START + MINUTE_MS - 1));
    }

    #[test]
    fn other_addresses_are_unaffected() {
        let guard = AuthFailureGuard::new(5);
        fail(&guard, ip("203.0.113.7"), T0, 50);
        assert!(!guard.is_blocked(ip("203.0.113.8"), T0));
        assert!(!guard.is_blocked(ip("2001:db8::1"), T0));
    }

    #[test]
    fn a_sketch_collision_can_only_block_an_innocent_address() {
        // One row of one cell: every address shares it, the extreme of the documented caveat.
        let guard = AuthFailureGuard::with_sketch_size(5, 1, 1);
        fail(&guard, ip("203.0.113.7"), T0, 5);
        assert!(guard.is_blocked(ip("198.51.100.1"), T0));
    }

    #[test]
    fn a_minute_later_the_address_is_unblocked() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        fail(&guard, client, T0, 5);
        assert!(guard.is_blocked(client, T0 + 49_999));
        assert!(!guard.is_blocked(client, T0 + 60_000));
        assert!(!guard.is_blocked(client, T0 + 10 * MINUTE_MS));
    }

    #[test]
    fn a_burst_at_the_start_of_a_minute_is_released_after_exactly_a_minute() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        fail(&guard, client, MINUTE_START, 5);
        assert_eq!(guard.retry_after_secs(client, MINUTE_START), 60);
        assert!(guard.is_blocked(client, MINUTE_START + 59_999));
        assert!(!guard.is_blocked(client, MINUTE_START + 60_000));
    }

    #[test]
    fn retry_after_is_the_wait_until_released_rounded_up() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        // Five in the previous minute, two in this one: the previous minute decides.
        fail(&guard, client, MINUTE_START + 30_000, 5);
        let now = MINUTE_START + MINUTE_MS + 1_000;
        fail(&guard, client, now, 2);
        assert!(guard.is_blocked(client, now));
        let wait = guard.retry_after_secs(client, now);
        assert!(wait > 0);
        assert!(guard.is_blocked(client, now + (wait - 1) * 1_000));
        assert!(!guard.is_blocked(client, now + wait * 1_000));

        // Far over the limit in this minute: the wait runs into the next minute.
        let client = ip("198.51.100.1");
        fail(&guard, client, T0, 50);
        let wait = guard.retry_after_secs(client, T0);
        assert!(wait > 50, "{wait}");
        assert!(guard.is_blocked(client, T0 + (wait - 1) * 1_000));
        assert!(!guard.is_blocked(client, T0 + wait * 1_000));
    }

    #[test]
    fn a_persistent_guesser_is_held_to_about_the_limit() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        let mut failures = 0;
        // One attempt every 100 ms for ten minutes; only attempts that get a key check can fail.
        for step in 0..6_000 {
            let now = T0 + step * 100;
            if !guard.is_blocked(client, now) {
                guard.record_failure(client, now);
                failures += 1;
            }
        }
        assert!((50..=55).contains(&failures), "{failures}");
    }

    #[test]
    fn ipv6_is_counted_per_slash_64_and_mapped_ipv4_as_ipv4() {
        let guard = AuthFailureGuard::new(3);
        fail(&guard, ip("2001:db8:1:2::1"), T0, 3);
        assert!(guard.is_blocked(ip("2001:db8:1:2:ffff::9"), T0));
        assert!(!guard.is_blocked(ip("2001:db8:1:3::1"), T0));

        fail(&guard, ip("::ffff:192.0.2.1"), T0, 3);
        assert!(guard.is_blocked(ip("192.0.2.1"), T0));
    }

    #[test]
    fn zero_tolerated_failures_blocks_everyone() {
        let guard = AuthFailureGuard::new(0);
        assert!(guard.is_blocked(ip("203.0.113.7"), T0));
        assert_eq!(guard.retry_after_secs(ip("203.0.113.7"), T0), 60);
    }

    #[test]
    fn failures_two_minutes_old_are_forgotten_when_a_window_is_reused() {
        let guard = AuthFailureGuard::new(5);
        let client = ip("203.0.113.7");
        fail(&guard, client, T0, 4);
        // Two minutes later the same window is reused for a new minute and starts empty.
        let later = T0 + 2 * MINUTE_MS;
        fail(&guard, client, later, 4);
        assert!(!guard.is_blocked(client, later));
        // A time before the guard's windows (a stale clock) does not panic and counts nothing.
        guard.record_failure(client, T0);
        assert!(!guard.is_blocked(client, 0));
    }
}
