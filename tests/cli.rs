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
        .filter(|l| l.trim_start().starts_with("curl ") && l.contains("/v1/chat/completions"))
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

    // The agent run's line, as printed; then its status and output with the printed key.
    let run_line = banner
        .iter()
        .find(|l| l.trim_start().starts_with("curl ") && l.contains("/api/runs"))
        .unwrap_or_else(|| panic!("an agent-run line: {banner:?}"));
    let accepted = run(run_line);
    let accepted: serde_json::Value = serde_json::from_slice(&accepted.stdout)
        .unwrap_or_else(|e| panic!("the run's answer is JSON ({e}): {accepted:?}"));
    assert_eq!(accepted["status"], "queued", "{accepted}");
    let key = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("Gateway key"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let url = format!("http://{listen}");
    let id = accepted["id"].as_str().unwrap();
    let get = |path: &str| run(&format!("curl -s {url}{path} -H 'X-Gateway-Key: {key}'")).stdout;
    let mut status = serde_json::Value::Null;
    while Instant::now() < deadline + Duration::from_secs(10) {
        status = serde_json::from_slice(&get(&format!("/api/runs/{id}"))).unwrap();
        if status["status"] == "succeeded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status["status"], "succeeded", "{status}");
    let output = String::from_utf8(get(&format!("/api/runs/{id}/artifacts/output.md"))).unwrap();
    assert!(output.contains("ExoClaw queues agent runs."), "{output}");
    // The printed dashboard address answers with its sign-in page.
    let dashboard = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("Dashboard"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("a dashboard line: {banner:?}"))
        .to_owned();
    let page = String::from_utf8(run(&format!("curl -s {dashboard}")).stdout).unwrap();
    assert!(page.contains("<h1>Sign in</h1>"), "{page}");
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

#[test]
fn check_warns_when_stripe_is_mapped_but_its_secret_is_unset() {
    let text = "server: { listen: \"127.0.0.1:8787\" }\n\
                pools: { openclaw: { nodes: [ { name: a, addr: \"127.0.0.1:1\" } ] } }\n\
                tiers: { workshop: { requests_per_minute: 50 }, tier1: { requests_per_minute: 60 } }\n\
                stripe: { webhook_secret_env: EXOCLAW_TEST_UNSET_STRIPE, price_tiers: { price_1: tier1 } }\n";
    let out = check(text);
    assert!(out.status.success(), "a warning is not an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: stripe: EXOCLAW_TEST_UNSET_STRIPE is not set"),
        "{stderr}"
    );
}

/// A demo whose banner has been read; killed on drop.
struct Demo {
    child: std::process::Child,
    banner: Vec<String>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(EXOCLAW)
            .arg("demo")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut banner = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
        Demo { child, banner }
    }

    /// The value printed after `label` on its banner line.
    fn value(&self, label: &str) -> String {
        self.banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no {label} in {:#?}", self.banner))
    }

    /// Stops it with Ctrl-C (SIGINT) and returns what it wrote to stderr.
    fn interrupt(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let _ = self.child.wait();
        let mut stderr = String::new();
        use std::io::Read;
        let _ = self
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr);
        stderr
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo's operator side works as printed: its config passes `check` and `usage` reads its
/// database, port 0 becomes a real port, and its folder is gone after Ctrl-C.
#[test]
fn the_demo_prints_a_working_operator_side_and_cleans_up() {
    let demo = Demo::start(&["--listen", "127.0.0.1:0"]);
    let url = demo.value("OPENCLAW_GATEWAY_URL=");
    assert!(!url.ends_with(":0"), "{url}");
    let config = demo.value("Config");
    let dir = std::path::Path::new(&config).parent().unwrap().to_owned();
    let run = |args: &[&str]| {
        Command::new(EXOCLAW)
            .args(args)
            .args(["--config", &config])
            .output()
            .unwrap()
    };
    let check = run(&["check"]);
    assert!(check.status.success(), "{check:?}");
    let keys = run(&["keys", "list"]);
    assert!(String::from_utf8_lossy(&keys.stdout).contains("demo-user"));
    let usage = run(&["usage", "--since", "5m"]);
    assert!(usage.status.success(), "{usage:?}");

    // The admin API answers with the printed token; a wrong admin path says what exists.
    let admin_line = demo
        .banner
        .iter()
        .find(|l| l.contains("/admin/usage"))
        .unwrap()
        .clone();
    let usage = Command::new("sh")
        .args(["-c", &admin_line])
        .output()
        .unwrap();
    let usage: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    assert!(usage.is_object() || usage.is_array(), "{usage}");
    assert!(dir.exists());
    let stderr = demo.interrupt();
    assert!(
        !dir.exists(),
        "the demo's folder is removed on exit: {stderr}"
    );
    assert!(
        !stderr.contains("BG writer") && !stderr.contains("INFO pingora"),
        "Pingora's start-up lines stay off a person's screen: {stderr}"
    );
}

#[test]
fn a_taken_port_names_the_listen_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(EXOCLAW)
        .args(["demo", "--listen", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listen"), "{stderr}");
}

#[tokio::test]
async fn an_unknown_admin_path_says_what_the_admin_listener_serves() {
    let gw = common::Gateway::start(common::Setup::nodes(&[free_addr()])).await;
    let r = client()
        .get(gw.admin_url("/admin/nope"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let message = common::error_field(r, "message").await;
    assert!(message.contains("/admin/keys"), "{message}");
    assert!(!message.contains("/v1/*"), "{message}");
}

/// `usage --watch` into a pipe (a log file, `tee`) writes plain tables, no screen-clearing codes.
#[tokio::test]
async fn usage_watch_into_a_pipe_writes_no_terminal_codes() {
    let gw = common::Gateway::start(common::Setup::nodes(&[free_addr()])).await;
    let mut watch = Command::new(EXOCLAW)
        .args(["usage", "--watch", "--since", "5m", "--config"])
        .arg(gw.config_path())
        .current_dir(gw.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage over the last 5m"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}
