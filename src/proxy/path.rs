//! The request path as a node will read it, decided before the gateway classifies it.
//!
//! OpenClaw routes on the WHATWG-normalised path: `/v1/../tools/invoke` and
//! `/v1/%2e%2e/tools/invoke` both reach its `/tools/invoke`. A gateway that classified the raw
//! path would let such a request through as `/v1/*`. So `normalize` resolves dot segments the
//! way a WHATWG URL parser does (`.` and `..`, plain or percent-encoded in any case: `%2e`,
//! `.%2e`, `%2e.`, `%2e%2e`) before anything looks at the path, and the node receives the
//! normalised path.
//!
//! Not for: decoding anything else. `%2f` stays `%2f`, as it does for the node.

use std::borrow::Cow;

/// Why a path is refused (answered 400, never forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefused {
    /// A `..` segment: it would climb out of the prefix the gateway checked.
    ParentSegment,
    /// A backslash, a space or a control character: WHATWG parsers read `\` as `/` and drop
    /// tabs and newlines, so the node could read another path than the gateway.
    AmbiguousByte,
}

impl PathRefused {
    pub fn message(self) -> &'static str {
        match self {
            PathRefused::ParentSegment => {
                "The path contains a `..` segment. Send the path of an endpoint, such as \
                 /v1/chat/completions."
            }
            PathRefused::AmbiguousByte => {
                "The path contains a backslash, a space or a control character."
            }
        }
    }
}

/// The path with its `.` segments removed; refused when it holds a `..` segment or a byte a
/// URL parser would read differently. Unchanged paths are borrowed.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathRefused> {
    if path.bytes().any(|b| b == b'\\' || b <= b' ' || b == 0x7f) {
        return Err(PathRefused::AmbiguousByte);
    }
    let mut has_dot_segment = false;
    for segment in path.split('/') {
        match dot_segment(segment) {
            Some(DotSegment::Parent) => return Err(PathRefused::ParentSegment),
            Some(DotSegment::Current) => has_dot_segment = true,
            None => {}
        }
    }
    if !has_dot_segment {
        return Ok(Cow::Borrowed(path));
    }
    // Like WHATWG: a `.` segment disappears; one at the end leaves the trailing slash.
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        if dot_segment(segment).is_some() {
            if i == last {
                kept.push("");
            }
        } else {
            kept.push(segment);
        }
    }
    let joined = kept.join("/");
    Ok(Cow::Owned(if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }))
}

enum DotSegment {
    Current,
    Parent,
}

fn dot_segment(segment: &str) -> Option<DotSegment> {
    const CURRENT: [&str; 2] = [".", "%2e"];
    const PARENT: [&str; 4] = ["..", ".%2e", "%2e.", "%2e%2e"];
    // Most segments are longer than any dot segment: no comparison, no allocation.
    if segment.len() > 6 || !segment.starts_with(['.', '%']) {
        return None;
    }
    let is = |forms: &[&str]| forms.iter().any(|f| f.eq_ignore_ascii_case(segment));
    if is(&CURRENT) {
        Some(DotSegment::Current)
    } else if is(&PARENT) {
        Some(DotSegment::Parent)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_borrowed_unchanged() {
        for path in [
            "/v1/chat/completions",
            "/",
            "/v1/models/gpt-4o",
            "/v1/a%2fb",
            "/v1//x",
        ] {
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path));
        }
    }

    #[test]
    fn every_form_of_a_parent_segment_is_refused() {
        for path in [
            "/v1/../tools/invoke",
            "/v1/%2e%2e/tools/invoke",
            "/v1/%2E%2E/hooks/agent",
            "/v1/.%2e/admin",
            "/v1/%2e./admin",
            "/v1/.%2E/ws",
            "/v1/x/..",
            "/v1//../tools",
        ] {
            assert_eq!(normalize(path), Err(PathRefused::ParentSegment), "{path}");
        }
    }

    #[test]
    fn current_segments_disappear() {
        assert_eq!(
            normalize("/v1/./chat/completions").unwrap(),
            "/v1/chat/completions"
        );
        assert_eq!(
            normalize("/v1/%2E/chat/completions").unwrap(),
            "/v1/chat/completions"
        );
        assert_eq!(normalize("/./v1/models").unwrap(), "/v1/models");
        assert_eq!(normalize("/v1/models/.").unwrap(), "/v1/models/");
    }

    #[test]
    fn bytes_a_url_parser_reads_differently_are_refused() {
        for path in ["/v1\\..\\tools", "/v1/.\t./x", "/v1/a b", "/v1/\n"] {
            assert_eq!(normalize(path), Err(PathRefused::AmbiguousByte), "{path:?}");
        }
    }

    #[test]
    fn segments_that_only_look_like_dots_are_kept() {
        for path in [
            "/v1/...",
            "/v1/.well-known",
            "/v1/%2e%2e%2e",
            "/v1/..%2ftools",
        ] {
            assert_eq!(normalize(path).unwrap(), path);
        }
    }
}
