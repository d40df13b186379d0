//! The OpenAI-compatible answers of the mock node: chat completions and the Responses API (JSON
//! and SSE), embeddings, models. Deterministic text, realistic `usage` numbers, and the SSE framing that official SDKs
//! parse (`data: {...}\n\n` events, a usage-only chunk when `stream_options.include_usage`, and
//! `data: [DONE]`).

use serde_json::{json, Value};

/// Rough token count the way OpenAI's tokenizer lands on English text: about 4 bytes per token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// What a chat completion request asks for, read from its JSON body.
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub prompt_tokens: u64,
    pub last_user_message: String,
}

impl ChatRequest {
    pub fn parse(body: &[u8]) -> Result<ChatRequest, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        let messages = v["messages"]
            .as_array()
            .ok_or("`messages` must be an array")?;
        let (prompt_tokens, last_user_message) = read_messages(messages);
        Ok(ChatRequest {
            model: v["model"].as_str().unwrap_or("openclaw").to_owned(),
            stream: v["stream"].as_bool().unwrap_or(false),
            include_usage: v["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            prompt_tokens: prompt_tokens + 3,
            last_user_message,
        })
    }

    /// A Responses API request (`input` as a string or a list of messages), read as the same
    /// question a chat completion would ask.
    pub fn parse_responses(body: &[u8]) -> Result<ChatRequest, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        let (prompt_tokens, last_user_message) = match &v["input"] {
            Value::String(text) => (estimate_tokens(text) + 4, text.clone()),
            Value::Array(items) => read_messages(items),
            _ => return Err("`input` must be a string or an array".into()),
        };
        Ok(ChatRequest {
            model: v["model"].as_str().unwrap_or("openclaw").to_owned(),
            stream: v["stream"].as_bool().unwrap_or(false),
            include_usage: false,
            prompt_tokens,
            last_user_message,
        })
    }

    /// The words of the answer, each one streamed as its own event.
    pub fn answer_words(&self) -> Vec<String> {
        let topic: String = self.last_user_message.chars().take(80).collect();
        let text = if topic.trim().is_empty() {
            "Hello! I am the ExoClaw demo node. Ask me anything.".to_owned()
        } else {
            format!("Hello! I am the ExoClaw demo node. You asked: {topic}")
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let last = words.len().saturating_sub(1);
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == last {
                    (*w).to_owned()
                } else {
                    format!("{w} ")
                }
            })
            .collect()
    }
}

/// The prompt tokens of a list of messages, and the text of the last user message.
fn read_messages(messages: &[Value]) -> (u64, String) {
    let mut tokens = 0;
    let mut last_user_message = String::new();
    for m in messages {
        let content = match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // Each message carries a few tokens of framing in OpenAI's accounting.
        tokens += estimate_tokens(&content) + 4;
        if m["role"] == "user" {
            last_user_message = content;
        }
    }
    (tokens, last_user_message)
}

pub fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

pub fn chat_completion(id: &str, created: u64, req: &ChatRequest) -> Value {
    let words = req.answer_words();
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": words.concat() },
            "finish_reason": "stop",
        }],
        "usage": usage(req.prompt_tokens, words.len() as u64),
    })
}

/// The SSE events of a streamed answer, in order, each a complete `data: ...\n\n` frame.
pub fn chat_stream_events(id: &str, created: u64, req: &ChatRequest) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        if req.include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let words = req.answer_words();
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        words
            .iter()
            .map(|w| chunk(json!({ "content": w }), Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop")));
    if req.include_usage {
        events.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [],
            "usage": usage(req.prompt_tokens, words.len() as u64),
        }));
    }
    let mut frames: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    frames.push("data: [DONE]\n\n".to_owned());
    frames
}

/// A Responses API `response` object; `done` gives it its output and `usage`.
fn response_object(id: &str, created: u64, req: &ChatRequest, done: bool) -> Value {
    let words = req.answer_words();
    let completion = words.len() as u64;
    let mut response = json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": if done { "completed" } else { "in_progress" },
        "model": req.model,
        "output": [],
        "usage": Value::Null,
    });
    if done {
        response["output"] = json!([{
            "type": "message",
            "id": format!("msg_{}", &id[5..]),
            "status": "completed",
            "role": "assistant",
            "content": [{ "type": "output_text", "text": words.concat(), "annotations": [] }],
        }]);
        response["usage"] = json!({
            "input_tokens": req.prompt_tokens,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": completion,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": req.prompt_tokens + completion,
        });
    }
    response
}

/// The answer to `POST /v1/responses` without `stream`.
pub fn response(id: &str, created: u64, req: &ChatRequest) -> Value {
    response_object(id, created, req, true)
}

/// The SSE events of a streamed Responses API answer: `response.created`, one
/// `response.output_text.delta` per word, `response.completed` carrying `usage`.
pub fn response_stream_events(id: &str, created: u64, req: &ChatRequest) -> Vec<String> {
    let mut events = vec![json!({
        "type": "response.created",
        "sequence_number": 0,
        "response": response_object(id, created, req, false),
    })];
    for word in req.answer_words() {
        events.push(json!({
            "type": "response.output_text.delta",
            "sequence_number": events.len(),
            "item_id": format!("msg_{}", &id[5..]),
            "output_index": 0,
            "content_index": 0,
            "delta": word,
        }));
    }
    events.push(json!({
        "type": "response.completed",
        "sequence_number": events.len(),
        "response": response_object(id, created, req, true),
    }));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

pub fn embeddings(body: &[u8]) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        _ => return Err("`input` must be a string or an array".into()),
    };
    let prompt_tokens: u64 = inputs.iter().map(|i| estimate_tokens(i)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({ "object": "embedding", "index": index, "embedding": embed(text) })
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": v["model"].as_str().unwrap_or("text-embedding-3-small"),
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }))
}

/// A deterministic 16-dimension unit vector derived from the text's bytes.
fn embed(text: &str) -> Vec<f64> {
    let mut v = [0f64; 16];
    for (i, b) in text.bytes().enumerate() {
        v[i % 16] += f64::from(b) * ((i / 16) as f64 + 1.0).recip();
    }
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    v.iter().map(|x| x / norm).collect()
}

pub fn models(created: u64) -> Value {
    let model = |id: &str| json!({ "id": id, "object": "model", "created": created, "owned_by": "openclaw" });
    json!({ "object": "list", "data": [model("openclaw"), model("gpt-4o-mini"), model("gemma3:27b")] })
}

pub fn error(message: &str, kind: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "code": Value::Null } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(include_usage: bool) -> ChatRequest {
        let body = json!({
            "model": "gpt-4o",
            "stream": true,
            "stream_options": { "include_usage": include_usage },
            "messages": [{ "role": "user", "content": "Plan my week" }],
        });
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn stream_ends_with_done_and_carries_usage_only_when_asked() {
        let with = chat_stream_events("c", 1, &req(true));
        assert_eq!(with.last().unwrap(), "data: [DONE]\n\n");
        assert!(with[with.len() - 2].contains("\"choices\":[]"));
        let without = chat_stream_events("c", 1, &req(false));
        assert!(!without.iter().any(|e| e.contains("prompt_tokens")));
    }

    #[test]
    fn usage_adds_up_and_content_matches_words() {
        let r = req(false);
        let v = chat_completion("c", 1, &r);
        let u = &v["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            u["completion_tokens"].as_u64().unwrap() as usize,
            r.answer_words().len()
        );
        assert!(v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .ends_with("Plan my week"));
    }

    #[test]
    fn embeddings_accept_strings_and_arrays() {
        let v = embeddings(br#"{"input":["a","bb"],"model":"m"}"#).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert!(embeddings(br#"{"input":5}"#).is_err());
        assert!(embeddings(b"not json").is_err());
    }
}
