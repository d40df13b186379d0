//! Token accounting: what a request cost, read from the node's own `usage` report, or
//! estimated from bytes when the node never reports one.
//!
//! Pure, synchronous logic: no I/O, no async, no locks. The proxy owns one parser per request
//! in its context and feeds it from `request_body_filter` / `response_body_filter`:
//!
//! - [`inject_include_usage`] rewrites a streaming chat request so the node appends a usage-only
//!   chunk (OpenAI's `stream_options.include_usage`); when the gateway asked and the client did
//!   not, [`UsageChunkFilter`] removes that chunk again on the way back.
//! - [`SseUsageParser`] reads usage and model from a `text/event-stream` answer, chunk by chunk
//!   as the chunks pass; it only looks at the bytes and never holds the stream back.
//! - [`usage_from_json`] / [`JsonCollector`] read them from a whole JSON answer.
//! - [`estimate_tokens`] is the fallback when none of the above found a usage.
//!
//! The response path never waits on this module: the parser copies what it needs and returns,
//! and the filter only ever holds back an *incomplete* event (bounded in size), so every event
//! reaches the client as soon as its last byte has arrived.
//!
//! Not for: recording the numbers (the ledger), quotas or limits (`limits`), or deciding which
//! endpoint is streaming (the proxy knows from the response's `Content-Type`).

mod frame;
mod hide;
mod json;
mod rewrite;
mod sse;
#[cfg(test)]
mod test_streams;
mod wire;

pub use hide::UsageChunkFilter;
pub use json::{usage_from_json, JsonCollector};
pub use rewrite::{inject_include_usage, Rewrite};
pub use sse::SseUsageParser;
pub use wire::MODEL_NAME_MAX_BYTES;

/// The largest single SSE event the stream parser and the usage-chunk filter keep in memory
/// (1 MiB). Real chat chunks are a few hundred bytes; a larger event is skipped by the parser
/// and passed through unexamined by the filter, so one request can never make the gateway
/// buffer an unbounded amount.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The token counts of one request, as the node reported them or as estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
}

/// Token estimate when a node never reports usage: about 4 bytes per token, at least 1 when any
/// bytes were seen.
///
/// This is an approximation, not a tokenizer: English prose lands near 4 bytes per token, but
/// code, JSON, non-Latin scripts and whitespace-heavy text can be off by a factor of two or more
/// either way. Record it as an estimate (the ledger's `tokens_reported = false`), never as a
/// reported count.
pub fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_a_quarter_of_the_bytes_rounded_up() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(4), 1);
        assert_eq!(estimate_tokens(5), 2);
        assert_eq!(estimate_tokens(4_000), 1_000);
        assert_eq!(estimate_tokens(u64::MAX), u64::MAX / 4 + 1);
    }
}
