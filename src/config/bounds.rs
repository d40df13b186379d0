//! The largest value each number in the config may take.
//!
//! A number past its bound is refused when the file is loaded (`check`, `serve`, a reload), with
//! the key's path and the bound: a few extra zeros must become an error message, not a gigabyte
//! allocation, a panic deep inside the load balancer, or a timeout of a hundred years. Each bound
//! is far above what a sane deployment uses and well below what would hurt the process; the doc
//! comment of each says which.
//!
//! Not here: which values are meaningful together (that is `config::validate`), or text checks
//! (`config::text`).

use std::fmt::Display;
use std::time::Duration;

use super::{err, ConfigError};

/// Largest `pools.NAME.nodes[].weight`. Weights only matter relative to each other, so 1–100
/// (1 % steps) expresses every useful split; the load balancer expands them: round robin keeps
/// one slot per unit of weight, and the consistent-hash ring 160 points per unit (pingora-ketama),
/// rebuilt on every reload. A weight of 10^6 took 1.3 GB, and one beyond `u32` panicked.
pub const MAX_NODE_WEIGHT: usize = 100;
/// Most nodes in one pool. With `MAX_NODE_WEIGHT` this caps a pool's ring at 1.6 M points
/// (about 13 MB); pingora's weighted selection also asserts fewer than 2^16 nodes.
pub const MAX_NODES_PER_POOL: usize = 100;
/// Most proxy worker threads: beyond the cores of any machine this gateway runs on, more
/// threads only cost memory (each has its own runtime).
pub const MAX_THREADS: usize = 256;
/// Largest `server.max_request_body`: a body is held in memory while it is checked, so this is
/// per request, times the requests in flight. Prompts with images stay far below it.
pub const MAX_REQUEST_BODY: u64 = 256 << 20;
/// Largest `ledger.queue_capacity`: the queue's slots are allocated up front, about 300 bytes
/// each, so this is about 1.2 GiB. The ledger writer refuses more, too.
pub const MAX_LEDGER_QUEUE_CAPACITY: usize = 1 << 22;
/// Largest `ledger.batch_size`: one transaction holds this many rows in memory. Past 20,000 rows
/// per commit the write rate hardly improves (see `LedgerSettings::batch_size`).
pub const MAX_LEDGER_BATCH_SIZE: usize = 100_000;
/// Largest `pools.NAME.queue.max_waiting`: each waiter is a held client connection.
pub const MAX_WAITING: usize = 100_000;
/// Largest `pools.NAME.nodes[].max_inflight`: no OpenClaw node serves more at once.
pub const MAX_INFLIGHT: u32 = 10_000;
/// Largest `pools.NAME.max_connect_attempts`: each attempt goes to another node and may take the
/// whole `connect_timeout`; a client gives up long before this many.
pub const MAX_CONNECT_ATTEMPTS: usize = 16;
/// Largest `health_check.failures` and `health_check.successes`: 100 checks at the default
/// 2 s interval already take over three minutes to eject or restore a node.
pub const MAX_HEALTH_THRESHOLD: u32 = 100;
/// Largest `auth.failed_auth_per_minute`: more failures per minute from one address is a key
/// being guessed, not a user mistyping.
pub const MAX_FAILED_AUTH_PER_MINUTE: u32 = 10_000;
/// Largest `tiers.NAME.requests_per_minute`. The limiter costs the same and stays exact for
/// any limit, and a huge limit is how a tier says "unlimited" (the load tests use 10^6, the
/// benchmarks 10^8), so this bound only keeps values clear of `u32::MAX`.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000_000;
/// Largest `tiers.NAME.monthly_requests`: 10 billion a month is about 3,800 a second, and stays
/// far inside SQLite's signed 64-bit integers (a `u64` past `i64::MAX` would not).
pub const MAX_MONTHLY_REQUESTS: u64 = 10_000_000_000;
/// Longest timeout (`connect_timeout`, `read_timeout`, `write_timeout`, `queue.timeout`,
/// `health_check.timeout`) and `server.grace_period`: a client has given up long before.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3_600);
/// Longest `server.keepalive_timeout` and `server.request_head_timeout`: every idle or slow
/// connection holds a socket and its buffers this long.
pub const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);
/// Most connections one client address may hold (`server.max_connections_per_client`): each
/// can hold a request head of up to `max_request_head`.
pub const MAX_CONNECTIONS_PER_CLIENT: u32 = 100_000;
/// Longest interval of periodic work (`health_check.interval`, `ledger.flush_interval`,
/// `ledger.prune_interval`, `ledger.quota_flush_interval`): each runs at least daily.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Largest `stripe.tolerance`: how old a signed webhook may be; it is also how long a captured
/// one can be replayed (Stripe's own default is 5 minutes).
pub const MAX_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(3_600);
/// Longest `stripe.past_due_grace`: Stripe's retries of a failed payment end within weeks.
pub const MAX_PAST_DUE_GRACE: Duration = Duration::from_secs(90 * 86_400);
/// Longest `ledger.retention`, short of `forever`: ten years.
pub const MAX_RETENTION: Duration = Duration::from_secs(3_650 * 86_400);

/// `value`, when it is between `min` and `max`; the refusal names `path` and the bound.
pub(super) fn within<T: PartialOrd + Display>(
    path: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min {
        return Err(err(path, format!("must be at least {min}")));
    }
    if value > max {
        return Err(err(path, format!("must be at most {max}, not {value}")));
    }
    Ok(value)
}

/// `value`, when it is at most `max`.
pub(super) fn duration_within(
    path: &str,
    value: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    if value > max {
        return Err(err(path, format!("must be at most {}", show(max))));
    }
    Ok(value)
}

/// A duration in the config's own notation, in the largest unit that shows it whole.
pub(super) fn show(duration: Duration) -> String {
    let ms = duration.as_millis();
    let units = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    units
        .iter()
        .find(|(size, _)| ms >= *size && ms % size == 0)
        .map_or_else(
            || format!("{ms}ms"),
            |(size, unit)| format!("{}{unit}", ms / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_their_largest_whole_unit() {
        assert_eq!(show(MAX_TIMEOUT), "1h");
        assert_eq!(show(MAX_RETENTION), "3650d");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn refusals_name_the_bound() {
        assert_eq!(within("k", 5, 1, 10), Ok(5));
        let e = within("k", 11, 1, 10).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("k", "must be at most 10, not 11")
        );
        assert_eq!(
            within("k", 0, 1, 10).unwrap_err().message,
            "must be at least 1"
        );
    }
}
