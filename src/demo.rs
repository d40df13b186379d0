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
use crate::config::Config;
use crate::mock::{MockNode, MockOptions};
use crate::server::{self, Launch};

/// The user the demo's curl lines and `.env` use.
pub const DEMO_USER: &str = "demo-user";
/// A BYOK-style key: the gateway forwards it to the node, and the mock node accepts any.
pub const DEMO_PROVIDER_KEY: &str = "sk-demo-key";

/// The demo's addresses: the public listener, and loopback ports picked for the rest.
struct DemoAddrs {
    listen: SocketAddr,
    admin: SocketAddr,
    sidecar: SocketAddr,
}

/// Runs the demo until Ctrl-C. Returns only when start-up fails.
pub fn run(listen: SocketAddr) -> Result<(), String> {
    let mock_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot start the mock node: {e}"))?;
    let mock_addr = mock_listener
        .local_addr()
        .map_err(|e| format!("cannot start the mock node: {e}"))?;
    let database = std::env::temp_dir().join(format!("exoclaw-demo-{}.db", std::process::id()));
    let addrs = DemoAddrs {
        listen,
        admin: free_loopback_port()?,
        sidecar: free_loopback_port()?,
    };
    let config =
        Config::from_yaml(&demo_config(&addrs, mock_addr, &database)).map_err(|e| e.to_string())?;
    let (mut server, handles) = server::build(&config, Launch::default())?;
    let key = {
        let conn = handles.credentials.open_db()?;
        let minted = auth::create_key(&conn, DEMO_USER, None, &config.tiers)?;
        handles
            .credentials
            .reload_keys(&conn)
            .map_err(|e| e.to_string())?;
        minted.secret
    };
    server.add_service(background_service(
        "mock OpenClaw node",
        MockService {
            listener: Mutex::new(Some(mock_listener)),
        },
    ));
    // A closed stdout (piped into `head`, a finished reader) must not take the gateway down.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", banner(listen, mock_addr, &key)).and_then(|()| stdout.flush());
    server::run(server, handles);
    Ok(())
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
        r#"database: "{database}"
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

pub fn banner(listen: SocketAddr, mock_addr: SocketAddr, gateway_key: &str) -> String {
    let url = format!("http://{listen}");
    let headers = format!(
        "-H 'Content-Type: application/json' -H 'X-Gateway-Key: {gateway_key}' -H 'Authorization: Bearer {DEMO_PROVIDER_KEY}'"
    );
    format!(
        r#"
ExoClaw demo is running.

  Gateway     {url}
  Mock node   http://{mock_addr}  (built-in OpenClaw stand-in; it echoes your question)
  User        {DEMO_USER}
  Gateway key {gateway_key}  (identifies {DEMO_USER}; stored only as a hash)
  Provider key {DEMO_PROVIDER_KEY}  (BYOK: forwarded to the node, never stored)

A completion:
  curl -s {url}/v1/chat/completions {headers} -d '{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hello"}}]}}'

A stream (events arrive one by one):
  curl -sN {url}/v1/chat/completions {headers} -d '{{"model":"gpt-4o","stream":true,"messages":[{{"role":"user","content":"Hello"}}]}}'

For an OpenAI SDK, put this in .env and send the gateway key as a default header:
  OPENAI_BASE_URL={url}/v1
  OPENAI_API_KEY={DEMO_PROVIDER_KEY}
  EXOCLAW_GATEWAY_KEY={gateway_key}
  (Python: OpenAI(default_headers={{"X-Gateway-Key": os.environ["EXOCLAW_GATEWAY_KEY"]}}))

Press Ctrl-C to stop.
"#
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

    #[test]
    fn demo_config_is_valid_and_points_at_the_mock() {
        let listen: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        let mock: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let addrs = DemoAddrs {
            listen,
            admin: "127.0.0.1:40001".parse().unwrap(),
            sidecar: "127.0.0.1:40002".parse().unwrap(),
        };
        let config = Config::from_yaml(&demo_config(&addrs, mock, Path::new("/tmp/d.db"))).unwrap();
        assert_eq!(config.server.listen, listen);
        assert!(config.auth.require_key);
        assert_eq!(config.pools["openclaw"].nodes[0].addr, mock);
    }

    #[test]
    fn banner_names_url_user_and_key() {
        let b = banner(
            "127.0.0.1:8787".parse().unwrap(),
            "127.0.0.1:4".parse().unwrap(),
            "exo_k",
        );
        assert!(b.contains("curl -s http://127.0.0.1:8787/v1/chat/completions"));
        assert!(b.contains(DEMO_USER) && b.contains(DEMO_PROVIDER_KEY));
        assert!(b.contains("X-Gateway-Key: exo_k"));
        assert!(b.contains("\"stream\":true"));
    }
}
