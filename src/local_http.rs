//! Plumbing shared by the gateway's own HTTP apps (admin API, sidecar) and the proxy: a capped body reader,
//! JSON responses, OpenAI-shaped errors (built by `api_error`), fresh secrets and constant-time
//! secret checks.

use bytes::{Bytes, BytesMut};
use http::Response;
use pingora::protocols::http::ServerSession;
use rand::RngCore;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;

/// Largest body the admin API and sidecar read: their requests are small JSON documents.
pub const MAX_APP_BODY: usize = 64 * 1024;

pub fn json(status: u16, value: &Value) -> Response<Vec<u8>> {
    let body = value.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

pub fn error(error: &ApiError) -> Response<Vec<u8>> {
    let body = error.body().to_vec();
    let mut builder = Response::builder()
        .status(error.status())
        .header("content-type", "application/json")
        .header("content-length", body.len());
    if let Some(secs) = error.retry_after_secs {
        builder = builder.header("retry-after", secs);
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// Reads the whole request body, refusing bodies over `cap` bytes.
pub async fn read_body(session: &mut ServerSession, cap: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(ApiError::request_too_large(cap as u64));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(_) => {
                return Err(ApiError::invalid_request(
                    "unreadable_body",
                    "The request body could not be read.",
                ))
            }
        }
    }
}

/// Runs blocking work (SQLite) on a blocking thread. An error starting with `invalid: ` is the
/// caller's fault and becomes a 400 with the rest as its message; any other error is ours: it
/// is logged under `context` and the client gets a 500 that reveals nothing.
pub async fn blocking<T: Send + 'static>(
    context: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => match e.strip_prefix("invalid: ") {
            Some(reason) => Err(ApiError::invalid_request("invalid_request", reason)),
            None => {
                tracing::error!("{context}: {e}");
                Err(ApiError::internal())
            }
        },
        Err(e) => {
            tracing::error!("{context}: task failed: {e}");
            Err(ApiError::internal())
        }
    }
}

/// A fresh secret: 32 bytes (256 bits) from the thread's CSPRNG (seeded by the operating
/// system), in hex. Secrets must not come from `new_request_id`: a request id is time-ordered
/// and carries only 80 random bits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares a presented secret with the expected one in constant time.
pub fn secret_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
}

/// The value of cookie `name`, when it is a token (64 hex digits).
pub fn cookie_token(request_headers: &http::HeaderMap, name: &str) -> Option<String> {
    request_headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value_and_length() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abd", b"abc"));
        assert!(!secret_matches(b"ab", b"abc"));
    }

    #[test]
    fn secrets_are_64_hex_digits_and_never_repeat() {
        let secrets: std::collections::HashSet<String> = (0..1000).map(|_| new_secret()).collect();
        assert_eq!(secrets.len(), 1000);
        for secret in &secrets {
            assert_eq!(secret.len(), 64, "{secret}");
            assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
        }
        // Every position varies: no time prefix or fixed part, unlike a request id.
        for i in 0..64 {
            let digits: std::collections::HashSet<u8> =
                secrets.iter().map(|s| s.as_bytes()[i]).collect();
            assert!(digits.len() > 1, "digit {i} is the same in every secret");
        }
    }

    #[test]
    fn errors_carry_status_and_retry_after() {
        let r = error(&ApiError::rate_limited(50, 2));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
    }
}
