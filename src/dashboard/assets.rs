//! `/assets/{name}`: the dashboard's stylesheet and scripts, embedded in the binary: `app.js` on
//! every page, `runs.js` on a run's page (it follows the run live), and the operators'
//! additions (`admin.css`, `admin.js`), served on the admin listener.
//!
//! They may be cached for an hour; a new release changes them, so the cache is short.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::PageError;

const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");
const RUNS_JS: &str = include_str!("assets/runs.js");
const ADMIN_CSS: &str = include_str!("assets/admin.css");
const ADMIN_JS: &str = include_str!("assets/admin.js");

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Result<Response, PageError> {
    let (body, content_type) = match name.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "runs.js" => (RUNS_JS, "text/javascript; charset=utf-8"),
        "admin.css" => (ADMIN_CSS, "text/css; charset=utf-8"),
        "admin.js" => (ADMIN_JS, "text/javascript; charset=utf-8"),
        _ => return Err(PageError::not_found()),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}
