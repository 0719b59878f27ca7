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
use komlog_hub::admin::{self, AdminRequest, AgentKey};
use komlog_hub::cluster::BusConfig;
use komlog_hub::server::{self, HubConfig};
use komlog_hub::store::postgres::PgStore;
use komlog_hub::store::redb::RedbStore;
use komlog_hub::store::{HubStore, SharedLogins};
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
    /// Keep users, keys, shares and samples in PostgreSQL
    /// (`postgres://USER@HOST/DB`) instead of the data directory. `serve
    /// --store URL --bus URL`: several hubs on one database and one bus are one
    /// service. The other commands go to the hub running on --data, or else
    /// straight to this store.
    #[arg(long, value_name = "URL", env = "KOMLOG_HUB_STORE", global = true)]
    store: Option<String>,
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
        /// The cluster bus: a NATS server with JetStream (`nats://host:4222`),
        /// which carries writes, kicks and share changes to every hub. Needs --store.
        #[arg(long, value_name = "URL", env = "KOMLOG_HUB_BUS")]
        bus: Option<String>,
        /// The cluster's name: hubs with the same --bus and name form one
        /// cluster (its stream is KOMLOG_<NAME>).
        #[arg(
            long,
            value_name = "NAME",
            env = "KOMLOG_HUB_CLUSTER",
            default_value = "komlog"
        )]
        cluster: String,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Web API tokens, for scripts (`Authorization: Bearer TOKEN` on /api/v1/).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Agents: the public keys that log in as a user.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Share OWNER's URI and every uri below it with another user, read-only
    /// (`share list` lists the shares).
    Share(ShareArgs),
    /// Withdraw a share given with `share OWNER URI --with USER`. On a running
    /// hub, USER's hooks on uris no other share covers end at once.
    Unshare {
        /// The user sharing.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// The uri as it was shared.
        uri: String,
        /// The user it was shared with.
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
        /// How many samples (`--limit`, as komlogd spells it, also works).
        #[arg(short = 'n', long, visible_alias = "limit", default_value_t = 10)]
        count: usize,
        /// Print JSON: the only format of this command, accepted as komlogd's
        /// `query --json`. Datapoint values are JSON numbers with the stored digits.
        #[arg(long)]
        json: bool,
    },
    /// Copy a data directory's store into PostgreSQL (users, agent keys, shares,
    /// passwords, tokens, last logins, metrics and every sample), then check
    /// it: one `OWNER:URI COUNT checksum-ok` line per uri. Exits 1 on any
    /// mismatch. Re-runnable: a second run adds nothing. Stop the hub first.
    Migrate {
        /// The data directory to copy from (default: --data).
        #[arg(long, value_name = "DATA_DIR")]
        from: Option<PathBuf>,
        /// The database to copy to: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The PostgreSQL schema to use (created when missing; default: the
        /// database's search_path, normally `public`).
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
    },
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish,
    /// powershell). Needs no data directory.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, or with --dir write it and a page
    /// per subcommand (komlog-hub-serve.1, ...) there. Needs no data directory.
    Manpage {
        /// Write the pages here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ShareArgs {
    #[command(subcommand)]
    command: Option<ShareCommand>,
    /// The user sharing.
    #[arg(value_parser = parse_username, required = true)]
    owner: Option<Username>,
    /// A local uri of OWNER.
    #[arg(required = true)]
    uri: Option<String>,
    /// The user who may read it.
    #[arg(long = "with", value_parser = parse_username, required = true)]
    with: Option<Username>,
}

#[derive(Subcommand, Debug)]
enum ShareCommand {
    /// Print the shares, one `OWNER URI USER` line each (tab-separated), sorted.
    List {
        /// Only the shares OWNER granted.
        #[arg(value_parser = parse_username)]
        owner: Option<Username>,
        /// Print JSON: `{"shares": [{"owner", "uri", "with"}]}`.
        #[arg(long)]
        json: bool,
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
    /// Remove a user and everything of theirs, in one transaction: their agent
    /// keys, the shares they granted and were granted, and all their metrics
    /// and samples. A user added again under the name starts empty. On a
    /// running hub, their sessions are closed with 4403.
    Remove {
        /// The user.
        #[arg(value_parser = parse_username)]
        name: Username,
    },
    /// Set a user's password for the web page and API (stored as an argon2id
    /// hash). Asked twice on a terminal, or read from the first line of stdin
    /// with --password-stdin. Ends the user's browser sessions.
    Passwd {
        /// The user.
        #[arg(value_parser = parse_username)]
        name: Username,
        /// Read the password from the first line of stdin.
        #[arg(long, conflicts_with = "clear")]
        password_stdin: bool,
        /// Remove the password: the user can no longer log in to the web.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Make a token for USER and print it (once: only its SHA-256 is kept).
    Add {
        /// The user it acts as.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// A name for it, unique per user (letters, digits, '_', '.', '-').
        name: String,
    },
    /// Print a user's tokens (names and creation times) as JSON.
    List {
        /// The user.
        #[arg(value_parser = parse_username)]
        owner: Username,
    },
    /// Revoke a token.
    Remove {
        /// The user.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// The token's name.
        name: String,
    },
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
    /// Print a user's agents as JSON (with each key's SHA256 fingerprint).
    List {
        /// The user.
        #[arg(value_parser = parse_username)]
        owner: Username,
    },
    /// Unregister one agent key of OWNER: its next login is refused, and on a
    /// running hub the sessions it opened are closed with 4403.
    #[command(group(clap::ArgGroup::new("key").required(true)))]
    Remove {
        /// The user the agent logs in as.
        #[arg(value_parser = parse_username)]
        owner: Username,
        /// The key's fingerprint as `agent list` and `ssh-keygen -l` print it
        /// (`SHA256:…`).
        #[arg(long, group = "key")]
        fingerprint: Option<String>,
        /// The agent's public key file.
        #[arg(long, group = "key")]
        pubkey: Option<PathBuf>,
        /// The agent id `agent add` printed.
        #[arg(long, group = "key")]
        id: Option<String>,
    },
}

fn parse_username(s: &str) -> Result<Username, String> {
    Username::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(status) = generate(&cli.command) {
        return status;
    }
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

/// `completions` and `manpage`, generated from the definition above; `None` for
/// the other commands.
fn generate(command: &Command) -> Option<ExitCode> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    let rendered = match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "komlog-hub", &mut out);
            Ok(())
        }
        Command::Manpage { dir: None } => clap_mangen::Man::new(Cli::command()).render(&mut out),
        Command::Manpage { dir: Some(dir) } => {
            out = format!("wrote the manual pages to {}\n", dir.display()).into_bytes();
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
        }
        _ => return None,
    };
    let written = rendered.and_then(|()| {
        let mut stdout = std::io::stdout().lock();
        std::io::Write::write_all(&mut stdout, &out)?;
        std::io::Write::flush(&mut stdout)
    });
    Some(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("komlog-hub: error: {e}");
            ExitCode::FAILURE
        }
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Migrate { from, to, schema } = &cli.command {
        let Some(from) = from.clone().or_else(|| cli.data.clone()) else {
            eprintln!(
                "komlog-hub: error: name the data directory to copy: --from DIR or --data DIR"
            );
            std::process::exit(2);
        };
        let (to, schema) = (to.clone(), schema.clone());
        return tokio::task::spawn_blocking(move || migrate(&from, &to, schema.as_deref())).await?;
    }
    let Some(data) = cli.data else {
        // Usage error: same status as clap's.
        eprintln!(
            "komlog-hub: error: the data directory is not set: pass --data DIR or set KOMLOG_HUB_DATA"
        );
        std::process::exit(2);
    };
    let mut json = false;
    let request = match cli.command {
        Command::Serve {
            listen,
            challenge_validity,
            tls_cert,
            tls_key,
            bus,
            cluster,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(HubTls::load(&cert, &key)?),
                // clap makes each need the other.
                _ => None,
            };
            let cluster = match (cli.store, bus) {
                (Some(store), Some(bus)) => Some(ClusterArgs {
                    store,
                    bus,
                    name: cluster,
                }),
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => {
                    eprintln!(
                        "komlog-hub: error: serve --store and --bus go together: a hub on PostgreSQL is one of a cluster, and the bus carries what the others must see"
                    );
                    std::process::exit(2);
                }
            };
            return serve(data, listen, challenge_validity, tls, cluster).await;
        }
        Command::User { command } => match command {
            UserCommand::Add { name } => AdminRequest::AddUser { name },
            UserCommand::List => AdminRequest::ListUsers,
            UserCommand::Remove { name } => AdminRequest::RemoveUser { name },
            UserCommand::Passwd {
                name,
                password_stdin,
                clear,
            } => {
                let phc = if clear {
                    None
                } else {
                    let password = read_new_password(password_stdin)?;
                    Some(
                        komlog_hub::web::auth::hash_password(&password)
                            .map_err(anyhow::Error::msg)?,
                    )
                };
                AdminRequest::SetPassword { name, phc }
            }
        },
        Command::Token { command } => match command {
            TokenCommand::Add { owner, name } => {
                let token = komlog_hub::web::auth::new_api_token();
                let digest: String = komlog_hub::web::auth::token_digest(&token)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let request = AdminRequest::AddToken {
                    owner: owner.clone(),
                    name: name.clone(),
                    digest,
                };
                admin::run(&data, cli.store.as_deref(), request)
                    .await
                    .with_context(|| format!("data directory {}", data.display()))?;
                println!("{token}");
                eprintln!(
                    "komlog-hub: token {name:?} of {owner}: keep it now, it is not shown again \
                     (use it as `Authorization: Bearer TOKEN`)"
                );
                return Ok(());
            }
            TokenCommand::List { owner } => AdminRequest::ListTokens { owner },
            TokenCommand::Remove { owner, name } => AdminRequest::RemoveToken { owner, name },
        },
        Command::Agent { command } => match command {
            AgentCommand::Add { owner, pubkey } => AdminRequest::AddAgent {
                owner,
                public_line: read_public_key(&pubkey)?,
            },
            AgentCommand::List { owner } => AdminRequest::ListAgents { owner },
            AgentCommand::Remove {
                owner,
                fingerprint,
                pubkey,
                id,
            } => {
                let key = match (fingerprint, pubkey, id) {
                    (Some(fp), _, _) => AgentKey::Fingerprint(fp),
                    (_, Some(pubkey), _) => AgentKey::PublicLine(read_public_key(&pubkey)?),
                    (_, _, Some(id)) => AgentKey::Id(id),
                    // clap requires one of the three.
                    (None, None, None) => anyhow::bail!("name the key to remove"),
                };
                AdminRequest::RemoveAgent { owner, key }
            }
        },
        Command::Share(ShareArgs {
            command: Some(ShareCommand::List { owner, json: j }),
            ..
        }) => {
            json = j;
            AdminRequest::ListShares { owner }
        }
        Command::Share(ShareArgs {
            command: None,
            owner: Some(owner),
            uri: Some(uri),
            with: Some(with),
        }) => AdminRequest::Share {
            owner,
            prefix: uri,
            with,
        },
        // clap requires OWNER, URI and --with without a subcommand.
        Command::Share(_) => anyhow::bail!("share needs OWNER URI --with USER"),
        Command::Unshare { owner, uri, with } => AdminRequest::Unshare {
            owner,
            prefix: uri,
            with,
        },
        Command::Kick { user, sid } => AdminRequest::Kick { user, sid },
        Command::Sessions => AdminRequest::Sessions,
        Command::Query {
            owner, uri, count, ..
        } => AdminRequest::Query { owner, uri, count },
        // Printed by `generate` before the runtime starts, or run above.
        Command::Completions { .. } | Command::Manpage { .. } | Command::Migrate { .. } => {
            return Ok(());
        }
    };
    let reply = admin::run(&data, cli.store.as_deref(), request.clone())
        .await
        .with_context(|| format!("data directory {}", data.display()))?;
    print_reply(&request, &reply, json);
    Ok(())
}

/// `migrate`: copy the store in `from` to PostgreSQL at `to` and check it.
fn migrate(from: &std::path::Path, to: &str, schema: Option<&str>) -> anyhow::Result<()> {
    let file = from.join(komlog_hub::store::redb::DATABASE_FILE);
    anyhow::ensure!(
        file.exists(),
        "there is no hub store {} to copy",
        file.display()
    );
    let source =
        RedbStore::open(from).with_context(|| format!("data directory {}", from.display()))?;
    let target = PgStore::connect(to, schema)?;
    let mut out = std::io::stdout().lock();
    let ok = komlog_hub::migrate::migrate(&source, &target, &mut out)?;
    anyhow::ensure!(
        ok,
        "the copy in {} differs from the source",
        target.target()
    );
    Ok(())
}

/// The shortest web password accepted.
const MIN_PASSWORD_CHARS: usize = 8;

/// A new password: from stdin's first line, or asked twice on the terminal.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("new web password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
        anyhow::ensure!(first == again, "the two passwords differ; nothing changed");
        first
    } else {
        anyhow::bail!(
            "stdin is not a terminal: pass --password-stdin to read the password from it"
        );
    };
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD_CHARS,
        "a web password has at least {MIN_PASSWORD_CHARS} characters; nothing changed"
    );
    Ok(password)
}

/// The canonical check of an agent's public key file; returns its text.
fn read_public_key(path: &std::path::Path) -> anyhow::Result<String> {
    let public_line = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key file {}", path.display()))?;
    komlog_protocol::openssh::parse_openssh_public(&public_line)
        .with_context(|| format!("{}", path.display()))?;
    Ok(public_line)
}

fn print_reply(request: &AdminRequest, reply: &serde_json::Value, json: bool) {
    let count = |k: &str| reply.pointer(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let kicked = || {
        let n = reply
            .get("kicked")
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len);
        if n > 0 {
            format!("; closed {n} session(s) with 4403")
        } else {
            String::new()
        }
    };
    let text = |k: &str| {
        reply
            .pointer(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    match request {
        AdminRequest::AddUser { name } => println!("added user {name}"),
        AdminRequest::SetPassword { name, phc: Some(_) } => {
            println!("set the web password of {name}")
        }
        AdminRequest::SetPassword { name, phc: None } => {
            println!("cleared the web password of {name}: they cannot log in to the web")
        }
        AdminRequest::RemoveToken { owner, name } => {
            println!("revoked token {name:?} of {owner}")
        }
        AdminRequest::AddAgent { owner, .. } => {
            println!("registered agent {} for user {owner}", text("/agent/id"))
        }
        AdminRequest::Share {
            owner,
            prefix,
            with,
        } => println!("shared {owner}:{prefix} and every uri below it with {with}, read-only"),
        AdminRequest::RemoveUser { name } => println!(
            "removed user {name} with {} agent key(s), {} share(s) given, {} share(s) received, {} metric(s) and {} sample(s){}",
            count("/removed/agents"),
            count("/removed/shares_given"),
            count("/removed/shares_received"),
            count("/removed/metrics"),
            count("/removed/samples"),
            kicked()
        ),
        AdminRequest::RemoveAgent { owner, .. } => println!(
            "removed agent {} ({}) of user {owner}{}",
            text("/agent/id"),
            text("/agent/fingerprint"),
            kicked()
        ),
        AdminRequest::Unshare {
            owner,
            prefix,
            with,
        } => println!("{owner} no longer shares {prefix} with {with}"),
        AdminRequest::ListShares { .. } if !json => {
            for share in reply
                .get("shares")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let field = |k: &str| share.get(k).and_then(|v| v.as_str()).unwrap_or("?");
                println!("{}\t{}\t{}", field("owner"), field("uri"), field("with"));
            }
        }
        AdminRequest::Query { .. } => println!("{}", komlog_hub::cli_json::query_text(reply)),
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

/// `serve --store --bus --cluster`.
struct ClusterArgs {
    store: String,
    bus: String,
    name: String,
}

async fn serve(
    data: PathBuf,
    listen: SocketAddr,
    challenge_validity: u64,
    tls: Option<HubTls>,
    cluster: Option<ClusterArgs>,
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
    let (store, parts): (Arc<dyn HubStore>, _) = match cluster {
        None => {
            let data = data.clone();
            let store = tokio::task::spawn_blocking(move || RedbStore::open(&data)).await??;
            (Arc::new(store), None)
        }
        Some(args) => {
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create the data directory {}", data.display()))?;
            let url = args.store.clone();
            let store =
                Arc::new(tokio::task::spawn_blocking(move || PgStore::connect(&url, None)).await??);
            let parts = server::ClusterParts {
                logins: Arc::clone(&store) as Arc<dyn SharedLogins>,
                bus: BusConfig {
                    url: args.bus,
                    name: args.name,
                },
            };
            (store as Arc<dyn HubStore>, Some(parts))
        }
    };
    let mut config = HubConfig::new(listen, data);
    config.challenge_validity = Duration::from_secs(challenge_validity);
    config.tls = tls;
    let mut running = server::start_with(config, store, parts).await?;
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
