//! Responses the gateway writes itself (health, errors), with the headers every response
//! carries (`x-request-id`, and the rate-limit headers once the caller's limit is known).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::Result;
use pingora_proxy::Session;
use serde_json::json;

use crate::api_error::ApiError;

/// Headers added to a response, as (name, value).
pub type ExtraHeaders = Vec<(&'static str, String)>;

/// Writes a complete JSON response.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    headers: &ExtraHeaders,
    retry_after_secs: Option<u64>,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + headers.len()))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    for (name, value) in headers {
        header.insert_header(*name, value.as_str())?;
    }
    if let Some(secs) = retry_after_secs {
        header.insert_header("retry-after", secs.to_string())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

pub async fn error(session: &mut Session, error: &ApiError, headers: &ExtraHeaders) -> Result<()> {
    json(
        session,
        error.status(),
        error.body(),
        headers,
        error.retry_after_secs,
    )
    .await
}

pub fn health_body() -> Bytes {
    Bytes::from(
        json!({
            "status": "ok",
            "gateway": "exoclaw",
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string(),
    )
}
