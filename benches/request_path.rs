//! Micro-benchmarks of the per-request steps the proxy runs before a byte reaches a node:
//! request id handling, path normalisation and routing, the node boundary (the session key, the
//! body's `user` field, the head the node receives), and node selection.
//! Run: `cargo bench --bench request_path`.

use criterion::{criterion_group, criterion_main, Criterion};
use exoclaw::auth::NodeCredential;
use exoclaw::config::Config;
use exoclaw::headers;
use exoclaw::proxy::{node_headers, path, route, session};
use exoclaw::upstream::NodePool;

fn request_steps(c: &mut Criterion) {
    c.bench_function("request_id/keep_client_id", |b| {
        b.iter(|| headers::request_id_from(Some(std::hint::black_box(b"trace-abc_123"))))
    });
    c.bench_function("request_id/generate", |b| b.iter(headers::new_request_id));
    c.bench_function("route/classify", |b| {
        b.iter(|| route::classify(std::hint::black_box("/v1/chat/completions")))
    });

    c.bench_function("path/normalize_plain", |b| {
        b.iter(|| path::normalize(std::hint::black_box("/v1/chat/completions")))
    });
    c.bench_function("session/key", |b| {
        b.iter(|| session::session_key(std::hint::black_box("trainee-ana"), None))
    });
    let body = serde_json::json!({
        "model": "gpt-4o",
        "stream": true,
        "messages": [{ "role": "user", "content": "Plan my week ".repeat(40) }],
    })
    .to_string();
    c.bench_function("session/user_field_absent_1k_body", |b| {
        b.iter(|| session::user_field(std::hint::black_box(body.as_bytes())))
    });
    let with_user = body.replacen('{', "{\"user\":\"work\",", 1);
    c.bench_function("session/rewrite_user_1k_body", |b| {
        let change = session::BodyUser::Replace("exoclaw:ana/work:0123".to_owned());
        b.iter(|| session::rewrite_user(std::hint::black_box(with_user.as_bytes()), &change))
    });
    let mut client_head =
        pingora::http::RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    for (name, value) in [
        ("host", "gateway.example"),
        ("content-type", "application/json"),
        (
            "authorization",
            "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        (
            "x-gateway-key",
            "exo_0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        ("user-agent", "OpenAI/Python 1.99.0"),
        ("x-stainless-lang", "python"),
        ("accept", "application/json"),
    ] {
        client_head.append_header(name, value).unwrap();
    }
    let credential = NodeCredential::ProviderKey(http::HeaderValue::from_static(
        "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    ));
    c.bench_function("node_headers/prepare_7_client_headers", |b| {
        b.iter(|| {
            let mut head = client_head.clone();
            node_headers::prepare(
                &mut head,
                &node_headers::NodeHead {
                    user: "trainee-ana",
                    request_id: "req_0123",
                    client_ip: "192.0.2.7".parse().unwrap(),
                    credential: Some(&credential),
                    node_token: Some("node-token"),
                    byok_header: Some("x-provider-authorization"),
                    allowed_openclaw: &[],
                    session_key: Some("exoclaw:trainee-ana:0123"),
                },
            )
        })
    });

    let config = Config::from_yaml(
        "server: { listen: \"127.0.0.1:8787\" }
pools:
  openclaw:
    nodes:
      - { name: a, addr: \"127.0.0.1:20000\", weight: 1 }
      - { name: b, addr: \"127.0.0.1:20001\", weight: 2 }
      - { name: c, addr: \"127.0.0.1:20002\", weight: 3 }
      - { name: d, addr: \"127.0.0.1:20003\", weight: 4 }
",
    )
    .expect("valid bench config");
    let pool = NodePool::new(config.pools["openclaw"].clone(), None);
    c.bench_function("upstream/pick_consistent_hash_of_4", |b| {
        b.iter(|| pool.pick(std::hint::black_box(b"trainee-ana"), &[]))
    });
}

criterion_group!(benches, request_steps);
criterion_main!(benches);
