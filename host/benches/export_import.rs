//! Export and import throughput: 1,000,000 datapoint samples (100 uris of
//! 10,000 samples each) through the real `komlogd` binary, against what the
//! same work costs without komlogd around it, measured in the same run:
//!
//! 1. Export (`komlogd query --format parquet|arrow -o FILE`, a stopped agent:
//!    the store read page by page, encoded, written, renamed into place)
//!    against its two parts done directly in this process: reading the store
//!    alone (`Store::earliest_in`, the same pages), and encoding the same rows
//!    from memory with `parquet`/`arrow-ipc` into a file.
//! 2. Import (`komlogd import FILE` into an empty store with no impulse: read,
//!    checked, sorted, then stored through the local pipeline in batches of
//!    10,000 durable commits) with its two phases as the command reports
//!    them, against decoding the file alone in this process and appending the
//!    same samples, in the same order (by time), to a store alone
//!    (`Store::append`, batches of 10,000); and
//!    the pipeline alone in this process (`Dispatcher::upload`, what the
//!    import calls, and `Dispatcher::ingest`, without its check for samples
//!    already stored).
//!
//! Run with `cargo bench -p komlogd --bench export_import`;
//! `KOMLOGD_BENCH_QUICK=1` gives a short run (100,000 samples).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use komlogd::model::{Sample, Value};
use komlogd::store::Store;

const KOMLOGD: &str = env!("CARGO_BIN_EXE_komlogd");
const URIS: usize = 100;
const BATCH: usize = 10_000;
const PAGE: usize = 65_536;

fn samples(n: usize) -> Vec<Sample> {
    let base = 1_700_000_000_000_000i64;
    let per_uri = n / URIS;
    (0..n)
        .map(|i| Sample {
            uri: format!("bench.m{}", i / per_uri),
            ts: base + (i % per_uri) as i64 * 1_000_000,
            value: Value::Datapoint((i % 977) as f64 * 0.25 - 3.5),
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> String {
    let per_s = n as f64 / d.as_secs_f64();
    let mut digits = format!("{:.0}", per_s);
    let mut out = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        out = format!(",{tail}{out}");
    }
    format!("{digits}{out} samples/s ({:.3} s)", d.as_secs_f64())
}

fn komlogd(dir: &Path, args: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(KOMLOGD)
        .arg("-c")
        .arg(dir.join("komlogd.yaml"))
        .args(args)
        .env("HOME", dir)
        .output()
        .expect("run komlogd");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "komlogd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn agent_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("komlogd.yaml"), "- username: me\n").expect("config");
    dir
}

fn store_path(dir: &Path) -> std::path::PathBuf {
    dir.join("data").join("store.redb")
}

/// Append `all` to a new store in `dir`, in durable batches of [`BATCH`].
fn fill(dir: &Path, all: &[Sample]) -> Duration {
    let mut store = Store::open(&store_path(dir)).expect("store");
    let started = Instant::now();
    for chunk in all.chunks(BATCH) {
        store.append(chunk).expect("append");
    }
    started.elapsed()
}

/// Read every sample of the store in `dir`, oldest first, uri after uri, in
/// pages of [`PAGE`] (what the export does).
fn read_store(dir: &Path) -> (usize, Duration) {
    let store = Store::open(&store_path(dir)).expect("store");
    let started = Instant::now();
    let mut n = 0;
    for info in store.uris().expect("uris") {
        let mut from = None;
        loop {
            let page = store
                .earliest_in(&info.uri, from, None, PAGE, 64 << 20)
                .expect("read");
            let Some(last) = page.last() else { break };
            from = Some(last.ts + 1);
            n += page.len();
        }
    }
    (n, started.elapsed())
}

fn batch(samples: &[Sample]) -> arrow_array::RecordBatch {
    use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
    let mut uri = StringBuilder::new();
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut dp = Float64Builder::new();
    let mut ds = StringBuilder::new();
    for s in samples {
        uri.append_value(&s.uri);
        ts.append_value(s.ts);
        match &s.value {
            Value::Datapoint(v) => {
                dp.append_value(*v);
                ds.append_null();
            }
            Value::Datasource(t) => {
                dp.append_null();
                ds.append_value(t);
            }
        }
    }
    arrow_array::RecordBatch::try_new(
        komlogd::impulses::window::window_schema(),
        vec![
            std::sync::Arc::new(uri.finish()),
            std::sync::Arc::new(ts.finish()),
            std::sync::Arc::new(dp.finish()),
            std::sync::Arc::new(ds.finish()),
        ],
    )
    .expect("batch")
}

/// Encode `all` from memory into `path` with the crates directly.
fn encode(all: &[Sample], path: &Path, parquet: bool) -> Duration {
    let started = Instant::now();
    let file =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let schema = komlogd::impulses::window::window_schema();
    if parquet {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).expect("writer");
        for chunk in all.chunks(PAGE) {
            w.write(&batch(chunk)).expect("write");
        }
        w.close().expect("close");
    } else {
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &schema).expect("writer");
        for chunk in all.chunks(PAGE) {
            w.write(&batch(chunk)).expect("write");
        }
        w.finish().expect("finish");
    }
    started.elapsed()
}

/// Decode the file alone: every record batch, every column touched.
fn decode(path: &Path, parquet: bool) -> (usize, Duration) {
    use arrow_array::Array;
    let started = Instant::now();
    let file = std::fs::File::open(path).expect("open");
    let batches: Box<
        dyn Iterator<Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>>,
    > = if parquet {
        Box::new(
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .with_batch_size(PAGE)
                .build()
                .expect("reader"),
        )
    } else {
        Box::new(
            arrow_ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
                .expect("arrow"),
        )
    };
    let mut n = 0;
    for b in batches {
        let b = b.expect("batch");
        n += b.num_rows() - b.column(0).null_count();
    }
    (n, started.elapsed())
}

/// The local pipeline alone, in this process: `all` in batches of [`BATCH`]
/// through a fresh agent's dispatcher (no impulse), as `komlogd import` feeds
/// it (`Dispatcher::upload`, which first leaves out samples the store already
/// holds), or without that check (`Dispatcher::ingest`).
fn pipeline(all: &[Sample], upload: bool) -> Duration {
    let dir = agent_dir();
    let config = komlogd::config::Config::load(&dir.path().join("komlogd.yaml")).expect("config");
    let mut agent = komlogd::agent::Agent::open(&config).expect("agent");
    let batches: Vec<Vec<Sample>> = all.chunks(BATCH).map(<[Sample]>::to_vec).collect();
    let started = Instant::now();
    for batch in batches {
        let report = if upload {
            agent.dispatcher.upload(batch)
        } else {
            agent.dispatcher.ingest(batch)
        }
        .expect("store");
        assert!(report.rejected.is_empty());
    }
    started.elapsed()
}

/// "read and checked in X s, stored in Y s" of the import's summary.
fn phases(summary: &str) -> (f64, f64) {
    let number = |after: &str| -> f64 {
        let rest = &summary[summary.find(after).expect(after) + after.len()..];
        rest.split(' ')
            .next()
            .and_then(|x| x.parse().ok())
            .expect("seconds")
    };
    (number("read and checked in "), number("stored in "))
}

fn main() {
    let quick = std::env::var_os("KOMLOGD_BENCH_QUICK").is_some();
    let n = if quick { 100_000 } else { 1_000_000 };
    let all = samples(n);
    // In the order the import stores them: by time, stably.
    let mut by_time = all.clone();
    by_time.sort_by_key(|s| s.ts);
    println!("export and import of {n} datapoint samples ({URIS} uris)\n");

    let source = agent_dir();
    let filled = fill(source.path(), &all);
    println!(
        "store filled: {} (Store::append, batches of {BATCH})",
        rate(n, filled)
    );
    let (read_n, read) = read_store(source.path());
    assert_eq!(read_n, n);
    println!(
        "store read alone (earliest_in, pages of {PAGE}): {}\n",
        rate(n, read)
    );

    for (format, parquet) in [("parquet", true), ("arrow", false)] {
        let file = source.path().join(format!("export.{format}"));
        let file_text = file.display().to_string();
        let (export, _) = komlogd(source.path(), &["query", "-o", &file_text]);
        let direct = encode(
            &all,
            &source.path().join(format!("direct.{format}")),
            parquet,
        );
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        println!(
            "{format}: export  {}  ({:.1} MB)",
            rate(n, export),
            size as f64 / 1e6
        );
        println!(
            "{format}:   baseline: encoding from memory {}, store read alone {}; export / (read + encode) = {:.2}",
            rate(n, direct),
            rate(n, read),
            export.as_secs_f64() / (direct + read).as_secs_f64()
        );

        let (decoded, decode_time) = decode(&file, parquet);
        assert_eq!(decoded, n);
        let target = agent_dir();
        let (import, summary) = komlogd(target.path(), &["import", &file_text]);
        let (checked, stored) = phases(&summary);
        println!("{format}: import  {}", rate(n, import));
        println!(
            "{format}:   its phases: read and checked {}, stored through the pipeline {}",
            rate(n, Duration::from_secs_f64(checked)),
            rate(n, Duration::from_secs_f64(stored))
        );
        let alone = agent_dir();
        let append = fill(alone.path(), &by_time);
        println!(
            "{format}:   baseline: decoding alone {}, Store::append alone {}; pipeline / append = {:.2}",
            rate(n, decode_time),
            rate(n, append),
            stored / append.as_secs_f64()
        );
        println!(
            "{format}:   the pipeline in this process: Dispatcher::upload {}, Dispatcher::ingest {}\n",
            rate(n, pipeline(&by_time, true)),
            rate(n, pipeline(&by_time, false))
        );
    }
}
