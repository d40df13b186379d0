//! Where a runtime's skills inventory comes from: a command run without a shell (`ssh mac-mini
//! openclaw skills list --json`) or a URL returning the same JSON, fetched once and parsed.
//!
//! Not for: parsing (`inventory::parse`, which both sources end in), how often to fetch and what
//! to serve meanwhile (`cache`), or which runtime has which source (config).
//!
//! **A node is not trusted with our resources.** A command gets no stdin and no shell; its
//! stdout is capped at `MAX_INVENTORY_BYTES` and its stderr at a few KiB (drained beyond that on
//! its own task, so a chatty child never blocks on a full pipe, and given only a short grace once
//! the command is done, since `ssh` with `ControlPersist` leaves its master holding our stderr);
//! past its timeout, or over the cap, it is killed (SIGKILL) and reaped. Only the direct child is
//! killed: a wrapper script should `exec` the real command. A URL is fetched without redirects or
//! system proxies, its body capped while it streams, the whole exchange under the timeout.
//! Without a TLS feature on reqwest only `http://` URLs work — the tailnet's addresses are plain
//! HTTP. Timeouts here are real time, like every network timeout in the gateway.

use crate::http_client::error_chain;
use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::inventory::{self, Inventory, InventoryError, MAX_INVENTORY_BYTES};

/// How long one fetch may take, command or URL.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a failing command's stderr is kept for the reason.
const MAX_STDERR_BYTES: usize = 4 * 1024;
/// How long a failed command's stderr is still read once the command is done.
const STDERR_GRACE: Duration = Duration::from_millis(200);
/// The longest reason kept from a command's stderr, in characters.
const MAX_STDERR_REASON_CHARS: usize = 300;

/// Where one runtime's inventory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventorySource {
    /// A program and its arguments, run without a shell.
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    /// An `http://` URL whose body is the inventory JSON.
    Url { url: String, timeout: Duration },
}

/// The source as a log line names it: the URL without its query (which could carry a token),
/// or the command's words.
impl std::fmt::Display for InventorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InventorySource::Url { url, .. } => {
                f.write_str(url.split(['?', '#']).next().unwrap_or(url))
            }
            InventorySource::Command { argv, .. } => f.write_str(&argv.join(" ")),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug)]
pub enum SourceError {
    EmptyCommand,
    Spawn {
        program: String,
        error: std::io::Error,
    },
    Timeout {
        after: Duration,
    },
    Exit {
        status: std::process::ExitStatus,
        stderr: String,
    },
    TooLarge {
        limit: usize,
    },
    /// Reading the command's pipes or waiting for it failed.
    Io(String),
    Http(String),
    Status {
        status: u16,
    },
    Malformed(InventoryError),
}

impl SourceError {
    /// A stable, short name for the kind of failure: what a tenant may be shown, where the
    /// `Display` text (host names, stderr) is for operators.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::EmptyCommand | SourceError::Spawn { .. } => "spawn_failed",
            SourceError::Timeout { .. } => "timeout",
            SourceError::Exit { .. } | SourceError::Io(_) => "command_failed",
            SourceError::TooLarge { .. } => "too_large",
            SourceError::Http(_) => "unreachable",
            SourceError::Status { .. } => "http_status",
            SourceError::Malformed(_) => "malformed",
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::EmptyCommand => write!(f, "the inventory command is empty"),
            SourceError::Spawn { program, error } => write!(f, "cannot run {program:?}: {error}"),
            SourceError::Timeout { after } => {
                write!(f, "no inventory within {} ms", after.as_millis())
            }
            SourceError::Exit { status, stderr } if stderr.is_empty() => {
                write!(f, "the inventory command failed ({status})")
            }
            SourceError::Exit { status, stderr } => {
                write!(f, "the inventory command failed ({status}): {stderr}")
            }
            SourceError::TooLarge { limit } => {
                write!(f, "the inventory is larger than {limit} bytes")
            }
            SourceError::Io(e) => write!(f, "the inventory command: {e}"),
            SourceError::Http(e) => write!(f, "cannot fetch the inventory: {e}"),
            SourceError::Status { status } => {
                write!(f, "the inventory URL answered HTTP {status}")
            }
            SourceError::Malformed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SourceError {}

impl InventorySource {
    /// Fetches and parses the inventory once.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<Inventory, SourceError> {
        let body = match self {
            InventorySource::Command { argv, timeout } => run_command(argv, *timeout).await?,
            InventorySource::Url { url, timeout } => fetch_url(http, url, *timeout).await?,
        };
        inventory::parse(&body).map_err(SourceError::Malformed)
    }
}

/// The HTTP client URL sources use: no redirects, no proxy from the environment.
pub fn http_client() -> reqwest::Client {
    crate::http_client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

async fn run_command(argv: &[String], timeout: Duration) -> Result<Vec<u8>, SourceError> {
    let (program, args) = argv.split_first().ok_or(SourceError::EmptyCommand)?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| SourceError::Spawn {
            program: program.clone(),
            error,
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SourceError::Io("its pipes were not opened".into()));
    };
    // stderr is drained on its own task and not waited for past a short grace once the child
    // is done: `ssh` with `ControlPersist` leaves its background master holding our stderr.
    let err = Arc::new(Mutex::new(Vec::new()));
    let drain = tokio::spawn(drain_capped(stderr, err.clone(), MAX_STDERR_BYTES));
    let drain_abort = drain.abort_handle();
    let outcome = tokio::time::timeout(timeout, async {
        let out = read_capped(stdout, MAX_INVENTORY_BYTES).await?;
        let status = child
            .wait()
            .await
            .map_err(|e| SourceError::Io(format!("cannot wait for it: {e}")))?;
        Ok::<_, SourceError>((out, status))
    })
    .await;
    let (out, status) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            drain_abort.abort();
            kill(&mut child).await;
            return Err(e);
        }
        Err(_) => {
            drain_abort.abort();
            kill(&mut child).await;
            return Err(SourceError::Timeout { after: timeout });
        }
    };
    if status.success() {
        drain_abort.abort();
        return Ok(out);
    }
    let _ = tokio::time::timeout(STDERR_GRACE, drain).await;
    drain_abort.abort();
    let err = std::mem::take(&mut *err.lock().unwrap_or_else(PoisonError::into_inner));
    Err(SourceError::Exit {
        status,
        stderr: stderr_reason(&err),
    })
}

/// Kills the child and reaps it, so no zombie is left behind.
async fn kill(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Reads to the end, failing as soon as more than `cap` bytes arrive.
async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
) -> Result<Vec<u8>, SourceError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| SourceError::Io(format!("cannot read its output: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > cap {
            return Err(SourceError::TooLarge { limit: cap });
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Keeps the first `cap` bytes in `into` and reads the rest into nothing, so the child never
/// blocks on a full pipe.
async fn drain_capped(mut reader: impl AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>, cap: usize) {
    let mut buf = [0u8; 4 * 1024];
    while let Ok(n @ 1..) = reader.read(&mut buf).await {
        let mut kept = into.lock().unwrap_or_else(PoisonError::into_inner);
        let room = cap.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
}

/// A failing command's stderr as a one-line reason: control characters dropped, cut short.
fn stderr_reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    match line.char_indices().nth(MAX_STDERR_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

async fn fetch_url(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let http_error = |e: reqwest::Error| SourceError::Http(error_chain(&e.without_url()));
    let fetch = async {
        let mut response = client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(SourceError::Status {
                status: status.as_u16(),
            });
        }
        let cap = MAX_INVENTORY_BYTES;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(SourceError::TooLarge { limit: cap });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > cap {
                return Err(SourceError::TooLarge { limit: cap });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| SourceError::Timeout { after: timeout })?
}

/// The fixtures the source and cache tests share: `tests/fixtures/skills/inventory.sh` over a
/// temp file the test rewrites, and a counter of its runs.
#[cfg(test)]
pub(super) mod fixtures {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{http_client, InventorySource, SourceError};
    use crate::skills::inventory::Inventory;

    pub fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/skills")
            .join(name)
    }

    /// `sh inventory.sh FILE [MODE]`: prints FILE like `openclaw skills list --json`.
    pub fn script(file: &Path, mode: Option<&str>, timeout: Duration) -> InventorySource {
        let mut argv = vec![
            "sh".to_string(),
            fixture("inventory.sh").display().to_string(),
            file.display().to_string(),
        ];
        argv.extend(mode.map(str::to_owned));
        InventorySource::Command { argv, timeout }
    }

    pub fn runs(file: &Path) -> usize {
        let runs = file.with_extension("json.runs");
        std::fs::read_to_string(runs).map_or(0, |s| s.lines().count())
    }

    pub struct Dir {
        _dir: tempfile::TempDir,
        pub file: PathBuf,
    }

    /// A temp dir holding `inventory.json`, a copy of fixture `name` (None: no file yet).
    pub fn inventory_file(name: Option<&str>) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("inventory.json");
        if let Some(name) = name {
            std::fs::copy(fixture(name), &file).unwrap();
        }
        Dir { _dir: dir, file }
    }

    pub async fn fetch(source: &InventorySource) -> Result<Inventory, SourceError> {
        source.fetch(&http_client()).await
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::path::PathBuf;
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::Frame;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::fixtures::{fetch, fixture, inventory_file, runs, script};
    use super::*;

    #[tokio::test]
    async fn a_command_prints_the_inventory() {
        let d = inventory_file(Some("list-newest.json"));
        let inv = fetch(&script(&d.file, None, DEFAULT_TIMEOUT))
            .await
            .unwrap();
        assert_eq!(inv.skills.len(), 12);
        assert_eq!(runs(&d.file), 1);
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_status_and_stderr() {
        let d = inventory_file(None);
        let e = fetch(&script(&d.file, None, DEFAULT_TIMEOUT))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "command_failed");
        assert_eq!(
            e.to_string(),
            "the inventory command failed (exit status: 255): ssh: connect to host mac-mini \
             port 22: Connection refused"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_and_reaped() {
        let d = inventory_file(Some("list-newest.json"));
        let started = Instant::now();
        let e = fetch(&script(&d.file, Some("slow"), Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "timeout", "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(d.file.with_extension("json.pid")).unwrap();
        let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
        assert!(
            !proc.exists(),
            "the script (now `sleep`) is gone, zombie included"
        );
    }

    #[tokio::test]
    async fn a_background_process_holding_stderr_does_not_hold_up_the_answer() {
        // Like `ssh -o ControlPersist=yes`: a grandchild keeps the stderr pipe open.
        let d = inventory_file(Some("list-newest.json"));
        let started = Instant::now();
        let inv = fetch(&script(&d.file, Some("linger"), DEFAULT_TIMEOUT))
            .await
            .unwrap();
        assert_eq!(inv.skills.len(), 12);
        std::fs::remove_file(&d.file).unwrap();
        let e = fetch(&script(&d.file, Some("linger"), DEFAULT_TIMEOUT))
            .await
            .unwrap_err();
        assert!(e.to_string().ends_with("Connection refused"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_command_printing_too_much_is_stopped() {
        let d = inventory_file(Some("list-newest.json"));
        let e = fetch(&script(&d.file, Some("huge"), DEFAULT_TIMEOUT))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "too_large", "{e}");
    }

    #[tokio::test]
    async fn a_command_printing_a_malformed_inventory_names_the_field() {
        let d = inventory_file(None);
        std::fs::write(&d.file, r#"{"skills": [{"name": "a", "eligible": "yes"}]}"#).unwrap();
        let e = fetch(&script(&d.file, None, DEFAULT_TIMEOUT))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "malformed");
        assert!(e.to_string().contains("skills[0].eligible"), "{e}");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_says_so() {
        let missing = InventorySource::Command {
            argv: vec!["/nonexistent/openclaw".into(), "skills".into()],
            timeout: DEFAULT_TIMEOUT,
        };
        let e = fetch(&missing).await.unwrap_err();
        assert_eq!(e.kind(), "spawn_failed");
        assert!(
            e.to_string()
                .starts_with("cannot run \"/nonexistent/openclaw\""),
            "{e}"
        );
        let empty = InventorySource::Command {
            argv: vec![],
            timeout: DEFAULT_TIMEOUT,
        };
        assert_eq!(fetch(&empty).await.unwrap_err().kind(), "spawn_failed");
    }

    /// A loopback HTTP server answering by path: `/ok` (the newest fixture), `/error` (500),
    /// `/huge` (a Content-Length over the cap), `/chunked` (over the cap, with no length),
    /// `/malformed`, `/slow` (answers after 10 s).
    struct Server {
        addr: std::net::SocketAddr,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        async fn start() -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(async move {
                        let service = service_fn(answer);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Server { addr, task }
        }

        fn url(&self, path: &str) -> InventorySource {
            InventorySource::Url {
                url: format!("http://{}{path}", self.addr),
                timeout: Duration::from_millis(2_000),
            }
        }
    }

    type Body = BoxBody<Bytes, Infallible>;

    async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
        let ok = |body: Vec<u8>| Response::new(Full::new(Bytes::from(body)).boxed());
        Ok(match req.uri().path() {
            "/ok" => ok(std::fs::read(fixture("list-newest.json")).unwrap()),
            "/malformed" => {
                ok(br#"{"skills": [{"name": "a", "missing": {"os": "darwin"}}]}"#.to_vec())
            }
            "/huge" => ok(vec![b' '; MAX_INVENTORY_BYTES + 1]),
            "/chunked" => {
                let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                let chunks = (0..=MAX_INVENTORY_BYTES / chunk.len())
                    .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
                Response::new(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                ok(b"{}".to_vec())
            }
            _ => Response::builder()
                .status(500)
                .body(Full::new(Bytes::from_static(b"boom")).boxed())
                .unwrap(),
        })
    }

    #[tokio::test]
    async fn a_url_serves_the_inventory() {
        let server = Server::start().await;
        let inv = fetch(&server.url("/ok")).await.unwrap();
        assert_eq!(inv.skills[0].name, "weather");
    }

    #[tokio::test]
    async fn a_url_failing_is_an_error_of_its_kind() {
        let server = Server::start().await;
        let e = fetch(&server.url("/error")).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            ("http_status", "the inventory URL answered HTTP 500")
        );
        for path in ["/huge", "/chunked"] {
            let e = fetch(&server.url(path)).await.unwrap_err();
            assert_eq!(e.kind(), "too_large", "{path}: {e}");
        }
        let e = fetch(&server.url("/malformed")).await.unwrap_err();
        assert!(e.to_string().contains("skills[0].missing.os"), "{e}");
        let slow = InventorySource::Url {
            url: format!("http://{}/slow", server.addr),
            timeout: Duration::from_millis(200),
        };
        assert_eq!(fetch(&slow).await.unwrap_err().kind(), "timeout");
        // A port nothing listens on any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let closed = InventorySource::Url {
            url: format!("http://{addr}/ok"),
            timeout: Duration::from_millis(2_000),
        };
        let e = fetch(&closed).await.unwrap_err();
        assert_eq!(e.kind(), "unreachable", "{e}");
    }
}
