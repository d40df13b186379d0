//! Monthly request quotas: in-memory counters per user per UTC calendar month.
//!
//! The request path checks and counts here (a sharded map, one short lock, no await, no SQLite).
//! A background task writes changed counters to `monthly_usage` every
//! `ledger.quota_flush_interval` and at shutdown, and they are loaded at start: a crash loses at
//! most one flush interval of counts. The month rolls over by itself — a counter belongs to
//! its month, and a request in a new month starts from zero; no cron job resets anything.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 32;

/// A UTC calendar month, as `year * 12 + (month - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month(i64);

impl Month {
    pub fn of_unix_ms(ms: u64) -> Month {
        let (year, month, _) = crate::clock::civil_from_days((ms / 86_400_000) as i64);
        Month(year * 12 + (month as i64 - 1))
    }

    /// `YYYY-MM`.
    pub fn label(self) -> String {
        format!(
            "{:04}-{:02}",
            self.0.div_euclid(12),
            self.0.rem_euclid(12) + 1
        )
    }

    pub fn parse(label: &str) -> Option<Month> {
        let (year, month) = label.split_once('-')?;
        let (year, month): (i64, i64) = (year.parse().ok()?, month.parse().ok()?);
        (1..=12)
            .contains(&month)
            .then_some(Month(year * 12 + month - 1))
    }

    /// Unix milliseconds at the month's first instant (UTC).
    pub fn start_ms(self) -> u64 {
        let days = crate::clock::days_from_civil(
            self.0.div_euclid(12),
            self.0.rem_euclid(12) as u32 + 1,
            1,
        );
        u64::try_from(days).unwrap_or(0) * 86_400_000
    }

    /// The first day of the next month, `YYYY-MM-01`.
    pub fn next_start_label(self) -> String {
        format!("{}-01", Month(self.0 + 1).label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    /// Requests counted this month, including this one when allowed.
    pub used: u64,
    pub limit: u64,
    pub month: Month,
}

#[derive(Default)]
struct Counter {
    month: Option<Month>,
    count: u64,
    /// Changed since the last flush.
    dirty: bool,
    /// A finished month's count not yet written.
    previous: Option<(Month, u64)>,
}

pub struct QuotaCounters {
    shards: Vec<Mutex<HashMap<String, Counter>>>,
}

impl Default for QuotaCounters {
    fn default() -> Self {
        QuotaCounters {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl QuotaCounters {
    fn shard(&self, user: &str) -> &Mutex<HashMap<String, Counter>> {
        let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        &self.shards[(hash as usize) % SHARDS]
    }

    /// Counts one request for `user` unless the month's `limit` is reached.
    pub fn check_and_count(&self, user: &str, limit: u64, now_ms: u64) -> QuotaDecision {
        let month = Month::of_unix_ms(now_ms);
        let mut shard = self.shard(user).lock().unwrap_or_else(|p| p.into_inner());
        let counter = shard.entry(user.to_owned()).or_default();
        roll(counter, month);
        let allowed = counter.count < limit;
        if allowed {
            counter.count += 1;
            counter.dirty = true;
        }
        QuotaDecision {
            allowed,
            used: counter.count,
            limit,
            month,
        }
    }

    /// Requests counted for `user` in the month of `now_ms`.
    pub fn used(&self, user: &str, now_ms: u64) -> u64 {
        let month = Month::of_unix_ms(now_ms);
        let shard = self.shard(user).lock().unwrap_or_else(|p| p.into_inner());
        shard
            .get(user)
            .filter(|c| c.month == Some(month))
            .map_or(0, |c| c.count)
    }

    /// Loads persisted counts (start-up); a count already in memory is kept if larger.
    pub fn load(&self, rows: impl IntoIterator<Item = (String, Month, u64)>) {
        for (user, month, count) in rows {
            let mut shard = self.shard(&user).lock().unwrap_or_else(|p| p.into_inner());
            match shard.entry(user) {
                Entry::Occupied(mut e) => {
                    let c = e.get_mut();
                    if c.month == Some(month) {
                        c.count = c.count.max(count);
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(Counter {
                        month: Some(month),
                        count,
                        ..Counter::default()
                    });
                }
            }
        }
    }

    /// Takes the counts changed since the last call, for writing to SQLite.
    pub fn take_dirty(&self) -> Vec<(String, Month, u64)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (user, counter) in shard.iter_mut() {
                if let Some((month, count)) = counter.previous.take() {
                    out.push((user.clone(), month, count));
                }
                if counter.dirty {
                    counter.dirty = false;
                    if let Some(month) = counter.month {
                        out.push((user.clone(), month, counter.count));
                    }
                }
            }
        }
        out
    }

    /// Puts counts back whose write failed, so the next flush retries them.
    pub fn restore_dirty(&self, rows: Vec<(String, Month, u64)>) {
        for (user, month, count) in rows {
            let mut shard = self.shard(&user).lock().unwrap_or_else(|p| p.into_inner());
            let counter = shard.entry(user).or_default();
            if counter.month == Some(month) {
                counter.dirty = true;
            } else if counter.previous.is_none() {
                counter.previous = Some((month, count));
            }
        }
    }
}

/// Moves a counter into `month`, keeping a finished month's count for the next flush.
fn roll(counter: &mut Counter, month: Month) {
    if counter.month != Some(month) {
        if let (Some(old), true) = (counter.month, counter.dirty) {
            counter.previous = Some((old, counter.count));
        }
        counter.month = Some(month);
        counter.count = 0;
        counter.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_30_2026: u64 = 1_796_083_199_000; // 2026-11-30 23:59:59 UTC
    const DEC_1_2026: u64 = 1_796_083_200_000; // 2026-12-01 00:00:00 UTC

    #[test]
    fn months_follow_the_utc_calendar() {
        assert_eq!(Month::of_unix_ms(0).label(), "1970-01");
        assert_eq!(Month::of_unix_ms(NOV_30_2026).label(), "2026-11");
        assert_eq!(Month::of_unix_ms(DEC_1_2026).label(), "2026-12");
        assert_eq!(Month::of_unix_ms(951_782_400_000).label(), "2000-02"); // 2000-02-29
        assert_eq!(
            Month::parse("2026-11"),
            Some(Month::of_unix_ms(NOV_30_2026))
        );
        assert_eq!(
            Month::of_unix_ms(NOV_30_2026).next_start_label(),
            "2026-12-01"
        );
        assert_eq!(Month::parse("2026-13"), None);
    }

    #[test]
    fn the_limit_holds_and_the_month_rolls_over_by_itself() {
        let q = QuotaCounters::default();
        for i in 1..=3 {
            let d = q.check_and_count("ana", 3, NOV_30_2026);
            assert!(d.allowed && d.used == i);
        }
        let refused = q.check_and_count("ana", 3, NOV_30_2026);
        assert!(!refused.allowed);
        assert_eq!(refused.used, 3, "a refusal does not count");
        assert!(q.check_and_count("bob", 3, NOV_30_2026).allowed);
        let december = q.check_and_count("ana", 3, DEC_1_2026);
        assert!(december.allowed && december.used == 1);
    }

    #[test]
    fn dirty_counts_flush_once_including_a_finished_month() {
        let q = QuotaCounters::default();
        q.check_and_count("ana", 10, NOV_30_2026);
        q.check_and_count("ana", 10, NOV_30_2026);
        q.check_and_count("ana", 10, DEC_1_2026);
        let mut dirty = q.take_dirty();
        dirty.sort();
        let nov = Month::of_unix_ms(NOV_30_2026);
        let dec = Month::of_unix_ms(DEC_1_2026);
        assert_eq!(dirty, vec![("ana".into(), nov, 2), ("ana".into(), dec, 1)]);
        assert!(q.take_dirty().is_empty());
        q.restore_dirty(vec![("ana".into(), dec, 1)]);
        assert_eq!(q.take_dirty(), vec![("ana".into(), dec, 1)]);
    }

    #[test]
    fn loaded_counts_continue() {
        let q = QuotaCounters::default();
        q.load([("ana".to_owned(), Month::of_unix_ms(NOV_30_2026), 7)]);
        assert_eq!(q.used("ana", NOV_30_2026), 7);
        assert!(!q.check_and_count("ana", 7, NOV_30_2026).allowed);
        assert_eq!(q.used("ana", DEC_1_2026), 0);
    }
}
