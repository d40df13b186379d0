//! Removes the usage-only chat chunk from a stream in which the gateway, not the client, asked
//! for it (see [`super::Rewrite::Injected`]): the client gets exactly the stream it asked for,
//! and the gateway still learns what the request cost.
//!
//! The filter works on whole events: it passes every complete event through byte for byte —
//! comments, `event:` lines, `data: [DONE]`, `\r\n` line ends and all — except the one chat
//! chunk whose JSON has `"choices": []` and a `usage` object. Only an *incomplete* event is
//! ever held back, until the blank line that ends it arrives, so each event still reaches the
//! client as soon as it is complete; and what is held is bounded by
//! [`super::MAX_EVENT_BYTES`]: a longer event is passed on as it arrives, unexamined (a
//! usage-only chunk is a few hundred bytes, so it is never that long).
//!
//! The other chunks keep the `"usage": null` that nodes add once `include_usage` is set: it is
//! a field of OpenAI's own chunk schema that SDKs accept, and removing it would mean rewriting
//! every chunk instead of passing it on byte for byte.
//!
//! Not for: reading the usage (feed the same chunks to [`super::SseUsageParser`]), or streams
//! where the client asked for usage itself ([`super::Rewrite::AlreadyAsked`]): those pass
//! untouched, without this filter.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::frame::{event_data, next_line_end};
use super::wire::Lenient;
use super::MAX_EVENT_BYTES;

/// Who owns a `\n` that may open the next chunk, after a `\r` closed the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingLf {
    /// The `\r` ended a line inside an event still being read: the `\n` belongs to it.
    InEvent,
    /// The `\r` ended an event already sent: the `\n` is sent too.
    Sent,
    /// The `\r` ended the hidden usage chunk: the `\n` is hidden too.
    Hidden,
}

/// Passes an SSE stream through, minus the usage-only chat chunk.
#[derive(Debug)]
pub struct UsageChunkFilter {
    max_event_bytes: usize,
    /// The start of the event being read, not yet sent.
    held: Vec<u8>,
    /// Bytes of the current line so far (to tell the blank line that ends an event).
    line_len: usize,
    pending_lf: Option<PendingLf>,
    /// The event being read outgrew the cap: its bytes go straight to the client.
    passing_through: bool,
    hidden_events: u64,
}

impl Default for UsageChunkFilter {
    fn default() -> Self {
        UsageChunkFilter::new()
    }
}

impl UsageChunkFilter {
    /// A filter that holds at most [`MAX_EVENT_BYTES`] of an incomplete event.
    pub fn new() -> UsageChunkFilter {
        UsageChunkFilter::with_max_event_bytes(MAX_EVENT_BYTES)
    }

    /// A filter that holds at most `max_event_bytes` of an incomplete event; a longer event is
    /// passed on unexamined as its bytes arrive.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> UsageChunkFilter {
        UsageChunkFilter {
            max_event_bytes,
            held: Vec::new(),
            line_len: 0,
            pending_lf: None,
            passing_through: false,
            hidden_events: 0,
        }
    }

    /// What to send the client now: every event completed by `chunk` (with whatever was held
    /// from earlier chunks), minus the usage-only chunk. The bytes of an event whose end has not
    /// arrived yet are held for the next call.
    pub fn filter(&mut self, chunk: &[u8]) -> Bytes {
        if chunk.is_empty() {
            // Nothing to pass, and a `\r` that ended the last chunk still awaits its `\n`.
            return Bytes::new();
        }
        let mut out = Vec::with_capacity(self.held.len() + chunk.len());
        let mut from = 0;
        // Where the current event's not-yet-handled bytes start in `chunk`.
        let mut event_start = 0;
        if let Some(owner) = self.pending_lf.take() {
            if chunk.first() == Some(&b'\n') {
                from = 1;
                match owner {
                    PendingLf::InEvent => {}
                    PendingLf::Sent => {
                        out.push(b'\n');
                        event_start = 1;
                    }
                    PendingLf::Hidden => event_start = 1,
                }
            }
        }
        while let Some(end) = next_line_end(chunk, from) {
            let blank = self.line_len == 0 && end.content_end == from;
            self.line_len = 0;
            let mut owner = PendingLf::InEvent;
            if blank {
                let event_end = end.next_start;
                owner = self.end_event(&chunk[event_start..event_end], &mut out);
                event_start = event_end;
            }
            if end.cr_at_end {
                self.pending_lf = Some(owner);
            }
            from = end.next_start;
        }
        let rest = &chunk[event_start..];
        self.line_len += chunk.len() - from;
        if self.passing_through {
            out.extend_from_slice(rest);
        } else {
            self.held.extend_from_slice(rest);
            if self.held.len() > self.max_event_bytes {
                out.append(&mut self.held);
                self.held = Vec::new();
                self.passing_through = true;
            }
        }
        Bytes::from(out)
    }

    /// The stream has ended: sends whatever was held, unexamined, so a stream cut mid-event
    /// still delivers every byte it had.
    pub fn finish(&mut self) -> Bytes {
        self.line_len = 0;
        self.pending_lf = None;
        self.passing_through = false;
        Bytes::from(std::mem::take(&mut self.held))
    }

    /// How many usage-only chunks were removed so far.
    pub fn hidden_events(&self) -> u64 {
        self.hidden_events
    }

    /// Handles an event whose blank line has arrived; `tail` is its part in the current chunk.
    fn end_event(&mut self, tail: &[u8], out: &mut Vec<u8>) -> PendingLf {
        if std::mem::take(&mut self.passing_through) {
            out.extend_from_slice(tail);
            return PendingLf::Sent;
        }
        let hidden = if self.held.is_empty() {
            is_usage_only_chunk(tail)
        } else {
            self.held.extend_from_slice(tail);
            is_usage_only_chunk(&self.held)
        };
        if hidden {
            self.hidden_events += 1;
        } else if self.held.is_empty() {
            out.extend_from_slice(tail);
        } else {
            out.extend_from_slice(&self.held);
        }
        self.held.clear();
        if hidden {
            PendingLf::Hidden
        } else {
            PendingLf::Sent
        }
    }
}

/// The fields that identify the usage-only chunk.
#[derive(Deserialize)]
struct UsageOnlyProbe {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Lenient<IgnoredAny>,
}

/// The event is a chat chunk with `"choices": []` and a `usage` object.
fn is_usage_only_chunk(event: &[u8]) -> bool {
    let Some(data) = event_data(event) else {
        return false;
    };
    // Most events are content chunks; a cheap look for a `"usage": {` key spares parsing them.
    if !mentions_usage_object(&data) {
        return false;
    }
    match serde_json::from_slice::<Lenient<UsageOnlyProbe>>(&data) {
        Ok(Lenient(Some(probe))) => {
            probe.choices.is_some_and(|c| c.is_empty()) && probe.usage.0.is_some()
        }
        _ => false,
    }
}

/// The JSON text has a `"usage"` key whose value opens an object. Inside a JSON string a quote
/// is always escaped, so this cannot match text content; it only misses a key written with
/// `\u` escapes, which no node does (that chunk would then reach the client, which is harmless).
fn mentions_usage_object(json: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut from = 0;
    while let Some(quote) = json
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'"'))
    {
        let at = from + quote;
        from = at + 1;
        let Some(after) = json.get(at..).and_then(|rest| rest.strip_prefix(KEY)) else {
            continue;
        };
        let mut rest = after.iter().skip_while(|b| is_space(b));
        if rest.next() == Some(&b':') && rest.find(|b| !is_space(b)) == Some(&b'{') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::test_streams::{cut_at, random_cuts, with_line_ends, ChatStream};

    fn run(filter: &mut UsageChunkFilter, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in pieces {
            out.extend_from_slice(&filter.filter(piece));
        }
        out.extend_from_slice(&filter.finish());
        out
    }

    fn assert_hides_however_split(stream: &[u8], expected: &[u8], hidden: u64) {
        let check = |pieces: Vec<&[u8]>, context: &str| {
            let mut filter = UsageChunkFilter::new();
            let out = run(&mut filter, &pieces);
            assert!(
                out == expected,
                "{context}: got {:?}",
                String::from_utf8_lossy(&out)
            );
            assert_eq!(filter.hidden_events(), hidden, "{context}");
        };
        for cut in 0..=stream.len() {
            check(cut_at(stream, &[cut]), &format!("cut at {cut}"));
        }
        check(stream.chunks(1).collect(), "one byte at a time");
        check(
            stream.chunks(1).flat_map(|b| [b, &[][..]]).collect(),
            "bytes between empty chunks",
        );
        for cuts in random_cuts(stream.len(), 300, 11) {
            check(cut_at(stream, &cuts), &format!("cuts at {cuts:?}"));
        }
    }

    /// The mock stream with and without its usage event, with `line_end` line ends.
    fn mock_stream(line_end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let chat = ChatStream::new(true);
        let usage_event = chat.usage_event().expect("the mock sends a usage chunk");
        let mut events = chat.events.clone();
        let stream = with_line_ends(events.concat().as_bytes(), line_end);
        events.remove(usage_event);
        let expected = with_line_ends(events.concat().as_bytes(), line_end);
        (stream, expected)
    }

    #[test]
    fn removes_exactly_the_usage_chunk_at_every_split() {
        for line_end in [&b"\n"[..], b"\r\n", b"\r"] {
            let (stream, expected) = mock_stream(line_end);
            assert!(expected.len() < stream.len());
            assert!(expected.ends_with(&with_line_ends(b"data: [DONE]\n\n", line_end)));
            assert_hides_however_split(&stream, &expected, 1);
        }
    }

    #[test]
    fn a_stream_without_usage_chunk_passes_unchanged() {
        let chat = ChatStream::new(false);
        let stream = chat.bytes();
        assert_hides_however_split(&stream, &stream, 0);
    }

    #[test]
    fn hides_the_whole_block_of_a_usage_chunk_with_comments_and_fields() {
        let stream = b": hi\n\nevent: chunk\nid: 9\ndata: {\"choices\": [],\ndata:  \"usage\" :\n\
data: {\"prompt_tokens\": 1}}\n\ndata: [DONE]\n\n";
        assert_hides_however_split(stream, b": hi\n\ndata: [DONE]\n\n", 1);
    }

    #[test]
    fn passes_everything_that_is_not_the_usage_only_chunk() {
        let stream = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n\
data: {\"choices\":[],\"usage\":null}\n\n\
data: {\"choices\":[]}\n\n\
data: {\"usage\":{\"prompt_tokens\":1}}\n\n\
data: {\"choices\":[],\"x\":\"\\\"usage\\\": {\"}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}\n\n\
event: usage\n\n\
data: [DONE]\n\n\n";
        assert_hides_however_split(stream, stream, 0);
    }

    #[test]
    fn complete_events_pass_at_once_and_only_the_incomplete_one_waits() {
        let mut filter = UsageChunkFilter::new();
        let first = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        assert_eq!(filter.filter(first), &first[..]);
        assert_eq!(filter.filter(b"data: {\"cho"), &b""[..]);
        assert_eq!(filter.filter(b"ices\":[]}\n"), &b""[..]);
        assert_eq!(
            filter.filter(b"\ndata: [DO"),
            &b"data: {\"choices\":[]}\n\n"[..]
        );
        assert_eq!(filter.filter(b"NE]\n\n"), &b"data: [DONE]\n\n"[..]);
        assert_eq!(filter.finish(), &b""[..]);
    }

    #[test]
    fn a_stream_cut_mid_event_still_delivers_its_bytes() {
        let mut filter = UsageChunkFilter::new();
        let cut = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n";
        assert_eq!(filter.filter(cut), &b""[..]);
        assert_eq!(filter.finish(), &cut[..]);
        assert_eq!(filter.hidden_events(), 0);
    }

    #[test]
    fn an_event_over_the_cap_passes_as_it_arrives() {
        let big = format!(
            "data: {{\"choices\":[],\"usage\":{{\"pad\":\"{}\"}}}}\n\n",
            "x".repeat(500)
        );
        let stream = format!("{big}data: [DONE]\n\n");
        for chunk_size in [1, 10, 64, 1_000] {
            let mut filter = UsageChunkFilter::with_max_event_bytes(64);
            let mut out = Vec::new();
            for chunk in stream.as_bytes().chunks(chunk_size) {
                out.extend_from_slice(&filter.filter(chunk));
                assert!(filter.held.len() <= 64, "chunks of {chunk_size}");
            }
            out.extend_from_slice(&filter.finish());
            // Complete in one chunk, the event is small enough to read and is hidden; arriving
            // in pieces it outgrows the cap and passes unexamined.
            let expected: &[u8] = if chunk_size >= stream.len() {
                b"data: [DONE]\n\n"
            } else {
                stream.as_bytes()
            };
            assert!(out == expected, "chunks of {chunk_size}");
        }
    }

    #[test]
    fn finds_only_a_usage_key_that_opens_an_object() {
        assert!(mentions_usage_object(br#"{"usage":{"a":1}}"#));
        assert!(mentions_usage_object(b"{\"usage\" :\n {}}"));
        assert!(mentions_usage_object(br#"{"x":"usage","usage":{}}"#));
        assert!(!mentions_usage_object(br#"{"usage":null}"#));
        assert!(!mentions_usage_object(br#"{"usage":"{"}"#));
        assert!(!mentions_usage_object(br#"{"x":"\"usage\": {"}"#));
        assert!(!mentions_usage_object(br#"{"usage""#));
        assert!(!mentions_usage_object(b""));
    }
}
