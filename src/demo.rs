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

use crate::config::Config;
use crate::mock::{MockNode, MockOptions};
use crate::server::{self, Launch};

/// The user the demo's curl lines and `.env` use.
pub const DEMO_USER: &str = "demo-user";
/// A BYOK-style key: the gateway forwards it to the node, and the mock node accepts any.
pub const DEMO_PROVIDER_KEY: &str = "sk-demo-key";

/// Runs the demo until Ctrl-C. Returns only when start-up fails.
pub fn run(listen: SocketAddr) -> Result<(), String> {
    let mock_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot start the mock node: {e}"))?;
    let mock_addr = mock_listener
        .local_addr()
        .map_err(|e| format!("cannot start the mock node: {e}"))?;
    let database = std::env::temp_dir().join(format!("exoclaw-demo-{}.db", std::process::id()));
    let config =
        Config::from_yaml(&demo_config(listen, mock_addr, &database)).map_err(|e| e.to_string())?;
    let (mut server, _live) = server::build(&config, Launch::default())?;
    server.add_service(background_service(
        "mock OpenClaw node",
        MockService {
            listener: Mutex::new(Some(mock_listener)),
        },
    ));
    // A closed stdout (piped into `head`, a finished reader) must not take the gateway down.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", banner(listen, mock_addr)).and_then(|()| stdout.flush());
    server.run_forever()
}

/// The demo's config: the same YAML an operator writes, pointed at the mock node.
pub fn demo_config(listen: SocketAddr, mock_addr: SocketAddr, database: &Path) -> String {
    let database = database.display();
    format!(
        r#"database: "{database}"
server:
  listen: "{listen}"
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

pub fn banner(listen: SocketAddr, mock_addr: SocketAddr) -> String {
    let url = format!("http://{listen}");
    let headers = format!(
        "-H 'Content-Type: application/json' -H 'X-User-ID: {DEMO_USER}' -H 'Authorization: Bearer {DEMO_PROVIDER_KEY}'"
    );
    format!(
        r#"
ExoClaw demo is running.

  Gateway     {url}
  Mock node   http://{mock_addr}  (built-in OpenClaw stand-in; it echoes your question)
  User        {DEMO_USER}
  Key         {DEMO_PROVIDER_KEY}  (BYOK: forwarded to the node, never stored)

A completion:
  curl -s {url}/v1/chat/completions {headers} -d '{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hello"}}]}}'

A stream (events arrive one by one):
  curl -sN {url}/v1/chat/completions {headers} -d '{{"model":"gpt-4o","stream":true,"messages":[{{"role":"user","content":"Hello"}}]}}'

For an OpenAI SDK, put this in .env:
  OPENAI_BASE_URL={url}/v1
  OPENAI_API_KEY={DEMO_PROVIDER_KEY}

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
        let config = Config::from_yaml(&demo_config(listen, mock, Path::new("/tmp/d.db"))).unwrap();
        assert_eq!(config.server.listen, listen);
        assert_eq!(config.pool.nodes[0].addr, mock);
    }

    #[test]
    fn banner_names_url_user_and_key() {
        let b = banner(
            "127.0.0.1:8787".parse().unwrap(),
            "127.0.0.1:4".parse().unwrap(),
        );
        assert!(b.contains("curl -s http://127.0.0.1:8787/v1/chat/completions"));
        assert!(b.contains(DEMO_USER) && b.contains(DEMO_PROVIDER_KEY));
        assert!(b.contains("\"stream\":true"));
    }
}
