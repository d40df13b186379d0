//! The request-side half of streamed token accounting: a streaming chat completion only ends
//! with a usage chunk when the request says `stream_options.include_usage = true`, so the
//! gateway adds that to requests that stream without it (and [`super::UsageChunkFilter`] later
//! removes the chunk the client did not ask for).
//!
//! Not for: any other endpoint or request field, or validating requests — a body this module
//! does not understand goes to the node unchanged, and the node answers its own error.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// What to send the node, and whether the usage-only chunk must be hidden from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Not a streaming chat request (or not JSON): forward the original bytes.
    Unchanged,
    /// The client already asked for usage: forward unchanged, keep the usage chunk.
    AlreadyAsked,
    /// Stream without `include_usage`: forward these bytes instead; hide the usage-only chunk
    /// from the client.
    Injected(Bytes),
}

/// The two fields that decide the rewrite; every other field is skipped unread.
#[derive(Deserialize)]
struct StreamingProbe {
    #[serde(default)]
    stream: Value,
    /// `None` when the key is absent, `Some(Value::Null)` when it is `null`.
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Makes a streaming chat completion request ask for usage.
///
/// - `stream` is not `true` (absent, `false`, a string…), or the body is not a JSON object →
///   [`Rewrite::Unchanged`].
/// - `stream_options.include_usage` is `true` → [`Rewrite::AlreadyAsked`].
/// - `stream_options` is absent → [`Rewrite::Injected`] with
///   `"stream_options":{"include_usage":true}` spliced in before the closing brace; every other
///   byte of the body is kept as the client sent it.
/// - `stream_options` is `null`, or an object whose `include_usage` is absent, `null` or
///   `false` → [`Rewrite::Injected`] with `include_usage` set to `true`. This (rare) case
///   re-serialises the body: key order is kept (`serde_json`'s `preserve_order`), but
///   whitespace is compacted, string escapes are normalised and numbers are re-printed in
///   serde_json's form (`1e2` → `100.0`; an integer beyond 64 bits → the nearest `f64`).
/// - `stream_options` or `include_usage` of any other type → [`Rewrite::Unchanged`]: the
///   request is malformed and the node should say so, not the gateway's repair.
///
/// The caller must send the new body with a matching `Content-Length` (or chunked).
pub fn inject_include_usage(body: &[u8]) -> Rewrite {
    // A struct also deserialises from a JSON array, so the object check comes first.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Rewrite::Unchanged;
    }
    let Ok(probe) = serde_json::from_slice::<StreamingProbe>(body) else {
        return Rewrite::Unchanged;
    };
    if probe.stream != Value::Bool(true) {
        return Rewrite::Unchanged;
    }
    match probe.stream_options {
        None => splice_stream_options(body),
        Some(Value::Null) => reserialize_with_include_usage(body),
        Some(Value::Object(options)) => match options.get("include_usage") {
            Some(Value::Bool(true)) => Rewrite::AlreadyAsked,
            None | Some(Value::Null) | Some(Value::Bool(false)) => {
                reserialize_with_include_usage(body)
            }
            Some(_) => Rewrite::Unchanged,
        },
        Some(_) => Rewrite::Unchanged,
    }
}

/// Adds the member before the object's closing brace. The body parsed as a JSON object with a
/// `stream` member, so its last non-whitespace byte is that `}` and a comma is always needed.
fn splice_stream_options(body: &[u8]) -> Rewrite {
    const MEMBER: &[u8] = br#","stream_options":{"include_usage":true}"#;
    let Some(close) = body.iter().rposition(|b| !b.is_ascii_whitespace()) else {
        return Rewrite::Unchanged;
    };
    let mut rewritten = Vec::with_capacity(body.len() + MEMBER.len());
    rewritten.extend_from_slice(&body[..close]);
    rewritten.extend_from_slice(MEMBER);
    rewritten.extend_from_slice(&body[close..]);
    Rewrite::Injected(Bytes::from(rewritten))
}

fn reserialize_with_include_usage(body: &[u8]) -> Rewrite {
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Rewrite::Unchanged;
    };
    match request.get_mut("stream_options") {
        Some(Value::Object(options)) => {
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
        Some(options) => {
            *options = serde_json::json!({ "include_usage": true });
        }
        None => return Rewrite::Unchanged,
    }
    match serde_json::to_vec(&request) {
        Ok(rewritten) => Rewrite::Injected(Bytes::from(rewritten)),
        Err(_) => Rewrite::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::openai;
    use crate::usage::{SseUsageParser, UsageChunkFilter};

    fn injected(body: &[u8]) -> Vec<u8> {
        match inject_include_usage(body) {
            Rewrite::Injected(bytes) => bytes.to_vec(),
            other => panic!(
                "expected Injected for {:?}, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the rewritten body is JSON")
    }

    #[test]
    fn splices_stream_options_and_keeps_every_other_byte() {
        let body = b"  {\n  \"model\": \"gpt-4o\",\n  \"temperature\": 1e-1,\n  \"stream\": true,\n  \"messages\": [{\"role\": \"user\", \"content\": \"caf\\u00e9\"}]\n}\n";
        let rewritten = injected(body);
        let close = body.iter().rposition(|b| *b == b'}').unwrap_or(0);
        assert_eq!(&rewritten[..close], &body[..close]);
        assert_eq!(&rewritten[rewritten.len() - 2..], b"}\n");
        let v = json(&rewritten);
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
        assert_eq!(v["messages"][0]["content"], "café");
    }

    #[test]
    fn include_usage_false_or_missing_is_set_in_place_keeping_key_order() {
        let body =
            br#"{"model":"m","stream_options":{"include_usage":false,"x":1},"stream":true,"n":1}"#;
        assert_eq!(
            injected(body),
            br#"{"model":"m","stream_options":{"include_usage":true,"x":1},"stream":true,"n":1}"#
        );
        let body = br#"{"stream":true,"stream_options":{"x":1},"z":[1,2]}"#;
        assert_eq!(
            injected(body),
            br#"{"stream":true,"stream_options":{"x":1,"include_usage":true},"z":[1,2]}"#
        );
        let body = br#"{"stream":true,"stream_options":null}"#;
        assert_eq!(
            injected(body),
            br#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let body = br#"{"stream":true,"stream_options":{"include_usage":null}}"#;
        assert_eq!(
            json(&injected(body))["stream_options"]["include_usage"],
            true
        );
    }

    #[test]
    fn a_client_that_asked_keeps_its_body() {
        let body = br#"{"stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        assert_eq!(inject_include_usage(body), Rewrite::AlreadyAsked);
    }

    #[test]
    fn anything_but_a_streaming_chat_object_is_unchanged() {
        for body in [
            &br#"{"model":"m","messages":[]}"#[..],
            br#"{"stream":false}"#,
            br#"{"stream":"true"}"#,
            br#"{"stream":1}"#,
            br#"{"stream":null}"#,
            br#"{"stream":true,"stream_options":"yes"}"#,
            br#"{"stream":true,"stream_options":{"include_usage":"yes"}}"#,
            br#"{"stream":true,"stream":true}"#,
            br#"[true,null]"#,
            br#"{"stream":true"#,
            br#"{"stream":true} {}"#,
            b"",
            b"   ",
            b"stream",
        ] {
            assert_eq!(
                inject_include_usage(body),
                Rewrite::Unchanged,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// The whole round trip without a server: the rewritten request makes the mock node send a
    /// usage chunk; the parser reads it; the filter gives the client the stream it asked for.
    #[test]
    fn the_rewrite_filter_and_parser_work_together() {
        let client_body =
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let node_body = injected(client_body);
        let to_node = openai::ChatRequest::parse(&node_body).expect("mock parses the rewrite");
        assert!(to_node.include_usage);
        let as_asked = openai::ChatRequest::parse(client_body).expect("mock parses the client's");
        assert!(!as_asked.include_usage);

        let from_node = openai::chat_stream_events("c", 1, &to_node).concat();
        let mut parser = SseUsageParser::new();
        let mut filter = UsageChunkFilter::new();
        let mut to_client = Vec::new();
        for chunk in from_node.as_bytes().chunks(50) {
            parser.push(chunk);
            to_client.extend_from_slice(&filter.filter(chunk));
        }
        parser.finish();
        to_client.extend_from_slice(&filter.finish());

        let completion = to_node.answer_words().len() as u64;
        assert_eq!(
            parser.usage(),
            Some(crate::usage::TokenUsage {
                prompt: to_node.prompt_tokens,
                completion,
                total: to_node.prompt_tokens + completion,
            })
        );
        let to_client = String::from_utf8(to_client).expect("UTF-8 passes intact");
        assert!(!to_client.contains("\"choices\":[]"));
        assert_eq!(
            to_client.matches("\n\n").count(),
            from_node.matches("\n\n").count() - 1
        );
        assert!(to_client.ends_with("data: [DONE]\n\n"));
    }
}
