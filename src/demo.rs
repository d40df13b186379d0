//! `exoclaw demo`: the gateway plus a built-in mock OpenClaw node, on loopback, in one command.
//!
//! This is what a newcomer runs first. It needs no config file and no network: the mock node
//! answers like an OpenClaw node would (see `crate::mock`), and the banner prints a URL, a user,
//! a key and curl lines that work exactly as printed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService};

use crate::auth;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::mock::{MockNode, MockOptions};
use crate::server::{self, Launch};
use crate::tenants;

/// The user the demo's curl lines and `.env` use.
pub const DEMO_USER: &str = "demo-user";
/// A BYOK-style key: the gateway forwards it to the node, and the mock node accepts any.
pub const DEMO_PROVIDER_KEY: &str = "sk-demo-key";

/// How `exoclaw demo` was asked to run.
pub struct DemoOptions {
    /// The public listener; port 0 picks a free one (and the banner names it).
    pub listen: SocketAddr,
    /// Keep the demo's folder (config, database, keys) after it stops.
    pub keep: bool,
}

/// The demo's addresses: the public listener, and loopback ports picked for the rest.
struct DemoAddrs {
    listen: SocketAddr,
    admin: SocketAddr,
    sidecar: SocketAddr,
}

/// What the banner shows besides addresses: everything an operator needs to try the demo.
struct DemoFacts<'a> {
    gateway_key: &'a str,
    /// The demo user's tenant, for the agent-run lines.
    tenant: &'a str,
    admin_token: &'a str,
    dir: &'a Path,
    config_path: &'a Path,
    database: &'a Path,
    exoclaw: &'a str,
}

/// Runs the demo until Ctrl-C. Returns only when start-up fails.
pub fn run(options: DemoOptions) -> Result<(), String> {
    let listen = claim_listen_address(options.listen)?;
    let mock_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot start the mock node: {e}"))?;
    let mock_addr = mock_listener
        .local_addr()
        .map_err(|e| format!("cannot start the mock node: {e}"))?;
    // One folder holds everything the demo writes: its config, database, IP-hash key, sockets.
    let dir = std::env::temp_dir().join(format!("exoclaw-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = run_in(&dir, listen, mock_addr, mock_listener);
    if options.keep {
        eprintln!("Kept the demo's folder: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    result
}

fn run_in(
    dir: &Path,
    listen: SocketAddr,
    mock_addr: SocketAddr,
    mock_listener: std::net::TcpListener,
) -> Result<(), String> {
    let database = dir.join("exoclaw.db");
    let config_path = dir.join("exoclaw.yaml");
    let addrs = DemoAddrs {
        listen,
        admin: free_loopback_port()?,
        sidecar: free_loopback_port()?,
    };
    std::fs::write(&config_path, demo_config(&addrs, mock_addr, &database))
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    // The admin API's token, made for this run (set before any thread of the server starts).
    let admin_token = crate::local_http::new_secret();
    std::env::set_var(DEMO_ADMIN_TOKEN_ENV, &admin_token);
    let config = Config::load_to_serve(&config_path).map_err(|e| e.to_string())?;
    let (mut server, handles) = server::build(&config, Launch::default())?;
    let (key, tenant) = {
        let mut conn = handles.credentials.open_db()?;
        let minted = auth::create_key(&conn, DEMO_USER, None, &config.tiers)?;
        handles
            .credentials
            .reload_keys(&conn)
            .map_err(|e| e.to_string())?;
        let tenant = tenants::new_id();
        let now = SystemClock.now_ms();
        tenants::store::create(&mut conn, &tenant, DEMO_USER, "Demo project", None, now)
            .map_err(|e| format!("cannot create the demo's tenant: {e}"))?;
        (minted.secret, tenant)
    };
    server.add_service(background_service(
        "mock OpenClaw node",
        MockService {
            listener: Mutex::new(Some(mock_listener)),
        },
    ));
    let exoclaw = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "exoclaw".to_owned());
    let facts = DemoFacts {
        gateway_key: &key,
        tenant: &tenant,
        admin_token: &admin_token,
        dir,
        config_path: &config_path,
        database: &database,
        exoclaw: &exoclaw,
    };
    // A closed stdout (piped into `head`, a finished reader) must not take the gateway down.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", banner(&addrs, mock_addr, &facts)).and_then(|()| stdout.flush());
    server::run(server, handles);
    Ok(())
}

/// The variable the demo's config names for the admin token (not the operator's own).
const DEMO_ADMIN_TOKEN_ENV: &str = "EXOCLAW_DEMO_ADMIN_TOKEN";

/// Checks that `listen` is free, and turns port 0 into the free port the system picks, so the
/// banner and its curl lines name the real address.
fn claim_listen_address(listen: SocketAddr) -> Result<SocketAddr, String> {
    let probe = std::net::TcpListener::bind(listen).map_err(|e| {
        format!(
            "cannot listen on {listen}: {e}. Another program (perhaps another demo) uses it: \
             pick another address with `exoclaw demo --listen 127.0.0.1:9000` (port 0 picks a \
             free one)."
        )
    })?;
    probe
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))
}

/// The demo's config: the same YAML an operator writes, pointed at the mock node.
fn demo_config(addrs: &DemoAddrs, mock_addr: SocketAddr, database: &Path) -> String {
    let database = database.display();
    let DemoAddrs {
        listen,
        admin,
        sidecar,
    } = addrs;
    format!(
        r#"# Written by `exoclaw demo`: `exoclaw usage`, `keys` and `check` take it with --config.
database: "{database}"
auth: {{ admin_token_env: {DEMO_ADMIN_TOKEN_ENV} }}
tiers:
  workshop: {{ requests_per_minute: 50, max_tenants: 3, runs_per_month: unlimited,
              max_concurrent_runs: 2 }}
templates:
  summarize:
    name: Summarize a document
    agent: main
    instructions: "Summarize for {{{{audience}}}}: {{{{text}}}}"
    inputs:
      text: {{ required: true, max_len: 20000 }}
      audience: {{}}
runs: {{ poll_interval: 200ms }}
server:
  listen: "{listen}"
  admin_listen: "{admin}"
  sidecar_listen: "{sidecar}"
  threads: 2
  grace_period: 1s
pools:
  openclaw:
    read_timeout: 60s
    nodes:
      - {{ name: demo-mock-node, addr: "{mock_addr}" }}
"#
    )
}

fn free_loopback_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

fn banner(addrs: &DemoAddrs, mock_addr: SocketAddr, facts: &DemoFacts<'_>) -> String {
    let url = format!("http://{}", addrs.listen);
    let admin = format!("http://{}", addrs.admin);
    let DemoFacts {
        gateway_key,
        tenant,
        admin_token,
        dir,
        config_path,
        database,
        exoclaw,
    } = facts;
    let config = config_path.display();
    let headers = format!(
        "-H 'Content-Type: application/json' -H 'X-Gateway-Key: {gateway_key}' -H 'Authorization: Bearer {DEMO_PROVIDER_KEY}'"
    );
    format!(
        r#"
ExoClaw demo is running.

  Gateway      {url}
  Dashboard    {url}/signin  (sign in with the gateway key below)
  Mock node    http://{mock_addr}  (built-in OpenClaw stand-in; it echoes your question)
  User         {DEMO_USER}
  Gateway key  {gateway_key}  (identifies {DEMO_USER}; stored only as a hash)
  Provider key {DEMO_PROVIDER_KEY}  (BYOK: forwarded to the node, never stored)

A completion:
  curl -s {url}/v1/chat/completions {headers} -d '{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hello"}}]}}'

A stream (events arrive one by one):
  curl -sN {url}/v1/chat/completions {headers} -d '{{"model":"gpt-4o","stream":true,"messages":[{{"role":"user","content":"Hello"}}]}}'

An agent run, queued and worked in the background (tenant {tenant} is {DEMO_USER}'s):
  curl -s {url}/api/runs {headers} -d '{{"tenant_id":"{tenant}","template":"summarize","input":{{"text":"ExoClaw queues agent runs.","audience":"a newcomer"}}}}'
  Then, with the "id" it answers: {url}/api/runs/<id> (its status), /api/runs/<id>/events
  (watch it live: curl -sN), /api/runs/<id>/artifacts/output.md (its output), each with
  -H 'X-Gateway-Key: {gateway_key}'.

Your own code: the same .env a trainee's kit holds (OpenAI SDK: base URL
OPENCLAW_GATEWAY_URL + "/v1", api key OPENAI_API_KEY, header X-Gateway-Key):
  OPENCLAW_GATEWAY_URL={url}
  EXOCLAW_GATEWAY_KEY={gateway_key}
  USER_ID={DEMO_USER}
  OPENAI_API_KEY={DEMO_PROVIDER_KEY}

The operator's side:
  Admin API    {admin}  (token {admin_token})
    curl -s -H 'Authorization: Bearer {admin_token}' '{admin}/admin/usage?since=5m'
    curl -s {admin}/metrics
  Config       {config}
  Database     {database}
    {exoclaw} usage --config {config} --since 5m
    {exoclaw} keys create --config {config} --user ana

Everything the demo writes is in {dir}, removed when it stops (--keep keeps it).
Press Ctrl-C to stop.
"#,
        database = database.display(),
        dir = dir.display(),
    )
}

/// Runs the mock node inside the Pingora server, until shutdown.
struct MockService {
    listener: Mutex<Option<std::net::TcpListener>>,
}

#[async_trait]
impl BackgroundService for MockService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(listener) = listener else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("mock node cannot listen: {e}");
                return;
            }
        };
        let options = MockOptions {
            event_delay: std::time::Duration::from_millis(40),
            skip_recording: true,
            ..MockOptions::default()
        };
        let _node = MockNode::serve_on(listener, options);
        let _ = shutdown.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> DemoAddrs {
        DemoAddrs {
            listen: "127.0.0.1:8787".parse().unwrap(),
            admin: "127.0.0.1:40001".parse().unwrap(),
            sidecar: "127.0.0.1:40002".parse().unwrap(),
        }
    }

    #[test]
    fn demo_config_is_valid_and_points_at_the_mock() {
        let mock: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let config =
            Config::from_yaml(&demo_config(&addrs(), mock, Path::new("/tmp/d/d.db"))).unwrap();
        assert_eq!(config.server.listen, addrs().listen);
        assert!(config.auth.require_key);
        assert_eq!(config.auth.admin_token_env, DEMO_ADMIN_TOKEN_ENV);
        assert_eq!(config.pools["openclaw"].nodes[0].addr, mock);
        assert_eq!(
            config.ledger.ip_hash_key_file,
            Path::new("/tmp/d/ip_hash.key"),
            "the IP-hash key stays in the demo's folder"
        );
    }

    #[test]
    fn banner_names_everything_a_newcomer_and_an_operator_need() {
        let facts = DemoFacts {
            gateway_key: "exo_k",
            tenant: "ten_0123456789abcdef0123",
            admin_token: "adm1n",
            dir: Path::new("/tmp/exoclaw-demo-1"),
            config_path: Path::new("/tmp/exoclaw-demo-1/exoclaw.yaml"),
            database: Path::new("/tmp/exoclaw-demo-1/exoclaw.db"),
            exoclaw: "/bin/exoclaw",
        };
        let b = banner(&addrs(), "127.0.0.1:4".parse().unwrap(), &facts);
        assert!(b.contains("curl -s http://127.0.0.1:8787/v1/chat/completions"));
        assert!(b.contains(DEMO_USER) && b.contains(DEMO_PROVIDER_KEY));
        assert!(b.contains("X-Gateway-Key: exo_k"));
        assert!(b.contains("\"stream\":true"));
        for line in [
            "OPENCLAW_GATEWAY_URL=http://127.0.0.1:8787",
            "EXOCLAW_GATEWAY_KEY=exo_k",
            "USER_ID=demo-user",
            "OPENAI_API_KEY=sk-demo-key",
            "http://127.0.0.1:40001",
            "Bearer adm1n",
            "/bin/exoclaw usage --config /tmp/exoclaw-demo-1/exoclaw.yaml",
            "/tmp/exoclaw-demo-1/exoclaw.db",
            "curl -s http://127.0.0.1:8787/api/runs",
            "\"tenant_id\":\"ten_0123456789abcdef0123\"",
        ] {
            assert!(b.contains(line), "{line} missing from:\n{b}");
        }
        assert!(b.trim_end().ends_with("Press Ctrl-C to stop."));
    }

    #[test]
    fn port_zero_becomes_a_real_port_and_a_taken_port_names_the_flag() {
        let picked = claim_listen_address("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(picked.port(), 0);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = claim_listen_address(taken.local_addr().unwrap()).unwrap_err();
        assert!(e.contains("--listen"), "{e}");
    }
}
