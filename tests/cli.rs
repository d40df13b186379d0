//! The command line as an operator and a newcomer use it: `check`, `demo` and `mock-node`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{chat_body, client, free_addr, EXOCLAW};

fn check(config_text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exoclaw.yaml");
    std::fs::write(&path, config_text).unwrap();
    Command::new(EXOCLAW)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_rejects_an_unknown_key_by_name() {
    let text = "server: { listen: \"127.0.0.1:8787\", listn: \"x\" }\n\
                pools: { openclaw: { nodes: [ { name: a, addr: \"127.0.0.1:1\" } ] } }\n";
    let out = check(text);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.listn"),
        "the full path of the key is named: {stderr}"
    );
}

#[test]
fn check_names_a_bad_duration_and_a_bad_address() {
    let text = "server: { listen: \"127.0.0.1:8787\" }\n\
                pools: { openclaw: { read_timeout: soon, nodes: [ { name: a, addr: \"127.0.0.1:1\" } ] } }\n";
    let out = check(text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad duration fails the check");
    assert!(stderr.contains("pools.openclaw.read_timeout"), "{stderr}");
    let text = "server: { listen: \"everywhere\" }\n\
                pools: { openclaw: { nodes: [ { name: a, addr: \"127.0.0.1:1\" } ] } }\n";
    let out = check(text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad address fails the check");
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[test]
fn the_shipped_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/exoclaw.yaml");
    let out = Command::new(EXOCLAW)
        .args(["check", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `exoclaw demo`, then runs the curl lines of its banner exactly as printed.
#[test]
fn demo_curl_lines_work_as_printed() {
    let listen = free_addr();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(EXOCLAW)
        .args(["demo", "--listen", &listen.to_string()])
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut banner = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let curls: Vec<&String> = banner
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert_eq!(curls.len(), 2, "a completion and a stream: {banner:?}");

    let deadline = Instant::now() + Duration::from_secs(15);
    let run = |line: &str| Command::new("sh").args(["-c", line]).output().unwrap();
    let mut completion = run(curls[0]);
    while !completion.status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        completion = run(curls[0]);
    }
    let stream = run(curls[1]);
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(log.path()).unwrap_or_default();
    let completion: serde_json::Value = serde_json::from_slice(&completion.stdout)
        .unwrap_or_else(|e| panic!("completion is JSON ({e}): {completion:?}\n{log}"));
    assert!(completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Hello"));
    assert!(completion["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let stream = String::from_utf8(stream.stdout).unwrap();
    assert!(stream.matches("data: {").count() > 3, "{stream}");
    assert!(stream.ends_with("data: [DONE]\n\n"), "{stream}");
}

/// `exoclaw mock-node` on port 0 names its address, answers a chat completion and a stream like
/// an OpenClaw node, and stops cleanly on SIGTERM.
#[tokio::test]
async fn mock_node_answers_chat_completions_and_stops_on_sigterm() {
    let mut child = Command::new(EXOCLAW)
        .args(["mock-node", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first_line = String::new();
    BufReader::new(stdout).read_line(&mut first_line).unwrap();
    let addr = first_line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the first line names the address: {first_line:?}"))
        .to_owned();

    let url = format!("http://{addr}/v1/chat/completions");
    let response = client()
        .post(&url)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let completion: serde_json::Value = response.json().await.unwrap();
    assert!(completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Hello"));
    assert!(completion["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let response = client()
        .post(&url)
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let stream = response.text().await.unwrap();
    assert!(stream.matches("data: {").count() > 3, "{stream}");
    assert!(stream.ends_with("data: [DONE]\n\n"), "{stream}");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "mock-node did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// `exoclaw mock-node --token-env VAR` refuses to start when VAR is unset, naming it; with VAR set
/// it wants that token on the API but not on the probes, and never prints it.
#[tokio::test]
async fn mock_node_takes_its_token_from_the_named_environment_variable() {
    let unset = Command::new(EXOCLAW)
        .args(["mock-node", "--listen", "127.0.0.1:0"])
        .args(["--token-env", "EXOCLAW_TEST_MOCK_TOKEN"])
        .env_remove("EXOCLAW_TEST_MOCK_TOKEN")
        .output()
        .unwrap();
    assert!(!unset.status.success());
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert!(
        stderr.contains("EXOCLAW_TEST_MOCK_TOKEN") && stderr.contains("not set"),
        "{stderr}"
    );

    let token = "mock-secret-token-77";
    let mut child = Command::new(EXOCLAW)
        .args(["mock-node", "--listen", "127.0.0.1:0"])
        .args(["--token-env", "EXOCLAW_TEST_MOCK_TOKEN"])
        .env("EXOCLAW_TEST_MOCK_TOKEN", token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert!(!first_line.contains(token), "{first_line}");
    let addr = first_line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the first line names the address: {first_line:?}"))
        .to_owned();

    let bare = common::bare_client();
    let models = format!("http://{addr}/v1/models");
    let without = bare.get(&models).send().await.unwrap().status();
    let with = bare
        .get(&models)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status();
    let probe = bare
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        (without.as_u16(), with.as_u16(), probe.as_u16()),
        (401, 200, 200)
    );
}
