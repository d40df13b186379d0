//! Which part of the gateway answers a path.

/// Where a request goes, decided from its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/health`, `/healthz`: answered by the gateway itself.
    Health,
    /// `/v1/*`: OpenAI-compatible API, proxied to a node.
    Proxied,
    /// Anything else: 404.
    Unknown,
}

pub fn classify(path: &str) -> Route {
    match path {
        "/health" | "/healthz" => Route::Health,
        p if p.starts_with("/v1/") => Route::Proxied,
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(classify("/health"), Route::Health);
        assert_eq!(classify("/healthz"), Route::Health);
        assert_eq!(classify("/v1/chat/completions"), Route::Proxied);
        assert_eq!(classify("/v1"), Route::Unknown);
        assert_eq!(classify("/v10/x"), Route::Unknown);
        assert_eq!(classify("/"), Route::Unknown);
    }
}
