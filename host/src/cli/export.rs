//! `komlogd query --format csv|jsonl|parquet|arrow [-o FILE]`: the export.
//!
//! It owns reading every sample of the chosen uris within `--from`/`--to`,
//! oldest first, uri after uri, in bounded pages (from the running agent over
//! its control socket, or from the store when none runs), and writing them in
//! the schema of [`super::columns`] to stdout or to a file. A file is written
//! beside its final name and renamed into place once complete, so a failed
//! export leaves no partial file; a binary format is not written to a
//! terminal.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use arrow_ipc::writer::FileWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::columns::{self, BATCH_ROWS, CSV_HEADER, Format};
use super::{Failure, Range, ReadSource, progress};
use crate::config::Config;
use crate::model::{Sample, Value};
use crate::store::read::ReadRequest;

/// The most text one page read from the store holds (the agent's pages are
/// bounded by [`crate::store::read::PAGE_BYTES`]).
const STORE_PAGE_BYTES: usize = 64 << 20;

/// An Arrow record batch is cut once its texts reach this much.
const BATCH_BYTES: usize = 64 << 20;

/// A Parquet row group is cut once its encoded, buffered data reaches this
/// much (otherwise every 1,048,576 rows).
const ROW_GROUP_BYTES: usize = 128 << 20;

/// What `query --format` was asked.
pub struct Export<'a> {
    /// The uris as given; none: every stored uri.
    pub uris: &'a [String],
    /// `--from`/`--to`.
    pub range: Range,
    /// `-n`: only the newest N of each uri (within the range).
    pub limit: Option<usize>,
    /// The format.
    pub format: Format,
    /// `-o`: the file; none: stdout.
    pub output: Option<&'a Path>,
}

/// Run the export.
pub fn export(config: &Config, args: &Export<'_>) -> Result<(), Failure> {
    if args.output.is_none() && args.format.is_binary() && std::io::stdout().is_terminal() {
        return Err(Failure::usage(format!(
            "not writing {} to a terminal: add -o FILE, or redirect stdout to a file or a pipe",
            args.format.name()
        )));
    }
    // Which uris, and that each is stored, before anything is written.
    let (source, listing) = ReadSource::open(config, &ReadRequest::default())?;
    let keys: Vec<String> = if args.uris.is_empty() {
        listing.uris.iter().map(|u| u.uri.clone()).collect()
    } else {
        let mut keys: Vec<String> = Vec::with_capacity(args.uris.len());
        for uri in args.uris {
            let key = crate::model::Uri::parse(uri)
                .map_err(|e| Failure::usage(e.to_string()))?
                .store_key(config.username.as_ref());
            if !listing.uris.iter().any(|u| u.uri == key) {
                return Err(Failure::runtime(format!("no samples stored at {uri}")));
            }
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    };
    let stored: u64 = listing
        .uris
        .iter()
        .filter(|u| keys.contains(&u.uri))
        .map(|u| u.count)
        .sum();
    let bounded = args.range.from.is_some() || args.range.to.is_some() || args.limit.is_some();
    let bar = progress::bar((!bounded).then_some(stored), "exporting");
    let mut written = 0u64;
    let mut each = |encoder: &mut dyn Encode| -> Result<(), Failure> {
        for key in &keys {
            read_uri(&source, key, args, &mut |page| {
                written += page.len() as u64;
                bar.inc(page.len() as u64);
                encoder.write(page)
            })?;
        }
        Ok(())
    };
    match args.output {
        None => {
            let out = BufWriter::with_capacity(1 << 20, std::io::stdout());
            let mut encoder = Encoder::new(args.format, out).map_err(failed_write)?;
            each(&mut encoder)?;
            let mut out = encoder.finish().map_err(failed_write)?;
            out.flush()
                .map_err(|e| failed_write(format!("cannot write to stdout: {e}")))?;
            bar.finish_and_clear();
        }
        Some(path) => {
            let file = temp_beside(path)?;
            let out = BufWriter::with_capacity(1 << 20, file);
            let mut encoder = Encoder::new(args.format, out).map_err(failed_write)?;
            each(&mut encoder)?;
            let out = encoder.finish().map_err(failed_write)?;
            let file = out.into_inner().map_err(|e| {
                failed_write(format!("cannot write {}: {}", path.display(), e.error()))
            })?;
            file.as_file()
                .sync_all()
                .map_err(|e| failed_write(format!("cannot write {}: {e}", path.display())))?;
            file.persist(path).map_err(|e| {
                Failure::runtime(format!(
                    "cannot rename into {}: {}",
                    path.display(),
                    e.error
                ))
            })?;
            bar.finish_and_clear();
            println!(
                "{}: {written} sample{} of {} uri{} ({})",
                path.display(),
                super::plural(written as usize),
                keys.len(),
                super::plural(keys.len()),
                args.format.name()
            );
        }
    }
    Ok(())
}

fn failed_write(message: String) -> Failure {
    Failure::runtime(message)
}

/// A new file in the directory of `path`, removed unless persisted.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile, Failure> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::usage(format!("-o {}: not a file name", path.display())))?;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| {
            Failure::usage(format!(
                "-o {}: cannot create a file in {}: {e}",
                path.display(),
                dir.display()
            ))
        })
}

/// Hand every sample of `key` that `args` asks for to `page`, oldest first,
/// a page at a time.
fn read_uri(
    source: &ReadSource,
    key: &str,
    args: &Export<'_>,
    page: &mut dyn FnMut(Vec<Sample>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let Range { from, to } = args.range;
    if let Some(limit) = args.limit {
        // The newest `limit`: read newest first, as the table does, then turn.
        let request = ReadRequest {
            uri: Some(key.to_owned()),
            limit,
            from,
            to,
            oldest_first: false,
        };
        let answer = crate::store::read::read_all(request, |r| source.read(r))?;
        let mut samples = rows_to_samples(answer.samples)?;
        samples.reverse();
        return page(samples);
    }
    let mut from = from;
    loop {
        let samples = match source {
            ReadSource::Store(store) => store
                .earliest_in(key, from, to, BATCH_ROWS, STORE_PAGE_BYTES)
                .map_err(|e| Failure::runtime(e.to_string()))?,
            ReadSource::Agent(_) => {
                let request = ReadRequest {
                    uri: Some(key.to_owned()),
                    limit: BATCH_ROWS,
                    from,
                    to,
                    oldest_first: true,
                };
                rows_to_samples(source.read(&request)?.samples)?
            }
        };
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Ok(());
        };
        // An agent older than `oldest_first` answers newest first.
        if first.ts > last.ts || from.is_some_and(|f| first.ts < f) {
            return Err(Failure::runtime(
                "the running agent answered newest first: it is older than this komlogd; \
                 restart it to export",
            ));
        }
        let next = last.ts.checked_add(1);
        page(samples)?;
        match next {
            Some(next) if to.is_none_or(|to| next <= to) => from = Some(next),
            _ => return Ok(()),
        }
    }
}

fn rows_to_samples(rows: Vec<crate::store::read::Row>) -> Result<Vec<Sample>, Failure> {
    rows.into_iter()
        .map(Sample::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::runtime)
}

/// Writes pages of samples in one format.
trait Encode {
    fn write(&mut self, samples: Vec<Sample>) -> Result<(), Failure>;
}

/// The writer of one format over `W`.
enum Encoder<W: Write + Send> {
    Csv(Box<csv::Writer<W>>, ryu::Buffer),
    Jsonl(W, ryu::Buffer),
    Arrow(Box<FileWriter<W>>, Batcher),
    Parquet(Box<ArrowWriter<W>>, Batcher),
}

/// Samples gathered into record batches of [`BATCH_ROWS`] (or
/// [`BATCH_BYTES`] of text), so that the batches do not depend on the pages
/// they were read in.
#[derive(Default)]
struct Batcher {
    samples: Vec<Sample>,
    bytes: usize,
}

impl Batcher {
    /// Add `samples`; hand each full batch to `out`.
    fn add(
        &mut self,
        samples: Vec<Sample>,
        out: &mut dyn FnMut(&[Sample]) -> Result<(), String>,
    ) -> Result<(), String> {
        for s in samples {
            if let Value::Datasource(t) = &s.value {
                self.bytes += t.len();
            }
            self.samples.push(s);
            if self.samples.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
                self.flush(out)?;
            }
        }
        Ok(())
    }

    fn flush(
        &mut self,
        out: &mut dyn FnMut(&[Sample]) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.samples.is_empty() {
            out(&self.samples)?;
        }
        self.samples.clear();
        self.bytes = 0;
        Ok(())
    }
}

impl<W: Write + Send> Encoder<W> {
    fn new(format: Format, out: W) -> Result<Self, String> {
        let schema = columns::schema();
        Ok(match format {
            Format::Csv => {
                let mut csv = csv::WriterBuilder::new().from_writer(out);
                csv.write_record(CSV_HEADER).map_err(write_error)?;
                Encoder::Csv(Box::new(csv), ryu::Buffer::new())
            }
            Format::Jsonl => Encoder::Jsonl(out, ryu::Buffer::new()),
            Format::Arrow => Encoder::Arrow(
                Box::new(FileWriter::try_new(out, &schema).map_err(|e| e.to_string())?),
                Batcher::default(),
            ),
            Format::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let writer = ArrowWriter::try_new(out, schema, Some(properties))
                    .map_err(|e| e.to_string())?;
                Encoder::Parquet(Box::new(writer), Batcher::default())
            }
        })
    }

    fn finish(self) -> Result<W, String> {
        match self {
            Encoder::Csv(csv, _) => csv.into_inner().map_err(|e| write_error(e.into_error())),
            Encoder::Jsonl(out, _) => Ok(out),
            Encoder::Arrow(mut writer, mut batcher) => {
                batcher.flush(&mut |s| arrow_batch(&mut writer, s))?;
                writer.into_inner().map_err(|e| e.to_string())
            }
            Encoder::Parquet(mut writer, mut batcher) => {
                batcher.flush(&mut |s| parquet_batch(&mut writer, s))?;
                writer.into_inner().map_err(|e| e.to_string())
            }
        }
    }
}

impl<W: Write + Send> Encode for Encoder<W> {
    fn write(&mut self, samples: Vec<Sample>) -> Result<(), Failure> {
        let result = match self {
            Encoder::Csv(csv, numbers) => samples.iter().try_for_each(|s| {
                let ts = s.ts.to_string();
                let value = match &s.value {
                    Value::Datapoint(v) => columns::number(numbers, *v),
                    Value::Datasource(t) => t.as_str(),
                };
                csv.write_record([s.uri.as_str(), &ts, columns::kind_name(&s.value), value])
                    .map_err(write_error)
            }),
            Encoder::Jsonl(out, numbers) => samples
                .iter()
                .try_for_each(|s| jsonl_line(out, numbers, s).map_err(write_error)),
            Encoder::Arrow(writer, batcher) => {
                batcher.add(samples, &mut |s| arrow_batch(writer, s))
            }
            Encoder::Parquet(writer, batcher) => {
                batcher.add(samples, &mut |s| parquet_batch(writer, s))
            }
        };
        result.map_err(Failure::runtime)
    }
}

fn arrow_batch<W: Write>(writer: &mut FileWriter<W>, samples: &[Sample]) -> Result<(), String> {
    let batch = columns::record_batch(samples).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())
}

fn parquet_batch<W: Write + Send>(
    writer: &mut ArrowWriter<W>,
    samples: &[Sample],
) -> Result<(), String> {
    let batch = columns::record_batch(samples).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    if writer.in_progress_size() >= ROW_GROUP_BYTES {
        writer.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `{"uri":…,"ts":…,"kind":…,"value":…}` and a newline.
fn jsonl_line(out: &mut impl Write, numbers: &mut ryu::Buffer, s: &Sample) -> std::io::Result<()> {
    out.write_all(b"{\"uri\":")?;
    serde_json::to_writer(&mut *out, &s.uri)?;
    write!(
        out,
        ",\"ts\":{},\"kind\":\"{}\",\"value\":",
        s.ts,
        columns::kind_name(&s.value)
    )?;
    match &s.value {
        Value::Datapoint(v) => out.write_all(columns::number(numbers, *v).as_bytes())?,
        Value::Datasource(t) => serde_json::to_writer(&mut *out, t)?,
    }
    out.write_all(b"}\n")
}

fn write_error(e: impl std::fmt::Display) -> String {
    format!("cannot write the export: {e}")
}
