//! Codex OAuth tokens: encryption at rest and the in-memory index the request path reads.
//!
//! Tokens are sealed with ChaCha20-Poly1305 under a 256-bit key from the environment or a file
//! (never from the YAML). The user id is the associated data, so a ciphertext copied to another
//! user's row fails to open instead of handing one user's session to another. Decrypted tokens
//! live only in memory, in an immutable `CodexIndex` snapshot keyed by user.

use std::collections::HashMap;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

/// Longest token accepted (OAuth access tokens are well under this).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

pub struct TokenCipher {
    cipher: ChaCha20Poly1305,
}

impl TokenCipher {
    /// The key from its 64 hex characters (32 bytes; `openssl rand -hex 32` makes one). Where
    /// the key is read from is the config's business (`Config::token_cipher`).
    pub fn from_hex(text: &str) -> Result<TokenCipher, String> {
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or("the token key must be 64 hex characters (e.g. `openssl rand -hex 32`)")?;
        Ok(TokenCipher {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// Encrypts `token` for `user`: returns (nonce, ciphertext).
    pub fn seal(&self, user: &str, token: &str) -> Result<([u8; 12], Vec<u8>), String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.as_bytes(),
                    aad: user.as_bytes(),
                },
            )
            .map_err(|_| "token encryption failed".to_owned())?;
        Ok((nonce, sealed))
    }

    /// Decrypts a token stored for `user`; `None` when the key, the user or the bytes differ.
    pub fn open(&self, user: &str, nonce: &[u8], ciphertext: &[u8]) -> Option<String> {
        if nonce.len() != 12 {
            return None;
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: user.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Immutable snapshot of decrypted tokens, by user.
#[derive(Default)]
pub struct CodexIndex {
    by_user: HashMap<String, Arc<str>>,
}

impl CodexIndex {
    pub fn new(by_user: HashMap<String, Arc<str>>) -> CodexIndex {
        CodexIndex { by_user }
    }

    pub fn token_for(&self, user: &str) -> Option<&Arc<str>> {
        self.by_user.get(user)
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}

/// True for a token that can travel in an HTTP header: visible ASCII, no spaces.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_tokens_open_only_for_their_user() {
        let cipher = TokenCipher::from_hex(KEY).unwrap();
        let (nonce, sealed) = cipher.seal("ana", "oauth_secret").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"oauth_secret"));
        assert_eq!(
            cipher.open("ana", &nonce, &sealed).as_deref(),
            Some("oauth_secret")
        );
        assert_eq!(cipher.open("bob", &nonce, &sealed), None);
        let other = TokenCipher::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert_eq!(other.open("ana", &nonce, &sealed), None);
    }

    #[test]
    fn bad_keys_and_tokens_are_rejected() {
        assert!(TokenCipher::from_hex("abcd").is_err());
        assert!(TokenCipher::from_hex(&"zz".repeat(32)).is_err());
        assert!(is_valid_token("oauth_abc.DEF-123"));
        assert!(!is_valid_token("has space"));
        assert!(!is_valid_token("line\nbreak"));
        assert!(!is_valid_token(""));
    }
}
