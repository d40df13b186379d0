//! Which part of the gateway answers a path.

/// Where a request goes, decided from its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/health`, `/healthz`: answered by the gateway itself.
    Health,
    /// `/v1/*`: OpenAI-compatible API, proxied to a node.
    Node,
    /// `/api/*`: the control plane, handed to the sidecar service.
    Sidecar,
    /// `/api/webhooks/*`: third parties (Stripe) calling the sidecar; authenticated by their
    /// signatures there, not by gateway keys.
    Webhook,
    /// `/onboard/*`: one-time kit download links, handed to the sidecar without a gateway key
    /// (the downloader has none yet: the link's 256-bit token is the credential).
    Onboard,
    /// The dashboard's pages and assets (`/`, `/pricing`, `/signup`, `/signin`, `/signout`,
    /// `/dashboard…`, `/assets/…`): handed to the sidecar without a gateway key; a signed-in
    /// browser proves itself with its session cookie there.
    Page,
    /// Anything else: 404.
    Unknown,
}

impl Route {
    /// Whether a request leaves a row in the usage ledger: health probes and the dashboard's
    /// page views are not usage.
    pub fn is_ledgered(self) -> bool {
        !matches!(self, Route::Health | Route::Page)
    }
}

/// The one endpoint whose request body the gateway may rewrite (`include_usage`).
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";

/// The Responses API.
pub const RESPONSES: &str = "/v1/responses";

/// Endpoints whose answers are made of tokens: only these get token estimates when the node
/// reports no `usage`.
pub fn produces_tokens(path: &str) -> bool {
    matches!(
        path,
        CHAT_COMPLETIONS | RESPONSES | "/v1/completions" | "/v1/embeddings"
    )
}

pub fn classify(path: &str) -> Route {
    match path {
        "/health" | "/healthz" => Route::Health,
        p if p.starts_with("/v1/") => Route::Node,
        p if p.starts_with("/api/webhooks/") => Route::Webhook,
        p if p.starts_with("/api/") => Route::Sidecar,
        p if p.starts_with("/onboard/") => Route::Onboard,
        "/" | "/pricing" | "/signup" | "/signin" | "/signout" | "/dashboard" => Route::Page,
        p if p.starts_with("/dashboard/") || p.starts_with("/assets/") => Route::Page,
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
        assert_eq!(classify("/v1/chat/completions"), Route::Node);
        assert_eq!(classify("/api/oauth/codex"), Route::Sidecar);
        assert_eq!(classify("/api/webhooks/stripe"), Route::Webhook);
        assert_eq!(classify("/v1"), Route::Unknown);
        assert_eq!(classify("/v10/x"), Route::Unknown);
        assert_eq!(classify("/apix"), Route::Unknown);
        assert_eq!(classify("/onboard/0123abcd"), Route::Onboard);
        assert_eq!(classify("/onboard"), Route::Unknown);
        assert_eq!(classify("/"), Route::Page);
        assert_eq!(classify("/dashboard"), Route::Page);
        assert_eq!(classify("/dashboard/runs/run_1"), Route::Page);
        assert_eq!(classify("/assets/app.css"), Route::Page);
        assert_eq!(classify("/dashboards"), Route::Unknown);
        assert_eq!(classify("/index.html"), Route::Unknown);
    }

    #[test]
    fn only_token_endpoints_produce_tokens() {
        assert!(produces_tokens("/v1/chat/completions"));
        assert!(produces_tokens("/v1/responses"));
        assert!(produces_tokens("/v1/embeddings"));
        assert!(!produces_tokens("/v1/models"));
        assert!(!produces_tokens("/v1/models/gpt-4o"));
        assert!(!produces_tokens("/v1/nope"));
    }
}
