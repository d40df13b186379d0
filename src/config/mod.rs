//! Configuration: the YAML file (`file`) and the validated structure (`Config`) that the rest of
//! ExoClaw reads.
//!
//! Validation happens once, when the file is loaded: unknown keys, unparsable addresses, bad
//! durations and sizes are reported with the path of the offending key
//! (`pools.openclaw.nodes[0].addr: ...`). Nothing in the request path re-parses config.

pub mod file;
pub mod units;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use file::{ConfigFile, NodeSection, PoolSection, ServerSection, SizeValue};

/// Default cap on a request body: large prompts fit, runaway uploads do not.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 10 * 1024 * 1024;
/// Default time to open a TCP connection to a node across the mesh.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest silence between two reads from a node. Models think before the first token,
/// so this is generous; a streamed answer resets it with every event.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Default longest wait for a node to accept request bytes.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time in-flight requests get to finish on a graceful stop.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Default location of the SQLite ledger, relative to the working directory.
pub const DEFAULT_DATABASE: &str = "./data/exoclaw.db";

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub database: PathBuf,
    pub pool: Pool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    pub threads: usize,
    pub max_request_body: u64,
    pub grace_period: Duration,
}

/// A named group of OpenClaw nodes that serve the same traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub nodes: Vec<Node>,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: usize,
}

/// A config problem, with the dotted path of the key it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_yaml(&text)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let raw: ConfigFile = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| err(e.path().to_string(), e.inner().to_string()))?;
        validate(raw)
    }
}

fn validate(raw: ConfigFile) -> Result<Config, ConfigError> {
    let ConfigFile {
        server,
        database,
        pools,
    } = raw;
    let server = validate_server(server)?;
    let database = match database {
        Some(path) if path.trim().is_empty() => return Err(err("database", "must not be empty")),
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(DEFAULT_DATABASE),
    };
    if pools.len() != 1 {
        return Err(err(
            "pools",
            format!(
                "exactly one pool is supported until routing between pools is configured; found {}",
                pools.len()
            ),
        ));
    }
    let (name, pool) = pools.into_iter().next().expect("one pool, checked above");
    let pool = validate_pool(name, pool)?;
    Ok(Config {
        server,
        database,
        pool,
    })
}

fn validate_server(raw: ServerSection) -> Result<Server, ConfigError> {
    let ServerSection {
        listen,
        threads,
        max_request_body,
        grace_period,
    } = raw;
    let listen = listen.parse().map_err(|_| {
        err(
            "server.listen",
            format!("`{listen}` is not an IP:port address (e.g. `0.0.0.0:8787`)"),
        )
    })?;
    let threads = threads.unwrap_or(2);
    if threads == 0 {
        return Err(err("server.threads", "must be at least 1"));
    }
    let max_request_body = match max_request_body {
        None => DEFAULT_MAX_REQUEST_BODY,
        Some(SizeValue::Bytes(n)) => n,
        Some(SizeValue::Text(t)) => {
            units::parse_size(&t).map_err(|m| err("server.max_request_body", m))?
        }
    };
    if max_request_body == 0 {
        return Err(err("server.max_request_body", "must be greater than zero"));
    }
    let grace_period = duration_or("server.grace_period", grace_period, DEFAULT_GRACE_PERIOD)?;
    Ok(Server {
        listen,
        threads,
        max_request_body,
        grace_period,
    })
}

fn validate_pool(name: String, raw: PoolSection) -> Result<Pool, ConfigError> {
    let PoolSection {
        nodes,
        connect_timeout,
        read_timeout,
        write_timeout,
    } = raw;
    let at = format!("pools.{name}");
    if nodes.is_empty() {
        return Err(err(format!("{at}.nodes"), "a pool needs at least one node"));
    }
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| validate_node(&format!("{at}.nodes[{i}]"), node))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, node) in nodes.iter().enumerate() {
        if nodes[..i].iter().any(|n| n.name == node.name) {
            return Err(err(
                format!("{at}.nodes[{i}].name"),
                format!("`{}` is used by another node of this pool", node.name),
            ));
        }
    }
    let timeouts = Timeouts {
        connect: duration_or(
            &format!("{at}.connect_timeout"),
            connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        read: duration_or(
            &format!("{at}.read_timeout"),
            read_timeout,
            DEFAULT_READ_TIMEOUT,
        )?,
        write: duration_or(
            &format!("{at}.write_timeout"),
            write_timeout,
            DEFAULT_WRITE_TIMEOUT,
        )?,
    };
    Ok(Pool {
        name,
        nodes,
        timeouts,
    })
}

fn validate_node(at: &str, raw: NodeSection) -> Result<Node, ConfigError> {
    let NodeSection { name, addr, weight } = raw;
    if name.trim().is_empty() {
        return Err(err(format!("{at}.name"), "must not be empty"));
    }
    let weight = weight.unwrap_or(1);
    if weight == 0 {
        return Err(err(format!("{at}.weight"), "must be at least 1"));
    }
    let addr = resolve(&addr).map_err(|m| err(format!("{at}.addr"), m))?;
    Ok(Node { name, addr, weight })
}

/// Accepts `IP:port` directly; resolves `host:port` once, at load time (never per request).
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(parsed) = addr.parse() {
        return Ok(parsed);
    }
    let (_, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not host:port (e.g. `100.82.244.127:18789`)"))?;
    port.parse::<u16>()
        .map_err(|_| format!("`{addr}` has no valid port"))?;
    addr.to_socket_addrs()
        .map_err(|e| format!("`{addr}` does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))
}

fn duration_or(
    path: &str,
    raw: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(text) => {
            let value = units::parse_duration(&text).map_err(|m| err(path, m))?;
            if value.is_zero() {
                return Err(err(path, "must be greater than zero"));
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
server: { listen: "127.0.0.1:8787" }
pools:
  openclaw:
    nodes: [ { name: mac-mini, addr: "127.0.0.1:18789" } ]
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.server.max_request_body, DEFAULT_MAX_REQUEST_BODY);
        assert_eq!(config.server.threads, 2);
        assert_eq!(config.pool.name, "openclaw");
        assert_eq!(config.pool.nodes[0].weight, 1);
        assert_eq!(config.pool.timeouts.read, DEFAULT_READ_TIMEOUT);
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let text = MINIMAL.replace("listen:", "listn:");
        let e = Config::from_yaml(&text).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let text = MINIMAL.replace("name: mac-mini", "name: mac-mini, wieght: 2");
        let e = Config::from_yaml(&text).unwrap_err();
        assert!(e.path.starts_with("pools.openclaw.nodes[0]"), "{e}");
        assert!(e.to_string().contains("wieght"), "{e}");
    }

    #[test]
    fn bad_address_and_duration_name_the_key() {
        let e = Config::from_yaml(&MINIMAL.replace("127.0.0.1:8787", "localhost")).unwrap_err();
        assert_eq!(e.path, "server.listen");
        let e = Config::from_yaml(&MINIMAL.replace("127.0.0.1:18789", "mac-mini")).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.nodes[0].addr");
        let text = MINIMAL.replace("nodes:", "read_timeout: 30\n    nodes:");
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.read_timeout");
        assert!(e.message.contains("no unit"));
    }

    #[test]
    fn sizes_accept_units_and_plain_numbers() {
        let text = MINIMAL.replace(
            "\"127.0.0.1:8787\"",
            "\"127.0.0.1:8787\", max_request_body: 2MiB",
        );
        assert_eq!(
            Config::from_yaml(&text).unwrap().server.max_request_body,
            2 << 20
        );
        let text = MINIMAL.replace(
            "\"127.0.0.1:8787\"",
            "\"127.0.0.1:8787\", max_request_body: 4096",
        );
        assert_eq!(
            Config::from_yaml(&text).unwrap().server.max_request_body,
            4096
        );
    }

    #[test]
    fn duplicate_node_names_are_rejected() {
        let text = MINIMAL.replace(
            "[ { name: mac-mini, addr: \"127.0.0.1:18789\" } ]",
            "[ { name: a, addr: \"127.0.0.1:1\" }, { name: a, addr: \"127.0.0.1:2\" } ]",
        );
        let e = Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.path, "pools.openclaw.nodes[1].name");
    }
}
