//! Getting an answer into a chat: split into messages Telegram accepts, paced below its limits,
//! and retried after a 429 as Telegram asks.
//!
//! **Plain text.** Messages go without `parse_mode`, so Telegram shows every character as sent
//! and nothing needs escaping: an agent's Markdown arrives as its source, which reads fine,
//! while a `MarkdownV2` or HTML message with one unescaped `_` or `<` is refused whole (400
//! "can't parse entities"). Formatting is not worth a reply that never arrives.
//!
//! **Splitting.** Telegram limits a message to 4,096 characters *as it counts them*: UTF-16
//! code units, so an emoji outside the Basic Multilingual Plane counts two. `split` cuts at the
//! last paragraph break that leaves a part at least half full, else the last line break, else
//! the last space, else anywhere, but never inside a character (so never between the halves of
//! a surrogate pair) and, cheaply, not before a combining mark, a variation selector, a skin-tone
//! modifier or after a zero-width joiner, which keeps most graphemes whole (an approximation:
//! not the full Unicode segmentation rules). The whitespace at a cut is dropped.
//!
//! **Pacing.** `Pacer` is a token bucket over the injected clock: about one message a second per
//! chat and 30 a second overall (Telegram's published limits). It never sleeps: it says how long
//! to wait, and the sender waits. A 429 carries `retry_after`; `retry_delay` says to wait exactly
//! that long before the same part is tried again, and `Pacer::hold` keeps the chat quiet
//! meanwhile.
//!
//! Not for: the Bot API call (`bot_api`), or remembering which parts went out (`store`'s outbox).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::bot_api::BotApiError;
use crate::clock::SharedClock;

/// Telegram's limit on a message's text, in UTF-16 code units.
pub const MAX_MESSAGE_UTF16: usize = 4096;

/// Splits `text` into parts of at most `max_utf16` UTF-16 code units each (see the module docs);
/// an empty or all-space text gives no parts. `max_utf16` must be at least 2 (one character).
pub fn split(text: &str, max_utf16: usize) -> Vec<String> {
    let max_utf16 = max_utf16.max(2);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let window_end = prefix_within(rest, max_utf16);
        if window_end == rest.len() {
            parts.push(rest.to_owned());
            break;
        }
        let cut = cut_point(rest, window_end, max_utf16);
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = rest[cut..].trim_start();
    }
    parts
}

/// The length in UTF-16 code units, as Telegram counts.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// The byte length of the longest prefix of `text` within `max_utf16` code units.
fn prefix_within(text: &str, max_utf16: usize) -> usize {
    let mut units = 0;
    for (at, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max_utf16 {
            return at;
        }
    }
    text.len()
}

/// Where to cut `text`, whose first `window_end` bytes fit: the best boundary inside the window
/// (a byte index at a character boundary, greater than zero).
fn cut_point(text: &str, window_end: usize, max_utf16: usize) -> usize {
    let window = &text[..window_end];
    // A boundary so early that the part would be less than half full is not worth it.
    let half = prefix_within(text, max_utf16 / 2);
    let after = |found: Option<usize>, len: usize| found.map(|at| at + len).filter(|&at| at > half);
    if let Some(at) = after(window.rfind("\n\n"), 2) {
        return at;
    }
    if let Some(at) = after(window.rfind('\n'), 1) {
        return at;
    }
    if let Some(at) = after(window.rfind(char::is_whitespace).map(|at| at + 1), 0) {
        return at;
    }
    // No good boundary: cut between characters, stepping back over those that belong to the
    // character before them, unless that would leave nothing.
    let mut at = window_end;
    while at > 0 && !grapheme_boundary(text, at) {
        at = text[..at].char_indices().next_back().map_or(0, |(i, _)| i);
    }
    if at == 0 {
        window_end.max(text.chars().next().map_or(1, char::len_utf8))
    } else {
        at
    }
}

/// Whether a cut before byte `at` of `text` keeps the characters on both sides apart, by the
/// cheap rules in the module docs.
fn grapheme_boundary(text: &str, at: usize) -> bool {
    let before = text[..at].chars().next_back();
    let next = text[at..].chars().next();
    let joins_next = |c: char| {
        matches!(c as u32,
            0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF
            | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F
            | 0x200D)
    };
    !(next.is_some_and(joins_next) || before == Some('\u{200D}'))
}

/// Messages a chat may receive per second, and the bot overall: Telegram's limits.
pub const PER_CHAT_INTERVAL: Duration = Duration::from_secs(1);
pub const GLOBAL_PER_SECOND: u64 = 30;
/// Chats remembered before those free to send again are forgotten.
const MAX_TRACKED_CHATS: usize = 10_000;

/// A token bucket per chat (one message, refilled each `PER_CHAT_INTERVAL`) and one for the bot
/// (a burst of `GLOBAL_PER_SECOND`, refilled at that rate), over the injected clock.
pub struct Pacer {
    clock: SharedClock,
    state: Mutex<PacerState>,
}

struct PacerState {
    /// Thousandths of a message the bot may still send now; at most `GLOBAL_PER_SECOND` whole.
    global_milli: u64,
    global_at_ms: u64,
    /// When each chat may next receive a message.
    chat_free_at_ms: HashMap<i64, u64>,
}

impl Pacer {
    pub fn new(clock: SharedClock) -> Pacer {
        let now = clock.now_ms();
        Pacer {
            clock,
            state: Mutex::new(PacerState {
                global_milli: GLOBAL_PER_SECOND * 1000,
                global_at_ms: now,
                chat_free_at_ms: HashMap::new(),
            }),
        }
    }

    /// Takes a slot to send one message to `chat_id` now (Ok), or says how long to wait before
    /// asking again (Err; nothing is taken).
    pub fn try_acquire(&self, chat_id: i64) -> Result<(), Duration> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        // Refill: GLOBAL_PER_SECOND messages per 1,000 ms is that many thousandths per ms.
        let elapsed = now.saturating_sub(state.global_at_ms);
        state.global_milli =
            (state.global_milli + elapsed * GLOBAL_PER_SECOND).min(GLOBAL_PER_SECOND * 1000);
        state.global_at_ms = now;
        let chat_wait = state
            .chat_free_at_ms
            .get(&chat_id)
            .map_or(0, |&free| free.saturating_sub(now));
        let global_wait = (1000u64.saturating_sub(state.global_milli)).div_ceil(GLOBAL_PER_SECOND);
        let wait = chat_wait.max(global_wait);
        if wait > 0 {
            return Err(Duration::from_millis(wait));
        }
        state.global_milli -= 1000;
        if state.chat_free_at_ms.len() >= MAX_TRACKED_CHATS {
            state.chat_free_at_ms.retain(|_, &mut free| free > now);
        }
        let interval = PER_CHAT_INTERVAL.as_millis() as u64;
        state.chat_free_at_ms.insert(chat_id, now + interval);
        Ok(())
    }

    /// Keeps `chat_id` quiet for `wait` from now (after a 429 for that chat).
    pub fn hold(&self, chat_id: i64, wait: Duration) {
        let until = self.clock.now_ms() + wait.as_millis() as u64;
        let mut state = self.lock();
        let free = state.chat_free_at_ms.entry(chat_id).or_insert(until);
        *free = (*free).max(until);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Tries of one message before the sender gives up on it.
pub const MAX_SEND_ATTEMPTS: u32 = 5;

/// After `attempt` (1 for the first) failed with `error`: how long to wait before trying the
/// same message again, or None to give up. A 429 waits exactly its `retry_after`; a failure to
/// reach Telegram or a 5xx backs off 1, 2, 4, 8 s; any other refusal (a 400, a 403 from a user
/// who blocked the bot) is final.
pub fn retry_delay(error: &BotApiError, attempt: u32) -> Option<Duration> {
    if attempt >= MAX_SEND_ATTEMPTS {
        return None;
    }
    match error {
        BotApiError::RateLimited { retry_after, .. } => Some(*retry_after),
        e if e.is_transient() => Some(Duration::from_secs(1 << (attempt - 1).min(3))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    fn check_parts(text: &str, max: usize) -> Vec<String> {
        let parts = split(text, max);
        for part in &parts {
            assert!(utf16_len(part) <= max, "{} > {max}", utf16_len(part));
            assert!(!part.trim().is_empty());
            assert_eq!(part.trim(), part);
        }
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(squash(&parts.concat()), squash(text), "nothing lost");
        parts
    }

    #[test]
    fn a_short_answer_is_one_part_and_an_empty_one_none() {
        assert_eq!(split("  Hello!\n", MAX_MESSAGE_UTF16), vec!["Hello!"]);
        assert!(split(" \n\n ", MAX_MESSAGE_UTF16).is_empty());
        let exact = "a".repeat(MAX_MESSAGE_UTF16);
        assert_eq!(split(&exact, MAX_MESSAGE_UTF16), vec![exact]);
    }

    #[test]
    fn a_long_answer_splits_at_paragraphs_first() {
        let paragraph = |c: &str| format!("{} end.", c.repeat(1500));
        let text = [paragraph("a"), paragraph("b"), paragraph("c")].join("\n\n");
        let parts = check_parts(&text, MAX_MESSAGE_UTF16);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], [paragraph("a"), paragraph("b")].join("\n\n"));
        assert_eq!(parts[1], paragraph("c"));
    }

    #[test]
    fn without_paragraphs_it_splits_at_lines_then_words() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("line {i:03} {}", "x".repeat(90)))
            .collect();
        let parts = check_parts(&lines.join("\n"), 1000);
        // Ten lines of 99 characters and their line breaks fill a part of 1,000.
        assert_eq!(parts.len(), 10);
        for part in &parts {
            assert_eq!(part.lines().count(), 10, "{part:.20}");
            assert!(
                part.starts_with("line ") && part.ends_with('x'),
                "{part:.20}"
            );
        }
        let words = "word ".repeat(1000);
        let parts = check_parts(&words, 1000);
        assert!(parts.iter().all(|p| p.ends_with("word")));
    }

    #[test]
    fn an_early_paragraph_break_does_not_make_a_tiny_part() {
        let text = format!("Title\n\n{}", "word ".repeat(400));
        let parts = check_parts(&text, 1000);
        assert!(parts[0].len() > 500, "{}", parts[0].len());
    }

    #[test]
    fn utf16_is_what_counts_and_surrogate_pairs_stay_whole() {
        // Each 😀 is one char, four UTF-8 bytes, two UTF-16 units.
        let text = "😀".repeat(5000);
        assert_eq!(utf16_len(&text), 10_000);
        let parts = check_parts(&text, MAX_MESSAGE_UTF16);
        assert_eq!(parts.len(), 3);
        assert_eq!(utf16_len(&parts[0]), MAX_MESSAGE_UTF16);
        assert_eq!(parts.concat(), text);
        let odd = check_parts(&format!("a{text}"), 7);
        assert_eq!(utf16_len(&odd[0]), 7);
        assert_eq!(
            utf16_len(&odd[1]),
            6,
            "the next emoji does not fit in one unit"
        );
    }

    #[test]
    fn graphemes_are_kept_whole_when_cheap() {
        // "e" + combining acute; a family emoji joined with ZWJs; a thumbs-up with a skin tone.
        for unit in ["e\u{301}", "👩\u{200D}👩\u{200D}👧", "👍🏽"] {
            let text = unit.repeat(300);
            let parts = check_parts(&text, 100);
            for part in &parts {
                assert!(part.starts_with(unit.chars().next().unwrap()), "{part:?}");
                assert_eq!(part.matches(unit).collect::<String>(), *part, "{part:?}");
            }
        }
    }

    #[test]
    fn a_tiny_limit_still_makes_progress() {
        let parts = check_parts("ab😀cd", 2);
        assert_eq!(parts, vec!["ab", "😀", "cd"]);
    }

    #[test]
    fn the_pacer_allows_one_message_a_second_per_chat() {
        let clock = Arc::new(ManualClock::new(10_000));
        let pacer = Pacer::new(clock.clone());
        assert_eq!(pacer.try_acquire(1), Ok(()));
        assert_eq!(pacer.try_acquire(1), Err(Duration::from_millis(1000)));
        assert_eq!(pacer.try_acquire(2), Ok(()), "another chat is not held");
        clock.advance(400);
        assert_eq!(pacer.try_acquire(1), Err(Duration::from_millis(600)));
        clock.advance(600);
        assert_eq!(pacer.try_acquire(1), Ok(()));
    }

    #[test]
    fn the_pacer_allows_thirty_messages_a_second_overall() {
        let clock = Arc::new(ManualClock::new(0));
        let pacer = Pacer::new(clock.clone());
        for chat in 0..30 {
            assert_eq!(pacer.try_acquire(chat), Ok(()), "chat {chat}");
        }
        let wait = pacer.try_acquire(100).unwrap_err();
        assert_eq!(wait, Duration::from_millis(34), "1/30 s, rounded up");
        clock.advance(34);
        assert_eq!(pacer.try_acquire(100), Ok(()));
        assert!(pacer.try_acquire(101).is_err());
        // Over a long run the rate is 30 a second.
        let mut sent = 0;
        for ms in 0..10_000u64 {
            clock.set(1_000 + ms);
            while pacer.try_acquire(1_000 + sent).is_ok() {
                sent += 1;
            }
        }
        assert!((300..=331).contains(&sent), "{sent} in 10 s");
    }

    #[test]
    fn a_held_chat_waits_out_its_retry_after() {
        let clock = Arc::new(ManualClock::new(0));
        let pacer = Pacer::new(clock.clone());
        pacer.hold(5, Duration::from_secs(7));
        assert_eq!(pacer.try_acquire(5), Err(Duration::from_secs(7)));
        pacer.hold(5, Duration::from_secs(1));
        assert_eq!(
            pacer.try_acquire(5),
            Err(Duration::from_secs(7)),
            "never shortened"
        );
        clock.advance(7_000);
        assert_eq!(pacer.try_acquire(5), Ok(()));
    }

    #[test]
    fn a_429_is_retried_after_its_retry_after_and_a_refusal_never() {
        let limited = BotApiError::RateLimited {
            method: "sendMessage",
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(retry_delay(&limited, 1), Some(Duration::from_secs(3)));
        assert_eq!(retry_delay(&limited, MAX_SEND_ATTEMPTS), None);
        let refused = BotApiError::Refused {
            method: "sendMessage",
            error_code: 403,
            description: "Forbidden: bot was blocked by the user".into(),
        };
        assert_eq!(retry_delay(&refused, 1), None);
        let unreachable = BotApiError::Unreachable {
            method: "sendMessage",
            detail: "connection refused".into(),
        };
        assert_eq!(retry_delay(&unreachable, 1), Some(Duration::from_secs(1)));
        assert_eq!(retry_delay(&unreachable, 3), Some(Duration::from_secs(4)));
        let server = BotApiError::Refused {
            method: "sendMessage",
            error_code: 502,
            description: "Bad Gateway".into(),
        };
        assert_eq!(retry_delay(&server, 4), Some(Duration::from_secs(8)));
    }
}
