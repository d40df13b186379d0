//! What a sidecar handler asks for, as typed extractors, and how its errors answer.
//!
//! - `Caller`: the user the proxy vouches for (checked against the gateway's internal secret,
//!   so a local process that reaches the loopback listener directly cannot pose as anyone);
//!   `Customer`: a caller proven by a gateway key, which the control plane's own routes need.
//! - `JsonBody<T>`, `Params<T>`, `Id`, `IdAndName`: the body, the query and the path, whose
//!   rejections become the same OpenAI-shaped errors as everything else the gateway answers.
//! - `ApiError` is the handlers' one error type (`IntoResponse`).
//!
//! Not for: what a route does (the route modules), or who may see what (the domain modules
//! take the caller and answer 404 for anything not theirs).

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::Sidecar;
use crate::api_error::ApiError;
use crate::headers;
use crate::local_http::{self, MAX_APP_BODY};
use std::sync::Arc;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body()));
        *response.status_mut() = http::StatusCode::from_u16(self.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The user the proxy vouches for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    /// A gateway key proved the user (not just a claimed `X-User-ID`).
    pub by_key: bool,
    /// The tier the proxy resolved for this request.
    pub tier: Option<String>,
}

impl FromRequestParts<Arc<Sidecar>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        sidecar: &Arc<Sidecar>,
    ) -> Result<Caller, ApiError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let secret = header(headers::INTERNAL_SECRET).unwrap_or_default();
        if !local_http::secret_matches(secret.as_bytes(), sidecar.internal_secret.as_bytes()) {
            return Err(ApiError::unauthenticated(
                "not_through_gateway",
                "Call /api/* through the gateway's public address.",
            ));
        }
        let user = header(headers::FORWARDED_USER)
            .filter(|u| headers::is_well_formed_id(u.as_bytes()))
            .ok_or_else(ApiError::internal)?
            .to_owned();
        Ok(Caller {
            user,
            by_key: header(headers::AUTHENTICATED_BY) == Some("key"),
            tier: header(headers::TIER).map(str::to_owned),
        })
    }
}

/// A caller proven by a gateway key: the owner of tenants, runs and tokens.
#[derive(Debug, Clone)]
pub struct Customer(pub Caller);

impl FromRequestParts<Arc<Sidecar>> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        sidecar: &Arc<Sidecar>,
    ) -> Result<Customer, ApiError> {
        let caller = Caller::from_request_parts(parts, sidecar).await?;
        if !caller.by_key {
            return Err(ApiError::unauthenticated(
                "missing_gateway_key",
                "This endpoint needs your gateway key: send X-Gateway-Key: exo_….",
            ));
        }
        Ok(Customer(caller))
    }
}

/// A JSON body of type `T`, at most `MAX_APP_BODY` bytes; unknown or mistyped fields are
/// named in the 400's message.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = read_body(request, MAX_APP_BODY).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads a whole body, refusing more than `cap` bytes.
pub async fn read_body(request: Request, cap: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), cap)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::request_too_large(cap as u64)
            } else {
                ApiError::invalid_request("unreadable_body", "The request body could not be read.")
            }
        })
}

/// Parses JSON of type `T`; the error names the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = match path.as_str() {
            "." | "" => format!("The body is not the expected JSON: {}", e.inner()),
            _ => format!("The body is not the expected JSON: `{path}`: {}", e.inner()),
        };
        ApiError::invalid_request("invalid_json", message)
    })
}

/// The query string as `T`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params<T>, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| Params(value))
            .map_err(|e| ApiError::invalid_request("invalid_query", e.body_text()))
    }
}

/// One id in the path (`/api/runs/{id}`).
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(_) => Err(ApiError::not_found(parts.uri.path())),
        }
    }
}

/// An id and a name in the path (`/api/runs/{id}/artifacts/{name}`).
pub struct IdAndName(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdAndName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<IdAndName, ApiError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((id, name))) => Ok(IdAndName(id, name)),
            Err(_) => Err(ApiError::not_found(parts.uri.path())),
        }
    }
}

/// A JSON answer with a status.
pub fn json(status: u16, value: serde_json::Value) -> Response {
    let mut response = axum::Json(value).into_response();
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    response
}
