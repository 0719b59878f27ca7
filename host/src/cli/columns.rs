//! The row schema that `komlogd query --format` writes and `komlogd import`
//! reads, shared by both: the file formats, their names and extensions, the
//! text columns of CSV and JSON Lines, the Arrow schema of Arrow and Parquet
//! (the impulse window's), and how a datapoint is written as text.
//!
//! | format | columns |
//! |---|---|
//! | CSV (RFC 4180, header line) | `uri,ts,kind,value` |
//! | JSON Lines | `{"uri", "ts", "kind", "value"}` per line |
//! | Arrow IPC file, Parquet | `uri` utf8, `ts` timestamp[us, tz=UTC], `datapoint` float64 (null for a datasource), `datasource` utf8 (null for a datapoint) |
//!
//! `ts` is µs since the Unix epoch; `kind` is `datapoint` or `datasource`. A
//! datapoint's text is the shortest that reads back as the same `f64` (`5.0`,
//! `-0.25`, `1e-300`), as JSON writes it, so every format round-trips exactly.

use std::path::Path;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};

use crate::model::{Sample, Value};

/// The header of the CSV form that `query --format csv` writes.
pub const CSV_HEADER: [&str; 4] = ["uri", "ts", "kind", "value"];

/// The header of the loose CSV form that `import` also reads.
pub const LOOSE_HEADER: [&str; 3] = ["uri", "time", "value"];

/// The most rows in one Arrow record batch (and one read page).
pub const BATCH_ROWS: usize = 65_536;

/// A file format of `query --format` and `import --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV, RFC 4180: header `uri,ts,kind,value`.
    Csv,
    /// JSON Lines: one `{"uri","ts","kind","value"}` object per line.
    #[value(alias = "ndjson")]
    Jsonl,
    /// Apache Parquet (Snappy).
    Parquet,
    /// The Arrow IPC file format (Feather v2).
    #[value(alias = "feather", alias = "ipc")]
    Arrow,
}

impl Format {
    /// The format a file name's extension names, if any.
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "parquet" | "pq" => Some(Format::Parquet),
            "arrow" | "feather" | "ipc" => Some(Format::Arrow),
            _ => None,
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Jsonl => "JSON Lines",
            Format::Parquet => "Parquet",
            Format::Arrow => "Arrow",
        }
    }

    /// Not text: refused on a terminal.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Parquet | Format::Arrow)
    }
}

/// What `--format` or the extension of `path` names, or a usage message.
pub fn format_for(path: &Path, given: Option<Format>, option: &str) -> Result<Format, String> {
    given.or_else(|| Format::of_path(path)).ok_or_else(|| {
        format!(
            "{}: cannot tell the format from the file name; add {option} csv|jsonl|parquet|arrow \
             (or name it .csv, .jsonl/.ndjson, .parquet, .arrow/.feather/.ipc)",
            path.display()
        )
    })
}

/// The Arrow schema of Arrow and Parquet files: the impulse window's.
pub fn schema() -> SchemaRef {
    crate::impulses::window::window_schema()
}

/// `kind` of a value.
pub fn kind_name(value: &Value) -> &'static str {
    value.kind().as_str()
}

/// A datapoint as text: the shortest that reads back as the same `f64`, in
/// JSON's form (`5.0`, `1e-300`, `-0.0`). `v` is finite (a stored datapoint is).
pub fn number(buffer: &mut ryu::Buffer, v: f64) -> &str {
    buffer.format_finite(v)
}

/// One record batch of `samples`, in order.
pub fn record_batch(samples: &[Sample]) -> Result<RecordBatch, ArrowError> {
    let text: usize = samples
        .iter()
        .map(|s| match &s.value {
            Value::Datasource(t) => t.len(),
            Value::Datapoint(_) => 0,
        })
        .sum();
    let uri_bytes = samples.iter().map(|s| s.uri.len()).sum();
    let mut uri = StringBuilder::with_capacity(samples.len(), uri_bytes);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(samples.len())
        .with_timezone(crate::impulses::window::TS_TIMEZONE);
    let mut datapoint = Float64Builder::with_capacity(samples.len());
    let mut datasource = StringBuilder::with_capacity(samples.len(), text);
    for s in samples {
        uri.append_value(&s.uri);
        ts.append_value(s.ts);
        match &s.value {
            Value::Datapoint(v) => {
                datapoint.append_value(*v);
                datasource.append_null();
            }
            Value::Datasource(t) => {
                datapoint.append_null();
                datasource.append_value(t);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        std::sync::Arc::new(uri.finish()),
        std::sync::Arc::new(ts.finish()),
        std::sync::Arc::new(datapoint.finish()),
        std::sync::Arc::new(datasource.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        for (name, format) in [
            ("a.csv", Some(Format::Csv)),
            ("a.CSV", Some(Format::Csv)),
            ("a.jsonl", Some(Format::Jsonl)),
            ("a.ndjson", Some(Format::Jsonl)),
            ("dir/a.parquet", Some(Format::Parquet)),
            ("a.arrow", Some(Format::Arrow)),
            ("a.feather", Some(Format::Arrow)),
            ("a.ipc", Some(Format::Arrow)),
            ("a.txt", None),
            ("a", None),
        ] {
            assert_eq!(Format::of_path(Path::new(name)), format, "{name}");
        }
        assert!(format_for(Path::new("x.txt"), None, "--format").is_err());
        assert_eq!(
            format_for(Path::new("x.txt"), Some(Format::Csv), "--format"),
            Ok(Format::Csv)
        );
    }

    #[test]
    fn numbers_read_back_exactly() {
        let mut buffer = ryu::Buffer::new();
        for v in [
            5.0,
            -0.25,
            0.1 + 0.2,
            1e-300,
            -0.0,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let text = number(&mut buffer, v).to_owned();
            assert_eq!(
                text.parse::<f64>().map(f64::to_bits),
                Ok(v.to_bits()),
                "{text}"
            );
        }
        assert_eq!(number(&mut buffer, 5.0), "5.0");
        assert_eq!(number(&mut buffer, 1e-300), "1e-300");
    }

    #[test]
    fn a_batch_has_the_window_schema() {
        let batch = record_batch(&[
            Sample::new("a", 1, Value::Datapoint(1.5)).unwrap(),
            Sample::new("b", -2, Value::Datasource("x\ny".into())).unwrap(),
        ])
        .unwrap();
        assert_eq!(batch.schema(), schema());
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(2).null_count(), 1);
        assert_eq!(batch.column(3).null_count(), 1);
    }
}
