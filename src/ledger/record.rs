//! One row of the `requests` table: what the proxy knows about a finished request.
//!
//! Built in the proxy's `logging` filter and handed to the ledger writer through a bounded
//! channel; it holds no secrets (no keys, no tokens, no prompt text) and only a keyed hash of
//! the client's IP address.

/// Longest `endpoint` stored: a real endpoint is a few dozen bytes, while a 30 KB junk path on
/// every 404 would otherwise grow the database by gigabytes an hour.
pub const MAX_ENDPOINT_LEN: usize = 256;
/// Ends an `endpoint` that was cut to `MAX_ENDPOINT_LEN`.
pub const TRUNCATED_MARK: &str = "…(truncated)";

/// The path as stored: whole when short, else its first bytes (cut at a character boundary)
/// followed by `TRUNCATED_MARK`.
pub fn bounded_endpoint(path: &str) -> String {
    if path.len() <= MAX_ENDPOINT_LEN {
        return path.to_owned();
    }
    let mut cut = MAX_ENDPOINT_LEN - TRUNCATED_MARK.len();
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{TRUNCATED_MARK}", &path[..cut])
}

/// A finished request, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestRecord {
    pub request_id: String,
    pub user_id: String,
    /// The request path (`/v1/chat/completions`), without the query string; at most
    /// `MAX_ENDPOINT_LEN` bytes (see `bounded_endpoint`).
    pub endpoint: String,
    pub method: String,
    /// The status the client received (0 when the client left before any response).
    pub status: u16,
    pub latency_ms: u64,
    /// Unix milliseconds at which the request arrived (from the policy clock).
    pub created_ms: u64,
    /// Keyed HMAC-SHA256 of the client IP (hex), never the IP itself.
    pub ip_hash: Option<String>,
    pub model: Option<String>,
    pub node: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    /// The seed's column: total tokens, reported by the node or estimated.
    pub tokens_est: u64,
    /// The answer was a `text/event-stream`.
    pub streamed: bool,
    /// Token counts came from the node's `usage`; false when they are an estimate from bytes.
    pub tokens_reported: bool,
    /// The gateway's error type (`rate_limit_exceeded`, `upstream_timeout`, …); None on success.
    pub error_type: Option<String>,
    /// The agent run this node call belongs to (a run worker's request); None for a client's.
    pub run_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_and_marked_short_ones_kept() {
        assert_eq!(
            bounded_endpoint("/v1/chat/completions"),
            "/v1/chat/completions"
        );
        let long = format!("/v1/{}", "é".repeat(20_000));
        let stored = bounded_endpoint(&long);
        assert!(stored.len() <= MAX_ENDPOINT_LEN, "{}", stored.len());
        assert!(stored.ends_with(TRUNCATED_MARK));
        assert!(long.starts_with(stored.trim_end_matches(TRUNCATED_MARK)));
    }
}
