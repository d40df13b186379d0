//! Token accounting for one proxied request, as its bodies pass through the filters.
//!
//! Request side: a streaming chat completion gets `stream_options.include_usage: true` when the
//! client did not ask, so the node reports exact usage. The proxy reads a chat completion's
//! body before choosing a node and hands it to `prepare_request_body`; when it is rewritten, the
//! proxy sends the new body instead of the client's, with its own `Content-Length`.
//! Response side: JSON bodies are collected up to a cap and their `usage` read at the end; SSE
//! streams are parsed incrementally as chunks pass, never held back, except that when the
//! gateway injected `include_usage` the usage-only event is removed before it reaches the client
//! (only an incomplete event is ever held, until its end arrives). When no usage arrives, tokens
//! are estimated from bytes.

use bytes::{Bytes, BytesMut};

use crate::usage::{
    estimate_tokens, inject_include_usage, JsonCollector, Rewrite, SseUsageParser, TokenUsage,
    UsageChunkFilter,
};

/// Largest JSON response body collected to read its `usage`.
const MAX_JSON_COLLECT: usize = 8 * 1024 * 1024;

/// The token counts recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub usage: TokenUsage,
    /// From the node's `usage`; false when estimated from bytes.
    pub reported: bool,
}

#[derive(Default)]
pub struct Accounting {
    /// The gateway injected `include_usage`: hide the usage event from this client.
    injected: bool,
    response: Response,
    hide: Option<UsageChunkFilter>,
    response_bytes: u64,
    /// The answer was an SSE stream.
    pub streamed: bool,
}

#[derive(Default)]
enum Response {
    #[default]
    NotStarted,
    Json(JsonCollector),
    Sse(SseUsageParser),
    Other,
}

impl Accounting {
    /// Looks at a chat completion's whole body: a streaming request that did not ask for usage
    /// gets `include_usage`. Returns the body to send instead, when it was rewritten.
    pub fn prepare_request_body(&mut self, body: &[u8]) -> Option<Bytes> {
        match inject_include_usage(body) {
            Rewrite::Injected(rewritten) => {
                self.injected = true;
                Some(rewritten)
            }
            Rewrite::Unchanged | Rewrite::AlreadyAsked => None,
        }
    }

    /// Chooses how to read the response, from its `Content-Type`. Returns true when the body
    /// will be altered (the usage event removed), so its `Content-Length` must go.
    pub fn response_started(&mut self, content_type: &str) -> bool {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.response = match mime.as_str() {
            "text/event-stream" => {
                self.streamed = true;
                if self.injected {
                    self.hide = Some(UsageChunkFilter::new());
                }
                Response::Sse(SseUsageParser::new())
            }
            "application/json" => Response::Json(JsonCollector::new(MAX_JSON_COLLECT)),
            _ => Response::Other,
        };
        self.hide.is_some()
    }

    /// Reads a response chunk as it passes (and removes the usage event when asked to).
    pub fn response_chunk(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if let Some(chunk) = body.as_ref() {
            self.response_bytes += chunk.len() as u64;
            match &mut self.response {
                Response::Json(collector) => collector.push(chunk),
                Response::Sse(parser) => parser.push(chunk),
                Response::NotStarted | Response::Other => {}
            }
        }
        if end_of_stream {
            if let Response::Sse(parser) = &mut self.response {
                parser.finish();
            }
        }
        if let Some(filter) = self.hide.as_mut() {
            let mut out = BytesMut::new();
            if let Some(chunk) = body.as_ref() {
                out.extend_from_slice(&filter.filter(chunk));
            }
            if end_of_stream {
                out.extend_from_slice(&filter.finish());
            }
            *body = Some(out.freeze());
        }
    }

    /// True once a node's response head has passed: only then are there tokens to count.
    pub fn node_answered(&self) -> bool {
        !matches!(self.response, Response::NotStarted)
    }

    /// Final token counts: the node's `usage` when it arrived, an estimate otherwise.
    pub fn finish(&mut self, request_body_bytes: u64) -> (Tokens, Option<String>) {
        // Completion estimate: the answer's text when the stream showed it, all bytes otherwise.
        let mut answer_bytes = self.response_bytes;
        let (reported, model) = match &mut self.response {
            Response::Json(collector) => collector.finish(),
            Response::Sse(parser) => {
                if parser.content_bytes() > 0 {
                    answer_bytes = parser.content_bytes();
                }
                (parser.usage(), parser.model().map(str::to_owned))
            }
            Response::NotStarted | Response::Other => (None, None),
        };
        let tokens = match reported {
            Some(usage) => Tokens {
                usage,
                reported: true,
            },
            None => {
                let prompt = estimate_tokens(request_body_bytes);
                let completion = estimate_tokens(answer_bytes);
                Tokens {
                    usage: TokenUsage {
                        prompt,
                        completion,
                        total: prompt + completion,
                    },
                    reported: false,
                }
            }
        };
        (tokens, model)
    }
}
