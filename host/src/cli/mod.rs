//! The command-line front end: argument parsing, the stdin upload, `query`, and
//! the mapping of every failure to a message on stderr and a non-zero exit status.
//!
//! Exit status: 0 success, 1 a failure while working (store, module, refused
//! sample), 2 bad usage or bad configuration.

mod columns;
mod deliver;
mod export;
mod format;
mod generate;
mod import;
mod impulse;
mod new;
mod progress;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::agent::{self, Agent};
use crate::config::{self, Config};
use crate::model::{MAX_DATASOURCE_BYTES, Sample, Value, now_us};
use crate::store::Store;
use crate::store::read::{ReadAnswer, ReadRequest};
use crate::{keys, logging};

/// komlogd: the Komlog agent. Runs WebAssembly impulses over time series.
#[derive(Debug, Parser)]
#[command(name = "komlogd", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Upload all of stdin as one sample to this uri, fire the impulses it
    /// triggers, and exit. The text is a datasource sample unless --datapoint is given.
    #[arg(short, long, value_name = "URI")]
    pub uri: Option<String>,
    /// With -u: stdin holds a number; upload it as a datapoint sample.
    #[arg(long, requires = "uri")]
    pub datapoint: bool,
    /// With -u: the sample's timestamp in microseconds since the Unix epoch
    /// (default: now). Useful to replay recorded data.
    #[arg(
        long,
        requires = "uri",
        value_name = "MICROS",
        allow_negative_numbers = true
    )]
    pub ts: Option<i64>,
    /// With -u: how long to wait for the store while another komlogd (a
    /// concurrent `komlogd -u`, `query`) holds it, e.g. `30s`, `2min`.
    #[arg(
        long,
        requires = "uri",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_wait
    )]
    pub wait: Duration,
    /// What to do; without a command and without -u, run the agent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show recent samples of uris (oldest first), list the stored uris, or
    /// export samples (--format).
    ///
    /// With --format (or -o FILE.csv|.jsonl|.parquet|.arrow) every sample of
    /// the uris within --from/--to is written, oldest first, uri after uri,
    /// to stdout or to FILE (see `komlogd import` to read it back).
    Query {
        /// The uris; omit them to list every stored uri (with --format: to
        /// export every stored uri).
        uris: Vec<String>,
        /// How many of the latest samples of each uri to show (the latest
        /// within --from/--to when given); default 10, and every sample with
        /// --format.
        #[arg(short = 'n', long)]
        limit: Option<usize>,
        /// Only samples at or after this time: RFC 3339 (`2024-05-01T12:00:00Z`),
        /// relative to now (`-1h`, `-30min`), `now`, or µs since the Unix epoch.
        #[arg(
            long,
            value_name = "TIME",
            allow_hyphen_values = true,
            value_parser = parse_time
        )]
        from: Option<i64>,
        /// Only samples at or before this time (as --from).
        #[arg(
            long,
            value_name = "TIME",
            allow_hyphen_values = true,
            value_parser = parse_time
        )]
        to: Option<i64>,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with_all = ["format", "output"])]
        json: bool,
        /// Export in this format: csv (`uri,ts,kind,value`), jsonl, parquet or
        /// arrow (an Arrow IPC file).
        #[arg(long, value_enum)]
        format: Option<columns::Format>,
        /// Write the export to FILE (replaced whole once complete) instead of
        /// stdout; its extension gives the format when --format is not given.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import samples from CSV, JSON Lines, Parquet or Arrow files.
    ///
    /// Every row is checked first; if any is bad, each is reported as
    /// FILE:LINE (FILE: row N for Parquet and Arrow) and nothing is imported.
    /// Then the samples, sorted by time, go through the running agent, or
    /// with none running through the local pipeline: stored, impulses fired
    /// (unless --no-fire), queued for the server. A sample already stored
    /// with the same value is not stored or fired again, so importing a file
    /// twice is harmless. CSV also comes loose: `uri,time,value` (header
    /// optional, time RFC 3339 or µs, a number is a datapoint, any other text
    /// a datasource).
    Import(import::ImportArgs),
    /// Work on impulses: `komlogd impulse test MODULE.wasm --data FILE…`
    /// replays recorded samples through an impulse (see `komlogd impulse test --help`).
    #[command(subcommand)]
    Impulse(impulse::ImpulseCommand),
    /// Load the configuration, every impulse and every package, report
    /// problems, and exit.
    ///
    /// Each enabled package is loaded as the agent would (compiled,
    /// instantiated with its grants, its `load` called) and its jobs and
    /// impulses are listed. Exits with status 1 when an impulse or a package
    /// does not load.
    Check,
    /// Show the running agent's impulses, packages and server link.
    ///
    /// Per impulse: version, state, fires, skips, failures, call durations,
    /// memory and dropped writes. Per package: state, version, jobs, runs,
    /// failures and the last run. In connected mode, the server link: its
    /// state, the outbox, the samples sent, acknowledged and refused, and the
    /// last error.
    Status {
        /// Print the agent's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the agent until SIGINT or SIGTERM (the default without a command).
    Run,
    /// Create a starting project: `komlogd new impulse --lang rust|python|js|c NAME`.
    New(new::NewArgs),
    /// Print a shell completion script on stdout.
    ///
    /// E.g. `komlogd completions bash > /usr/share/bash-completion/completions/komlogd`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, or write every page to a directory.
    ///
    /// E.g. `komlogd manpage > /usr/local/share/man/man1/komlogd.1`, or
    /// `komlogd manpage --dir /usr/local/share/man/man1` for komlogd.1 and a page
    /// per subcommand (komlogd-query.1, ...).
    Manpage {
        /// Write komlogd.1 and one page per subcommand here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// A failure and its exit status.
#[derive(Debug)]
pub struct Failure {
    /// What to print.
    pub message: String,
    /// The exit status.
    pub status: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: 2,
        }
    }
    fn runtime(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: 1,
        }
    }
}

/// Default configuration path: `~/.komlogd/komlogd.yaml`.
pub fn default_config_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".komlogd").join("komlogd.yaml")
}

/// Run the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("komlogd: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

/// Logging for the one-shot commands: stderr only.
fn init_stderr_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KOMLOGD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only on a terminal: piped or redirected logs stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn load_config(cli: &Cli) -> Result<Config, Failure> {
    let path = cli.config.clone().unwrap_or_else(default_config_path);
    if cli.config.is_none() && !path.exists() {
        return Err(first_run(&path));
    }
    let config = Config::load(&path).map_err(|e| Failure::usage(e.to_string()))?;
    for w in &config.warnings {
        eprintln!("komlogd: warning: {w}");
    }
    for note in agent::config_notices(&config) {
        eprintln!("komlogd: warning: {note}");
    }
    Ok(config)
}

/// First run: create the configuration directory with a commented komlogd.yaml,
/// the log directory and the key pair, then ask for a username.
fn first_run(path: &Path) -> Failure {
    let dir = path.parent().unwrap_or(Path::new("."));
    let created = std::fs::create_dir_all(dir.join("log"))
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
        })
        .and_then(|mut f| std::io::Write::write_all(&mut f, config::TEMPLATE.as_bytes()));
    if let Err(e) = created {
        return Failure::runtime(format!("cannot create {}: {e}", path.display()));
    }
    let key = match keys::load_or_create(&dir.join(keys::DEFAULT_PRIVATE_KEY_FILE)) {
        Ok(key) => key,
        Err(e) => return Failure::runtime(e.to_string()),
    };
    Failure::usage(format!(
        "created {} and a new key pair in {}.\n\
         This is the public key, add it to your Komlog account:\n{}\n\
         Set username in configuration file. Edit {} and add `- username: <your user>`.",
        path.display(),
        dir.display(),
        key.public_line,
        path.display()
    ))
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    // Generated from the definition above; no configuration, no logging.
    match (&cli.uri, &cli.command) {
        (None, Some(Command::Completions { shell })) => return generate::completions(*shell),
        (None, Some(Command::Manpage { dir })) => return generate::manpage(dir.as_deref()),
        _ => {}
    }
    if !matches!((&cli.uri, &cli.command), (None, None | Some(Command::Run))) {
        init_stderr_logging();
    }
    let stdin_has_input = stdin_has_input();
    match (&cli.uri, &cli.command) {
        (Some(_), Some(_)) => Err(Failure::usage("-u/--uri cannot be combined with a command")),
        (Some(uri), None) => {
            if !stdin_has_input {
                return Err(Failure::usage(
                    "-u/--uri given, but no input on stdin: pipe the data in, e.g. `df -k | komlogd -u host.disk`",
                ));
            }
            let config = load_config(&cli)?;
            upload(&config, uri, cli.datapoint, cli.ts, cli.wait)
        }
        (None, _) if stdin_has_input && cli.command.is_none() => Err(Failure::usage(
            "data on stdin, but no uri: add -u URI to upload it",
        )),
        (
            None,
            Some(Command::Query {
                uris,
                limit,
                from,
                to,
                json,
                format,
                output,
            }),
        ) => {
            if let (Some(from), Some(to)) = (from, to)
                && from > to
            {
                return Err(Failure::usage(format!(
                    "--from ({}) is after --to ({})",
                    format::time(*from),
                    format::time(*to)
                )));
            }
            let format = match (format, output) {
                (Some(f), _) => Some(*f),
                (None, Some(path)) => {
                    Some(columns::format_for(path, None, "--format").map_err(Failure::usage)?)
                }
                (None, None) => None,
            };
            if uris.is_empty() && format.is_none() && (from.is_some() || to.is_some()) {
                return Err(Failure::usage(
                    "--from and --to need a uri (or --format, to export every stored uri)",
                ));
            }
            let config = load_config(&cli)?;
            let range = Range {
                from: *from,
                to: *to,
            };
            match format {
                Some(format) => export::export(
                    &config,
                    &export::Export {
                        uris,
                        range,
                        limit: *limit,
                        format,
                        output: output.as_deref(),
                    },
                ),
                None => query(&config, uris, limit.unwrap_or(10), range, *json),
            }
        }
        (None, Some(Command::Import(args))) => {
            let config = load_config(&cli)?;
            import::import(&config, args)
        }
        (None, Some(Command::Impulse(command))) => impulse::run(command, cli.config.as_deref()),
        (None, Some(Command::New(args))) => new::run(args),
        (None, Some(Command::Check)) => {
            let config = load_config(&cli)?;
            check(&config)
        }
        (None, Some(Command::Status { json })) => {
            let config = load_config(&cli)?;
            status(&config, *json)
        }
        // Printed before the stdin check, above.
        (None, Some(Command::Completions { .. } | Command::Manpage { .. })) => Ok(()),
        (None, Some(Command::Run) | None) => {
            let config = load_config(&cli)?;
            run_agent(&config)
        }
    }
}

fn status(config: &Config, json: bool) -> Result<(), Failure> {
    let socket = agent::status::control_socket_path(&config.dir);
    let report = agent::status::query(&socket).map_err(|e| Failure::runtime(e.to_string()))?;
    print!("{}", format::status(&report, json));
    Ok(())
}

/// True when fd 0 is a pipe, a socket or a regular file (a terminal or /dev/null
/// is no input). Sockets count: Node.js, socket-activated services and some
/// process supervisors hand their children a socket pair as a "pipe".
fn stdin_has_input() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .map(|m| {
            let t = m.file_type();
            t.is_fifo() || t.is_socket() || t.is_file()
        })
        .unwrap_or(false)
}

fn read_stdin_value(datapoint: bool) -> Result<Value, Failure> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_DATASOURCE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::runtime(format!("cannot read stdin: {e}")))?;
    if bytes.is_empty() {
        // As a job whose command prints nothing: no input, no sample.
        return Err(Failure::usage(
            "stdin is empty: nothing was uploaded (an upload needs at least one byte of input)",
        ));
    }
    if bytes.len() > MAX_DATASOURCE_BYTES {
        return Err(Failure::usage(format!(
            "stdin holds more than {MAX_DATASOURCE_BYTES} bytes, the limit of a sample; nothing was uploaded"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Failure::usage(format!(
            "stdin is not UTF-8 text (invalid byte at offset {}); nothing was uploaded",
            e.utf8_error().valid_up_to()
        ))
    })?;
    if !datapoint {
        return Ok(Value::Datasource(text));
    }
    let number = text.trim();
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Datapoint(v)),
        _ => Err(Failure::usage(format!(
            "--datapoint: stdin must hold one finite number, found {:?}",
            truncate(number, 40)
        ))),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn open_agent(config: &Config) -> Result<Agent, Failure> {
    let agent = Agent::open_with(config, &progress::agent_options())
        .map_err(|e| Failure::runtime(e.to_string()))?;
    for e in &agent.load_errors {
        eprintln!("komlogd: not loaded: {e}");
    }
    Ok(agent)
}

/// The longest pause between two tries for the store.
const MAX_UPLOAD_PAUSE: Duration = Duration::from_millis(100);

/// `--wait`: a duration (`30s`, `2min`, `500ms`) or whole seconds.
fn parse_wait(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    crate::model::parse_duration_us(text)
        .map(Duration::from_micros)
        .map_err(|e| e.to_string())
}

/// Upload one sample from stdin: to the running agent through its control
/// socket, or, with none running, through the local pipeline. While another
/// one-shot komlogd holds the store, wait for it (up to `wait`), asking the
/// control socket again before each try (an agent may have started).
fn upload(
    config: &Config,
    uri: &str,
    datapoint: bool,
    ts: Option<i64>,
    wait: Duration,
) -> Result<(), Failure> {
    // Validate the uri and the time before reading anything.
    let sample = Sample::new(uri, 0, Value::Datapoint(0.0))
        .map_err(|e| Failure::usage(format!("-u {uri}: {e}")))?;
    let ts = ts.unwrap_or_else(now_us);
    crate::model::check_ts(ts).map_err(|e| Failure::usage(format!("--ts {ts}: {e}")))?;
    let value = read_stdin_value(datapoint)?;
    let sample = Sample {
        ts,
        value,
        ..sample
    };
    let socket = agent::status::control_socket_path(&config.dir);
    let request = agent::status::UploadRequest {
        uri: sample.uri.clone(),
        ts: sample.ts,
        datapoint: match &sample.value {
            Value::Datapoint(v) => Some(*v),
            Value::Datasource(_) => None,
        },
        datasource: match &sample.value {
            Value::Datasource(t) => Some(t.clone()),
            Value::Datapoint(_) => None,
        },
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut agent = loop {
        // A running agent takes the sample through its control socket.
        match agent::status::upload(&socket, &request) {
            Ok(answer) => return agent_answered(&answer, &sample),
            Err(agent::status::StatusError::NotRunning(_)) => {}
            Err(e @ agent::status::StatusError::Unanswered { .. }) => {
                return Err(Failure::runtime(format!(
                    "{e}\nthe sample may have been stored (and sent on to the server); \
                     running the same upload again with --ts {ts} is harmless: \
                     a sample already stored is not stored, fired or sent again"
                )));
            }
            Err(e) => return Err(Failure::runtime(e.to_string())),
        }
        match Agent::open(config) {
            Ok(agent) => break agent,
            Err(agent::AgentError::Store(crate::store::StoreError::Locked { path })) => {
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(Failure::runtime(format!(
                        "store {} stayed locked for {}: another komlogd process is using it, \
                         and no agent answers on {}; nothing was uploaded (--wait sets how long to wait)",
                        path.display(),
                        humantime::format_duration(wait),
                        socket.display()
                    )));
                }
                std::thread::sleep(jittered(pause).min(wait - waited));
                pause = (pause * 2).min(MAX_UPLOAD_PAUSE);
            }
            Err(e) => return Err(Failure::runtime(e.to_string())),
        }
    };
    for e in &agent.load_errors {
        eprintln!("komlogd: not loaded: {e}");
    }
    let report = agent
        .dispatcher
        .upload(vec![sample.clone()])
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if let Some(r) = report.rejected.first() {
        return Err(Failure::runtime(format!(
            "{}: not uploaded: {}",
            r.uri, r.reason
        )));
    }
    if report.held > 0 {
        println!(
            "{} {}: already stored (the same value at this time); nothing fired or queued again",
            format::time(sample.ts),
            uri
        );
    } else {
        println!(
            "{} {}: stored; {} impulse fire{}, {} sample{} written",
            format::time(sample.ts),
            uri,
            report.fires,
            if report.fires == 1 { "" } else { "s" },
            report.outputs,
            if report.outputs == 1 { "" } else { "s" },
        );
    }
    for (name, stats) in agent.dispatcher.stats() {
        if let Some(err) = &stats.last_error {
            eprintln!("komlogd: impulse {name}: {err}");
        }
    }
    // No agent runs to send it: send the outbox now, as the original did.
    let outcome = deliver::deliver(config, &agent, deliver::DELIVERY_DEADLINE);
    deliver::report(&outcome, config);
    Ok(())
}

/// What the running agent answered to an upload.
fn agent_answered(answer: &agent::status::UploadAnswer, sample: &Sample) -> Result<(), Failure> {
    if let Some(r) = answer.rejected.first() {
        return Err(Failure::runtime(format!(
            "{}: not uploaded: {}",
            r.uri, r.reason
        )));
    }
    if answer.held > 0 {
        println!(
            "{} {}: already stored by the running agent (the same value at this time); nothing fired or queued again",
            format::time(sample.ts),
            sample.uri
        );
    } else {
        println!(
            "{} {}: stored by the running agent (its impulses fire there; `komlogd status` shows them)",
            format::time(sample.ts),
            sample.uri
        );
    }
    Ok(())
}

/// `pause` scaled by 0.5 to 1.5, so that uploads waiting together do not try
/// in step.
fn jittered(pause: Duration) -> Duration {
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    pause * (50 + noise % 101) / 100
}

/// How long `query` waits for a store held by a komlogd that does not answer
/// on the control socket.
const QUERY_WAIT: Duration = Duration::from_secs(5);

/// Where `query` reads: the running agent (which holds the store) through its
/// control socket, or, with none running, the store itself. Both answer with
/// [`crate::store::read::read`].
enum ReadSource {
    Agent(PathBuf),
    Store(Store),
}

impl ReadSource {
    /// Ask the running agent; with none running, open the store and read it.
    /// While another komlogd holds the store without answering on the socket
    /// (an agent starting, a one-shot upload), ask again for up to
    /// [`QUERY_WAIT`].
    fn open(config: &Config, request: &ReadRequest) -> Result<(ReadSource, ReadAnswer), Failure> {
        let socket = agent::status::control_socket_path(&config.dir);
        let path = agent::store_path(&config.dir);
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let store = loop {
            match agent::status::read(&socket, request) {
                Ok(answer) => return Ok((ReadSource::Agent(socket), answer)),
                Err(agent::status::StatusError::NotRunning(_)) => {}
                Err(e) => return Err(Failure::runtime(e.to_string())),
            }
            if !path.exists() {
                return Err(Failure::runtime(format!(
                    "no store yet at {}: nothing has been uploaded with this configuration",
                    path.display()
                )));
            }
            match Store::open(&path) {
                Ok(store) => break store,
                Err(crate::store::StoreError::Locked { .. }) if started.elapsed() < QUERY_WAIT => {
                    std::thread::sleep(jittered(pause));
                    pause = (pause * 2).min(MAX_UPLOAD_PAUSE);
                }
                Err(e) => return Err(Failure::runtime(e.to_string())),
            }
        };
        let source = ReadSource::Store(store);
        let answer = source.read(request)?;
        Ok((source, answer))
    }

    fn read(&self, request: &ReadRequest) -> Result<ReadAnswer, Failure> {
        match self {
            ReadSource::Agent(socket) => {
                agent::status::read(socket, request).map_err(|e| Failure::runtime(e.to_string()))
            }
            ReadSource::Store(store) => crate::store::read::read(store, request)
                .map_err(|e| Failure::runtime(e.to_string())),
        }
    }
}

/// `--from` and `--to` of `query`, µs since the Unix epoch, inclusive.
#[derive(Debug, Clone, Copy, Default)]
struct Range {
    from: Option<i64>,
    to: Option<i64>,
}

/// A time for `--from`/`--to`: RFC 3339, `now`, `-DURATION` before now, or µs
/// since the Unix epoch; within the samples' time range.
fn parse_time(text: &str) -> Result<i64, String> {
    parse_time_at(text, now_us())
}

fn parse_time_at(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    let ts = if text == "now" {
        now
    } else if let Ok(us) = text.parse::<i64>() {
        us
    } else if let Some(ago) = text.strip_prefix('-') {
        let us = crate::model::parse_duration_us(ago).map_err(|e| e.to_string())?;
        i64::try_from(us)
            .ok()
            .and_then(|us| now.checked_sub(us))
            .ok_or_else(|| format!("{text}: too far back"))?
    } else {
        chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                format!(
                    "{text:?}: not a time ({e}); use RFC 3339 (2024-05-01T12:00:00Z), \
                     a time before now (-1h, -30min), `now` or µs since the Unix epoch"
                )
            })?
            .timestamp_micros()
    };
    crate::model::check_ts(ts).map_err(|e| e.to_string())?;
    Ok(ts)
}

/// The table (or `--json`) of `query`: the latest `limit` samples of each of
/// `uris`, uri after uri, or the stored uris when none is given.
fn query(
    config: &Config,
    uris: &[String],
    limit: usize,
    range: Range,
    json: bool,
) -> Result<(), Failure> {
    // The first request finds where to read: a running agent holds the store.
    let mut source: Option<ReadSource> = None;
    let mut read_all = |key: Option<String>| {
        let request = ReadRequest {
            uri: key,
            limit,
            from: range.from,
            to: range.to,
            oldest_first: false,
        };
        crate::store::read::read_all(request, |req| {
            if let Some(source) = &source {
                return source.read(req);
            }
            let (opened, answer) = ReadSource::open(config, req)?;
            source = Some(opened);
            Ok(answer)
        })
    };
    if uris.is_empty() {
        let answer = read_all(None)?;
        print!("{}", format::uris(&answer.uris, json));
        return Ok(());
    }
    let mut all = Vec::new();
    for uri in uris {
        let key = crate::model::Uri::parse(uri)
            .map_err(|e| Failure::usage(e.to_string()))?
            .store_key(config.username.as_ref());
        let answer = read_all(Some(key))?;
        if answer.samples.is_empty() && !answer.known {
            return Err(Failure::runtime(format!("no samples stored at {uri}")));
        }
        let mut samples = answer
            .samples
            .into_iter()
            .map(Sample::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::runtime)?;
        samples.reverse();
        all.append(&mut samples);
    }
    print!("{}", format::samples(&all, json));
    Ok(())
}

/// The agent: keys, username, file logging, then jobs and impulses until a signal.
fn run_agent(config: &Config) -> Result<(), Failure> {
    let key =
        keys::load_or_create(&config.key_path()).map_err(|e| Failure::runtime(e.to_string()))?;
    if key.created {
        println!(
            "This is the public key, add it to your Komlog account:\n{}",
            key.public_line
        );
    }
    if config.username.is_none() {
        return Err(Failure::usage(format!(
            "Set username in configuration file. Edit {} and add `- username: <your user>`.",
            config.path.display()
        )));
    }
    let log = logging::init(&config.logging, logging::DEFAULT_STDERR_LEVEL)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let with_log = |message: String| {
        Failure::runtime(format!("{message}\nLog info: {}", log.log_file().display()))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| with_log(format!("cannot start the runtime: {e}")))?;
    let agent = Agent::open_with(config, &progress::agent_options())
        .map_err(|e| with_log(e.to_string()))?;
    for e in &agent.load_errors {
        tracing::error!("not loaded: {e}");
    }
    for note in agent::config_notices(config) {
        tracing::warn!("{note}");
    }
    eprintln!(
        "komlogd: {}",
        agent::daemon::start_notice(config, agent.dispatcher.specs().count(), log.log_file())
    );
    runtime.block_on(async {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let signals = async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tracing::info!("{name} received: stopping");
            let _ = stop.send(true);
        };
        let clock = std::sync::Arc::new(crate::sources::jobs::SystemClock);
        let (_, summary) =
            tokio::join!(signals, agent::daemon::run(agent, config, clock, shutdown));
        tracing::info!(
            stored = summary.stored,
            fires = summary.fires,
            "stopped cleanly"
        );
    });
    drop(log);
    Ok(())
}

fn check(config: &Config) -> Result<(), Failure> {
    let agent = open_agent(config)?;
    let specs: Vec<_> = agent.dispatcher.specs().collect();
    println!(
        "{}: {} impulse{} loaded",
        config.path.display(),
        specs.len(),
        if specs.len() == 1 { "" } else { "s" }
    );
    for spec in specs {
        let uris: Vec<String> = spec.uris.iter().map(ToString::to_string).collect();
        println!(
            "  {} ({}): {}",
            spec.name,
            spec.module_path.display(),
            uris.join(", ")
        );
    }
    let packages = crate::packages::check(&agent.engine, config);
    let loaded: Vec<_> = packages
        .iter()
        .filter_map(|p| Some((p, p.result.as_ref().ok()?)))
        .collect();
    if !packages.is_empty() {
        println!(
            "{}: {} package{} loaded",
            config.path.display(),
            loaded.len(),
            plural(loaded.len())
        );
    }
    for (package, manifest) in &loaded {
        println!("  {} ({})", package.name, package.install.display());
        for job in &manifest.jobs {
            let schedules: Vec<String> = job.schedules.iter().map(ToString::to_string).collect();
            println!("    job {}: {}", job.id, schedules.join(", "));
        }
        for imp in &manifest.impulses {
            let uris: Vec<String> = imp.uris.iter().map(ToString::to_string).collect();
            println!(
                "    impulse {}/{}: {}",
                package.name,
                imp.name,
                uris.join(", ")
            );
        }
    }
    let mut failed_packages = 0;
    for p in &packages {
        if let Err(reason) = &p.result {
            failed_packages += 1;
            eprintln!(
                "komlogd: package {} ({}) not loaded: {reason}",
                p.name,
                p.install.display()
            );
        }
    }
    let job_problems = check_jobs(config);
    let mut problems = Vec::new();
    if !agent.load_errors.is_empty() {
        let n = agent.load_errors.len();
        problems.push(format!("{n} impulse{} could not be loaded", plural(n)));
    }
    if failed_packages > 0 {
        problems.push(format!(
            "{failed_packages} package{} could not be loaded",
            plural(failed_packages)
        ));
    }
    problems.extend(job_problems);
    problems.extend(crate::sinks::check_all(config));
    if let Some(problem) = agent::ca_file_problem(config) {
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(problems.join("; ")))
    }
}

/// List the jobs of `config` (external job files included) with the program
/// each one runs, and report on stderr every enabled job whose program cannot
/// be found or is not executable, and every external job file that cannot be
/// read. Returns the summary of the problems, if any.
fn check_jobs(config: &Config) -> Vec<String> {
    let external = crate::config::read_external_jobs(config);
    let jobs: Vec<_> = config.jobs.iter().chain(&external.jobs).collect();
    if !jobs.is_empty() {
        println!(
            "{}: {} job{}",
            config.path.display(),
            jobs.len(),
            plural(jobs.len())
        );
    }
    let mut cannot_run = 0;
    for job in &jobs {
        let schedules = job.schedules.join(", ");
        if !job.enabled {
            println!(
                "  {}: {} (disabled), schedule {schedules}",
                job.uri, job.command
            );
            continue;
        }
        match crate::sources::jobs::find_program(job) {
            Ok(program) => println!(
                "  {}: {} ({}), schedule {schedules}",
                job.uri,
                job.command,
                program.display()
            ),
            Err(e) => {
                cannot_run += 1;
                println!(
                    "  {}: {} (cannot run), schedule {schedules}",
                    job.uri, job.command
                );
                eprintln!("komlogd: {e}");
            }
        }
    }
    for e in &external.errors {
        eprintln!("komlogd: {e}");
    }
    let mut problems = Vec::new();
    if cannot_run > 0 {
        problems.push(format!("{cannot_run} job{} cannot run", plural(cannot_run)));
    }
    if !external.errors.is_empty() {
        let n = external.errors.len();
        problems.push(format!("{n} problem{} with external job files", plural(n)));
    }
    problems
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_times_are_rfc3339_relative_now_or_micros() {
        let now = 1_700_000_000_000_000;
        assert_eq!(parse_time_at("now", now), Ok(now));
        assert_eq!(parse_time_at("-1h", now), Ok(now - 3_600_000_000));
        assert_eq!(parse_time_at("-90s", now), Ok(now - 90_000_000));
        assert_eq!(parse_time_at("1500", now), Ok(1500));
        assert_eq!(parse_time_at("-1500", now), Ok(-1500));
        assert_eq!(
            parse_time_at("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000_000)
        );
        assert_eq!(
            parse_time_at("2023-11-14T23:13:20.000001+01:00", now),
            Ok(1_700_000_000_000_001)
        );
        assert!(parse_time_at("yesterday", now).is_err());
        assert!(parse_time_at("-1 fortnight", now).is_err());
        assert!(parse_time_at("9223372036854775807", now).is_err());
    }
}
