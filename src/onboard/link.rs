//! One-time download links: `<gateway url>/onboard/<token>`.
//!
//! A token is 256 random bits from the operating system's CSPRNG, written as 64 hex digits, and
//! only its SHA-256 hash is stored. Guessing is hopeless (2²⁵⁶ tokens for a few dozen live
//! links), so unknown tokens need no lock-out to be safe; the proxy still counts them as failed
//! authentications of the address, which slows down anyone who tries.

use sha2::{Digest, Sha256};

use crate::local_http;

/// The path prefix of download links (the proxy's `Route::Onboard`).
pub const PATH_PREFIX: &str = "/onboard/";

/// The user the gateway records a kit download under: the downloader has no key yet, so no user
/// of their own. `exoclaw usage` leaves these rows out: they are not anyone's usage.
pub const DOWNLOADER: &str = "onboard";

/// Hex digits in a token.
const TOKEN_LEN: usize = 64;

/// A fresh token: show it once (in the QR code), store only `token_hash(token)`.
pub fn new_token() -> String {
    local_http::new_secret()
}

/// The hex SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// True when `token` has the shape of a token (64 lower-case hex digits): anything else is
/// answered 404 without a database lookup.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The download link of `token` on the gateway at `base_url`.
pub fn url(base_url: &str, token: &str) -> String {
    format!("{}{PATH_PREFIX}{token}", base_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_hex_and_stored_as_hashes() {
        let token = new_token();
        assert!(is_well_formed(&token), "{token}");
        assert_ne!(token, new_token());
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token);
        assert!(!is_well_formed(&token.to_uppercase()));
        assert!(!is_well_formed(&token[1..]));
        assert!(!is_well_formed("../../etc/passwd"));
    }

    #[test]
    fn links_join_the_gateway_url_and_the_token() {
        assert_eq!(
            url("https://gw.example/", "ab"),
            "https://gw.example/onboard/ab"
        );
        assert_eq!(
            url("https://gw.example", "ab"),
            "https://gw.example/onboard/ab"
        );
    }
}
