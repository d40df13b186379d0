//! Shared test harness: a real `exoclaw` process on an ephemeral port, talked to over HTTP.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const EXOCLAW: &str = env!("CARGO_BIN_EXE_exoclaw");

/// An address on loopback that nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener
        .local_addr()
        .expect("ephemeral port has an address")
}

/// A config with one pool `openclaw` holding `nodes`; `server_extra` and `pool_extra` are
/// YAML lines added to the `server` and pool sections.
pub fn config_yaml(
    listen: SocketAddr,
    nodes: &[SocketAddr],
    server_extra: &str,
    pool_extra: &str,
) -> String {
    let nodes: String = nodes
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("      - {{ name: node-{i}, addr: \"{addr}\" }}\n"))
        .collect();
    format!(
        "server:\n  listen: \"{listen}\"\n  threads: 1\n  grace_period: 1s\n{server_extra}\
         pools:\n  openclaw:\n{pool_extra}    nodes:\n{nodes}"
    )
}

/// A running gateway; killed on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: TempDir,
    child: Child,
}

impl Gateway {
    /// Starts `exoclaw serve` with the config `make_config(listen)` and waits until it answers.
    pub async fn start(make_config: impl FnOnce(SocketAddr) -> String) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = free_addr();
        let config_path = dir.path().join("exoclaw.yaml");
        std::fs::write(&config_path, make_config(addr)).expect("write config");
        let log = std::fs::File::create(dir.path().join("exoclaw.log")).expect("log file");
        let child = Command::new(EXOCLAW)
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(dir.path())
            .env("EXOCLAW_LOG", "info")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn exoclaw");
        let gateway = Gateway { addr, dir, child };
        gateway.wait_ready().await;
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("exoclaw.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("exoclaw did not become ready; log:\n{}", self.log());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// Parses an OpenAI-shaped error body and returns `error.type`.
pub async fn error_type(response: reqwest::Response) -> String {
    let v: serde_json::Value = response.json().await.expect("error body is JSON");
    v["error"]["type"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OpenAI-shaped error: {v}"))
        .to_owned()
}

pub fn chat_body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [{ "role": "user", "content": "Hello" }],
    })
}
