//! OpenAI-shaped JSON errors: the single builder for every error response the gateway makes.
//!
//! `{"error": {"message": "...", "type": "...", "code": "..."}}` is what the official OpenAI SDKs
//! parse, so a trainee sees "Request too large (limit 10 MiB)" instead of a bare status code.
//! Errors produced by a node are passed through untouched; this module is only for ours.

use bytes::Bytes;
use serde_json::json;

/// What went wrong, as a client should understand it. Each kind has one status and one `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    InsufficientQuota,
    NotFound,
    /// The request clashes with the current state (an idempotency key reused, a run that
    /// already ended) (409).
    Conflict,
    RequestTooLarge,
    /// The request head took too long to arrive (408).
    RequestTimeout,
    /// The request head is larger than the gateway reads (431).
    HeadTooLarge,
    RateLimited,
    UpstreamError,
    NoHealthyNode,
    UpstreamTimeout,
    /// A feature the request needs is not set up here (503).
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::InsufficientQuota => 402,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::HeadTooLarge => 431,
            ErrorKind::RateLimited => 429,
            ErrorKind::UpstreamError => 502,
            ErrorKind::NoHealthyNode => 503,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The `error.type` field (contract: clients and operators match on it).
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::InsufficientQuota => "insufficient_quota",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RequestTooLarge | ErrorKind::HeadTooLarge => "request_too_large",
            ErrorKind::RequestTimeout => "invalid_request_error",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::NoHealthyNode => "no_healthy_node",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Unavailable => "service_unavailable",
            ErrorKind::Internal => "internal_error",
        }
    }
}

/// An id or name from a client as an error message may quote it: short, and plain.
pub fn shown(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

/// One error response: kind, a human message, a machine `code`, and an optional `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body, ready to write.
    pub fn body(&self) -> Bytes {
        let value = json!({
            "error": {
                "message": self.message,
                "type": self.kind.type_name(),
                "code": self.code,
            }
        });
        Bytes::from(value.to_string())
    }

    /// 431: the request line and headers are larger than the gateway reads.
    pub fn request_head_too_large(limit: u64) -> ApiError {
        ApiError::new(
            ErrorKind::HeadTooLarge,
            "request_header_too_large",
            format!(
                "The request line and headers are larger than {}.",
                human_size(limit)
            ),
        )
    }

    /// 408: the request head did not arrive in time.
    pub fn request_head_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            ErrorKind::RequestTimeout,
            "request_timeout",
            format!(
                "The request line and headers did not arrive within {} s.",
                limit.as_secs_f64()
            ),
        )
    }

    /// 429: one address holds too many open connections.
    pub fn too_many_connections(limit: u32) -> ApiError {
        ApiError::new(
            ErrorKind::RateLimited,
            "too_many_connections",
            format!(
                "Too many open connections from your address (limit {limit}). Close some, or \
                 reuse them (keep-alive)."
            ),
        )
        .with_retry_after(1)
    }

    pub fn invalid_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest, code, message)
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Authentication, code, message)
    }

    pub fn rate_limited(limit: u32, retry_after_secs: u64) -> ApiError {
        ApiError::new(
            ErrorKind::RateLimited,
            "rate_limit_exceeded",
            format!(
                "Rate limit exceeded: {limit} requests per minute. Try again in {retry_after_secs}s."
            ),
        )
        .with_retry_after(retry_after_secs)
    }

    /// 402 at the monthly limit: names the tier, the limit, when it resets, and how to upgrade.
    pub fn quota_exhausted(
        tier: &str,
        limit: u64,
        month: &str,
        resets_on: &str,
        upgrade_url: Option<&str>,
    ) -> ApiError {
        let upgrade = match upgrade_url {
            Some(url) => format!("Upgrade to a higher tier at {url}"),
            None => "Ask the operator to move you to a higher tier".to_owned(),
        };
        ApiError::new(
            ErrorKind::InsufficientQuota,
            "insufficient_quota",
            format!(
                "You have used all {limit} requests of tier `{tier}` for {month}. {upgrade}, \
                 or wait until {resets_on} (UTC)."
            ),
        )
    }

    /// 402 for a tier's limit other than the monthly requests (tenants, runs, templates, a
    /// lapsed subscription): the reason, then how to upgrade.
    pub fn tier_limit(code: &'static str, reason: String, upgrade_url: Option<&str>) -> ApiError {
        let message = match upgrade_url {
            Some(url) => format!("{reason} Upgrade at {url}"),
            None => format!("{reason} Ask the operator for a higher tier."),
        };
        ApiError::new(ErrorKind::InsufficientQuota, code, message)
    }

    pub fn too_many_failed_logins(retry_after_secs: u64) -> ApiError {
        ApiError::new(
            ErrorKind::RateLimited,
            "too_many_failed_authentications",
            format!(
                "Too many failed authentications from your address. Try again in {retry_after_secs}s."
            ),
        )
        .with_retry_after(retry_after_secs)
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            format!(
                "No route for {}. The gateway serves /v1/* (OpenAI-compatible) and /health.",
                shown_path(path)
            ),
        )
    }

    /// 404 on the admin listener, which serves other paths than the public one.
    pub fn admin_not_found(path: &str) -> ApiError {
        ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            format!(
                "No admin endpoint {}. The admin listener serves /metrics, /admin/keys, \
                 /admin/usage, /admin/nodes, /admin/ledger, /admin/runs and /admin/reload, \
                 and the operators' pages at /.",
                shown_path(path)
            ),
        )
    }

    /// 503: a feature the request needs is not set up on this gateway.
    pub fn not_configured(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unavailable, code, message)
    }

    pub fn request_too_large(limit: u64) -> ApiError {
        ApiError::new(
            ErrorKind::RequestTooLarge,
            "request_too_large",
            format!(
                "Request body is larger than this gateway accepts ({}).",
                human_size(limit)
            ),
        )
    }

    pub fn node_refused(node: &str) -> ApiError {
        ApiError::new(
            ErrorKind::UpstreamError,
            "node_unreachable",
            format!("The agent node `{node}` refused the connection. Try again shortly."),
        )
    }

    pub fn node_failed(node: &str) -> ApiError {
        ApiError::new(
            ErrorKind::UpstreamError,
            "node_error",
            format!("The agent node `{node}` closed the connection or sent an invalid response."),
        )
    }

    pub fn node_timeout(node: &str, phase: &str) -> ApiError {
        ApiError::new(
            ErrorKind::UpstreamTimeout,
            "upstream_timeout",
            format!("The agent node `{node}` did not {phase} in time."),
        )
    }

    pub fn no_healthy_node(pool: &str) -> ApiError {
        ApiError::new(
            ErrorKind::NoHealthyNode,
            "no_healthy_node",
            format!("No healthy agent node is available in pool `{pool}`. Try again shortly."),
        )
        .with_retry_after(5)
    }

    /// 503 when every node of the pool is at its in-flight limit and the queue is full or the
    /// wait timed out.
    pub fn nodes_busy(pool: &str, retry_after_secs: u64) -> ApiError {
        ApiError::new(
            ErrorKind::NoHealthyNode,
            "nodes_busy",
            format!("Every agent node in pool `{pool}` is busy. Try again in {retry_after_secs}s."),
        )
        .with_retry_after(retry_after_secs)
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            ErrorKind::Internal,
            "internal_error",
            "The gateway failed to handle this request.",
        )
    }
}

/// `10485760` → `10 MiB`; exact binary units where they fit, bytes otherwise.
/// A path as an error message shows it: whole when short, its start otherwise.
fn shown_path(path: &str) -> String {
    const SHOWN: usize = 120;
    match path.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(size, _)| bytes >= *size && bytes % size == 0)
        .map(|(size, unit)| format!("{} {unit}", bytes / size))
        .unwrap_or_else(|| format!("{bytes} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let e = ApiError::request_too_large(10 << 20);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "request_too_large");
        assert_eq!(v["error"]["code"], "request_too_large");
        assert!(v["error"]["message"].as_str().unwrap().contains("10 MiB"));
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_size(10 << 20), "10 MiB");
        assert_eq!(human_size(1536), "1536 bytes");
        assert_eq!(human_size(2048), "2 KiB");
    }
}
