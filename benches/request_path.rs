//! Micro-benchmarks of the per-request steps the proxy runs before a byte reaches a node:
//! request id handling, routing, and node selection. Run: `cargo bench --bench request_path`.

use criterion::{criterion_group, criterion_main, Criterion};
use exoclaw::config::Config;
use exoclaw::proxy::{headers, route};
use exoclaw::upstream::NodePool;

fn request_steps(c: &mut Criterion) {
    c.bench_function("request_id/keep_client_id", |b| {
        b.iter(|| headers::request_id_from(Some(std::hint::black_box(b"trace-abc_123"))))
    });
    c.bench_function("request_id/generate", |b| b.iter(headers::new_request_id));
    c.bench_function("route/classify", |b| {
        b.iter(|| route::classify(std::hint::black_box("/v1/chat/completions")))
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
