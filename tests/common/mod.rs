//! Shared test harness: a real `exoclaw` process on ephemeral ports, talked to over HTTP.
#![allow(dead_code)]

pub mod browser;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

pub const EXOCLAW: &str = env!("CARGO_BIN_EXE_exoclaw");
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const TOKEN_KEY: &str = "8f2a55c1d07e4b1a9c3e6f0b2d4a6c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8";
/// The provider key the test client sends by default (BYOK).
pub const PROVIDER_KEY: &str = "sk-test-provider-key-123";
/// The `Authorization` value the test client sends by default.
pub const PROVIDER_KEY_HEADER: &str = "Bearer sk-test-provider-key-123";
/// The Stripe endpoint secret the test gateways are started with.
pub const STRIPE_SECRET: &str = "whsec_test_secret";

/// An address on loopback that nothing listens on right now.
///
/// The port comes from below Linux's ephemeral range (32768 and up): a port the kernel handed
/// out and took back could be handed to another test's outgoing connection before this test's
/// gateway binds it, and that race failed whole runs when many tests ran in parallel.
pub fn free_addr() -> SocketAddr {
    for _ in 0..1000 {
        let port = 10_000 + rand::random::<u16>() % 22_000;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("bound port has an address");
        }
    }
    panic!("no free port between 10000 and 32000 on loopback");
}

/// What a test gateway is configured with. By default: one pool `openclaw` with `nodes`, and
/// the trusting `X-User-ID` mode (`auth: { require_key: false }`).
#[derive(Clone)]
pub struct Setup {
    pub nodes: Vec<SocketAddr>,
    /// Top-level YAML (auth, tiers, …), replacing the default auth line.
    pub top: String,
    pub server_extra: String,
    pub pool_extra: String,
    /// A whole `pools:` (and `routes:`) section, replacing the single `openclaw` pool.
    pub pools_yaml: Option<String>,
    pub manual_clock: bool,
    /// Extra environment variables for the gateway process (node tokens, the clock's start).
    pub env: Vec<(String, String)>,
}

impl Setup {
    pub fn nodes(nodes: &[SocketAddr]) -> Setup {
        Setup {
            nodes: nodes.to_vec(),
            top: "auth: { require_key: false }\n".to_owned(),
            server_extra: String::new(),
            pool_extra: String::new(),
            pools_yaml: None,
            manual_clock: false,
            env: Vec::new(),
        }
    }

    /// Several pools (and routes), written out in full.
    pub fn pools(yaml: &str) -> Setup {
        Setup {
            pools_yaml: Some(yaml.to_owned()),
            ..Setup::nodes(&[])
        }
    }

    pub fn top(mut self, yaml: &str) -> Setup {
        self.top = yaml.to_owned();
        self
    }

    pub fn server(mut self, yaml: &str) -> Setup {
        self.server_extra = yaml.to_owned();
        self
    }

    pub fn pool(mut self, yaml: &str) -> Setup {
        self.pool_extra = yaml.to_owned();
        self
    }

    pub fn manual_clock(mut self) -> Setup {
        self.manual_clock = true;
        self
    }

    /// A manual clock that starts at `ms` (Unix ms) rather than now: quotas load the month of
    /// the start time, so a test of a given month must start in it.
    pub fn clock_starting_at(mut self, ms: u64) -> Setup {
        self.manual_clock = true;
        self.env(MANUAL_CLOCK_START_ENV, &ms.to_string())
    }

    pub fn env(mut self, name: &str, value: &str) -> Setup {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn yaml(&self, listen: SocketAddr, admin: SocketAddr, sidecar: SocketAddr) -> String {
        let nodes: String = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("      - {{ name: node-{i}, addr: \"{addr}\" }}\n"))
            .collect();
        let pools = match &self.pools_yaml {
            Some(yaml) => yaml.clone(),
            None => format!(
                "pools:\n  openclaw:\n{}    nodes:\n{nodes}",
                self.pool_extra
            ),
        };
        format!(
            "{top}server:\n  listen: \"{listen}\"\n  admin_listen: \"{admin}\"\n  \
             sidecar_listen: \"{sidecar}\"\n  threads: 1\n  grace_period: 1s\n{server}{pools}",
            top = self.top,
            server = self.server_extra,
        )
    }
}

/// Writes a config for `setup` into a fresh directory; returns it with the public address.
pub fn write_config(setup: &Setup) -> (TempDir, SocketAddr) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin, sidecar) = (free_addr(), free_addr(), free_addr());
    std::fs::write(
        dir.path().join("exoclaw.yaml"),
        setup.yaml(addr, admin, sidecar),
    )
    .expect("write config");
    (dir, addr)
}

/// Runs `exoclaw <args> --config exoclaw.yaml` in `dir` to completion (e.g. `serve --daemon`,
/// which returns once the daemon has forked). Output goes to `exoclaw.log` there: a daemon keeps
/// its stdout and stderr, so pipes would never close.
pub fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::ExitStatus {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("exoclaw.log"))
        .expect("log file");
    Command::new(EXOCLAW)
        .args(args)
        .args(["--config", "exoclaw.yaml"])
        .current_dir(dir)
        .env("EXOCLAW_LOG", "info")
        .env("EXOCLAW_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("EXOCLAW_TOKEN_KEY", TOKEN_KEY)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .status()
        .expect("run exoclaw")
}

/// A running gateway; killed on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
    launch: Launch,
    child: Child,
}

/// How the gateway process is started (kept for restarts and upgrades).
#[derive(Clone)]
struct Launch {
    manual_clock: bool,
    env: Vec<(String, String)>,
}

/// Where a test's manual clock starts (read by `exoclaw serve --manual-clock`).
pub const MANUAL_CLOCK_START_ENV: &str = "EXOCLAW_MANUAL_CLOCK_START_MS";

impl Gateway {
    /// Starts `exoclaw serve` and waits until it answers.
    pub async fn start(setup: Setup) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, admin, sidecar) = (free_addr(), free_addr(), free_addr());
        let config_path = dir.path().join("exoclaw.yaml");
        std::fs::write(&config_path, setup.yaml(addr, admin, sidecar)).expect("write config");
        let launch = Launch {
            manual_clock: setup.manual_clock,
            env: setup.env.clone(),
        };
        let child = spawn(dir.path(), &launch);
        let gateway = Gateway {
            addr,
            admin,
            dir,
            launch,
            child,
        };
        gateway.wait_ready().await;
        gateway
    }

    /// Stops the gateway gracefully and starts it again on the same config and database.
    pub async fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "graceful exit: {status:?}");
        self.child = spawn(self.dir.path(), &self.launch);
        self.wait_ready().await;
    }

    /// Kills the gateway with SIGKILL (no flush, no graceful stop: a crash) and starts it again
    /// on the same config and database.
    pub async fn kill_and_restart(&mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("the killed gateway is reaped");
        self.child = spawn(self.dir.path(), &self.launch);
        self.wait_ready().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("exoclaw.yaml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/exoclaw.db")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exoclaw.log")).unwrap_or_default()
    }

    /// Waits (up to 5 s) for a log line containing `needle`; returns it. Log lines go through
    /// one queue in order, so once a line is there, every line logged before it is there too.
    pub async fn wait_for_log_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `exoclaw <args> --config <this gateway's config>` in its directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(EXOCLAW)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .output()
            .expect("run exoclaw")
    }

    /// Creates a key through the admin API; returns (id, key).
    pub async fn create_key(&self, user: &str, tier: Option<&str>) -> (String, String) {
        let response = client()
            .post(self.admin_url("/admin/keys"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "user": user, "tier": tier }))
            .send()
            .await
            .expect("admin API answers");
        assert_eq!(response.status(), 201, "key creation");
        let v: serde_json::Value = response.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    }

    /// `GET /admin/nodes`: every node's health, errors and last error.
    pub async fn admin_nodes(&self) -> serde_json::Value {
        client()
            .get(self.admin_url("/admin/nodes"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin API answers")
            .json()
            .await
            .expect("admin API answers JSON")
    }

    /// Moves the gateway's manual clock forward.
    pub async fn advance_clock(&self, ms: u64) {
        self.change_clock(serde_json::json!({ "advance_ms": ms }))
            .await;
    }

    /// Sets the gateway's manual clock (Unix ms).
    pub async fn set_clock(&self, ms: u64) {
        self.change_clock(serde_json::json!({ "set_ms": ms })).await;
    }

    async fn change_clock(&self, body: serde_json::Value) {
        let response = client()
            .post(self.admin_url("/admin/clock"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "the gateway runs with --manual-clock"
        );
    }

    /// Replaces the running process the way an operator upgrades: a new `exoclaw serve
    /// --upgrade` waits for the sockets, SIGQUIT makes the old one hand them over and drain.
    /// Returns the old process's exit status.
    pub fn upgrade(&mut self) -> std::process::ExitStatus {
        let old = self.start_upgrade();
        self.wait_for_exit(old)
    }

    /// Starts a new process with `--upgrade` and sends SIGQUIT to the running one, which hands
    /// its sockets over and drains; returns the old process (see `wait_for_exit`).
    pub fn start_upgrade(&mut self) -> Child {
        let new = spawn_with(self.dir.path(), &self.launch, &["--upgrade"]);
        std::thread::sleep(Duration::from_millis(500));
        self.signal("-QUIT");
        std::mem::replace(&mut self.child, new)
    }

    /// Waits (up to 30 s) for a process this gateway replaced to exit.
    pub fn wait_for_exit(&self, mut old: Child) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = old.try_wait().expect("wait for the old exoclaw") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the old process did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`-HUP`, `-TERM`, …) to the gateway process.
    pub fn signal(&self, which: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([which, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "{which} delivered");
    }

    /// Sends SIGTERM (a graceful stop) and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "SIGTERM delivered");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for exoclaw") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "exoclaw did not stop; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens the gateway's database for reading.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db_path()).expect("open the ledger");
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    /// Waits until the `requests` table holds `n` rows (the writer batches every 200 ms).
    pub async fn wait_for_rows(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let count: i64 = self
                .db()
                .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
                .unwrap();
            if count >= n {
                assert_eq!(count, n, "exactly one row per request");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {count} of {n} rows written"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until both the public listener and the admin listener answer: Pingora starts its
    /// services one after the other, so the first answering says nothing of the second.
    async fn wait_ready(&self) {
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let answers = |url: String| {
                let client = client.clone();
                async move {
                    client
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            };
            if answers(self.url("/health")).await && answers(self.admin_url("/metrics")).await {
                return;
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

fn spawn(dir: &std::path::Path, launch: &Launch) -> Child {
    spawn_with(dir, launch, &[])
}

fn spawn_with(dir: &std::path::Path, launch: &Launch, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("exoclaw.log"))
        .expect("log file");
    let mut command = Command::new(EXOCLAW);
    command
        .args(["serve", "--config"])
        .arg(dir.join("exoclaw.yaml"))
        .current_dir(dir)
        .env("EXOCLAW_LOG", "info")
        .env("EXOCLAW_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("EXOCLAW_TOKEN_KEY", TOKEN_KEY)
        .env("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    if launch.manual_clock {
        command.arg("--manual-clock");
    }
    command.args(extra);
    command.spawn().expect("spawn exoclaw")
}

/// An HTTP client that sends the test provider key unless a request sets its own.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {PROVIDER_KEY}").parse().unwrap(),
    );
    exoclaw::http_client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// A client that sends no Authorization header at all.
pub fn bare_client() -> reqwest::Client {
    exoclaw::http_client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// Parses an OpenAI-shaped error body and returns `error.type`.
pub async fn error_type(response: reqwest::Response) -> String {
    error_field(response, "type").await
}

/// Parses an OpenAI-shaped error body and returns `error.<field>`.
pub async fn error_field(response: reqwest::Response, field: &str) -> String {
    let v: serde_json::Value = response.json().await.expect("error body is JSON");
    v["error"][field]
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

/// Runs the official OpenAI Python SDK script (`tests/sdk/responses_stream.py`) against
/// `base_url` with `api_key` and extra headers (a JSON object); returns its output. Fails the
/// test, naming the install command, when python3 or its `openai` package is missing.
pub async fn run_python_sdk(
    base_url: String,
    api_key: &str,
    extra_headers_json: String,
) -> std::process::Output {
    let has_sdk = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        has_sdk,
        "this test needs python3 with the openai package: `python3 -m pip install openai` \
         (or run .ci/run, which installs it)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/responses_stream.py");
    let api_key = api_key.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(&base_url)
            .env("OPENAI_API_KEY", api_key)
            .env("EXTRA_HEADERS_JSON", extra_headers_json)
            .output()
            .expect("run python3")
    })
    .await
    .expect("the SDK script ran")
}

/// A mock node whose streams send their first event and then wait for a permit of the returned
/// semaphore (`add_permits(1)` releases one stream).
pub async fn holding_node() -> (
    exoclaw::mock::MockNode,
    std::sync::Arc<tokio::sync::Semaphore>,
) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let node = exoclaw::mock::MockNode::start(exoclaw::mock::MockOptions {
        hold_after_first_event: Some(gate.clone()),
        ..exoclaw::mock::MockOptions::default()
    })
    .await
    .expect("the mock node starts");
    (node, gate)
}

/// A customer with a gateway key of `tier`, calling the control plane; requests carry the test
/// provider key (BYOK). Each test file adds what it asks of one.
pub struct Customer {
    key: String,
    base: String,
}

impl Customer {
    pub async fn new(gw: &Gateway, user: &str, tier: &str) -> Customer {
        let (_, key) = gw.create_key(user, Some(tier)).await;
        Customer::from_key(gw, &key)
    }

    /// The customer who holds `key`.
    pub fn from_key(gw: &Gateway, key: &str) -> Customer {
        Customer {
            key: key.to_owned(),
            base: gw.url(""),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(method, format!("{}{path}", self.base))
            .header("x-gateway-key", &self.key)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// `GET path`, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// Codex mode: the token the gateway sends for this customer's runs.
    pub async fn store_codex_token(&self) {
        let stored = self
            .request(reqwest::Method::PUT, "/api/oauth/codex")
            .json(&json!({ "token": "codex-token-of-the-customer" }))
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 200);
    }

    pub async fn tenant(&self, name: &str) -> String {
        let response = self
            .post("/api/tenants")
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "tenant created");
        let v: Value = response.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }
}
