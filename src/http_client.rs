//! What the gateway's outgoing HTTP clients (run workers to the proxy, skills inventories, the
//! Telegram Bot API) share: how they are built, and an error told with its causes.
//!
//! HTTPS goes through rustls with the ring provider (the one Pingora uses) and the platform's
//! certificate store. reqwest asks for the process's default provider when a client is built
//! and panics without one, so every client starts from `builder()`, which installs it first.

/// A client builder with HTTPS ready: the ring provider installed for the process (once; later
/// calls and a provider installed by someone else are fine).
pub fn builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// An error and its causes on one line: reqwest's own message alone is "error sending request".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_is_told_with_every_cause() {
        let chain = Wrapped(
            "error sending request",
            Some(Box::new(Wrapped(
                "client error (Connect)",
                Some(Box::new(Wrapped("connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&chain),
            "error sending request: client error (Connect): connection refused"
        );
        assert_eq!(error_chain(&Wrapped("timed out", None)), "timed out");
    }
}
