//! The `komlog-hub` command line: serve, and manage users, agents and shares.
//!
//! Exit status: 0 on success, 1 when a command fails, 2 for bad usage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use komlog_hub::admin::{self, AdminRequest};
use komlog_hub::server::{self, HubConfig};
use komlog_hub::store::redb::RedbStore;
use komlog_hub::tls::HubTls;
use komlog_protocol::Username;

/// A Komlog-compatible server: agents log in at /login and talk protocol v1 on the
/// websocket at /. Plain HTTP by default; with `serve --tls-cert --tls-key`, HTTPS
/// and secure websockets (agents then use https:// or wss:// URLs).
#[derive(Parser, Debug)]
#[command(name = "komlog-hub", version)]
struct Cli {
    /// The data directory (the store hub.redb and, while serving, hub.json).
    #[arg(long, short = 'd', env = "KOMLOG_HUB_DATA", global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve until SIGINT or SIGTERM. Logs go to stderr (KOMLOG_HUB_LOG=debug for more).
    Serve {
        /// Address and port to listen on; port 0 picks a free one (see hub.json).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Seconds a login challenge may be answered (the protocol's value is 60).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        challenge_validity: u64,
        /// Serve TLS with this certificate chain (PEM, the server's certificate
        /// first). Needs --tls-key.
        #[arg(long, value_name = "PATH", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
        #[arg(long, value_name = "PATH", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Agents: the public keys that log in as a user.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Share OWNER's URI and every uri below it with another user, read-only.
    Share {
        /// The user sharing.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// A local uri of OWNER.
        uri: String,
        /// The user who may read it.
        #[arg(long = "with", value_parser = parse_username)]
        with: Username,
    },
    /// Close a user's sessions with code 4403 and invalidate their cookies, so
    /// their agents log in again. Needs a running hub.
    Kick {
        /// The user.
        #[arg(value_parser = parse_username)]
        user: Username,
        /// Only this session id.
        #[arg(long)]
        sid: Option<String>,
    },
    /// Print the live sessions as JSON. Needs a running hub.
    Sessions,
    /// Print the newest samples of OWNER's URI as JSON, newest first (and, for a
    /// datasource, the datapoints it supplies, as its agent declared them).
    Query {
        /// The owner.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// A local uri.
        uri: String,
        /// How many samples.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: usize,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user (names are lowercased).
    Add {
        /// The username: levels of [A-Za-z0-9_-] joined by '.', at most 256 characters.
        #[arg(value_parser = parse_username)]
        name: Username,
    },
    /// Print the users as JSON.
    List,
}

#[derive(Subcommand, Debug)]
enum AgentCommand {
    /// Register an agent key for user OWNER (the agent logs in with `- username: OWNER`).
    Add {
        /// The user the agent logs in as; must exist.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// The agent's public key file: one OpenSSH line `ssh-rsa AAAA…`, RSA of at
        /// least 4096 bits (komlogd's key.pub).
        #[arg(long)]
        pubkey: PathBuf,
    },
    /// Print a user's agents as JSON.
    List {
        /// The user.
        #[arg(value_parser = parse_username)]
        owner: Username,
    },
}

fn parse_username(s: &str) -> Result<Username, String> {
    Username::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("komlog-hub: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("komlog-hub: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(data) = cli.data else {
        // Usage error: same status as clap's.
        eprintln!(
            "komlog-hub: error: the data directory is not set: pass --data DIR or set KOMLOG_HUB_DATA"
        );
        std::process::exit(2);
    };
    let request = match cli.command {
        Command::Serve {
            listen,
            challenge_validity,
            tls_cert,
            tls_key,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(HubTls::load(&cert, &key)?),
                // clap makes each need the other.
                _ => None,
            };
            return serve(data, listen, challenge_validity, tls).await;
        }
        Command::User { command } => match command {
            UserCommand::Add { name } => AdminRequest::AddUser { name },
            UserCommand::List => AdminRequest::ListUsers,
        },
        Command::Agent { command } => match command {
            AgentCommand::Add { owner, pubkey } => {
                let public_line = std::fs::read_to_string(&pubkey).with_context(|| {
                    format!("cannot read the public key file {}", pubkey.display())
                })?;
                komlog_protocol::openssh::parse_openssh_public(&public_line)
                    .with_context(|| format!("{}", pubkey.display()))?;
                AdminRequest::AddAgent { owner, public_line }
            }
            AgentCommand::List { owner } => AdminRequest::ListAgents { owner },
        },
        Command::Share { owner, uri, with } => AdminRequest::Share {
            owner,
            prefix: uri,
            with,
        },
        Command::Kick { user, sid } => AdminRequest::Kick { user, sid },
        Command::Sessions => AdminRequest::Sessions,
        Command::Query { owner, uri, count } => AdminRequest::Query { owner, uri, count },
    };
    let reply = admin::run(&data, request.clone())
        .await
        .with_context(|| format!("data directory {}", data.display()))?;
    print_reply(&request, &reply);
    Ok(())
}

fn print_reply(request: &AdminRequest, reply: &serde_json::Value) {
    let text = |k: &str| {
        reply
            .pointer(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    match request {
        AdminRequest::AddUser { name } => println!("added user {name}"),
        AdminRequest::AddAgent { owner, .. } => {
            println!("registered agent {} for user {owner}", text("/agent/id"))
        }
        AdminRequest::Share {
            owner,
            prefix,
            with,
        } => println!("shared {owner}:{prefix} and every uri below it with {with}, read-only"),
        AdminRequest::Kick { user, .. } => {
            let sids: Vec<String> = reply
                .get("kicked")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "kicked {} session(s) of {user}: {}",
                sids.len(),
                sids.join(", ")
            );
        }
        _ => println!(
            "{}",
            serde_json::to_string_pretty(reply).unwrap_or_else(|_| reply.to_string())
        ),
    }
}

async fn serve(
    data: PathBuf,
    listen: SocketAddr,
    challenge_validity: u64,
    tls: Option<HubTls>,
) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KOMLOG_HUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a log redirected to a file or a pipe
    // stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let store = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || RedbStore::open(&data)).await??
    };
    let mut config = HubConfig::new(listen, data);
    config.challenge_validity = Duration::from_secs(challenge_validity);
    config.tls = tls;
    let mut running = server::start(config, Arc::new(store)).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::select! {
        r = running.wait() => {
            r?;
            anyhow::bail!("the server stopped unexpectedly");
        }
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    running.stop().await?;
    tracing::info!("stopped");
    Ok(())
}
