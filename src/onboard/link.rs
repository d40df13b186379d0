//! One-time download links: `<gateway url>/onboard/<token>`.
//!
//! A token is 256 random bits from the operating system's CSPRNG, written as 64 hex digits, and
//! only its SHA-256 hash is stored. Guessing is hopeless (2²⁵⁶ tokens for a few dozen live
//! links), so unknown tokens need no lock-out to be safe; the proxy still counts them as failed
//! authentications of the address, which slows down anyone who tries.
//!
//! A kit holds its trainee's gateway key in the clear, and the gateway must serve it later, so
//! it is stored sealed (ChaCha20-Poly1305) under a key derived from the token: the database
//! holds neither the token nor anything that opens the kit without it.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
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

/// The key that seals a kit: derived from the token, and different from its stored hash.
fn kit_cipher(token: &str) -> ChaCha20Poly1305 {
    let mut hasher = Sha256::new();
    hasher.update(b"exoclaw kit seal\0");
    hasher.update(token.as_bytes());
    ChaCha20Poly1305::new(Key::from_slice(&hasher.finalize()))
}

/// Seals `zip` for storage: a random nonce, then the ciphertext and its tag.
pub fn seal_kit(token: &str, zip: &[u8]) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = kit_cipher(token)
        .encrypt(Nonce::from_slice(&nonce), zip)
        .map_err(|_| "cannot seal the kit".to_owned())?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a kit sealed by `seal_kit` with the same token; `None` for any other token or a
/// damaged blob.
pub fn open_kit(token: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(12);
    kit_cipher(token)
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .ok()
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
    fn a_sealed_kit_opens_only_with_its_token() {
        let token = new_token();
        let zip = b"PK\x03\x04 EXOCLAW_GATEWAY_KEY=exo_0123456789abcdef0123";
        let sealed = seal_kit(&token, zip).unwrap();
        assert!(
            !sealed.windows(4).any(|w| w == b"exo_"),
            "no key in the clear"
        );
        assert_eq!(open_kit(&token, &sealed).as_deref(), Some(&zip[..]));
        assert_eq!(open_kit(&new_token(), &sealed), None);
        assert_eq!(open_kit(&token, &sealed[..10]), None);
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
