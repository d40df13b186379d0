//! Gateway keys: minting, hashing, and the in-memory index the request path verifies against.
//!
//! A key is `exo_` followed by 192 random bits in hex. Only its SHA-256 hash is ever stored or
//! held in memory; the key itself is printed once, at creation. Verification hashes the
//! presented key and looks the hash up in an immutable `KeyIndex` snapshot: no SQLite, no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every gateway key starts with this.
pub const KEY_PREFIX: &str = "exo_";
/// Characters of a key kept in the clear, to recognise it in `keys list`.
const SHOWN_PREFIX_LEN: usize = 10;

/// A freshly minted key: the secret (show once) and what gets stored.
pub struct MintedKey {
    pub id: String,
    pub secret: String,
    pub hash_hex: String,
    pub shown_prefix: String,
}

pub fn mint() -> MintedKey {
    let mut secret_bytes = [0u8; 24];
    let mut id_bytes = [0u8; 6];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut secret_bytes);
    rng.fill_bytes(&mut id_bytes);
    let secret = format!("{KEY_PREFIX}{}", hex::encode(secret_bytes));
    MintedKey {
        id: format!("key_{}", hex::encode(id_bytes)),
        hash_hex: hex::encode(hash(&secret)),
        shown_prefix: secret[..SHOWN_PREFIX_LEN].to_owned(),
        secret,
    }
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// True when `value` looks like a gateway key (as opposed to a provider key such as `sk-…`).
pub fn is_gateway_key(value: &str) -> bool {
    value.starts_with(KEY_PREFIX)
}

/// True when `value` holds something shaped like a gateway key anywhere in it (`exo_` and at
/// least 16 hex digits): such a header value is never forwarded to a node.
pub fn mentions_gateway_key(value: &[u8]) -> bool {
    const MIN_HEX: usize = 16;
    let prefix = KEY_PREFIX.as_bytes();
    value.windows(prefix.len()).enumerate().any(|(at, window)| {
        window.eq_ignore_ascii_case(prefix)
            && value[at + prefix.len()..]
                .iter()
                .take(MIN_HEX)
                .filter(|b| b.is_ascii_hexdigit())
                .count()
                == MIN_HEX
    })
}

/// What a valid key stands for.
#[derive(Debug)]
pub struct KeyRecord {
    pub id: String,
    pub user: String,
    /// A comped tier that overrides the user's own.
    pub tier: Option<String>,
    /// Unix ms of the last request made with this key (0: never), flushed to SQLite in the
    /// background.
    pub last_used_ms: AtomicU64,
}

impl KeyRecord {
    pub fn touch(&self, now_ms: u64) {
        self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// Immutable snapshot of every active key, by hash.
#[derive(Debug, Default)]
pub struct KeyIndex {
    by_hash: HashMap<[u8; 32], Arc<KeyRecord>>,
}

impl KeyIndex {
    /// Builds an index; `previous` carries over in-memory `last_used` times not yet flushed.
    pub fn build(
        keys: impl IntoIterator<Item = ([u8; 32], KeyRecord)>,
        previous: Option<&KeyIndex>,
    ) -> KeyIndex {
        let by_hash = keys
            .into_iter()
            .map(|(hash, record)| {
                if let Some(old) = previous.and_then(|p| p.by_hash.get(&hash)) {
                    record.touch(old.last_used_ms.load(Ordering::Relaxed));
                }
                (hash, Arc::new(record))
            })
            .collect();
        KeyIndex { by_hash }
    }

    pub fn verify(&self, presented: &str) -> Option<&Arc<KeyRecord>> {
        if !is_gateway_key(presented) {
            return None;
        }
        self.by_hash.get(&hash(presented))
    }

    /// The active key whose SHA-256 is `hash` (a dashboard session remembers its key so).
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<&Arc<KeyRecord>> {
        self.by_hash.get(hash)
    }

    pub fn records(&self) -> impl Iterator<Item = &Arc<KeyRecord>> {
        self.by_hash.values()
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_key_is_recognised_anywhere_in_a_value() {
        let key = mint().secret;
        assert!(mentions_gateway_key(key.as_bytes()));
        assert!(mentions_gateway_key(format!("Bearer {key}").as_bytes()));
        assert!(mentions_gateway_key(
            format!("x;{}", key.to_uppercase()).as_bytes()
        ));
        assert!(!mentions_gateway_key(b"sk-proj-exo_abc"));
        assert!(!mentions_gateway_key(b"exo_"));
    }

    fn record(user: &str) -> KeyRecord {
        KeyRecord {
            id: format!("key_{user}"),
            user: user.into(),
            tier: None,
            last_used_ms: AtomicU64::new(0),
        }
    }

    #[test]
    fn minted_keys_are_long_random_and_prefixed() {
        let (a, b) = (mint(), mint());
        assert!(a.secret.starts_with("exo_") && a.secret.len() == 4 + 48);
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.id, b.id);
        assert_eq!(a.hash_hex, hex::encode(hash(&a.secret)));
        assert!(a.secret.starts_with(&a.shown_prefix));
    }

    #[test]
    fn only_the_exact_key_verifies() {
        let minted = mint();
        let index = KeyIndex::build([(hash(&minted.secret), record("ana"))], None);
        assert_eq!(index.verify(&minted.secret).unwrap().user, "ana");
        let mut forged = minted.secret.clone();
        forged.pop();
        forged.push('x');
        assert!(index.verify(&forged).is_none());
        assert!(index.verify("sk-not-a-gateway-key").is_none());
    }

    #[test]
    fn rebuild_keeps_unflushed_last_used() {
        let minted = mint();
        let h = hash(&minted.secret);
        let first = KeyIndex::build([(h, record("ana"))], None);
        first.verify(&minted.secret).unwrap().touch(1234);
        let second = KeyIndex::build([(h, record("ana"))], Some(&first));
        let used = second
            .verify(&minted.secret)
            .unwrap()
            .last_used_ms
            .load(Ordering::Relaxed);
        assert_eq!(used, 1234);
    }
}
