//! Pairing codes and the limit on guessing them: what a one-time code is, how it is made,
//! hashed and shown, and how many wrong codes a Telegram user may send.
//!
//! A tenant's owner asks for a code; the Telegram user sends it (`/start CODE` from the deep
//! link, or the code alone) and is paired with the tenant. A code is 8 characters from an
//! alphabet without look-alikes (no `0`/`O`, `1`/`I`/`L`), drawn from the operating system's
//! CSPRNG: 31⁸ ≈ 8.5·10¹¹ codes, about 40 bits. Only its SHA-256 hash is stored (`store`), so a
//! read of the database shows no usable code. That is a plain hash of a short secret, not a
//! password hash: whoever holds a copy of the database can find a pending code by brute force in
//! hours. Codes live an hour and work once, which bounds what that buys.
//!
//! Online guessing is what `AttemptLimiter` stops: a few wrong codes per Telegram user per
//! window, counted in memory (a restart forgets them, which at most doubles a guesser's rate
//! once; the 40 bits make that irrelevant).
//!
//! Not for: storing codes and pairings (`store`), or what the bot answers (the worker).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::OsRng;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;

/// The characters of a code: A–Z and 2–9 without `I`, `L`, `O` (and no `0`, `1`).
pub const CODE_ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters in a code.
pub const CODE_LEN: usize = 8;
/// How long a code may be redeemed after it is made.
pub const CODE_TTL: Duration = Duration::from_secs(60 * 60);
/// Codes a tenant may have pending (made, not used, not expired) at once.
pub const MAX_PENDING_PER_TENANT: u64 = 3;

/// A one-time pairing code. Its `Debug` hides it: the code is a credential until it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode(String);

impl PairingCode {
    /// A fresh code from the OS CSPRNG; an error only if the OS has no randomness to give.
    pub fn generate() -> Result<PairingCode, String> {
        // Rejection sampling keeps every character equally likely: 248 = 8 · 31.
        const ACCEPT_BELOW: u8 = (256 / CODE_ALPHABET.len() * CODE_ALPHABET.len()) as u8;
        let mut code = String::with_capacity(CODE_LEN);
        let mut bytes = [0u8; 16];
        while code.len() < CODE_LEN {
            OsRng
                .try_fill_bytes(&mut bytes)
                .map_err(|e| format!("no randomness for a pairing code: {e}"))?;
            for b in bytes {
                if b < ACCEPT_BELOW && code.len() < CODE_LEN {
                    code.push(char::from(
                        CODE_ALPHABET[usize::from(b) % CODE_ALPHABET.len()],
                    ));
                }
            }
        }
        Ok(PairingCode(code))
    }

    /// A code as a user typed it: surrounding spaces dropped and lower case accepted; None when
    /// it is not 8 characters of the alphabet (so it cannot be any code ever made).
    pub fn parse(text: &str) -> Option<PairingCode> {
        let text = text.trim();
        let valid = text.len() == CODE_LEN
            && text
                .bytes()
                .all(|b| CODE_ALPHABET.contains(&b.to_ascii_uppercase()));
        valid.then(|| PairingCode(text.to_ascii_uppercase()))
    }

    /// The code, to show its owner once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the store keeps: the SHA-256 of the code, in hex.
    pub fn hash(&self) -> CodeHash {
        CodeHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The link that opens the bot with the code filled in: `https://t.me/<bot>?start=<code>`.
    pub fn deep_link(&self, bot_username: &str) -> String {
        let bot = bot_username.trim_start_matches('@');
        format!("https://t.me/{bot}?start={}", self.0)
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(<hidden>)")
    }
}

/// The SHA-256 of a code in hex: the only form a code is stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHash(pub String);

/// A Telegram user paired with a tenant: their messages become the tenant's runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// The pairing's own id, for the owner's `DELETE /api/telegram/pairings/{id}`.
    pub id: i64,
    pub telegram_user_id: i64,
    pub tenant_id: String,
    /// The tenant's owner (a gateway user), on whose behalf the runs go.
    pub owner: String,
    /// The private chat the bot answers in.
    pub chat_id: i64,
    pub username: Option<String>,
    pub first_name: String,
    pub created_ms: u64,
}

/// Who redeems a code: the sender of the message that carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemer<'a> {
    pub telegram_user_id: i64,
    pub chat_id: i64,
    pub username: Option<&'a str>,
    pub first_name: &'a str,
}

/// Failed pairing attempts a Telegram user may make per window.
pub const MAX_FAILED_ATTEMPTS: usize = 5;
/// The window the failed attempts are counted over.
pub const FAILED_ATTEMPTS_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Users tracked before the limiter drops those with no failure inside the window.
const MAX_TRACKED_USERS: usize = 10_000;

/// Counts wrong or expired codes per Telegram user over a sliding window, in memory.
///
/// The worker asks `check` before it looks a code up, and reports `failed` or `succeeded`
/// after; a user over the limit is told to wait, and the code is not even looked up.
pub struct AttemptLimiter {
    clock: SharedClock,
    max: usize,
    window_ms: u64,
    failures: Mutex<HashMap<i64, Vec<u64>>>,
}

impl AttemptLimiter {
    /// `MAX_FAILED_ATTEMPTS` per `FAILED_ATTEMPTS_WINDOW`.
    pub fn new(clock: SharedClock) -> AttemptLimiter {
        AttemptLimiter::with_limit(clock, MAX_FAILED_ATTEMPTS, FAILED_ATTEMPTS_WINDOW)
    }

    pub fn with_limit(clock: SharedClock, max: usize, window: Duration) -> AttemptLimiter {
        AttemptLimiter {
            clock,
            max,
            window_ms: window.as_millis() as u64,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Ok when `user` may try a code now; otherwise how long until their oldest failure in the
    /// window leaves it.
    pub fn check(&self, user: i64) -> Result<(), Duration> {
        let now = self.clock.now_ms();
        let mut failures = self.lock();
        let Some(times) = failures.get_mut(&user) else {
            return Ok(());
        };
        times.retain(|&t| t + self.window_ms > now);
        if times.len() < self.max {
            return Ok(());
        }
        let oldest = times.iter().copied().min().unwrap_or(now);
        Err(Duration::from_millis(oldest + self.window_ms - now))
    }

    /// Records a wrong or expired code from `user`.
    pub fn failed(&self, user: i64) {
        let now = self.clock.now_ms();
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED_USERS && !failures.contains_key(&user) {
            let window_ms = self.window_ms;
            failures.retain(|_, times| times.iter().any(|&t| t + window_ms > now));
        }
        failures.entry(user).or_default().push(now);
    }

    /// Forgets `user`'s failures: they paired.
    pub fn succeeded(&self, user: i64) {
        self.lock().remove(&user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<u64>>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn generated_codes_are_eight_unambiguous_characters_and_differ() {
        let codes: HashSet<String> = (0..200)
            .map(|_| PairingCode::generate().unwrap().as_str().to_owned())
            .collect();
        assert_eq!(codes.len(), 200);
        for code in &codes {
            assert_eq!(code.len(), CODE_LEN);
            assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
        }
    }

    #[test]
    fn every_character_of_the_alphabet_turns_up() {
        let seen: HashSet<char> = (0..100)
            .flat_map(|_| {
                PairingCode::generate()
                    .unwrap()
                    .0
                    .chars()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(seen.len(), CODE_ALPHABET.len());
    }

    #[test]
    fn parsing_accepts_what_a_user_types_and_rejects_what_no_code_can_be() {
        let code = PairingCode::parse("  abcd2345 ").unwrap();
        assert_eq!(code.as_str(), "ABCD2345");
        assert_eq!(PairingCode::parse("ABCD2345"), Some(code));
        for bad in [
            "",
            "ABCD234",
            "ABCD23456",
            "ABCD0345",
            "ABCDO345",
            "ABCD 345",
            "ÄBCD2345",
        ] {
            assert_eq!(PairingCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex_of_the_upper_case_code() {
        let code = PairingCode::parse("abcd2345").unwrap();
        let hash = code.hash();
        assert_eq!(hash.0.len(), 64);
        assert_eq!(hash, PairingCode::parse("ABCD2345").unwrap().hash());
        assert_ne!(hash, PairingCode::parse("ABCD2346").unwrap().hash());
        assert!(!hash.0.contains("ABCD2345"));
    }

    #[test]
    fn debug_hides_the_code_and_the_deep_link_carries_it() {
        let code = PairingCode::parse("ABCD2345").unwrap();
        assert!(!format!("{code:?}").contains("ABCD2345"));
        assert_eq!(
            code.deep_link("@exoclaw_bot"),
            "https://t.me/exoclaw_bot?start=ABCD2345"
        );
    }

    #[test]
    fn failed_attempts_are_limited_per_user_over_a_sliding_window() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = AttemptLimiter::new(clock.clone());
        for _ in 0..MAX_FAILED_ATTEMPTS {
            assert_eq!(limiter.check(7), Ok(()));
            limiter.failed(7);
            clock.advance(1_000);
        }
        let wait = limiter.check(7).unwrap_err();
        assert_eq!(wait, FAILED_ATTEMPTS_WINDOW - Duration::from_secs(5));
        assert_eq!(limiter.check(8), Ok(()), "another user is not limited");
        clock.advance(wait.as_millis() as u64);
        assert_eq!(
            limiter.check(7),
            Ok(()),
            "the oldest failure left the window"
        );
        limiter.failed(7);
        assert!(limiter.check(7).is_err());
        limiter.succeeded(7);
        assert_eq!(limiter.check(7), Ok(()));
    }

    #[test]
    fn the_limiter_forgets_users_whose_failures_are_old() {
        let clock = Arc::new(ManualClock::new(0));
        let limiter = AttemptLimiter::new(clock.clone());
        for user in 0..MAX_TRACKED_USERS as i64 {
            limiter.failed(user);
        }
        clock.advance(FAILED_ATTEMPTS_WINDOW.as_millis() as u64);
        limiter.failed(-1);
        assert_eq!(limiter.lock().len(), 1);
    }
}
