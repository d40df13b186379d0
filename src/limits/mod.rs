//! Admission limits as pure logic: per-user request rates and per-address failed-authentication
//! throttling, each decided from in-memory state and an explicit `now_ms`.
//!
//! - [`rate`]: [`RateLimiter`], an exact per-user GCRA limit ("N requests per minute, burst N").
//! - [`auth_guard`]: [`AuthFailureGuard`], a fixed-memory, approximate count of failed
//!   authentications per client address, consulted before the key check.
//!
//! Not for: monthly quotas or usage accounting (the ledger), building the 429 response (the
//! single builder in [`crate::api_error`]) or naming headers ([`crate::headers`]). Nothing
//! here does I/O, awaits, or reads a clock; time comes in as Unix milliseconds from
//! [`crate::clock`], so the proxy and tests decide what "now" is. Locks are plain
//! `std::sync::Mutex`es held for one map operation, never across an await.

pub mod auth_guard;
pub mod rate;

pub use auth_guard::AuthFailureGuard;
pub use rate::{RateDecision, RateLimiter};
