//! Abusive configs that `exoclaw check` once passed and `serve` then panicked on, ran out of
//! memory with, or refused later: each is refused by `check` (and by `serve`), naming the key.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{write_config, Setup, EXOCLAW, TOKEN_KEY};

const NODE: &str = "127.0.0.1:18789";

fn node() -> SocketAddr {
    NODE.parse().unwrap()
}

/// One pool of one node, with `node_keys` added to the node and `pool_keys` to the pool.
fn one_node(node_keys: &str, pool_keys: &str) -> Setup {
    Setup::pools(&format!(
        "pools:\n  openclaw:\n{pool_keys}    nodes:\n      - {{ name: mini, addr: \"{NODE}\"{node_keys} }}\n"
    ))
}

/// `exoclaw check` on `setup`, with no token key in the environment: (success, stderr).
fn check(setup: &Setup) -> (bool, String) {
    check_edited(setup, |yaml| yaml)
}

/// `check` on the config `setup` writes, after `edit` (for keys the harness sets itself).
fn check_edited(setup: &Setup, edit: impl Fn(String) -> String) -> (bool, String) {
    let (dir, _) = write_config(setup);
    let path = dir.path().join("exoclaw.yaml");
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    let out = Command::new(EXOCLAW)
        .args(["check", "--config", "exoclaw.yaml"])
        .current_dir(dir.path())
        .env_remove("EXOCLAW_TOKEN_KEY")
        .output()
        .expect("run exoclaw check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` fails, and its message names `key` and says `why`.
fn refused(setup: &Setup, key: &str, why: &str) {
    let (ok, stderr) = check(setup);
    assert!(!ok, "check accepted a config with a bad `{key}`");
    assert!(
        stderr.contains(key) && stderr.contains(why),
        "the refusal names `{key}` and says `{why}`: {stderr}"
    );
}

#[test]
fn weights_the_load_balancer_cannot_hold_are_refused() {
    for weight in ["4294967296", "1000000", "101"] {
        for strategy in ["consistent_hash", "round_robin"] {
            refused(
                &one_node(
                    &format!(", weight: {weight}"),
                    &format!("    strategy: {strategy}\n"),
                ),
                "pools.openclaw.nodes[0].weight",
                "at most 100",
            );
        }
    }
    let (ok, stderr) = check(&one_node(", weight: 100", ""));
    assert!(ok, "the bound itself is accepted: {stderr}");
}

#[test]
fn every_number_has_an_upper_bound_named_in_the_refusal() {
    let plain = Setup::nodes(&[node()]);
    let cases: Vec<(Setup, &str, &str)> = vec![
        (
            plain.clone().server("  max_request_body: 1GiB\n"),
            "server.max_request_body",
            "at most",
        ),
        (
            plain.clone().top(&format!(
                "auth: {{ require_key: false }}\nledger: {{ queue_capacity: {} }}\n",
                1u64 << 40
            )),
            "ledger.queue_capacity",
            "at most 4194304",
        ),
        (
            plain
                .clone()
                .top("auth: { require_key: false }\nledger: { batch_size: 100000000 }\n"),
            "ledger.batch_size",
            "at most 100000",
        ),
        (
            plain
                .clone()
                .top("auth: { require_key: false }\nledger: { flush_interval: 365d }\n"),
            "ledger.flush_interval",
            "at most 1d",
        ),
        (
            plain
                .clone()
                .top("auth: { require_key: false, failed_auth_per_minute: 4000000000 }\n"),
            "auth.failed_auth_per_minute",
            "at most 10000",
        ),
        (
            plain.clone().top(
                "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 4000000000 } }\n",
            ),
            "tiers.workshop.requests_per_minute",
            "at most 1000000000",
        ),
        (
            plain.clone().top(
                "auth: { require_key: false }\n\
                 tiers: { workshop: { requests_per_minute: 5, monthly_requests: 18446744073709551615 } }\n",
            ),
            "tiers.workshop.monthly_requests",
            "at most",
        ),
        (
            plain
                .clone()
                .top("auth: { require_key: false }\nstripe: { tolerance: 3650d }\n"),
            "stripe.tolerance",
            "at most 1h",
        ),
        (
            one_node(", max_inflight: 4000000000", ""),
            "pools.openclaw.nodes[0].max_inflight",
            "at most 10000",
        ),
        (
            one_node("", "    queue: { max_waiting: 100000000000 }\n"),
            "pools.openclaw.queue.max_waiting",
            "at most 100000",
        ),
        (
            one_node("", "    max_connect_attempts: 1000000\n"),
            "pools.openclaw.max_connect_attempts",
            "at most 16",
        ),
        (
            one_node("", "    health_check: { failures: 4000000000 }\n"),
            "pools.openclaw.health_check.failures",
            "at most 100",
        ),
        (
            one_node("", "    health_check: { successes: 1000 }\n"),
            "pools.openclaw.health_check.successes",
            "at most 100",
        ),
        (
            one_node("", "    read_timeout: 36500d\n"),
            "pools.openclaw.read_timeout",
            "at most 1h",
        ),
        (
            one_node("", "    health_check: { interval: 3650d }\n"),
            "pools.openclaw.health_check.interval",
            "at most 1d",
        ),
        (
            plain
                .clone()
                .top("auth: { require_key: false }\nruns: { workers: 1000000 }\n"),
            "runs.workers",
            "at most 1000",
        ),
        (
            plain.clone().top(
                "auth: { require_key: false }\n\
                 tiers: { workshop: { requests_per_minute: 5, max_tenants: 100000000000 } }\n",
            ),
            "tiers.workshop.max_tenants",
            "at most 10000000000",
        ),
        (
            plain.clone().top(
                "auth: { require_key: false }\n\
                 templates: { t: { name: T, agent: main, instructions: hi, max_attempts: 1000 } }\n",
            ),
            "templates.t.max_attempts",
            "at most 20",
        ),
        (
            plain.clone().top(
                "auth: { require_key: false }\n\
                 templates: { t: { name: T, agent: main, instructions: hi, timeout: 3650d } }\n",
            ),
            "templates.t.timeout",
            "at most 1d",
        ),
        (
            plain
                .clone()
                .top("auth: { require_key: false }\nartifacts: { retention: 36500d }\n"),
            "artifacts.retention",
            "at most",
        ),
    ];
    for (setup, key, why) in &cases {
        refused(setup, key, why);
    }
    // The harness sets these two itself.
    for (from, to, key, why) in [
        (
            "threads: 1\n",
            "threads: 1000000000\n",
            "server.threads",
            "at most 256",
        ),
        (
            "grace_period: 1s",
            "grace_period: 36500d",
            "server.grace_period",
            "at most 1h",
        ),
    ] {
        let (ok, stderr) = check_edited(&plain, |yaml| yaml.replace(from, to));
        assert!(
            !ok && stderr.contains(key) && stderr.contains(why),
            "{key}: {stderr}"
        );
    }
}

#[test]
fn a_pool_has_at_most_a_hundred_nodes() {
    let nodes: String = (0..101)
        .map(|i| {
            format!(
                "      - {{ name: n{i}, addr: \"127.0.0.1:{}\" }}\n",
                20_000 + i
            )
        })
        .collect();
    let setup = Setup::pools(&format!("pools:\n  openclaw:\n    nodes:\n{nodes}"));
    refused(&setup, "pools.openclaw.nodes", "at most 100");
}

#[test]
fn the_ledger_queue_bound_is_the_one_serve_enforces() {
    let at = |capacity: usize| {
        Setup::nodes(&[node()]).top(&format!(
            "auth: {{ require_key: false }}\nledger: {{ queue_capacity: {capacity} }}\n"
        ))
    };
    // Just past the bound the ledger writer allocates against: `serve` used to refuse this
    // while `check` passed it.
    refused(&at(4_194_305), "ledger.queue_capacity", "at most 4194304");
    let (ok, stderr) = check(&at(4_194_304));
    assert!(ok, "{stderr}");
}

#[test]
fn control_characters_in_names_and_paths_are_refused() {
    let cases = [
        (
            one_node("", "    health_check: { path: \"/healthz\\r\\nX-Evil: 1\" }\n"),
            "pools.openclaw.health_check.path",
        ),
        (
            one_node("", "    health_check: { path: \"/health check\" }\n"),
            "pools.openclaw.health_check.path",
        ),
        (
            Setup::pools(&format!(
                "pools:\n  openclaw:\n    nodes:\n      - {{ name: \"mini\\r\\nforged log line\", addr: \"{NODE}\" }}\n"
            )),
            "pools.openclaw.nodes[0].name",
        ),
        (
            Setup::pools(&format!(
                "pools:\n  openclaw:\n    nodes:\n      - {{ name: \"mini\\0\", addr: \"{NODE}\" }}\n"
            )),
            "pools.openclaw.nodes[0].name",
        ),
        (
            one_node(", tls: true, sni: \"mini\\r\\nHost: evil\"", ""),
            "pools.openclaw.nodes[0].sni",
        ),
        (
            Setup::pools(&format!(
                "pools:\n  \"open\\nclaw\":\n    nodes:\n      - {{ name: mini, addr: \"{NODE}\" }}\n"
            )),
            "claw",
        ),
        (
            Setup::nodes(&[node()]).top(
                "auth: { require_key: false }\ntiers: { \"gold\\u001b[31m\": { requests_per_minute: 5 } }\n\
                 default_tier: \"gold\\u001b[31m\"\n",
            ),
            "tiers.gold",
        ),
        (
            Setup::pools(&format!(
                "pools:\n  openclaw:\n    nodes:\n      - {{ name: mini, addr: \"{NODE}\" }}\n\
                 routes: [ {{ path_prefix: \"/v1\\r\\n\", pool: openclaw }} ]\n"
            )),
            "routes[0].path_prefix",
        ),
        (
            Setup::nodes(&[node()]).top(
                "auth: { require_key: false }\nstripe: { upgrade_url: \"https://x.test/\\nup\" }\n",
            ),
            "stripe.upgrade_url",
        ),
    ];
    for (setup, key) in &cases {
        refused(setup, key, "");
    }
}

#[test]
fn codex_mode_needs_a_readable_token_key() {
    let codex =
        |auth: &str| Setup::nodes(&[node()]).top(&format!("auth: {{ mode: codex{auth} }}\n"));
    refused(
        &codex(", token_key_file: ./missing.key"),
        "auth.token_key_file",
        "missing.key",
    );
    refused(&codex(""), "auth.token_key_env", "EXOCLAW_TOKEN_KEY");

    let (dir, _) = write_config(&codex(", token_key_file: ./token.key"));
    std::fs::write(dir.path().join("token.key"), TOKEN_KEY).unwrap();
    let out = Command::new(EXOCLAW)
        .args(["check", "--config", "exoclaw.yaml"])
        .current_dir(dir.path())
        .env_remove("EXOCLAW_TOKEN_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a readable key file is enough: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Byok mode needs no key, but one that is named must be usable (as `serve` requires).
    let (ok, stderr) = check(&Setup::nodes(&[node()]));
    assert!(ok, "{stderr}");
}

/// `serve` refuses what `check` refuses, at once, rather than panicking or allocating gigabytes.
#[test]
fn serve_refuses_the_same_configs_before_starting() {
    for (setup, key) in [
        (
            one_node(", weight: 4294967296", ""),
            "pools.openclaw.nodes[0].weight",
        ),
        (
            Setup::nodes(&[node()]).top(&format!(
                "auth: {{ require_key: false }}\nledger: {{ queue_capacity: {} }}\n",
                1u64 << 40
            )),
            "ledger.queue_capacity",
        ),
        (
            Setup::nodes(&[node()]).top("auth: { mode: codex }\n"),
            "auth.token_key_env",
        ),
    ] {
        let (dir, _) = write_config(&setup);
        let mut child = Command::new(EXOCLAW)
            .args(["serve", "--config", "exoclaw.yaml"])
            .current_dir(dir.path())
            .env_remove("EXOCLAW_TOKEN_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn exoclaw serve");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve kept running with a bad `{key}`");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: {stderr}");
        assert!(stderr.contains(key), "serve names `{key}`: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
