//! The OpenAI-compatible answers of the mock node: chat completions and the Responses API (JSON
//! and SSE), embeddings, models, errors. Deterministic text, realistic `usage` numbers, and the
//! SSE framing that official SDKs parse: for chat, `data: {...}\n\n` chunks, a usage-only chunk
//! when `stream_options.include_usage`, and `data: [DONE]`; for the Responses API, the full
//! `event: <type>` sequence OpenAI sends, from `response.created` to `response.completed`, which
//! the Python SDK's `client.responses.stream()` helper checks event by event.

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
    /// The OpenAI `user` field, which an OpenClaw node reads as the caller's session.
    pub user: Option<String>,
    /// The answer a test scripted (`MockNode::set_answer`) instead of the echo.
    pub answer: Option<String>,
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
            user: v["user"].as_str().map(str::to_owned),
            answer: None,
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
            user: v["user"].as_str().map(str::to_owned),
            answer: None,
        })
    }

    /// The words of the answer, each one streamed as its own event.
    pub fn answer_words(&self) -> Vec<String> {
        if let Some(text) = &self.answer {
            // Kept exactly, line breaks included: each word with the whitespace after it.
            return text
                .split_inclusive(char::is_whitespace)
                .map(str::to_owned)
                .collect();
        }
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

/// The one output message of a Responses API answer, with the id the stream's events name.
fn output_message(response_id: &str, text: &str, done: bool) -> Value {
    let content = if done {
        json!([output_text(text)])
    } else {
        json!([])
    };
    json!({
        "id": message_id(response_id),
        "type": "message",
        "status": if done { "completed" } else { "in_progress" },
        "role": "assistant",
        "content": content,
    })
}

fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [] })
}

fn message_id(response_id: &str) -> String {
    format!("msg_{}", response_id.trim_start_matches("resp_"))
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
        "error": Value::Null,
        "incomplete_details": Value::Null,
        "instructions": Value::Null,
        "model": req.model,
        "output": [],
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": Value::Null,
    });
    if done {
        response["output"] = json!([output_message(id, &words.concat(), true)]);
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

/// The SSE events of a streamed Responses API answer, in the order OpenAI sends them:
/// `response.created`, `response.in_progress`, `response.output_item.added` (the message, empty),
/// `response.content_part.added` (an empty `output_text`), one `response.output_text.delta` per
/// word, `response.output_text.done`, `response.content_part.done`,
/// `response.output_item.done`, and `response.completed` carrying `usage`. Each is an
/// `event: <type>\ndata: <json>\n\n` frame with the next `sequence_number`.
pub fn response_stream_events(id: &str, created: u64, req: &ChatRequest) -> Vec<String> {
    let words = req.answer_words();
    let text = words.concat();
    let item_id = message_id(id);
    // Events about the text name its place: the first output item, its first content part.
    let in_text = |mut event: Value| {
        event["item_id"] = json!(item_id);
        event["output_index"] = json!(0);
        event["content_index"] = json!(0);
        event
    };
    let mut events = vec![
        json!({ "type": "response.created", "response": response_object(id, created, req, false) }),
        json!({ "type": "response.in_progress", "response": response_object(id, created, req, false) }),
        json!({ "type": "response.output_item.added", "output_index": 0,
                "item": output_message(id, "", false) }),
        in_text(json!({ "type": "response.content_part.added", "part": output_text("") })),
    ];
    events.extend(words.iter().map(|word| {
        in_text(json!({ "type": "response.output_text.delta", "delta": word, "logprobs": [] }))
    }));
    events.extend([
        in_text(json!({ "type": "response.output_text.done", "text": text, "logprobs": [] })),
        in_text(json!({ "type": "response.content_part.done", "part": output_text(&text) })),
        json!({ "type": "response.output_item.done", "output_index": 0,
                "item": output_message(id, &text, true) }),
        json!({ "type": "response.completed", "response": response_object(id, created, req, true) }),
    ]);
    events
        .iter_mut()
        .enumerate()
        .map(|(sequence_number, event)| {
            event["sequence_number"] = json!(sequence_number);
            format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap_or("")
            )
        })
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

/// The models `GET /v1/models` lists.
const MODEL_IDS: [&str; 3] = ["openclaw", "gpt-4o-mini", "gemma3:27b"];

fn model_object(id: &str, created: u64) -> Value {
    json!({ "id": id, "object": "model", "created": created, "owned_by": "openclaw" })
}

/// The answer to `GET /v1/models`.
pub fn models(created: u64) -> Value {
    let data: Vec<Value> = MODEL_IDS
        .iter()
        .map(|id| model_object(id, created))
        .collect();
    json!({ "object": "list", "data": data })
}

/// The answer to `GET /v1/models/{id}`: the model, if `/v1/models` lists it.
pub fn model(id: &str, created: u64) -> Option<Value> {
    MODEL_IDS.contains(&id).then(|| model_object(id, created))
}

/// An OpenAI-shaped error body: `{"error":{"message","type","code"}}`.
pub fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "code": code } })
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

    fn parse_frames(frames: &[String]) -> Vec<Value> {
        frames
            .iter()
            .map(|frame| {
                let (event_line, data_line) = frame
                    .strip_suffix("\n\n")
                    .and_then(|f| f.split_once('\n'))
                    .unwrap_or_else(|| panic!("an `event:` and a `data:` line: {frame:?}"));
                let event: Value =
                    serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(
                    event_line,
                    format!("event: {}", event["type"].as_str().unwrap())
                );
                event
            })
            .collect()
    }

    #[test]
    fn responses_stream_sends_the_whole_event_sequence_in_order() {
        let body = json!({ "model": "openclaw/beta", "input": "Plan my week", "stream": true });
        let req = ChatRequest::parse_responses(body.to_string().as_bytes()).unwrap();
        let words = req.answer_words();
        let events = parse_frames(&response_stream_events("resp_abc", 7, &req));

        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        expected.extend(words.iter().map(|_| "response.output_text.delta"));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(kinds, expected);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], i, "{event}");
        }

        let text = words.concat();
        let added = &events[2];
        assert_eq!(added["output_index"], 0);
        assert_eq!(added["item"]["id"], "msg_abc");
        assert_eq!(added["item"]["status"], "in_progress");
        assert_eq!(added["item"]["content"], json!([]));
        assert_eq!(
            events[3]["part"],
            json!({ "type": "output_text", "text": "", "annotations": [] })
        );
        for event in &events[3..events.len() - 2] {
            assert_eq!(event["item_id"], "msg_abc", "{event}");
            assert_eq!(event["output_index"], 0, "{event}");
            assert_eq!(event["content_index"], 0, "{event}");
        }
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, text);
        let n = events.len();
        assert_eq!(events[n - 4]["text"], text);
        assert_eq!(events[n - 3]["part"]["text"], text);
        assert_eq!(events[n - 2]["item"]["status"], "completed");
        assert_eq!(events[n - 2]["item"]["content"][0]["text"], text);

        let created = &events[0]["response"];
        assert_eq!(created["id"], "resp_abc");
        assert_eq!(created["status"], "in_progress");
        assert_eq!(created["model"], "openclaw/beta");
        let completed = &events[n - 1]["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["output"][0]["content"][0]["text"], text);
        assert_eq!(completed["usage"]["input_tokens"], req.prompt_tokens);
        assert_eq!(completed["usage"]["output_tokens"], words.len());
        assert_eq!(completed, &response("resp_abc", 7, &req));
    }

    #[test]
    fn requests_carry_the_user_field() {
        let chat = ChatRequest::parse(br#"{"messages":[],"user":"alice"}"#).unwrap();
        assert_eq!(chat.user.as_deref(), Some("alice"));
        let responses = ChatRequest::parse_responses(br#"{"input":"hi"}"#).unwrap();
        assert_eq!(responses.user, None);
    }

    #[test]
    fn a_model_is_found_only_if_listed() {
        let listed = models(1);
        for m in listed["data"].as_array().unwrap() {
            assert_eq!(model(m["id"].as_str().unwrap(), 1).as_ref(), Some(m));
        }
        assert_eq!(model("nope", 1), None);
    }

    #[test]
    fn embeddings_accept_strings_and_arrays() {
        let v = embeddings(br#"{"input":["a","bb"],"model":"m"}"#).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert!(embeddings(br#"{"input":5}"#).is_err());
        assert!(embeddings(b"not json").is_err());
    }
}
