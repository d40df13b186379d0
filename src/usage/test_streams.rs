//! Realistic answer streams for the tests of `sse.rs` and `hide.rs`, and the ways the tests cut
//! them into chunks. The chat stream is the mock node's own (`mock::openai`); the Responses API
//! stream follows OpenAI's documented event sequence.
//!
//! Not for: anything outside tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::TokenUsage;
use crate::mock::openai;

/// The question the mock node echoes: multi-byte characters land in the streamed text, so
/// splits fall inside UTF-8 sequences too.
const QUESTION: &str = "Plan my week ☕ — déjà vu, 日本語 👋";

pub(crate) const CHAT_MODEL: &str = "gpt-4o-mini";
pub(crate) const RESPONSES_MODEL: &str = "gpt-4.1-2025-04-14";

pub(crate) fn chat_request(include_usage: bool) -> openai::ChatRequest {
    let body = json!({
        "model": CHAT_MODEL,
        "stream": true,
        "stream_options": { "include_usage": include_usage },
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": QUESTION },
        ],
    });
    match openai::ChatRequest::parse(body.to_string().as_bytes()) {
        Ok(request) => request,
        Err(e) => panic!("mock request does not parse: {e}"),
    }
}

/// The mock node's stream, its events one by one, and the usage it carries.
pub(crate) struct ChatStream {
    pub(crate) events: Vec<String>,
    pub(crate) usage: Option<TokenUsage>,
    pub(crate) content_bytes: u64,
}

impl ChatStream {
    pub(crate) fn new(include_usage: bool) -> ChatStream {
        let request = chat_request(include_usage);
        let words = request.answer_words();
        let completion = words.len() as u64;
        ChatStream {
            events: openai::chat_stream_events("chatcmpl-1", 1_760_000_000, &request),
            usage: include_usage.then_some(TokenUsage {
                prompt: request.prompt_tokens,
                completion,
                total: request.prompt_tokens + completion,
            }),
            content_bytes: words.concat().len() as u64,
        }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.events.concat().into_bytes()
    }

    /// The index of the usage-only event.
    pub(crate) fn usage_event(&self) -> Option<usize> {
        self.events
            .iter()
            .position(|e| e.contains("\"choices\":[]"))
    }
}

/// A streamed Responses API answer (`event:` + `data:` pairs) and the usage it carries.
pub(crate) fn responses_stream() -> (Vec<u8>, TokenUsage, u64) {
    let deltas = ["Hé", "llo", " 👋 ", "日本", "語!"];
    let text: String = deltas.concat();
    let usage = json!({
        "input_tokens": 36, "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": 87, "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": 123,
    });
    let response = |status: &str, output: serde_json::Value, usage: serde_json::Value| {
        json!({
            "id": "resp_1", "object": "response", "created_at": 1_760_000_000,
            "status": status, "model": RESPONSES_MODEL, "output": output, "usage": usage,
        })
    };
    let message = json!({
        "id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{ "type": "output_text", "text": text, "annotations": [] }],
    });
    let mut events = vec![
        json!({ "type": "response.created", "sequence_number": 0,
                "response": response("in_progress", json!([]), json!(null)) }),
        json!({ "type": "response.in_progress", "sequence_number": 1,
                "response": response("in_progress", json!([]), json!(null)) }),
        json!({ "type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
                "item": { "id": "msg_1", "type": "message", "status": "in_progress",
                          "role": "assistant", "content": [] } }),
    ];
    events.extend(deltas.iter().enumerate().map(|(i, delta)| {
        json!({ "type": "response.output_text.delta", "sequence_number": 3 + i,
                "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": delta })
    }));
    events.push(
        json!({ "type": "response.output_text.done", "sequence_number": 8,
                        "item_id": "msg_1", "output_index": 0, "content_index": 0,
                        "text": text }),
    );
    events.push(json!({ "type": "response.completed", "sequence_number": 9,
                        "response": response("completed", json!([message]), usage) }));
    let mut stream = String::new();
    for event in &events {
        let kind = event["type"].as_str().unwrap_or("message");
        stream.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
    }
    let counts = TokenUsage {
        prompt: 36,
        completion: 87,
        total: 123,
    };
    (stream.into_bytes(), counts, text.len() as u64)
}

/// The same stream with every `\n` line end replaced by `line_end`. Compact JSON has no raw
/// newlines, so only line ends change.
pub(crate) fn with_line_ends(stream: &[u8], line_end: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() * 2);
    for &b in stream {
        if b == b'\n' {
            out.extend_from_slice(line_end);
        } else {
            out.push(b);
        }
    }
    out
}

/// `bytes` cut at the given sorted offsets.
pub(crate) fn cut_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in cuts {
        pieces.push(&bytes[from..cut]);
        from = cut;
    }
    pieces.push(&bytes[from..]);
    pieces
}

/// Deterministic random cut points (1 to 40 of them) for each of `rounds` rounds.
pub(crate) fn random_cuts(len: usize, rounds: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rounds)
        .map(|_| {
            let count = rng.random_range(1..=40);
            let mut cuts: Vec<usize> = (0..count).map(|_| rng.random_range(0..=len)).collect();
            cuts.sort_unstable();
            cuts
        })
        .collect()
}
