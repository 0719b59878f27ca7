//! `komlogd import FILE… [--format F] [--no-fire] [--batch N]`: the import.
//!
//! It owns reading the files that `query --format` writes (CSV, JSON Lines,
//! Parquet, Arrow IPC; see [`super::columns`]) and the loose CSV form
//! `uri,time,value`; checking every row before anything is stored (uri,
//! time range, value rules, one kind per uri, in the files and against the
//! store), so that a bad file imports nothing; and feeding the rows, sorted by
//! time, in batches through the normal pipeline: the running agent's control
//! socket (`samples` requests), or, with none running, the local agent
//! (validated, stored, fired, queued for the server), as `komlogd -u` does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, TimeUnit};

use super::columns::{self, BATCH_ROWS, CSV_HEADER, Format, LOOSE_HEADER};
use super::{Failure, MAX_UPLOAD_PAUSE, deliver, jittered, plural, progress};
use crate::agent::status::UploadAnswer;
use crate::agent::status::control::{MAX_BATCH_SAMPLES, MAX_SAMPLES_BYTES};
use crate::agent::{self, Agent};
use crate::config::Config;
use crate::model::{Kind, Sample, Uri, Username, Value, check_ts};

/// Samples per batch unless `--batch` says otherwise.
pub const DEFAULT_BATCH: usize = 10_000;

/// How many bad rows are shown; the rest are counted.
const MAX_SHOWN: usize = 1000;

/// How long the import waits for a store held by a komlogd that does not
/// answer on the control socket (a one-shot upload, a query).
const IMPORT_WAIT: Duration = Duration::from_secs(30);

/// `komlogd import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The files: CSV (`uri,ts,kind,value`, or the loose `uri,time,value`),
    /// JSON Lines, Parquet or Arrow, as `query --format` writes them.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The files' format (default: from each file's extension: .csv,
    /// .jsonl/.ndjson, .parquet, .arrow/.feather/.ipc).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Store the samples without firing any impulse (needs the agent stopped:
    /// a running agent fires what it stores).
    #[arg(long)]
    pub no_fire: bool,
    /// Samples per batch: per durable commit, or per request to a running
    /// agent (at most 10000 there).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_BATCH,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub batch: usize,
}

/// Where a row is: a line (CSV, JSON Lines) or a row number (Parquet, Arrow).
#[derive(Debug, Clone, Copy)]
enum Pos {
    Line(u64),
    Row(u64),
}

fn at(file: &Path, pos: Pos) -> String {
    match pos {
        Pos::Line(n) => format!("{}:{n}", file.display()),
        Pos::Row(n) => format!("{}: row {n}", file.display()),
    }
}

/// A uri as the files give it, checked once.
#[derive(Debug, Clone)]
enum CheckedUri {
    /// Its store key.
    Key(String),
    /// Why it cannot be written.
    Bad(String),
}

/// The kind of a uri in the import, and where it was first seen.
struct FirstKind {
    kind: Kind,
    uri: String,
    at: String,
}

/// Every row read so far: the good ones as samples, the bad ones as messages.
struct Rows {
    me: Option<Username>,
    /// Keep rows of other users' uris (a replay's recording), instead of
    /// refusing them as writes.
    others_uris: bool,
    uris: HashMap<String, CheckedUri>,
    kinds: HashMap<String, FirstKind>,
    samples: Vec<Sample>,
    problems: Vec<String>,
    bad: usize,
    bar: indicatif::ProgressBar,
}

impl Rows {
    fn new(me: Option<Username>) -> Rows {
        Rows {
            me,
            others_uris: false,
            uris: HashMap::new(),
            kinds: HashMap::new(),
            samples: Vec::new(),
            problems: Vec::new(),
            bad: 0,
            bar: progress::bar(None, "reading"),
        }
    }

    fn problem(&mut self, message: String) {
        self.bad += 1;
        if self.problems.len() < MAX_SHOWN {
            self.problems.push(message);
        }
    }

    /// Check one row and keep it, or say what is wrong with it.
    fn add(
        &mut self,
        file: &Path,
        pos: Pos,
        uri: &str,
        ts: Result<i64, String>,
        value: Result<Value, String>,
    ) {
        self.bar.inc(1);
        let mut wrong: Vec<String> = Vec::new();
        let checked = match self.uris.get(uri) {
            Some(c) => c.clone(),
            None => {
                let c = check_uri(uri, self.me.as_ref(), self.others_uris);
                self.uris.insert(uri.to_owned(), c.clone());
                c
            }
        };
        let key = match checked {
            CheckedUri::Key(key) => Some(key),
            CheckedUri::Bad(why) => {
                wrong.push(why);
                None
            }
        };
        let ts = match ts.and_then(|ts| check_ts(ts).map(|()| ts).map_err(|e| e.to_string())) {
            Ok(ts) => Some(ts),
            Err(why) => {
                wrong.push(why);
                None
            }
        };
        let value = match value.and_then(|v| v.validate().map(|()| v).map_err(|e| e.to_string())) {
            Ok(v) => Some(v),
            Err(why) => {
                wrong.push(why);
                None
            }
        };
        if let (Some(key), Some(value)) = (&key, &value) {
            let kind = value.kind();
            match self.kinds.get(key) {
                Some(first) if first.kind != kind => wrong.push(format!(
                    "uri {uri} is a {} in this import (its first row: {}); a {kind} cannot be written to it",
                    first.kind, first.at
                )),
                Some(_) => {}
                None => {
                    let first = FirstKind {
                        kind,
                        uri: uri.to_owned(),
                        at: at(file, pos),
                    };
                    self.kinds.insert(key.clone(), first);
                }
            }
        }
        match (key, ts, value) {
            (Some(uri), Some(ts), Some(value)) if wrong.is_empty() => {
                self.samples.push(Sample { uri, ts, value });
            }
            _ => self.problem(format!("{}: {}", at(file, pos), wrong.join("; "))),
        }
    }
}

fn check_uri(uri: &str, me: Option<&Username>, others_uris: bool) -> CheckedUri {
    match Uri::parse(uri) {
        Err(e) => CheckedUri::Bad(format!("bad uri {uri:?}: {e}")),
        Ok(u) if u.is_remote_for(me) && !others_uris => CheckedUri::Bad(format!(
            "uri {uri} belongs to another user: remote uris are read-only"
        )),
        Ok(u) => CheckedUri::Key(u.store_key(me)),
    }
}

/// A time: µs since the Unix epoch, or RFC 3339.
fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(us) = text.parse::<i64>() {
        return Ok(us);
    }
    let t = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        format!(
            "bad time {}: use µs since the Unix epoch or RFC 3339 (2024-05-01T12:00:00Z)",
            shown(text)
        )
    })?;
    if t.timestamp_subsec_nanos() % 1000 != 0 {
        return Err(format!(
            "time {text:?} is finer than a microsecond, the samples' precision"
        ));
    }
    Ok(t.timestamp_micros())
}

/// A datapoint's text.
fn parse_number(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| format!("datapoint value {} is not a number", shown(text)))
}

/// `text` quoted and cut for a message.
fn shown(text: &str) -> String {
    format!("{:?}", super::truncate(text, 40))
}

/// Read every row of `files` (in `format`, else by extension) into `rows`;
/// any bad row, or a file that cannot be read, refuses them all (each
/// reported on stderr with its file and line or row).
fn read_rows(files: &[PathBuf], format: Option<Format>, mut rows: Rows) -> Result<Rows, Failure> {
    let formats = files
        .iter()
        .map(|path| columns::format_for(path, format, "--format"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    let mut unreadable = 0usize;
    for (path, format) in files.iter().zip(formats) {
        let read = match format {
            Format::Csv => read_csv(path, &mut rows),
            Format::Jsonl => read_jsonl(path, &mut rows),
            Format::Parquet => read_parquet(path, &mut rows),
            Format::Arrow => read_arrow(path, &mut rows),
        };
        if let Err(message) = read {
            unreadable += 1;
            rows.problem(format!("{}: {message}", path.display()));
        }
    }
    rows.bar.finish_and_clear();
    if rows.bad > 0 {
        return Err(refuse_all(&rows, unreadable));
    }
    Ok(rows)
}

/// The samples of recorded `files`, checked as `import` checks them, for a
/// replay (`komlogd impulse test`): rows of other users' uris are kept (a
/// replay takes them as the server's), under their store keys.
pub fn read_recording(files: &[PathBuf], me: Option<&Username>) -> Result<Vec<Sample>, Failure> {
    let mut rows = Rows::new(me.cloned());
    rows.others_uris = true;
    Ok(read_rows(files, None, rows)?.samples)
}

/// Run the import.
pub fn import(config: &Config, args: &ImportArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let rows = read_rows(&args.files, args.format, Rows::new(config.username.clone()))?;
    let files_read = args.files.len();
    let read_in = started.elapsed();
    let Rows {
        mut samples, kinds, ..
    } = rows;
    // Every uri's samples in time order (stable: of two rows at the same time
    // of the same uri, the later one is stored last and so kept).
    samples.sort_by_key(|s| s.ts);
    let socket = agent::status::control_socket_path(&config.dir);
    let mut sink = connect(config, &socket, args.no_fire)?;
    // A uri the store holds in the other kind: nothing is stored.
    let stored = sink.stored_kinds()?;
    let mut conflicts: Vec<String> = kinds
        .iter()
        .filter_map(|(key, first)| {
            let existing = *stored.get(key)?;
            (existing != first.kind).then(|| {
                format!(
                    "{}: uri {} is a {existing} in the store; this file's {} rows cannot be written to it",
                    first.at, first.uri, first.kind
                )
            })
        })
        .collect();
    if !conflicts.is_empty() {
        conflicts.sort();
        let n = conflicts.len();
        for c in &conflicts {
            eprintln!("komlogd: {c}");
        }
        return Err(Failure::usage(format!(
            "{n} uri{} of the import hold{} the other kind in the store; nothing was imported",
            plural(n),
            if n == 1 { "s" } else { "" }
        )));
    }

    let total = samples.len();
    let bar = progress::bar(Some(total as u64), "importing");
    let store_started = Instant::now();
    let mut summary = Summary::default();
    let batch = match sink {
        Sink::Running(_) => args.batch.min(MAX_BATCH_SAMPLES),
        Sink::Local(_) => args.batch,
    };
    let mut rest = samples.into_iter();
    loop {
        let chunk: Vec<Sample> = rest.by_ref().take(batch).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        if let Err(e) = sink.send(chunk, args.no_fire, &mut summary) {
            bar.finish_and_clear();
            return Err(Failure::runtime(format!(
                "{e}\n{} of {total} samples were stored before; importing the same files again \
                 is harmless: samples already stored are not stored, fired or queued again",
                summary.accepted - summary.held
            )));
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let stored_in = store_started.elapsed();
    print_summary(
        &summary,
        total,
        files_read,
        &sink,
        args.no_fire,
        read_in,
        stored_in,
    );
    if let Sink::Local(agent) = &sink {
        for (name, stats) in agent.dispatcher.stats() {
            if let Some(err) = &stats.last_error {
                eprintln!("komlogd: impulse {name}: {err}");
            }
        }
        // No agent runs to send what was queued for the server: send it now.
        let outcome = deliver::deliver(config, agent, deliver::DELIVERY_DEADLINE);
        deliver::report(&outcome, config);
    }
    if summary.rejected.is_empty() {
        return Ok(());
    }
    let n = summary.rejected.len();
    for r in summary.rejected.iter().take(MAX_SHOWN) {
        eprintln!("komlogd: refused {r}");
    }
    Err(Failure::runtime(format!("{n} sample{} refused", plural(n))))
}

/// Print the bad rows; the failure that says nothing was imported.
fn refuse_all(rows: &Rows, unreadable: usize) -> Failure {
    let mut err = std::io::stderr().lock();
    for p in &rows.problems {
        let _ = writeln!(err, "komlogd: {p}");
    }
    if rows.bad > rows.problems.len() {
        let _ = writeln!(
            err,
            "komlogd: … and {} more",
            rows.bad - rows.problems.len()
        );
    }
    let bad_rows = rows.bad - unreadable;
    let mut what = Vec::new();
    if unreadable > 0 {
        what.push(format!(
            "{unreadable} unreadable file{}",
            plural(unreadable)
        ));
    }
    if bad_rows > 0 {
        what.push(format!("{bad_rows} bad row{}", plural(bad_rows)));
    }
    Failure::usage(format!("{}: nothing was imported", what.join(" and ")))
}

/// What the import did.
#[derive(Debug, Default)]
struct Summary {
    accepted: usize,
    held: usize,
    rejected: Vec<String>,
    fires: u64,
    outputs: u64,
}

fn print_summary(
    s: &Summary,
    total: usize,
    files: usize,
    sink: &Sink,
    no_fire: bool,
    read_in: Duration,
    stored_in: Duration,
) {
    let new = s.accepted - s.held;
    let mut line = format!(
        "imported {total} sample{} from {files} file{}: {new} stored, {} already held, {} refused",
        plural(total),
        plural(files),
        s.held,
        s.rejected.len()
    );
    match (sink, no_fire) {
        (Sink::Running(_), _) => line.push_str(
            " by the running agent (its impulses fire there; `komlogd status` shows them)",
        ),
        (Sink::Local(_), true) => line.push_str("; no impulse fired (--no-fire)"),
        (Sink::Local(_), false) => line.push_str(&format!(
            "; {} impulse fire{}, {} sample{} written by impulses",
            s.fires,
            plural(s.fires as usize),
            s.outputs,
            plural(s.outputs as usize)
        )),
    }
    line.push_str(&format!(
        " (read and checked in {:.2} s, stored in {:.2} s)",
        read_in.as_secs_f64(),
        stored_in.as_secs_f64()
    ));
    println!("{line}");
}

// ------------------------------------------------------------- the pipeline

/// Where the samples go.
enum Sink {
    /// The running agent, over its control socket.
    Running(Link),
    /// The local agent (no agent runs).
    Local(Box<Agent>),
}

/// Find where to store: the running agent, or the local agent, waiting (up to
/// [`IMPORT_WAIT`]) while another komlogd holds the store without answering.
fn connect(config: &Config, socket: &Path, no_fire: bool) -> Result<Sink, Failure> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(link) = Link::connect(socket)? {
            if no_fire {
                return Err(Failure::usage(format!(
                    "--no-fire: an agent is running (it answers on {}) and fires the impulses of \
                     what it stores; stop it to import without firing, or leave out --no-fire",
                    socket.display()
                )));
            }
            return Ok(Sink::Running(link));
        }
        match Agent::open_with(config, &progress::agent_options()) {
            Ok(agent) => {
                for e in &agent.load_errors {
                    eprintln!("komlogd: not loaded: {e}");
                }
                return Ok(Sink::Local(Box::new(agent)));
            }
            Err(agent::AgentError::Store(crate::store::StoreError::Locked { path })) => {
                let waited = started.elapsed();
                if waited >= IMPORT_WAIT {
                    return Err(Failure::runtime(format!(
                        "store {} stayed locked for {} s: another komlogd process is using it, \
                         and no agent answers on {}; nothing was imported",
                        path.display(),
                        IMPORT_WAIT.as_secs(),
                        socket.display()
                    )));
                }
                std::thread::sleep(jittered(pause).min(IMPORT_WAIT - waited));
                pause = (pause * 2).min(MAX_UPLOAD_PAUSE);
            }
            Err(e) => return Err(Failure::runtime(e.to_string())),
        }
    }
}

impl Sink {
    /// The kind of every stored uri, by store key.
    fn stored_kinds(&mut self) -> Result<HashMap<String, Kind>, Failure> {
        let uris = match self {
            Sink::Local(agent) => agent
                .dispatcher
                .store()
                .uris()
                .map_err(|e| Failure::runtime(e.to_string()))?,
            Sink::Running(link) => {
                agent::status::read(&link.socket, &crate::store::read::ReadRequest::default())
                    .map_err(|e| Failure::runtime(e.to_string()))?
                    .uris
            }
        };
        Ok(uris.into_iter().map(|u| (u.uri, u.kind)).collect())
    }

    /// Store one batch.
    fn send(
        &mut self,
        batch: Vec<Sample>,
        no_fire: bool,
        summary: &mut Summary,
    ) -> Result<(), String> {
        match self {
            Sink::Local(agent) => {
                let report = if no_fire {
                    agent.dispatcher.upload_quietly(batch)
                } else {
                    agent.dispatcher.upload(batch)
                }
                .map_err(|e| e.to_string())?;
                summary.accepted += report.accepted;
                summary.held += report.held;
                summary.fires += report.fires;
                summary.outputs += report.outputs;
                summary.rejected.extend(
                    report
                        .rejected
                        .into_iter()
                        .map(|r| format!("{} at {}: {}", r.uri, r.ts, r.reason)),
                );
                Ok(())
            }
            Sink::Running(link) => {
                let answer = link.samples(&batch)?;
                summary.accepted += answer.accepted;
                summary.held += answer.held;
                summary.rejected.extend(
                    answer
                        .rejected
                        .into_iter()
                        .map(|r| format!("{} at {}: {}", r.uri, r.ts, r.reason)),
                );
                Ok(())
            }
        }
    }
}

/// A connection to the running agent's control socket, kept open for batch
/// after batch of `samples` requests.
struct Link {
    socket: PathBuf,
    stream: BufReader<UnixStream>,
}

/// One sample of a `samples` request.
#[derive(serde::Serialize)]
struct Wire<'a> {
    uri: &'a str,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    datapoint: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datasource: Option<&'a str>,
}

impl Link {
    /// The running agent's socket; none when no agent runs.
    fn connect(socket: &Path) -> Result<Option<Link>, Failure> {
        match UnixStream::connect(socket) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(agent::status::ANSWER_TIMEOUT));
                Ok(Some(Link {
                    socket: socket.to_owned(),
                    stream: BufReader::new(stream),
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Failure::runtime(format!(
                "{}: cannot connect: {e}",
                socket.display()
            ))),
        }
    }

    /// Send `batch` as `samples` requests (split to stay under the request
    /// size limit) and add up the answers.
    fn samples(&mut self, batch: &[Sample]) -> Result<UploadAnswer, String> {
        // Half the limit: room for JSON escapes counted loosely.
        let cap = (MAX_SAMPLES_BYTES / 2) as usize;
        let mut total = UploadAnswer::default();
        let mut body = Vec::with_capacity(1 << 20);
        let mut item = Vec::new();
        let mut count = 0;
        for s in batch {
            item.clear();
            let wire = Wire {
                uri: &s.uri,
                ts: s.ts,
                datapoint: match s.value {
                    Value::Datapoint(v) => Some(v),
                    Value::Datasource(_) => None,
                },
                datasource: match &s.value {
                    Value::Datasource(t) => Some(t),
                    Value::Datapoint(_) => None,
                },
            };
            serde_json::to_writer(&mut item, &wire).map_err(|e| e.to_string())?;
            if count > 0 && body.len() + item.len() + 2 > cap {
                self.exchange(&mut body, &mut total)?;
                count = 0;
            }
            body.push(if count == 0 { b'[' } else { b',' });
            body.extend_from_slice(&item);
            count += 1;
        }
        if count > 0 {
            self.exchange(&mut body, &mut total)?;
        }
        Ok(total)
    }

    /// Send one `samples` request whose array `body` holds (not yet closed).
    fn exchange(&mut self, body: &mut Vec<u8>, total: &mut UploadAnswer) -> Result<(), String> {
        body.extend_from_slice(b"]\n");
        let socket = self.socket.display();
        let stream = self.stream.get_mut();
        stream
            .write_all(b"samples ")
            .and_then(|()| stream.write_all(body))
            .map_err(|e| format!("{socket}: cannot send to the agent: {e}"))?;
        body.clear();
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(_) if line.ends_with('\n') => {}
            Ok(_) => {
                return Err(format!(
                    "{socket}: the agent closed the connection without answering; \
                     the last batch may or may not have been stored"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{socket}: no answer from the agent ({e}); the last batch may or may not have been stored"
                ));
            }
        }
        let answer: UploadAnswer = serde_json::from_str(&line)
            .map_err(|e| format!("{socket}: unreadable answer from the agent: {e}"))?;
        if let Some(e) = answer.error {
            return Err(format!("{socket}: the agent: {e}"));
        }
        total.accepted += answer.accepted;
        total.held += answer.held;
        total.rejected.extend(answer.rejected);
        Ok(())
    }
}

// ------------------------------------------------------------------ readers

fn open(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("cannot open: {e}"))
}

/// The two CSV forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsvForm {
    /// `uri,ts,kind,value` (what `query --format csv` writes).
    Full,
    /// `uri,time,value`: a number is a datapoint, anything else a datasource.
    Loose,
}

fn read_csv(path: &Path, rows: &mut Rows) -> Result<(), String> {
    let file = open(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let mut record = csv::ByteRecord::new();
    let mut form = None;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(format!("line {line}: cannot read: {e}"));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let pos = Pos::Line(line);
        let mut fields: Vec<&str> = Vec::with_capacity(4);
        let mut bad_utf8 = None;
        for (i, f) in record.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => fields.push(s),
                Err(_) => {
                    bad_utf8 = Some(i + 1);
                    fields.push("");
                }
            }
        }
        let form = match form {
            Some(form) => form,
            None => {
                // The first line: a header, or the first row of the loose form.
                let names: Vec<String> = fields
                    .iter()
                    .map(|f| f.trim().to_ascii_lowercase())
                    .collect();
                let names: Vec<&str> = names
                    .iter()
                    .map(|n| n.trim_start_matches('\u{feff}'))
                    .collect();
                if names == CSV_HEADER {
                    form = Some(CsvForm::Full);
                    continue;
                }
                if names == LOOSE_HEADER || names == ["uri", "ts", "value"] {
                    form = Some(CsvForm::Loose);
                    continue;
                }
                if fields.len() != 3 {
                    return Err(format!(
                        "line {line}: neither the header uri,ts,kind,value nor a loose row \
                         uri,time,value ({} field{} found)",
                        fields.len(),
                        plural(fields.len())
                    ));
                }
                form = Some(CsvForm::Loose);
                CsvForm::Loose
            }
        };
        let expected = match form {
            CsvForm::Full => 4,
            CsvForm::Loose => 3,
        };
        if let Some(i) = bad_utf8 {
            rows.problem(format!("{}: field {i} is not UTF-8", at(path, pos)));
            continue;
        }
        if fields.len() != expected {
            let names = match form {
                CsvForm::Full => "uri,ts,kind,value",
                CsvForm::Loose => "uri,time,value",
            };
            rows.problem(format!(
                "{}: {} field{} where {expected} ({names}) are expected",
                at(path, pos),
                fields.len(),
                plural(fields.len())
            ));
            continue;
        }
        let (uri, ts) = (fields[0], parse_time(fields[1]));
        let value = match form {
            CsvForm::Full => match fields[2] {
                "datapoint" => parse_number(fields[3]).map(Value::Datapoint),
                "datasource" => Ok(Value::Datasource(fields[3].to_owned())),
                other => Err(format!(
                    "kind {} is neither datapoint nor datasource",
                    shown(other)
                )),
            },
            CsvForm::Loose => Ok(match fields[2].trim().parse::<f64>() {
                Ok(v) => Value::Datapoint(v),
                Err(_) => Value::Datasource(fields[2].to_owned()),
            }),
        };
        rows.add(path, pos, uri, ts, value);
    }
}

/// One line of JSON Lines.
#[derive(serde::Deserialize)]
struct JsonRow<'a> {
    #[serde(borrow)]
    uri: std::borrow::Cow<'a, str>,
    ts: &'a serde_json::value::RawValue,
    #[serde(default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    value: &'a serde_json::value::RawValue,
}

fn read_jsonl(path: &Path, rows: &mut Rows) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("line {}: cannot read: {e}", line + 1))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let pos = Pos::Line(line);
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row: JsonRow<'_> = match serde_json::from_slice(&buf) {
            Ok(row) => row,
            Err(e) => {
                rows.problem(format!(
                    "{}: not an object with uri, ts and value: {e}",
                    at(path, pos)
                ));
                continue;
            }
        };
        let ts = json_time(row.ts.get());
        let value = json_value(row.kind.as_deref(), row.value.get());
        rows.add(path, pos, &row.uri, ts, value);
    }
}

/// `ts` of a JSON line: an integer (µs) or an RFC 3339 string.
fn json_time(raw: &str) -> Result<i64, String> {
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        return parse_time(&text);
    }
    raw.parse::<i64>().map_err(|_| {
        format!("ts {raw} is not an integer (µs since the Unix epoch) or an RFC 3339 string")
    })
}

/// `value` of a JSON line, by `kind`: a datapoint is a number (or a string
/// holding one), a datasource a string; without `kind`, a number is a
/// datapoint and a string a datasource.
fn json_value(kind: Option<&str>, raw: &str) -> Result<Value, String> {
    let text = if raw.starts_with('"') {
        Some(serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?)
    } else {
        None
    };
    // Rust's parser reads every JSON number to the nearest f64.
    let number = || -> Result<f64, String> {
        match &text {
            Some(t) => parse_number(t),
            None if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => parse_number(raw),
            None => Err(format!(
                "value {} is neither a number nor a string",
                shown(raw)
            )),
        }
    };
    match kind {
        Some("datapoint") => number().map(Value::Datapoint),
        Some("datasource") => match text {
            Some(t) => Ok(Value::Datasource(t)),
            None => Err(format!(
                "a datasource's value must be a string, not {}",
                shown(raw)
            )),
        },
        Some(other) => Err(format!(
            "kind {} is neither datapoint nor datasource",
            shown(other)
        )),
        None => match text {
            Some(t) => Ok(Value::Datasource(t)),
            None => number().map(Value::Datapoint),
        },
    }
}

fn read_parquet(path: &Path, rows: &mut Rows) -> Result<(), String> {
    let file = open(path)?;
    let not_parquet =
        |e: parquet::errors::ParquetError| format!("not a readable Parquet file: {e}");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(not_parquet)?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(not_parquet)?;
    read_batches(path, reader, "Parquet", rows)
}

fn read_arrow(path: &Path, rows: &mut Rows) -> Result<(), String> {
    let mut file = open(path)?;
    let mut magic = [0u8; 6];
    let is_file = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
    drop(file);
    let file = open(path)?;
    let not_arrow = |e: ArrowError| format!("not a readable Arrow IPC file: {e}");
    if is_file {
        let reader = arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None)
            .map_err(not_arrow)?;
        read_batches(path, reader, "Arrow", rows)
    } else {
        // The IPC stream format (what impulses get), also accepted.
        let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
            .map_err(not_arrow)?;
        read_batches(path, reader, "Arrow", rows)
    }
}

/// Check every row of every batch `batches` gives.
fn read_batches(
    path: &Path,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    what: &str,
    rows: &mut Rows,
) -> Result<(), String> {
    let mut row = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| {
            format!("after row {row}: not a readable {what} file (truncated or damaged?): {e}")
        })?;
        let columns = Columns::of(&batch)?;
        for i in 0..batch.num_rows() {
            row += 1;
            let pos = Pos::Row(row);
            let Some(uri) = columns.uri(i) else {
                rows.problem(format!("{}: uri is null", at(path, pos)));
                continue;
            };
            rows.add(path, pos, uri, columns.ts(i), columns.value(i));
        }
    }
    Ok(())
}

/// The columns of a record batch, cast to the schema's types.
struct Columns {
    uri: ArrayRef,
    ts: ArrayRef,
    /// µs per unit of `ts`, or its divisor for nanoseconds.
    unit: TimeUnit,
    datapoint: Option<ArrayRef>,
    datasource: Option<ArrayRef>,
}

impl Columns {
    fn of(batch: &RecordBatch) -> Result<Columns, String> {
        let column = |name: &str| batch.column_by_name(name).cloned();
        let cast = |array: ArrayRef, to: &DataType, name: &str| {
            arrow_cast::cast(&array, to)
                .map_err(|e| format!("column {name} is {}, not {to}: {e}", array.data_type()))
        };
        let uri =
            column("uri").ok_or("no column uri (the columns: uri, ts, datapoint, datasource)")?;
        let uri = cast(uri, &DataType::Utf8, "uri")?;
        let ts =
            column("ts").ok_or("no column ts (the columns: uri, ts, datapoint, datasource)")?;
        let unit = match ts.data_type() {
            DataType::Timestamp(unit, _) => *unit,
            DataType::Int64 => TimeUnit::Microsecond,
            other => {
                return Err(format!(
                    "column ts is {other}, not a timestamp or an integer (µs since the Unix epoch)"
                ));
            }
        };
        let ts = cast(ts, &DataType::Int64, "ts")?;
        let datapoint = column("datapoint")
            .map(|a| cast(a, &DataType::Float64, "datapoint"))
            .transpose()?;
        let datasource = column("datasource")
            .map(|a| cast(a, &DataType::Utf8, "datasource"))
            .transpose()?;
        if datapoint.is_none() && datasource.is_none() {
            return Err("neither a datapoint nor a datasource column".into());
        }
        Ok(Columns {
            uri,
            ts,
            unit,
            datapoint,
            datasource,
        })
    }

    fn uri(&self, i: usize) -> Option<&str> {
        let a = self.uri.as_string::<i32>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn ts(&self, i: usize) -> Result<i64, String> {
        let a = self.ts.as_primitive::<Int64Type>();
        if a.is_null(i) {
            return Err("ts is null".into());
        }
        let t = a.value(i);
        let out_of_range = || format!("ts {t} ({:?}) is out of range", self.unit);
        match self.unit {
            TimeUnit::Second => t.checked_mul(1_000_000).ok_or_else(out_of_range),
            TimeUnit::Millisecond => t.checked_mul(1_000).ok_or_else(out_of_range),
            TimeUnit::Microsecond => Ok(t),
            TimeUnit::Nanosecond if t % 1000 == 0 => Ok(t / 1000),
            TimeUnit::Nanosecond => Err(format!(
                "ts {t} ns is finer than a microsecond, the samples' precision"
            )),
        }
    }

    fn value(&self, i: usize) -> Result<Value, String> {
        let dp = self
            .datapoint
            .as_ref()
            .map(|a| a.as_primitive::<arrow_array::types::Float64Type>())
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i));
        let ds = self
            .datasource
            .as_ref()
            .map(|a| a.as_string::<i32>())
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i));
        match (dp, ds) {
            (Some(v), None) => Ok(Value::Datapoint(v)),
            (None, Some(t)) => Ok(Value::Datasource(t.to_owned())),
            (None, None) => Err("neither datapoint nor datasource is set".into()),
            (Some(_), Some(_)) => Err("both datapoint and datasource are set".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_micros_or_rfc3339() {
        assert_eq!(parse_time("1500"), Ok(1500));
        assert_eq!(parse_time(" -7 "), Ok(-7));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.000001Z"),
            Ok(1_700_000_000_000_001)
        );
        assert!(parse_time("2023-11-14T22:13:20.0000001Z").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn json_values_by_kind() {
        assert_eq!(json_value(None, "5.5"), Ok(Value::Datapoint(5.5)));
        assert_eq!(
            json_value(None, "\"a\\nb\""),
            Ok(Value::Datasource("a\nb".into()))
        );
        assert_eq!(
            json_value(Some("datapoint"), "\"NaN\"").map(|v| v.validate().is_err()),
            Ok(true)
        );
        assert_eq!(
            json_value(Some("datasource"), "\"5\""),
            Ok(Value::Datasource("5".into()))
        );
        assert!(json_value(Some("datasource"), "5").is_err());
        assert!(json_value(Some("other"), "5").is_err());
        assert!(json_value(None, "null").is_err());
        // Exactly the nearest f64, whatever serde_json's own parser does.
        assert_eq!(
            json_value(None, "0.30000000000000004"),
            Ok(Value::Datapoint(0.1 + 0.2))
        );
        assert_eq!(json_time("\"1970-01-01T00:00:01Z\""), Ok(1_000_000));
        assert!(json_time("1.5").is_err());
    }

    #[test]
    fn bad_rows_say_where_and_why() {
        let mut rows = Rows::new(Username::parse("me").ok());
        let file = Path::new("f.csv");
        rows.add(file, Pos::Line(2), "a.b", Ok(1), Ok(Value::Datapoint(1.0)));
        rows.add(
            file,
            Pos::Line(3),
            "me:a.b",
            Ok(2),
            Ok(Value::Datapoint(2.0)),
        );
        rows.add(file, Pos::Line(4), "a..b", Ok(1), Ok(Value::Datapoint(1.0)));
        rows.add(
            file,
            Pos::Line(5),
            "bob:x",
            Ok(1),
            Ok(Value::Datapoint(1.0)),
        );
        rows.add(
            file,
            Pos::Row(6),
            "a.b",
            Ok(i64::MAX),
            Ok(Value::Datapoint(f64::NAN)),
        );
        rows.add(
            file,
            Pos::Line(7),
            "a.b",
            Ok(3),
            Ok(Value::Datasource("t".into())),
        );
        assert_eq!(rows.samples.len(), 2);
        assert_eq!(rows.samples[1].uri, "a.b");
        assert_eq!(rows.bad, 4);
        assert!(
            rows.problems[0].starts_with("f.csv:4: bad uri \"a..b\""),
            "{:?}",
            rows.problems
        );
        assert!(rows.problems[1].contains("belongs to another user"));
        assert!(rows.problems[2].starts_with("f.csv: row 6: timestamp 9223372036854775807"));
        assert!(rows.problems[2].contains("; datapoint value NaN is not finite"));
        assert!(
            rows.problems[3].contains("is a datapoint in this import (its first row: f.csv:2)")
        );
    }
}
