//! The `exoclaw` command line: parse arguments, load config, run. Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use exoclaw::cli::UsageFormat;
use exoclaw::config::Config;
use exoclaw::mock::standalone::StandaloneOptions;
use exoclaw::onboard::cohort::CohortPlan;
use exoclaw::onboard::roster;
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
        /// Only the N most active users (by requests).
        #[arg(long, value_name = "N")]
        top: Option<usize>,
        /// Refresh every 2 seconds until Ctrl-C.
        #[arg(long, conflicts_with = "csv")]
        watch: bool,
        /// One JSON array per refresh instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV with a header line, for a spreadsheet or a follow-up mail.
        #[arg(long)]
        csv: bool,
    },
    /// Manage gateway keys (stored as hashes in the database).
    Keys {
        #[arg(long, default_value = "conf/exoclaw.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Trainee kits: a gateway key, a ZIP and a one-time QR link per trainee, and a printable
    /// sheet (`onboard revoke` revokes a whole cohort).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Onboard {
        #[arg(long, default_value = "conf/exoclaw.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: Option<OnboardCommand>,
        #[command(flatten)]
        kits: OnboardArgs,
    },
    /// The agent run queue: list, show, cancel, or queue a failed run again.
    Runs {
        #[arg(long, default_value = "conf/exoclaw.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Tenants (customers' projects): list them, pin one to a pool (a dedicated node).
    Tenants {
        #[arg(long, default_value = "conf/exoclaw.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// The shared Telegram bot: point Telegram at the gateway's webhook, remove it, or show
    /// what Telegram has (the token and the secret come from the variables the config names).
    Telegram {
        #[arg(long, default_value = "conf/exoclaw.yaml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: TelegramCommand,
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
        /// Serve this skills inventory (the JSON of `openclaw skills list --json`) at
        /// `/skills.json`, for a pool's `skills_inventory: { url: … }`.
        #[arg(long, value_name = "FILE")]
        skills: Option<PathBuf>,
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

#[derive(Subcommand)]
enum RunsCommand {
    /// Runs, newest first, with the count of runs by status.
    List {
        /// Only runs in this status (queued, running, succeeded, failed, canceled, dead).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One run, as JSON.
    Show { id: String },
    /// Cancel a queued run, or stop a running one.
    Cancel { id: String },
    /// Queue a failed, dead or canceled run again, with its attempts starting over.
    Retry { id: String },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Every tenant: id, owner, pinned pool, name.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Send the tenant's new runs to this pool (for example a pool of one dedicated node).
    Pin {
        id: String,
        #[arg(long)]
        pool: String,
    },
    /// Send the tenant's new runs to its owner's tier's pool again.
    Unpin { id: String },
}

#[derive(Subcommand)]
enum TelegramCommand {
    /// Tell Telegram to send the bot's messages to the gateway, with the webhook secret.
    SetWebhook {
        /// The gateway's public webhook: https://HOST/api/webhooks/telegram.
        #[arg(long)]
        url: String,
    },
    /// Tell Telegram to stop sending the bot's messages (it keeps them for up to a day).
    DeleteWebhook,
    /// The bot the token belongs to, and its webhook: URL, pending updates, last error.
    Info,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["count", "users"]))]
struct OnboardArgs {
    /// How many numbered trainees (`<prefix>-01`, `<prefix>-02`, …).
    #[arg(long)]
    count: Option<usize>,
    /// A file with one first name a line; each becomes a user id (sanitised, made unique).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// The start of every user id: `trainee` for `--count` by default; with `--users`, ids are
    /// `<prefix>-<name>` when it is given. `onboard revoke --prefix` finds the cohort by it.
    #[arg(long)]
    prefix: Option<String>,
    /// The gateway's public address, as trainees reach it (e.g. https://gateway.example).
    #[arg(long, required = true)]
    url: Option<String>,
    /// A tier for every key; by default each trainee's own tier (the config's default_tier).
    #[arg(long)]
    tier: Option<String>,
    /// Where to write the ZIPs, the PNGs and index.html.
    #[arg(long, default_value = "kits")]
    out: PathBuf,
    /// How long each download link stays usable (e.g. 12h, 7d).
    #[arg(long, default_value = "7d", value_parser = exoclaw::config::units::parse_duration)]
    link_ttl: Duration,
}

#[derive(Subcommand)]
enum OnboardCommand {
    /// Revoke every key of a cohort (user ids starting with the prefix) and its unused links.
    Revoke {
        #[arg(long)]
        prefix: String,
    },
}

impl OnboardArgs {
    fn plan(self) -> Result<CohortPlan, String> {
        let users = match (&self.users, self.count) {
            (Some(file), _) => {
                let names = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                roster::from_names(&names, self.prefix.as_deref())?
            }
            (None, Some(count)) => {
                roster::numbered(self.prefix.as_deref().unwrap_or("trainee"), count)?
            }
            (None, None) => return Err("give --count or --users".to_owned()),
        };
        Ok(CohortPlan {
            users,
            tier: self.tier,
            gateway_url: self.url.ok_or("give --url")?,
            out_dir: self.out,
            link_ttl: self.link_ttl,
        })
    }
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
            top,
            watch,
            json,
            csv,
        } => {
            let format = match (json, csv) {
                (true, _) => UsageFormat::Json,
                (_, true) => UsageFormat::Csv,
                _ => UsageFormat::Table,
            };
            Config::load(&config)
                .map_err(|e| e.to_string())
                .and_then(|config| exoclaw::cli::usage(&config, &since, top, watch, format))
        }
        Command::Onboard {
            config,
            command,
            kits,
        } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| match command {
                Some(OnboardCommand::Revoke { prefix }) => {
                    exoclaw::cli::onboard_revoke(&config, &prefix)
                }
                None => kits
                    .plan()
                    .and_then(|plan| exoclaw::cli::onboard(&config, &plan)),
            }),
        Command::Keys { config, command } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| match command {
                KeysCommand::Create { user, tier } => {
                    exoclaw::cli::keys_create(&config, &user, tier.as_deref())
                }
                KeysCommand::List { json } => exoclaw::cli::keys_list(&config, json),
                KeysCommand::Revoke { id } => exoclaw::cli::keys_revoke(&config, &id),
            }),
        Command::Runs { config, command } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                use exoclaw::cli::runs;
                match command {
                    RunsCommand::List {
                        status,
                        tenant,
                        owner,
                        limit,
                        json,
                    } => runs::runs_list(
                        &config,
                        status.as_deref(),
                        tenant.as_deref(),
                        owner.as_deref(),
                        limit,
                        json,
                    ),
                    RunsCommand::Show { id } => runs::runs_show(&config, &id),
                    RunsCommand::Cancel { id } => runs::runs_cancel(&config, &id),
                    RunsCommand::Retry { id } => runs::runs_retry(&config, &id),
                }
            }),
        Command::Tenants { config, command } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                use exoclaw::cli::runs;
                match command {
                    TenantsCommand::List { json } => runs::tenants_list(&config, json),
                    TenantsCommand::Pin { id, pool } => {
                        runs::tenants_pin(&config, &id, Some(&pool))
                    }
                    TenantsCommand::Unpin { id } => runs::tenants_pin(&config, &id, None),
                }
            }),
        Command::Telegram { config, command } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                use exoclaw::cli::telegram;
                match command {
                    TelegramCommand::SetWebhook { url } => telegram::set_webhook(&config, &url),
                    TelegramCommand::DeleteWebhook => telegram::delete_webhook(&config),
                    TelegramCommand::Info => telegram::info(&config),
                }
            }),
        Command::Demo { listen, keep } => {
            exoclaw::demo::run(exoclaw::demo::DemoOptions { listen, keep })
        }
        Command::MockNode {
            listen,
            event_delay,
            threads,
            token_env,
            skills,
        } => exoclaw::mock::standalone::run(StandaloneOptions {
            listen,
            event_delay,
            threads,
            token_env,
            skills,
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
