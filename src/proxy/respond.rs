//! Responses the gateway writes itself (health, errors), always with `x-request-id`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::Result;
use pingora_proxy::Session;
use serde_json::json;

use crate::api_error::ApiError;
use crate::proxy::headers;

/// Writes a complete JSON response.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    request_id: &str,
    retry_after_secs: Option<u64>,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header(headers::REQUEST_ID, request_id)?;
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

pub async fn error(session: &mut Session, error: &ApiError, request_id: &str) -> Result<()> {
    json(
        session,
        error.status(),
        error.body(),
        request_id,
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
