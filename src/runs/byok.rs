//! Provider keys of BYOK runs: held in memory only, beside the queued run, never written.
//!
//! The seed is explicit: BYOK keys are not persisted. A key rides here from the moment its
//! run is accepted until the run reaches a final state; it is never in SQLite, a log line, an
//! artifact or an error message, and its memory is wiped when it is dropped. After a restart
//! the keys are gone, so such a run fails with `byok_key_lost` and its owner resubmits it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use zeroize::Zeroizing;

/// A provider key; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ProviderKey(Zeroizing<String>);

impl ProviderKey {
    pub fn new(key: String) -> ProviderKey {
        ProviderKey(Zeroizing::new(key))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderKey(…)")
    }
}

/// Whether a run's BYOK key can travel in an `Authorization` header.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 512 && key.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Default)]
pub struct ByokKeys {
    keys: Mutex<HashMap<String, ProviderKey>>,
}

impl ByokKeys {
    pub fn insert(&self, run_id: &str, key: ProviderKey) {
        self.lock().insert(run_id.to_owned(), key);
    }

    pub fn get(&self, run_id: &str) -> Option<ProviderKey> {
        self.lock().get(run_id).cloned()
    }

    /// Drops the key of a run that reached a final state.
    pub fn remove(&self, run_id: &str) {
        self.lock().remove(run_id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProviderKey>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_until_removed_and_never_shown() {
        let keys = ByokKeys::default();
        keys.insert("run_a", ProviderKey::new("sk-secret-123".into()));
        assert_eq!(keys.get("run_a").unwrap().expose(), "sk-secret-123");
        assert!(!format!("{:?}", keys.get("run_a")).contains("secret"));
        keys.remove("run_a");
        assert!(keys.get("run_a").is_none());
        assert!(keys.is_empty());
    }

    #[test]
    fn keys_must_fit_a_header() {
        assert!(is_valid_key("sk-proj-abc_DEF-123"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("sk abc"));
        assert!(!is_valid_key("sk-\r\nX-Evil: 1"));
    }
}
