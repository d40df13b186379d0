//! The `exoclaw` command line: parse arguments, load config, run. Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use exoclaw::config::Config;
use exoclaw::mock::standalone::StandaloneOptions;
use exoclaw::server::{self, Launch};

#[derive(Parser)]
#[command(
    name = "exoclaw",
    version,
    about = "A gateway in front of OpenClaw agent nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "conf/exoclaw.yaml")]
        config: PathBuf,
        /// Take over the listening sockets of a running exoclaw (zero-downtime upgrade).
        #[arg(long)]
        upgrade: bool,
        /// Freeze the policy clock; `POST /admin/clock` moves it. For tests only.
        #[arg(long, hide = true)]
        manual_clock: bool,
        /// Detach into the background and write `server.pid_file` (systemd `Type=forking`).
        #[arg(long)]
        daemon: bool,
    },
    /// Per-user usage from the ledger: requests, tokens, latency, errors, last seen.
    Usage {
        #[arg(long, default_value = "conf/exoclaw.yaml")]
        config: PathBuf,
        /// How far back to look (e.g. 5m, 1h, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Refresh every 2 seconds until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// One JSON array per refresh instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage gateway keys (stored as hashes in the database).
    Keys {
        #[arg(long, default_value = "conf/exoclaw.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Validate a config file and exit (non-zero, naming the key, when it is invalid).
    Check {
        #[arg(long, default_value = "conf/exoclaw.yaml")]
        config: PathBuf,
    },
    /// Run the gateway and a built-in mock OpenClaw node on loopback.
    Demo {
        /// The gateway's address (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// Keep the demo's folder (config, database) when it stops.
        #[arg(long)]
        keep: bool,
    },
    /// Run only the built-in mock OpenClaw node: a stand-in node for trying a config.
    ///
    /// It answers /v1/chat/completions, /v1/responses (JSON or streamed), /v1/embeddings,
    /// /v1/models, /v1/models/{id} and the probes /health, /healthz, /ready, /readyz, routes
    /// requests to an agent and session as OpenClaw does, and reports them in the response
    /// headers x-mock-agent, x-mock-session and x-mock-session-turns.
    MockNode {
        /// Address to listen on (port 0: any free port; the first line printed names it).
        #[arg(long, default_value = "127.0.0.1:18789")]
        listen: SocketAddr,
        /// Pause between two streamed events (e.g. `40ms`), to watch a stream arrive.
        #[arg(long, default_value = "0ms", value_parser = exoclaw::config::units::parse_duration)]
        event_delay: Duration,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Require `Authorization: Bearer <token>` on all but the probe paths, with the token
        /// read from this environment variable (it is never printed).
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a user and print it (shown only this once).
    Create {
        #[arg(long)]
        user: String,
        /// A tier that overrides the user's own (comped users).
        #[arg(long)]
        tier: Option<String>,
    },
    /// List keys: id, user, tier, created, last used (never the key).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a key by id.
    Revoke { id: String },
}

/// jemalloc: against glibc's malloc it took about a fifth off the CPU time per proxied request
/// (`benches/compare/run`), for a similar peak RSS.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A person reads the demo's screen: Pingora's start-up chatter stays out of it (EXOCLAW_LOG
    // brings it back); the gateway's own lines, one per request, stay in.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn,exoclaw=info",
        _ => "info",
    };
    init_logging(default_filter);
    let result = match cli.command {
        Command::Check { config } => Config::load_to_serve(&config)
            .map(|parsed| {
                for warning in parsed.warnings() {
                    eprintln!("warning: {warning}");
                }
                println!("{}: OK", config.display());
            })
            .map_err(|e| e.to_string()),
        Command::Serve {
            config,
            upgrade,
            manual_clock,
            daemon,
        } => Config::load_to_serve(&config)
            .map_err(|e| e.to_string())
            .and_then(|parsed| {
                server::build(
                    &parsed,
                    Launch {
                        config_path: Some(config.clone()),
                        upgrade,
                        manual_clock,
                        daemon,
                    },
                )
            })
            .map(|(server, handles)| server::run(server, handles)),
        Command::Usage {
            config,
            since,
            watch,
            json,
        } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| exoclaw::cli::usage(&config, &since, watch, json)),
        Command::Keys { config, command } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| match command {
                KeysCommand::Create { user, tier } => {
                    exoclaw::cli::keys_create(&config, &user, tier.as_deref())
                }
                KeysCommand::List { json } => exoclaw::cli::keys_list(&config, json),
                KeysCommand::Revoke { id } => exoclaw::cli::keys_revoke(&config, &id),
            }),
        Command::Demo { listen, keep } => {
            exoclaw::demo::run(exoclaw::demo::DemoOptions { listen, keep })
        }
        Command::MockNode {
            listen,
            event_delay,
            threads,
            token_env,
        } => exoclaw::mock::standalone::run(StandaloneOptions {
            listen,
            event_delay,
            threads,
            token_env,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exoclaw: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `EXOCLAW_LOG` (or `RUST_LOG`) sets the filter, `info` by default.
fn init_logging(default_filter: &str) {
    let filter = std::env::var("EXOCLAW_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_owned());
    exoclaw::logging::init(&filter);
}
