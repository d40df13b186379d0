//! What text in the config may hold when it ends up in a request to a node or in a log line.
//!
//! Names (of nodes, pools, tiers), an SNI, a health path, a route prefix and the upgrade URL
//! travel into HTTP requests, log lines and metric labels. None may hold a control character
//! (CR, LF, NUL, ESC, DEL, …): one would split a header, forge a log line, or make pingora
//! refuse (or panic on) a request built from it, at a time no operator is watching. Paths must
//! be what an HTTP request line can carry.

use super::{err, ConfigError};

/// Text without control characters, and not blank.
pub(super) fn plain(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(err(path, "must not be empty"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(err(
            path,
            format!(
                "{value:?} holds the control character {:?}; names and paths must be plain text",
                c
            ),
        ));
    }
    Ok(())
}

/// A path a request line can carry (`/healthz`, `/ready?deep=1` when `query` is allowed).
pub(super) fn uri_path(path: &str, value: &str, query: bool) -> Result<(), ConfigError> {
    plain(path, value)?;
    if !value.starts_with('/') {
        return Err(err(path, "must start with `/`"));
    }
    let parsed = value
        .parse::<http::uri::PathAndQuery>()
        .ok()
        .filter(|p| p.as_str() == value && (query || p.query().is_none()))
        .filter(|_| !value.contains('#'));
    if parsed.is_none() {
        let what = if query {
            "a URI path (and query)"
        } else {
            "a URI path (no query)"
        };
        return Err(err(path, format!("{value:?} is not {what}")));
    }
    Ok(())
}

/// A TLS server name: a DNS name.
pub(super) fn host_name(path: &str, value: &str) -> Result<(), ConfigError> {
    plain(path, value)?;
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(err(path, format!("{value:?} is not a DNS name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_named() {
        assert!(plain("k", "mac-mini 2").is_ok());
        for bad in [
            "a\r\nb",
            "a\nb",
            "nul\0",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let e = plain("k", bad).unwrap_err();
            assert!(e.message.contains("control character"), "{bad:?}: {e}");
        }
        assert_eq!(plain("k", "  ").unwrap_err().message, "must not be empty");
    }

    #[test]
    fn paths_must_fit_a_request_line() {
        assert!(uri_path("k", "/healthz", true).is_ok());
        assert!(uri_path("k", "/ready?deep=1", true).is_ok());
        assert!(uri_path("k", "/v1/", false).is_ok());
        for bad in ["healthz", "/a b", "/a\r\nHost: x", "/a#frag"] {
            assert!(uri_path("k", bad, true).is_err(), "{bad:?}");
        }
        assert!(uri_path("k", "/v1?x", false).is_err());
    }

    #[test]
    fn server_names_are_dns_names() {
        assert!(host_name("k", "node-1.tailnet.ts.net").is_ok());
        assert!(host_name("k", "evil\r\nhost").is_err());
        assert!(host_name("k", "a b").is_err());
    }
}
