//! Micro-benchmarks of token accounting on the response and request paths: reading usage from a
//! long streamed answer, hiding the usage chunk from it, and rewriting a streaming request.
//! Run: `cargo bench --bench usage -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exoclaw::mock::openai;
use exoclaw::usage::{inject_include_usage, SseUsageParser, UsageChunkFilter};
use serde_json::json;

const CONTENT_CHUNKS: usize = 2_000;
const CHUNK_BYTES: usize = 1024;

/// The mock node's stream with `include_usage`, its content events repeated until the answer
/// has `CONTENT_CHUNKS` of them: the role chunk, the content chunks, the finish chunk, the
/// usage-only chunk and `[DONE]`, exactly as the mock frames them.
fn long_stream() -> Vec<u8> {
    let body = json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": "Explain how a reverse proxy streams answers" }],
    });
    let request = match openai::ChatRequest::parse(body.to_string().as_bytes()) {
        Ok(request) => request,
        Err(e) => panic!("mock request does not parse: {e}"),
    };
    let events = openai::chat_stream_events("chatcmpl-bench", 1_760_000_000, &request);
    // [role, content…, finish, usage, DONE]
    let (head, rest) = events.split_at(1);
    let (content, tail) = rest.split_at(rest.len() - 3);
    let mut stream = head.concat();
    for event in content.iter().cycle().take(CONTENT_CHUNKS) {
        stream.push_str(event);
    }
    stream.push_str(&tail.concat());
    stream.into_bytes()
}

/// A streaming chat request whose `messages` make it about `target_bytes` long.
fn chat_body(target_bytes: usize, stream_options: serde_json::Value) -> Vec<u8> {
    let turn = "Summarise the previous answer in three bullet points, then suggest a next step. ";
    let mut messages = vec![json!({ "role": "system", "content": "You are a helpful agent." })];
    let mut size = 200;
    let mut i = 0;
    while size < target_bytes {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let content = turn.repeat(4);
        size += content.len() + 32;
        messages.push(json!({ "role": role, "content": content }));
        i += 1;
    }
    let mut body = json!({
        "model": "gpt-4o-mini",
        "temperature": 0.7,
        "stream": true,
        "messages": messages,
    });
    if !stream_options.is_null() {
        body["stream_options"] = stream_options;
    }
    body.to_string().into_bytes()
}

fn response_path(c: &mut Criterion) {
    let stream = long_stream();
    let mut group = c.benchmark_group("usage/stream_2000_chunks_in_1KiB");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("sse_usage_parser", |b| {
        b.iter(|| {
            let mut parser = SseUsageParser::new();
            for chunk in black_box(&stream).chunks(CHUNK_BYTES) {
                parser.push(chunk);
            }
            parser.finish();
            parser.usage()
        })
    });
    group.bench_function("usage_chunk_filter", |b| {
        b.iter(|| {
            let mut filter = UsageChunkFilter::new();
            let mut passed = 0;
            for chunk in black_box(&stream).chunks(CHUNK_BYTES) {
                passed += filter.filter(chunk).len();
            }
            passed + filter.finish().len()
        })
    });
    group.finish();
}

fn request_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage/inject_include_usage");
    let cases = [
        ("4KiB_spliced", chat_body(4 << 10, json!(null))),
        ("1MiB_spliced", chat_body(1 << 20, json!(null))),
        (
            "1MiB_include_usage_false_reserialized",
            chat_body(1 << 20, json!({ "include_usage": false })),
        ),
    ];
    for (name, body) in &cases {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| inject_include_usage(black_box(body))));
    }
    group.finish();
}

criterion_group!(benches, response_path, request_path);
criterion_main!(benches);
