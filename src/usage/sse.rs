//! An incremental Server-Sent-Events reader that finds the usage and the model in a streamed
//! answer, fed the body chunk by chunk exactly as the chunks pass to the client.
//!
//! It understands both streaming shapes OpenAI-compatible nodes use:
//! - chat completions: `data: {...}` chunks; the usage arrives as a top-level `usage` object,
//!   normally on a usage-only chunk (`"choices": []`) just before `data: [DONE]`, while the other
//!   chunks carry `"usage": null` or nothing;
//! - the Responses API: events with a `"type"` field; `response.completed` (and likewise
//!   `response.incomplete` / `response.failed`) carries `response.usage` with
//!   `input_tokens` / `output_tokens`.
//!
//! Chunk boundaries may fall anywhere — inside `\r\n`, inside `data:`, inside a multi-byte
//! character — because the reader keeps the partial line between calls and only reads JSON
//! once an event is complete. Memory stays bounded by [`super::MAX_EVENT_BYTES`]: a larger event
//! is skipped whole (its usage, if any, is lost and the caller falls back to an estimate).
//!
//! Not for: changing what the client receives (`hide.rs`), or non-streaming answers
//! (`json.rs`). It never holds anything back: [`SseUsageParser::push`] reads a copy.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::frame::{next_line_end, split_field};
use super::wire::{bounded_model_name, Lenient, Text, WireUsage};
use super::{TokenUsage, MAX_EVENT_BYTES};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads usage, model and content size from an SSE answer as it streams past.
#[derive(Debug)]
pub struct SseUsageParser {
    max_event_bytes: usize,
    /// The start of a line whose terminator has not arrived yet.
    partial_line: Vec<u8>,
    /// The `data` values of the event being read, joined with `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// A `\r` ended the last chunk: a `\n` opening the next one completes that terminator.
    lf_may_follow: bool,
    /// The current line outgrew the cap; its bytes are dropped until its terminator.
    line_overflowed: bool,
    /// The current event outgrew the cap; its lines are dropped until the blank line.
    skipping_event: bool,
    /// No line has been read yet (a UTF-8 BOM may open the stream).
    at_stream_start: bool,
    usage: Option<TokenUsage>,
    model: Option<String>,
    bytes_seen: u64,
    content_bytes: u64,
    skipped_events: u64,
}

impl Default for SseUsageParser {
    fn default() -> Self {
        SseUsageParser::new()
    }
}

impl SseUsageParser {
    /// A parser that keeps at most [`MAX_EVENT_BYTES`] of one event.
    pub fn new() -> SseUsageParser {
        SseUsageParser::with_max_event_bytes(MAX_EVENT_BYTES)
    }

    /// A parser that keeps at most `max_event_bytes` of one event (its partial line plus its
    /// `data`); a larger event is skipped.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> SseUsageParser {
        SseUsageParser {
            max_event_bytes,
            partial_line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            lf_may_follow: false,
            line_overflowed: false,
            skipping_event: false,
            at_stream_start: true,
            usage: None,
            model: None,
            bytes_seen: 0,
            content_bytes: 0,
            skipped_events: 0,
        }
    }

    /// Reads the next chunk of the answer's body as the node sent it — before any
    /// [`super::UsageChunkFilter`], which removes the very chunk this parser is looking for.
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            // Nothing to read, and a `\r` that ended the last chunk still awaits its `\n`.
            return;
        }
        self.bytes_seen = self.bytes_seen.saturating_add(chunk.len() as u64);
        let mut from = 0;
        if std::mem::take(&mut self.lf_may_follow) && chunk.first() == Some(&b'\n') {
            from = 1;
        }
        while let Some(end) = next_line_end(chunk, from) {
            let tail = &chunk[from..end.content_end];
            if self.partial_line.is_empty() && !self.line_overflowed {
                self.read_line(tail);
            } else {
                self.extend_partial_line(tail);
                self.read_partial_line();
            }
            self.lf_may_follow = end.cr_at_end;
            from = end.next_start;
        }
        if let Some(rest) = chunk.get(from..).filter(|rest| !rest.is_empty()) {
            self.extend_partial_line(rest);
        }
    }

    /// The answer's body has ended. A last line or event the node did not terminate is read as
    /// if it had been: stricter than the SSE spec (which drops it), because the client may well
    /// have used those bytes. Only complete JSON is ever counted, so a cut-off event still
    /// counts nothing.
    pub fn finish(&mut self) {
        if !self.partial_line.is_empty() || self.line_overflowed {
            self.read_partial_line();
        }
        self.lf_may_follow = false;
        self.end_event();
    }

    /// The last usage the stream reported, or None when it reported none (yet).
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// The last model name the stream gave (cut to [`super::MODEL_NAME_MAX_BYTES`]).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Every byte pushed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Bytes of answer text seen (chat `choices[].delta.content`, Responses
    /// `response.output_text.delta`), after JSON unescaping: the best input for
    /// [`super::estimate_tokens`] when the node reports no usage.
    pub fn content_bytes(&self) -> u64 {
        self.content_bytes
    }

    /// Events skipped because they outgrew the cap.
    pub fn skipped_events(&self) -> u64 {
        self.skipped_events
    }

    fn extend_partial_line(&mut self, bytes: &[u8]) {
        if self.line_overflowed {
            return;
        }
        let kept = self.partial_line.len() + self.data.len();
        if kept.saturating_add(bytes.len()) > self.max_event_bytes {
            self.line_overflowed = true;
            self.partial_line = Vec::new();
            self.skip_event();
            return;
        }
        self.partial_line.extend_from_slice(bytes);
    }

    fn read_partial_line(&mut self) {
        if std::mem::take(&mut self.line_overflowed) {
            // Not a blank line (it had bytes), and its event is already being skipped.
            self.at_stream_start = false;
            return;
        }
        let line = std::mem::take(&mut self.partial_line);
        self.read_line(&line);
        self.partial_line = line;
        self.partial_line.clear();
    }

    fn read_line(&mut self, line: &[u8]) {
        let line = if std::mem::take(&mut self.at_stream_start) {
            line.strip_prefix(UTF8_BOM).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.end_event();
            return;
        }
        if self.skipping_event {
            return;
        }
        // `event:`, `id:`, `retry:` and comments say nothing about usage: only `data` is kept.
        let (name, value) = split_field(line);
        if name != b"data" {
            return;
        }
        let grown = self.data.len() + usize::from(self.has_data) + value.len();
        if grown > self.max_event_bytes {
            self.skip_event();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }

    fn skip_event(&mut self) {
        if !self.skipping_event {
            self.skipping_event = true;
            self.skipped_events += 1;
        }
        self.data = Vec::new();
        self.has_data = false;
    }

    fn end_event(&mut self) {
        if self.has_data && !self.skipping_event {
            let data = std::mem::take(&mut self.data);
            self.read_event(&data);
            self.data = data;
        }
        self.data.clear();
        self.has_data = false;
        self.skipping_event = false;
    }

    fn read_event(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            return;
        }
        let Ok(Lenient(Some(event))) = serde_json::from_slice::<Lenient<StreamEvent>>(data) else {
            return;
        };
        let StreamEvent {
            kind,
            model,
            usage,
            choices,
            delta,
            response,
        } = event;
        self.content_bytes = self.content_bytes.saturating_add(choices.0);
        if kind.0.as_deref() == Some("response.output_text.delta") {
            let text_len = delta.0.map_or(0, |text| text.len() as u64);
            self.content_bytes = self.content_bytes.saturating_add(text_len);
        }
        let (response_model, response_usage) = match response.0 {
            Some(ResponseSnapshot { model, usage }) => (model.0, usage.0),
            None => (None, None),
        };
        if let Some(name) = model.0.or(response_model) {
            self.keep_model(&name);
        }
        let usage = usage.0.or(response_usage).and_then(|u| u.token_usage());
        if usage.is_some() {
            self.usage = usage;
        }
    }

    fn keep_model(&mut self, name: &str) {
        let name = bounded_model_name(name);
        if !name.is_empty() && self.model.as_deref() != Some(name) {
            self.model = Some(name.to_owned());
        }
    }
}

/// The fields of one streamed event that matter for accounting; the rest is skipped unread.
#[derive(Deserialize)]
struct StreamEvent<'a> {
    /// Responses API event type (`response.completed`, `response.output_text.delta`, …).
    #[serde(default, borrow, rename = "type")]
    kind: Text<'a>,
    #[serde(default, borrow)]
    model: Text<'a>,
    /// Chat completions: the usage chunk's counts (`null` on the other chunks).
    #[serde(default)]
    usage: Lenient<WireUsage>,
    #[serde(default)]
    choices: ChoicesContentBytes,
    /// Responses API: the text of a `response.output_text.delta` event.
    #[serde(default, borrow)]
    delta: Text<'a>,
    /// Responses API: the response object carried by `response.created` … `response.completed`.
    #[serde(default, borrow)]
    response: Lenient<ResponseSnapshot<'a>>,
}

#[derive(Deserialize)]
struct ResponseSnapshot<'a> {
    #[serde(default, borrow)]
    model: Text<'a>,
    #[serde(default)]
    usage: Lenient<WireUsage>,
}

/// The summed byte length of `choices[].delta.content`, read without collecting the choices.
#[derive(Default)]
struct ChoicesContentBytes(u64);

#[derive(Deserialize)]
struct ChoiceDelta<'a> {
    #[serde(default, borrow)]
    delta: Lenient<DeltaContent<'a>>,
}

#[derive(Deserialize)]
struct DeltaContent<'a> {
    #[serde(default, borrow)]
    content: Text<'a>,
}

impl<'de> Deserialize<'de> for ChoicesContentBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoicesVisitor;
        impl<'de> Visitor<'de> for ChoicesVisitor {
            type Value = ChoicesContentBytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut total = 0u64;
                while let Some(choice) = seq.next_element::<Lenient<ChoiceDelta>>()? {
                    let text = choice.0.and_then(|c| c.delta.0).and_then(|d| d.content.0);
                    total = total.saturating_add(text.map_or(0, |t| t.len() as u64));
                }
                Ok(ChoicesContentBytes(total))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ChoicesContentBytes(0))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ChoicesContentBytes(0))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ChoicesContentBytes(0))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ChoicesContentBytes(0))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ChoicesContentBytes(0))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ChoicesContentBytes(0))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ChoicesContentBytes(0))
            }
        }
        deserializer.deserialize_any(ChoicesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::test_streams::{
        cut_at, random_cuts, responses_stream, with_line_ends, ChatStream, CHAT_MODEL,
        RESPONSES_MODEL,
    };

    fn parse(pieces: &[&[u8]]) -> SseUsageParser {
        let mut parser = SseUsageParser::new();
        for piece in pieces {
            parser.push(piece);
        }
        parser.finish();
        parser
    }

    /// What a parser fed `stream` in any way must find.
    struct Expected<'a> {
        usage: Option<TokenUsage>,
        model: &'a str,
        content_bytes: u64,
    }

    fn assert_finds(stream: &[u8], pieces: &[&[u8]], expected: &Expected, context: &str) {
        let parser = parse(pieces);
        assert_eq!(parser.usage(), expected.usage, "{context}");
        assert_eq!(parser.model(), Some(expected.model), "{context}");
        assert_eq!(parser.content_bytes(), expected.content_bytes, "{context}");
        assert_eq!(parser.bytes_seen(), stream.len() as u64, "{context}");
        assert_eq!(parser.skipped_events(), 0, "{context}");
    }

    /// Every single cut point, every byte on its own, and random multi-cuts.
    fn assert_finds_however_split(stream: &[u8], expected: &Expected) {
        for cut in 0..=stream.len() {
            let pieces = cut_at(stream, &[cut]);
            assert_finds(stream, &pieces, expected, &format!("cut at {cut}"));
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_finds(stream, &bytes, expected, "one byte at a time");
        let with_empties: Vec<&[u8]> = stream.chunks(1).flat_map(|b| [b, &[][..]]).collect();
        assert_finds(
            stream,
            &with_empties,
            expected,
            "bytes between empty chunks",
        );
        for cuts in random_cuts(stream.len(), 300, 7) {
            let pieces = cut_at(stream, &cuts);
            assert_finds(stream, &pieces, expected, &format!("cuts at {cuts:?}"));
        }
    }

    fn chat_expected(chat: &ChatStream) -> Expected<'static> {
        Expected {
            usage: chat.usage,
            model: CHAT_MODEL,
            content_bytes: chat.content_bytes,
        }
    }

    #[test]
    fn mock_chat_stream_usage_survives_every_split() {
        let chat = ChatStream::new(true);
        assert!(chat.usage.is_some());
        assert_finds_however_split(&chat.bytes(), &chat_expected(&chat));
    }

    #[test]
    fn mock_chat_stream_with_crlf_and_cr_line_ends_survives_every_split() {
        let chat = ChatStream::new(true);
        for line_end in [&b"\r\n"[..], b"\r"] {
            let stream = with_line_ends(&chat.bytes(), line_end);
            assert_finds_however_split(&stream, &chat_expected(&chat));
        }
    }

    #[test]
    fn responses_stream_usage_survives_every_split() {
        let (stream, usage, content_bytes) = responses_stream();
        let expected = Expected {
            usage: Some(usage),
            model: RESPONSES_MODEL,
            content_bytes,
        };
        assert_finds_however_split(&stream, &expected);
        assert_finds_however_split(&with_line_ends(&stream, b"\r\n"), &expected);
    }

    #[test]
    fn stream_without_usage_reports_none_but_counts_content() {
        let chat = ChatStream::new(false);
        let parser = parse(&[&chat.bytes()]);
        assert_eq!(parser.usage(), None);
        assert_eq!(parser.model(), Some(CHAT_MODEL));
        assert_eq!(parser.content_bytes(), chat.content_bytes);
    }

    #[test]
    fn null_usage_never_clears_and_the_last_usage_wins() {
        let stream =
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n\
data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{}}\n\n\
data: [DONE]\n\n";
        let parser = parse(&[stream]);
        assert_eq!(
            parser.usage(),
            Some(TokenUsage {
                prompt: 1,
                completion: 2,
                total: 3
            })
        );
        assert_eq!(parser.model(), None);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines_however_split() {
        let stream = b"data: {\"model\": \"m\",\ndata:  \"usage\":\ndata: {\"prompt_tokens\": 2, \"total_tokens\": 2}}\n\n";
        let expected = Expected {
            usage: Some(TokenUsage {
                prompt: 2,
                completion: 0,
                total: 2,
            }),
            model: "m",
            content_bytes: 0,
        };
        for line_end in [&b"\n"[..], b"\r\n", b"\r"] {
            assert_finds_however_split(&with_line_ends(stream, line_end), &expected);
        }
    }

    #[test]
    fn comments_and_other_fields_are_tolerated() {
        let stream = b"\xEF\xBB\xBF: keep-alive\n\nretry: 3000\nid: 1\n\n\
event: message\nid: 2\n: inline comment\nunknown\ndata:{\"model\":\"m\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n\
event: ping\n\n\n\n";
        let parser = parse(&[stream]);
        assert_eq!(
            parser.usage(),
            Some(TokenUsage {
                prompt: 3,
                completion: 4,
                total: 7
            })
        );
        assert_eq!(parser.model(), Some("m"));
    }

    #[test]
    fn malformed_fields_are_ignored_one_by_one() {
        let stream = b"data: not json\n\ndata: [1,2]\n\ndata: 42\n\n\
data: {\"choices\":{\"a\":1},\"model\":7,\"usage\":\"lots\"}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":[\"x\"]}},3],\"usage\":{\"prompt_tokens\":1}\n\n\
data: {\"choices\":[{\"delta\":null},{\"delta\":{\"content\":\"abc\"}}]}\n\n";
        let parser = parse(&[stream]);
        assert_eq!(parser.usage(), None);
        assert_eq!(parser.model(), None);
        assert_eq!(parser.content_bytes(), 3);
    }

    #[test]
    fn an_event_over_the_cap_is_skipped_and_later_usage_still_counts() {
        let big = format!("data: {{\"model\":\"{}\"}}\n\n", "x".repeat(1_000));
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}\n\n";
        let stream = format!("{big}{usage}");
        let expected = Some(TokenUsage {
            prompt: 5,
            completion: 6,
            total: 11,
        });
        for chunk_size in [1, 7, 100, 4_096] {
            let mut parser = SseUsageParser::with_max_event_bytes(256);
            for chunk in stream.as_bytes().chunks(chunk_size) {
                parser.push(chunk);
                assert!(parser.partial_line.len() + parser.data.len() <= 256);
            }
            parser.finish();
            assert_eq!(parser.usage(), expected, "chunks of {chunk_size}");
            assert_eq!(parser.model(), None, "chunks of {chunk_size}");
            assert_eq!(parser.skipped_events(), 1, "chunks of {chunk_size}");
        }
    }

    #[test]
    fn many_data_lines_over_the_cap_are_skipped() {
        let line = format!("data: {}\n", "y".repeat(100));
        let stream = format!("{}\ndata: {{\"model\":\"m\"}}\n\n", line.repeat(10));
        let mut parser = SseUsageParser::with_max_event_bytes(256);
        parser.push(stream.as_bytes());
        assert_eq!(parser.skipped_events(), 1);
        assert_eq!(parser.model(), Some("m"));
    }

    #[test]
    fn finish_reads_an_unterminated_last_event_but_not_a_cut_one() {
        let whole = b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
        let mut parser = SseUsageParser::new();
        parser.push(whole);
        assert_eq!(parser.usage(), None);
        parser.finish();
        assert_eq!(
            parser.usage(),
            Some(TokenUsage {
                prompt: 1,
                completion: 1,
                total: 2
            })
        );

        let cut = b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tok";
        let mut parser = SseUsageParser::new();
        parser.push(cut);
        parser.finish();
        parser.finish();
        assert_eq!(parser.usage(), None);
    }
}
