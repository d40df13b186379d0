//! Usage and model from a whole, non-streaming JSON answer: chat completions
//! (`usage.prompt_tokens/completion_tokens/total_tokens`), embeddings (`usage.prompt_tokens/
//! total_tokens`) and the Responses API (`usage.input_tokens/output_tokens/total_tokens`), plus
//! [`JsonCollector`], which gathers the answer's body chunks up to a cap so it can be read at
//! the end.
//!
//! Not for: `text/event-stream` answers (`sse.rs`), or estimating when there is no usage (the
//! caller does that with [`super::estimate_tokens`]).

use serde::Deserialize;

use super::wire::{bounded_model_name, Lenient, Text, WireUsage};
use super::TokenUsage;

/// The two top-level fields every answer shape shares; everything else is skipped unread.
#[derive(Deserialize)]
struct JsonAnswer<'a> {
    #[serde(default, borrow)]
    model: Text<'a>,
    #[serde(default)]
    usage: Lenient<WireUsage>,
}

/// The usage and the model a non-streaming answer reports.
///
/// Invalid JSON, or JSON that is not an object, gives `(None, None)`. A valid answer without a
/// usage object (an error body, a node that does not count) gives `(None, model)`. A usage
/// without `total_tokens` totals prompt + completion; an embeddings usage has completion 0.
pub fn usage_from_json(body: &[u8]) -> (Option<TokenUsage>, Option<String>) {
    let Ok(Lenient(Some(answer))) = serde_json::from_slice::<Lenient<JsonAnswer>>(body) else {
        return (None, None);
    };
    let JsonAnswer { model, usage } = answer;
    let usage = usage.0.and_then(|u| u.token_usage());
    let model = model
        .0
        .map(|m| bounded_model_name(&m).to_owned())
        .filter(|m| !m.is_empty());
    (usage, model)
}

/// Gathers a non-streaming answer's body, chunk by chunk as it passes, so that
/// [`usage_from_json`] can read it once the answer is complete.
///
/// Memory is bounded by `cap_bytes`: once the body grows past it the collector drops what it
/// has, stops collecting and only keeps counting bytes, and [`JsonCollector::finish`] returns
/// `(None, None)`. The caller then estimates from [`JsonCollector::bytes_seen`] with
/// [`super::estimate_tokens`]. Nothing is ever held back from the client: the collector copies.
#[derive(Debug)]
pub struct JsonCollector {
    cap_bytes: usize,
    body: Vec<u8>,
    bytes_seen: u64,
    over_cap: bool,
}

impl JsonCollector {
    pub fn new(cap_bytes: usize) -> JsonCollector {
        JsonCollector {
            cap_bytes,
            body: Vec::new(),
            bytes_seen: 0,
            over_cap: false,
        }
    }

    /// Adds the next chunk of the answer's body, exactly as it passes to the client.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes_seen = self.bytes_seen.saturating_add(chunk.len() as u64);
        if self.over_cap {
            return;
        }
        if self.body.len().saturating_add(chunk.len()) > self.cap_bytes {
            self.over_cap = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// Every byte pushed so far, including those past the cap.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// The body outgrew the cap: [`JsonCollector::finish`] will find nothing, estimate instead.
    pub fn is_over_cap(&self) -> bool {
        self.over_cap
    }

    /// Reads the collected body and frees it. `(None, None)` when the body outgrew the cap (the
    /// caller estimates) or is not a JSON object; see [`usage_from_json`] for the rest.
    pub fn finish(&mut self) -> (Option<TokenUsage>, Option<String>) {
        let body = std::mem::take(&mut self.body);
        if self.over_cap {
            return (None, None);
        }
        usage_from_json(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::openai;
    use crate::usage::MODEL_NAME_MAX_BYTES;

    fn chat_request() -> openai::ChatRequest {
        let body =
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Plan my week"}]}"#;
        openai::ChatRequest::parse(body).expect("mock request parses")
    }

    #[test]
    fn reads_a_mock_chat_completion() {
        let request = chat_request();
        let answer = openai::chat_completion("c1", 1, &request).to_string();
        let completion = request.answer_words().len() as u64;
        let (usage, model) = usage_from_json(answer.as_bytes());
        assert_eq!(
            usage,
            Some(TokenUsage {
                prompt: request.prompt_tokens,
                completion,
                total: request.prompt_tokens + completion,
            })
        );
        assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn reads_a_mock_embeddings_answer_with_no_completion() {
        let answer = openai::embeddings(br#"{"input":["hello","world!"],"model":"emb"}"#)
            .expect("mock embeddings")
            .to_string();
        let (usage, model) = usage_from_json(answer.as_bytes());
        // "hello" → 2, "world!" → 2 with the mock's 4-bytes-per-token count.
        assert_eq!(
            usage,
            Some(TokenUsage {
                prompt: 4,
                completion: 0,
                total: 4
            })
        );
        assert_eq!(model.as_deref(), Some("emb"));
    }

    #[test]
    fn reads_a_responses_api_answer() {
        let answer = br#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1",
            "output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],
            "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},
                     "output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},
                     "total_tokens":123}}"#;
        let (usage, model) = usage_from_json(answer);
        assert_eq!(
            usage,
            Some(TokenUsage {
                prompt: 36,
                completion: 87,
                total: 123
            })
        );
        assert_eq!(model.as_deref(), Some("gpt-4.1"));
    }

    #[test]
    fn missing_total_is_prompt_plus_completion() {
        let (usage, _) = usage_from_json(br#"{"usage":{"prompt_tokens":5,"completion_tokens":6}}"#);
        assert_eq!(
            usage,
            Some(TokenUsage {
                prompt: 5,
                completion: 6,
                total: 11
            })
        );
    }

    #[test]
    fn answers_without_usage_keep_the_model() {
        assert_eq!(
            usage_from_json(br#"{"model":"m","usage":null}"#),
            (None, Some("m".to_owned()))
        );
        assert_eq!(
            usage_from_json(br#"{"error":{"message":"no","type":"x","code":null}}"#),
            (None, None)
        );
        assert_eq!(usage_from_json(br#"{"model":"","usage":{}}"#), (None, None));
    }

    #[test]
    fn invalid_or_non_object_json_reads_as_nothing() {
        for body in [
            &b""[..],
            b"not json",
            b"{\"usage\":{\"prompt_tokens\":1}",
            b"[\"m\",{\"prompt_tokens\":1}]",
            b"42",
            b"null",
            b"{\"usage\":{\"prompt_tokens\":1}} trailing",
        ] {
            assert_eq!(usage_from_json(body), (None, None), "{body:?}");
        }
    }

    #[test]
    fn long_model_names_are_cut() {
        let body = format!(r#"{{"model":"{}"}}"#, "m".repeat(10_000));
        let (_, model) = usage_from_json(body.as_bytes());
        assert_eq!(model.map(|m| m.len()), Some(MODEL_NAME_MAX_BYTES));
    }

    #[test]
    fn collector_reads_a_body_split_anywhere() {
        let answer = openai::chat_completion("c1", 1, &chat_request()).to_string();
        let whole = usage_from_json(answer.as_bytes());
        assert!(whole.0.is_some());
        for split in 0..=answer.len() {
            let mut collector = JsonCollector::new(answer.len());
            collector.push(&answer.as_bytes()[..split]);
            collector.push(&answer.as_bytes()[split..]);
            assert!(!collector.is_over_cap());
            assert_eq!(collector.finish(), whole, "split at {split}");
            assert_eq!(collector.bytes_seen(), answer.len() as u64);
        }
    }

    #[test]
    fn collector_over_the_cap_finds_nothing_but_counts_bytes() {
        let answer = openai::chat_completion("c1", 1, &chat_request()).to_string();
        let mut collector = JsonCollector::new(answer.len() - 1);
        for chunk in answer.as_bytes().chunks(7) {
            collector.push(chunk);
        }
        assert!(collector.is_over_cap());
        assert_eq!(collector.finish(), (None, None));
        assert_eq!(collector.bytes_seen(), answer.len() as u64);
    }
}
