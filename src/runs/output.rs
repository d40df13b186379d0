//! Turning a node's answer to a run into the run's output: the text (stored as `output.md`)
//! and a `chat.completion` object (stored as `response.json`), from either a streamed answer
//! ([`OutputAssembler`], fed the body as it arrives) or a whole JSON one ([`from_json_body`]).
//! Both give the same shape, so what a run stores does not depend on how the node answered.
//!
//! A streamed answer is OpenAI's chat completions SSE: `data: {...}` chunks whose
//! `choices[0].delta.content` carry the text, a `finish_reason` on the last of them, maybe a
//! usage-only chunk (`"choices": []`), then `data: [DONE]`. Chunk boundaries may fall anywhere,
//! inside a line or a UTF-8 character: JSON is only read once an event is complete.
//!
//! The usage comes from the gateway's one usage parser ([`crate::usage`]), fed the same bytes;
//! this module reads only what that parser does not: the id, the creation time, the text, the
//! finish reason, and a node's error. Only the choice with index 0 is kept: a run asks for one.
//!
//! A run's answer must end as answers end: with `[DONE]` or a `finish_reason`. One that stops
//! before either (the connection dropped, the node died) is an error even when text arrived,
//! so the run is retried instead of storing half an answer as if it were whole.
//!
//! Not for: calling the node (the run worker, through the gateway), storing the output
//! (`artifacts.rs`), accounting (the proxy did that as the answer passed through it), or the
//! Responses API's event stream.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::usage::{usage_from_json, SseUsageParser, TokenUsage, MAX_EVENT_BYTES};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A node's answer, assembled.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutput {
    /// The answer's text, as the node wrote it (`output.md`).
    pub text: String,
    /// The answer as one `chat.completion` object (`response.json`): `id`, `object`,
    /// `created`, `model`, one choice with `message {role, content}` and `finish_reason`, and
    /// `usage` when the node reported one.
    pub response_json: Value,
    pub finish_reason: Option<String>,
}

/// Why an answer gave no output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputError {
    pub kind: OutputErrorKind,
    /// What was wrong, in words for the run's record.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputErrorKind {
    /// The node answered with an error object (`{"error": {...}}`).
    Node,
    /// The answer stopped before it said it was complete.
    CutShort,
    /// The answer is not a chat completion that can be read.
    Malformed,
}

impl OutputError {
    fn new(kind: OutputErrorKind, message: String) -> OutputError {
        OutputError { kind, message }
    }

    fn malformed(message: String) -> OutputError {
        OutputError::new(OutputErrorKind::Malformed, message)
    }

    /// The error a node reported, with its own message when it gave one.
    fn from_node(error: &Value) -> OutputError {
        let message = match error {
            Value::String(message) => message.clone(),
            Value::Object(fields) => match fields.get("message") {
                Some(Value::String(message)) => message.clone(),
                _ => error.to_string(),
            },
            other => other.to_string(),
        };
        OutputError::new(
            OutputErrorKind::Node,
            format!("the node answered with an error: {message}"),
        )
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OutputError {}

/// Assembles a streamed answer chunk by chunk.
#[derive(Debug)]
pub struct OutputAssembler {
    usage: SseUsageParser,
    /// The start of a line whose terminator has not arrived yet.
    partial_line: Vec<u8>,
    /// A `\r` ended the last chunk: a `\n` opening the next one completes that terminator.
    lf_may_follow: bool,
    at_stream_start: bool,
    /// The `data` values of the event being read, joined with `\n`; None before its first.
    data: Option<Vec<u8>>,
    events_read: u64,
    id: Option<String>,
    created: Option<u64>,
    role: Option<String>,
    text: String,
    finish_reason: Option<String>,
    done: bool,
    /// The first thing found wrong; nothing is read after it.
    error: Option<OutputError>,
}

impl Default for OutputAssembler {
    fn default() -> Self {
        OutputAssembler::new()
    }
}

impl OutputAssembler {
    pub fn new() -> Self {
        OutputAssembler {
            usage: SseUsageParser::new(),
            partial_line: Vec::new(),
            lf_may_follow: false,
            at_stream_start: true,
            data: None,
            events_read: 0,
            id: None,
            created: None,
            role: None,
            text: String::new(),
            finish_reason: None,
            done: false,
            error: None,
        }
    }

    /// Feeds raw response body bytes as they arrive (chunk boundaries anywhere, also inside a
    /// UTF-8 character or a line); returns the text deltas completed by this chunk, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.usage.push(bytes);
        let mut deltas = Vec::new();
        let mut rest = bytes;
        if !rest.is_empty() && std::mem::take(&mut self.lf_may_follow) {
            rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        }
        while let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.error.is_some() {
                return deltas;
            }
            let terminator = match &rest[at..] {
                [b'\r', b'\n', ..] => 2,
                [b'\r'] => {
                    self.lf_may_follow = true;
                    1
                }
                _ => 1,
            };
            self.end_line(&rest[..at], &mut deltas);
            rest = &rest[at + terminator..];
        }
        self.keep_partial_line(rest);
        deltas
    }

    /// The answer is complete: the assembled output. A last line or event the node did not
    /// terminate is read as if it had been; one cut inside its JSON makes the answer cut short.
    pub fn finish(mut self) -> Result<NodeOutput, OutputError> {
        self.usage.finish();
        let mut ignored = Vec::new();
        if !self.partial_line.is_empty() {
            self.end_line(&[], &mut ignored);
        }
        if self.error.is_none() && self.data.is_some() {
            self.end_event(&mut ignored);
            if let Some(error) = &mut self.error {
                if error.kind == OutputErrorKind::Malformed {
                    error.kind = OutputErrorKind::CutShort;
                    error.message = format!("the stream ended inside an event: {}", error.message);
                }
            }
        }
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.done && self.finish_reason.is_none() {
            return Err(OutputError::new(
                OutputErrorKind::CutShort,
                format!(
                    "the stream ended without a finish_reason or [DONE], after {} bytes of text",
                    self.text.len()
                ),
            ));
        }
        let completion = Completion {
            id: self.id,
            created: self.created,
            model: self.usage.model().map(str::to_owned),
            role: self.role,
            finish_reason: self.finish_reason,
            usage: self.usage.usage(),
        };
        Ok(completion.into_output(self.text))
    }

    fn keep_partial_line(&mut self, bytes: &[u8]) {
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        let kept = self.partial_line.len() + self.data.as_ref().map_or(0, Vec::len);
        if kept.saturating_add(bytes.len()) > MAX_EVENT_BYTES {
            self.error = Some(too_large());
            return;
        }
        self.partial_line.extend_from_slice(bytes);
    }

    /// A line has ended; `tail` is what of it arrived in the current chunk.
    fn end_line(&mut self, tail: &[u8], deltas: &mut Vec<String>) {
        let mut line = std::mem::take(&mut self.partial_line);
        line.extend_from_slice(tail);
        let mut content = line.as_slice();
        if std::mem::take(&mut self.at_stream_start) {
            content = content.strip_prefix(UTF8_BOM).unwrap_or(content);
        }
        if content.is_empty() {
            self.end_event(deltas);
        } else {
            // `event:`, `id:`, `retry:` and comments carry nothing a run keeps.
            let (name, value) = split_field(content);
            if name == b"data" {
                self.add_data(value);
            }
        }
        line.clear();
        self.partial_line = line;
    }

    fn add_data(&mut self, value: &[u8]) {
        let grown = self.data.as_ref().map_or(0, |data| data.len() + 1) + value.len();
        if grown > MAX_EVENT_BYTES {
            self.error = Some(too_large());
            return;
        }
        match &mut self.data {
            // A second `data` line joins the first with a newline, as the SSE spec says.
            Some(data) => {
                data.push(b'\n');
                data.extend_from_slice(value);
            }
            None => self.data = Some(value.to_vec()),
        }
    }

    fn end_event(&mut self, deltas: &mut Vec<String>) {
        let Some(data) = self.data.take() else {
            return;
        };
        self.events_read += 1;
        if self.done {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        match parse::<StreamChunk>(&data) {
            Ok(chunk) => self.read_chunk(chunk, deltas),
            Err(e) => {
                self.error = Some(OutputError::malformed(format!(
                    "event {} is not a chat completion chunk: {e}",
                    self.events_read
                )))
            }
        }
    }

    fn read_chunk(&mut self, chunk: StreamChunk, deltas: &mut Vec<String>) {
        let StreamChunk {
            id,
            created,
            choices,
            error,
        } = chunk;
        if let Some(error) = error {
            self.error = Some(OutputError::from_node(&error));
            return;
        }
        self.id = self.id.take().or(id);
        self.created = self.created.or(created);
        for choice in choices.into_iter().flatten() {
            let ChunkChoice {
                index,
                delta,
                finish_reason,
            } = choice;
            if index != 0 {
                continue;
            }
            if let Some(Delta { role, content }) = delta {
                self.role = self.role.take().or(role);
                if let Some(content) = content.filter(|c| !c.is_empty()) {
                    self.text.push_str(&content);
                    deltas.push(content);
                }
            }
            if finish_reason.is_some() {
                self.finish_reason = finish_reason;
            }
        }
    }
}

/// A node's non-streamed answer (`application/json`, a `chat.completion`) as a run's output.
pub fn from_json_body(bytes: &[u8]) -> Result<NodeOutput, OutputError> {
    let body: JsonCompletion = parse(bytes)
        .map_err(|e| OutputError::malformed(format!("the answer is not a chat completion: {e}")))?;
    let JsonCompletion {
        id,
        created,
        choices,
        error,
    } = body;
    if let Some(error) = error {
        return Err(OutputError::from_node(&error));
    }
    let Some(choices) = choices else {
        return Err(OutputError::malformed(
            "the answer is not a chat completion: it has no choices".to_owned(),
        ));
    };
    let Some(choice) = choices.into_iter().find(|c| c.index == 0) else {
        return Err(OutputError::malformed(
            "the answer is not a chat completion: it has no choice with index 0".to_owned(),
        ));
    };
    let JsonChoice {
        index: _,
        message,
        finish_reason,
    } = choice;
    let Message { role, content } = message.unwrap_or_default();
    let (usage, model) = usage_from_json(bytes);
    let completion = Completion {
        id,
        created,
        model,
        role,
        finish_reason,
        usage,
    };
    Ok(completion.into_output(content.unwrap_or_default()))
}

/// Everything of an answer but its text, whichever way it came.
struct Completion {
    id: Option<String>,
    created: Option<u64>,
    model: Option<String>,
    role: Option<String>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
}

impl Completion {
    fn into_output(self, text: String) -> NodeOutput {
        let Completion {
            id,
            created,
            model,
            role,
            finish_reason,
            usage,
        } = self;
        let mut response_json = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": role.as_deref().unwrap_or("assistant"), "content": text },
                "finish_reason": finish_reason,
            }],
        });
        if let Some(TokenUsage {
            prompt,
            completion,
            total,
        }) = usage
        {
            response_json["usage"] = json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": total,
            });
        }
        NodeOutput {
            text,
            response_json,
            finish_reason,
        }
    }
}

/// JSON read into `T`, with the path of a field of the wrong type in the error.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => e.inner().to_string(),
            _ => format!("{path}: {}", e.inner()),
        }
    })?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

fn too_large() -> OutputError {
    OutputError::malformed(format!(
        "an event is larger than {} KiB",
        MAX_EVENT_BYTES / 1024
    ))
}

/// A line split into field name and value, per the SSE spec: one space after the colon is
/// dropped; a line without a colon is a field with an empty value.
///
/// The same rule as `usage::frame::split_field` (and the line loop in [`OutputAssembler::push`]
/// the same as its `next_line_end`); that module is private to `usage`. Once it is opened to the
/// crate, these should use it: one SSE framing for the gateway.
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[]),
    }
}

/// The fields of a streamed chunk a run keeps; the rest is skipped unread.
#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

/// The fields of a whole answer a run keeps; usage and model come from [`usage_from_json`].
#[derive(Deserialize)]
struct JsonCompletion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Option<Vec<JsonChoice>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct JsonChoice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::openai;

    /// Multi-byte characters land in the streamed words, so cuts fall inside them too.
    const QUESTION: &str = "Plan my week ☕ — déjà vu, 日本語 👋";

    fn request(include_usage: bool) -> openai::ChatRequest {
        let body = json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "stream_options": { "include_usage": include_usage },
            "messages": [{ "role": "user", "content": QUESTION }],
        });
        openai::ChatRequest::parse(body.to_string().as_bytes()).expect("mock request parses")
    }

    /// The mock node's stream and the text it carries.
    fn mock_stream(include_usage: bool) -> (Vec<u8>, String) {
        let request = request(include_usage);
        let events = openai::chat_stream_events("chatcmpl-1", 1_760_000_000, &request);
        (
            events.concat().into_bytes(),
            request.answer_words().concat(),
        )
    }

    /// Pushes `pieces` in order; the deltas joined, and the output.
    fn assemble(pieces: &[&[u8]]) -> (String, Result<NodeOutput, OutputError>) {
        let mut assembler = OutputAssembler::new();
        let mut deltas = String::new();
        for piece in pieces {
            deltas.extend(assembler.push(piece));
        }
        (deltas, assembler.finish())
    }

    fn expect_error(pieces: &[&[u8]], kind: OutputErrorKind) -> String {
        match assemble(pieces).1 {
            Err(error) => {
                assert_eq!(error.kind, kind, "{error}");
                error.message
            }
            Ok(output) => panic!("expected an error, got {output:?}"),
        }
    }

    #[test]
    fn assembles_the_mock_nodes_stream() {
        let (stream, text) = mock_stream(true);
        let request = request(true);
        let (deltas, output) = assemble(&[&stream]);
        let output = output.expect("complete stream");
        assert!(text.contains("日本語 👋"), "{text}");
        assert_eq!(deltas, text);
        assert_eq!(output.text, text);
        assert_eq!(output.finish_reason.as_deref(), Some("stop"));
        let words = request.answer_words().len() as u64;
        assert_eq!(
            output.response_json,
            json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1_760_000_000,
                "model": "gpt-4o-mini",
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": text },
                    "finish_reason": "stop",
                }],
                "usage": openai::usage(request.prompt_tokens, words),
            })
        );
    }

    #[test]
    fn a_cut_at_every_byte_gives_the_same_output() {
        let (stream, _) = mock_stream(true);
        let (_, whole) = assemble(&[&stream]);
        let whole = whole.expect("complete stream");
        for cut in 0..=stream.len() {
            let (deltas, output) = assemble(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(output.as_ref(), Ok(&whole), "cut at {cut}");
            assert_eq!(deltas, whole.text, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).flat_map(|b| [b, &[][..]]).collect();
        let (deltas, output) = assemble(&bytes);
        assert_eq!(output, Ok(whole.clone()));
        assert_eq!(deltas, whole.text);
    }

    #[test]
    fn each_delta_comes_with_the_byte_that_ends_its_event() {
        let (stream, _) = mock_stream(false);
        let mut assembler = OutputAssembler::new();
        for (at, byte) in stream.iter().enumerate() {
            let deltas = assembler.push(std::slice::from_ref(byte));
            let ends_event = stream[..=at].ends_with(b"\n\n");
            if !ends_event {
                assert!(deltas.is_empty(), "delta before its event ended, at {at}");
            }
            assert!(deltas.len() <= 1);
        }
        assert!(assembler.finish().is_ok());
    }

    #[test]
    fn multibyte_characters_split_across_chunks() {
        let event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"日本👋\"}}]}\n\n";
        let done =
            b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let start = event.find('日').expect("in event");
        for cut in start..start + "日本👋".len() {
            let (deltas, output) =
                assemble(&[&event.as_bytes()[..cut], &event.as_bytes()[cut..], done]);
            assert_eq!(deltas, "日本👋", "cut at {cut}");
            assert_eq!(output.expect("complete").text, "日本👋", "cut at {cut}");
        }
    }

    #[test]
    fn every_line_end_and_a_bom_are_read() {
        let (stream, text) = mock_stream(true);
        let stream = String::from_utf8(stream).expect("utf-8");
        for line_end in ["\r\n", "\r"] {
            let framed = format!("\u{feff}{}", stream.replace('\n', line_end));
            for cut in 0..=framed.len() {
                let (deltas, output) =
                    assemble(&[&framed.as_bytes()[..cut], &framed.as_bytes()[cut..]]);
                assert_eq!(deltas, text, "{line_end:?} cut at {cut}");
                assert_eq!(
                    output.expect("complete").text,
                    text,
                    "{line_end:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn no_usage_chunk_means_no_usage() {
        let (stream, text) = mock_stream(false);
        let output = assemble(&[&stream]).1.expect("complete");
        assert_eq!(output.text, text);
        assert_eq!(output.response_json.get("usage"), None);
    }

    #[test]
    fn done_or_a_finish_reason_alone_completes_the_answer() {
        let content = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
        let (_, output) = assemble(&[content, b"data: [DONE]\n\n"]);
        let output = output.expect("[DONE] ends it");
        assert_eq!((output.text.as_str(), output.finish_reason), ("Hi", None));
        let finish =
            b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}";
        let (_, output) = assemble(&[content, finish]);
        assert_eq!(
            output
                .expect("finish_reason ends it")
                .finish_reason
                .as_deref(),
            Some("length")
        );
        // Nothing is read after [DONE].
        let (deltas, output) = assemble(&[content, b"data: [DONE]\n\n", content, b"data: x\n\n"]);
        assert_eq!(
            (deltas.as_str(), output.map(|o| o.text)),
            ("Hi", Ok("Hi".to_owned()))
        );
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let (stream, _) = mock_stream(true);
        let finish_at = stream
            .windows(8)
            .position(|w| w == b"\"stop\"}]")
            .expect("finish chunk");
        let last_whole_event = stream[..finish_at]
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .expect("events before the finish chunk");
        let message = expect_error(
            &[&stream[..last_whole_event + 2]],
            OutputErrorKind::CutShort,
        );
        assert!(message.contains("finish_reason"), "{message}");
        let message = expect_error(&[&stream[..finish_at]], OutputErrorKind::CutShort);
        assert!(message.contains("inside an event"), "{message}");
        expect_error(&[b""], OutputErrorKind::CutShort);
        expect_error(&[b": keep-alive\n\n"], OutputErrorKind::CutShort);
    }

    #[test]
    fn a_nodes_error_event_is_an_error_with_its_message() {
        let events = openai::chat_stream_events("chatcmpl-1", 1, &request(false));
        let error = openai::error("the agent crashed", "server_error", None);
        let error_event = format!("data: {error}\n\n");
        let pieces = [
            events[0].as_bytes(),
            events[1].as_bytes(),
            error_event.as_bytes(),
            b"data: [DONE]\n\n",
        ];
        let message = expect_error(&pieces, OutputErrorKind::Node);
        assert!(message.contains("the agent crashed"), "{message}");
        let message = expect_error(
            &[b"data: {\"error\":\"overloaded\"}\n\n"],
            OutputErrorKind::Node,
        );
        assert!(message.ends_with("overloaded"), "{message}");
    }

    #[test]
    fn malformed_events_are_errors_naming_what_was_wrong() {
        let message = expect_error(
            &[b"data: not json\n\ndata: [DONE]\n\n"],
            OutputErrorKind::Malformed,
        );
        assert!(message.starts_with("event 1 is not"), "{message}");
        let bad_content =
            b"data: {\"choices\":[{\"delta\":{\"content\":[1]}}]}\n\ndata: [DONE]\n\n";
        let message = expect_error(&[bad_content], OutputErrorKind::Malformed);
        assert!(message.contains("choices[0].delta.content"), "{message}");
        let huge = format!("data: \"{}\"\n\n", "x".repeat(MAX_EVENT_BYTES));
        let message = expect_error(
            &[huge.as_bytes(), b"data: [DONE]\n\n"],
            OutputErrorKind::Malformed,
        );
        assert!(message.contains("larger than"), "{message}");
    }

    #[test]
    fn data_lines_of_one_event_join_and_other_fields_are_ignored() {
        let stream = b": comment\nevent: message\nid: 1\ndata: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"a\\nb\"}}]}\n\n\
data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other choice\"}}]}\n\ndata: [DONE]\n\n";
        let (deltas, output) = assemble(&[stream]);
        assert_eq!(deltas, "a\nb");
        assert_eq!(output.expect("complete").text, "a\nb");
    }

    #[test]
    fn reads_a_non_streamed_answer() {
        let request = request(false);
        let body = openai::chat_completion("chatcmpl-2", 42, &request).to_string();
        let output = from_json_body(body.as_bytes()).expect("chat.completion");
        let text = request.answer_words().concat();
        assert_eq!(output.text, text);
        assert_eq!(output.finish_reason.as_deref(), Some("stop"));
        let expected: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(output.response_json, expected);
    }

    #[test]
    fn streamed_and_non_streamed_answers_store_the_same_shape() {
        let request = request(true);
        let (stream, _) = mock_stream(true);
        let streamed = assemble(&[&stream]).1.expect("stream");
        let body = openai::chat_completion("chatcmpl-1", 1_760_000_000, &request).to_string();
        assert_eq!(from_json_body(body.as_bytes()), Ok(streamed));
    }

    #[test]
    fn a_non_streamed_error_is_an_error_with_its_message() {
        let body =
            openai::error("model not loaded", "invalid_request_error", Some("x")).to_string();
        let error = from_json_body(body.as_bytes()).expect_err("error body");
        assert_eq!(error.kind, OutputErrorKind::Node);
        assert!(error.to_string().contains("model not loaded"), "{error}");
    }

    #[test]
    fn a_malformed_non_streamed_answer_is_an_error() {
        for (body, says) in [
            (&b"data: {}"[..], "expected"),
            (b"{\"object\":\"chat.completion\"}", "no choices"),
            (b"{\"choices\":[{\"index\":1}]}", "index 0"),
            (
                b"{\"choices\":[{\"message\":{\"content\":7}}]}",
                "choices[0].message.content",
            ),
            (b"{\"choices\":[]} trailing", "trailing"),
        ] {
            let error = from_json_body(body).expect_err("malformed");
            assert_eq!(error.kind, OutputErrorKind::Malformed, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
        let null_content = br#"{"choices":[{"message":{"role":"assistant","content":null},"finish_reason":"tool_calls"}]}"#;
        let output = from_json_body(null_content).expect("null content is empty text");
        assert_eq!(
            (output.text.as_str(), output.finish_reason.as_deref()),
            ("", Some("tool_calls"))
        );
    }
}
