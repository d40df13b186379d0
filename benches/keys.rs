//! Micro-benchmarks of gateway key verification, the first thing the proxy does for a keyed
//! request: hashing the presented key, looking it up in the in-memory `KeyIndex`, and the whole
//! `authenticate` step from request headers to an `Identity`.
//! Run: `cargo bench --bench keys -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use criterion::{criterion_group, criterion_main, Criterion};
use exoclaw::auth::keys::{self, KeyIndex, KeyRecord};
use exoclaw::auth::{self, authenticate};
use exoclaw::config::Config;
use pingora::http::RequestHeader;

/// Active keys in the index: a large deployment's worth, so the lookup is not a toy map.
const KEYS: usize = 10_000;

fn record(n: usize) -> KeyRecord {
    KeyRecord {
        id: format!("key_{n:012x}"),
        user: format!("trainee-{n}"),
        tier: None,
        last_used_ms: AtomicU64::new(0),
    }
}

/// An index of `KEYS` minted keys, and the secrets of those keys.
fn index() -> (KeyIndex, Vec<String>) {
    let minted: Vec<keys::MintedKey> = (0..KEYS).map(|_| keys::mint()).collect();
    let index = KeyIndex::build(
        minted
            .iter()
            .enumerate()
            .map(|(n, m)| (keys::hash(&m.secret), record(n))),
        None,
    );
    (index, minted.into_iter().map(|m| m.secret).collect())
}

fn verification(c: &mut Criterion) {
    let (index, secrets) = index();
    let known = &secrets[KEYS / 2];
    let unknown = keys::mint().secret;

    c.bench_function("keys/hash_sha256", |b| {
        b.iter(|| keys::hash(black_box(known)))
    });
    c.bench_function("keys/verify_known_key_of_10k", |b| {
        b.iter(|| index.verify(black_box(known)).is_some())
    });
    c.bench_function("keys/verify_unknown_key", |b| {
        b.iter(|| index.verify(black_box(&unknown)).is_some())
    });
    c.bench_function("keys/verify_provider_key_rejected_unhashed", |b| {
        b.iter(|| {
            index
                .verify(black_box("sk-proj-not-a-gateway-key"))
                .is_some()
        })
    });

    // The request path's step: headers → key → user, as the proxy calls it (BYOK, key required).
    let config = Config::from_yaml(
        "server: { listen: \"127.0.0.1:8787\" }
pools: { openclaw: { nodes: [ { name: a, addr: \"127.0.0.1:20000\" } ] } }
",
    )
    .expect("valid bench config");
    let mut req =
        RequestHeader::build("POST", b"/v1/chat/completions", None).expect("request header");
    req.insert_header("x-gateway-key", known.as_str())
        .expect("gateway key header");
    req.insert_header("authorization", "Bearer sk-proj-provider-key-0123456789")
        .expect("authorization header");
    c.bench_function("auth/authenticate_x_gateway_key", |b| {
        b.iter(|| authenticate(black_box(&req), &config.auth, &index).map(|id| id.key.is_some()))
    });
    c.bench_function("auth/node_credential_byok", |b| {
        let identity = authenticate(&req, &config.auth, &index).expect("known key");
        let codex = auth::codex::CodexIndex::default();
        b.iter(|| auth::node_credential(black_box(&req), config.auth.mode, &identity, &codex))
    });
}

criterion_group!(benches, verification);
criterion_main!(benches);
