//! `exoclaw mock-node`: the mock OpenClaw node as a process of its own.
//!
//! Operators use it as a stand-in node for trying a config (point a pool at it, send requests,
//! watch the ledger and the metrics) without a real OpenClaw node; the comparative benchmark
//! (`benches/compare/run`) uses it as the upstream of every proxy it measures, and measures it
//! directly as the floor. It keeps no record of the requests it answers (`skip_recording`), and
//! its session turn counts are capped, so its memory stays flat however long it runs. With
//! `--token-env VAR` it wants the token held in that environment variable, as an OpenClaw node
//! with a gateway token does; the token is read once at start and never printed. It stops on
//! Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use super::{MockNode, MockOptions};

/// How `exoclaw mock-node` was asked to run.
pub struct StandaloneOptions {
    pub listen: SocketAddr,
    /// Pause between two streamed events (0: as fast as possible).
    pub event_delay: Duration,
    /// Tokio worker threads; `None`: one per core.
    pub threads: Option<usize>,
    /// The environment variable that holds the node's gateway token; `None`: no auth.
    pub token_env: Option<String>,
    /// A skills inventory (`openclaw skills list --json`) served at `/skills.json`.
    pub skills: Option<std::path::PathBuf>,
}

/// Serves until Ctrl-C or SIGTERM. Returns an error only when start-up fails.
pub fn run(options: StandaloneOptions) -> Result<(), String> {
    let StandaloneOptions {
        listen,
        event_delay,
        threads,
        token_env,
        skills,
    } = options;
    let token = token_env.as_deref().map(read_token).transpose()?;
    let skills = skills
        .map(|path| {
            std::fs::read(&path)
                .map(bytes::Bytes::from)
                .map_err(|e| format!("cannot read the skills inventory {}: {e}", path.display()))
        })
        .transpose()?;
    let auth = if token.is_some() {
        "wants `Authorization: Bearer <token>` on /v1/*"
    } else {
        "no auth"
    };
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("mock node cannot listen on {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("mock node cannot listen on {listen}: {e}"))?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .thread_name("exoclaw-mock")
        .build()
        .map_err(|e| format!("cannot start the mock node's runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("mock node cannot listen on {addr}: {e}"))?;
        let _node = MockNode::serve_on(
            listener,
            MockOptions {
                event_delay,
                skip_recording: true,
                token,
                skills,
                ..MockOptions::default()
            },
        );
        // The first line names the address, so a caller that asked for port 0 can read it.
        let mut stdout = std::io::stdout();
        let _ = writeln!(
            stdout,
            "mock OpenClaw node listening on http://{addr} ({auth}; answers \
             /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models, /v1/models/{{id}}, \
             /health, /healthz, /ready, /readyz; Ctrl-C stops it)"
        )
        .and_then(|()| stdout.flush());
        wait_for_stop().await
    })
}

/// The token held in the environment variable `name`: an error, naming the variable but not
/// its value, when it is unset or empty.
fn read_token(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(token) if !token.is_empty() => Ok(token),
        Ok(_) => Err(format!(
            "--token-env {name}: the environment variable {name} is empty"
        )),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "--token-env {name}: the environment variable {name} is not set"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "--token-env {name}: the environment variable {name} is not valid UTF-8"
        )),
    }
}

async fn wait_for_stop() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
