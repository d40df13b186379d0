//! Micro-benchmarks of the per-request steps the proxy runs before a byte reaches a node:
//! request id handling, routing, and node selection. Run: `cargo bench --bench request_path`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use exoclaw::config::{Node, Pool, Timeouts};
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

    let t = Duration::from_secs(1);
    let pool = NodePool::new(Pool {
        name: "openclaw".into(),
        nodes: (0..4)
            .map(|i| Node {
                name: format!("node-{i}"),
                addr: format!("127.0.0.1:{}", 20000 + i).parse().unwrap(),
                weight: 1 + i,
            })
            .collect(),
        timeouts: Timeouts {
            connect: t,
            read: t,
            write: t,
        },
    });
    c.bench_function("upstream/pick_of_4_weighted", |b| {
        b.iter(|| pool.pick(std::hint::black_box(b"trainee-ana"), &[]))
    });
}

criterion_group!(benches, request_steps);
criterion_main!(benches);
