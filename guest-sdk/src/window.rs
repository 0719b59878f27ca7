//! The window of recent data: decoding (and, for tests, encoding) the Arrow
//! IPC stream komlogd passes in `context.window`.
//!
//! The stream has this schema (see `wit/impulse.wit`):
//!
//! | column       | type                               | nullable |
//! |--------------|------------------------------------|----------|
//! | `uri`        | `Utf8`                             | no       |
//! | `ts`         | `Timestamp(Microsecond, "UTC")`    | no       |
//! | `datapoint`  | `Float64`                          | yes      |
//! | `datasource` | `Utf8`                             | yes      |
//!
//! Rows are grouped by uri and sorted by `ts` ascending within a uri; exactly
//! one of `datapoint` / `datasource` is set on each row, and a uri holds one
//! kind. [`Window::decode`] checks all of that and turns the rows into one
//! [`Series`] per uri; anything else is a [`WindowError`]. Decoding never
//! panics on bad input: the stream's framing, every buffer's bounds and the
//! contract columns' sizes, offsets and validity bitmaps are checked before
//! arrow builds an array (arrow-ipc's own record batch reader, which panics
//! on some malformed metadata, is not used), and fuzz tests hold that line.
//!
//! Extra columns are ignored (skipped, not decoded), so later minor versions
//! of the contract may add some, of any plain Arrow type (not views or
//! dictionaries). Dictionary batches and compressed bodies are refused, as
//! the contract excludes them. Nullability flags in the schema are not
//! checked; nulls in `uri` or `ts` are. An empty byte slice is an empty
//! window.
//!
//! This module has no wasm-only code: it builds and runs natively, so hosts
//! and guest authors can use it in ordinary tests.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::NullBuffer;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Kind;

/// Name of the uri column.
pub const URI: &str = "uri";
/// Name of the timestamp column.
pub const TS: &str = "ts";
/// Name of the numeric value column.
pub const DATAPOINT: &str = "datapoint";
/// Name of the text value column.
pub const DATASOURCE: &str = "datasource";
/// Time zone of the `ts` column.
pub const TIME_ZONE: &str = "UTC";

/// The window schema as the contract defines it (column order included).
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new(URI, DataType::Utf8, false),
        Field::new(
            TS,
            DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into())),
            false,
        ),
        Field::new(DATAPOINT, DataType::Float64, true),
        Field::new(DATASOURCE, DataType::Utf8, true),
    ])
}

/// Why a window could not be decoded (or encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The bytes are not a readable Arrow IPC stream (garbage, truncated,
    /// compressed, a file instead of a stream...).
    #[error("window is not a valid Arrow IPC stream: {0}")]
    Ipc(String),
    /// A required column is absent from the schema.
    #[error("window schema has no `{column}` column")]
    MissingColumn {
        /// The missing column.
        column: &'static str,
    },
    /// A required column has the wrong Arrow type.
    #[error("window column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        /// The mistyped column.
        column: &'static str,
        /// Its type in the stream.
        found: String,
        /// The type the contract requires.
        expected: &'static str,
    },
    /// A non-nullable value (`uri` or `ts`) is null.
    #[error("window row {row}: `{column}` is null")]
    NullValue {
        /// Row number, counted from 0 across all record batches.
        row: usize,
        /// The column holding the null.
        column: &'static str,
    },
    /// Neither or both of `datapoint` and `datasource` are set on a row.
    #[error("window row {row} (uri `{uri}`): {reason}")]
    BadRow {
        /// Row number, counted from 0 across all record batches.
        row: usize,
        /// The row's uri.
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A uri holds both datapoint and datasource rows.
    #[error("window uri `{uri}` holds both datapoint and datasource samples (row {row})")]
    MixedKinds {
        /// The uri.
        uri: String,
        /// First row of the other kind.
        row: usize,
    },
    /// Timestamps of a uri are not ascending.
    #[error("window uri `{uri}`: ts {ts} at row {row} comes before the previous ts {previous}")]
    Unordered {
        /// The uri.
        uri: String,
        /// The offending row.
        row: usize,
        /// Its timestamp.
        ts: i64,
        /// The timestamp of the row before it.
        previous: i64,
    },
    /// The rows of a uri are split by rows of another uri.
    #[error("window rows of uri `{uri}` are not grouped together (it appears again at row {row})")]
    NotGrouped {
        /// The uri.
        uri: String,
        /// The row where it reappears.
        row: usize,
    },
    /// [`encode`] was given an inconsistent [`Series`].
    #[error("cannot encode series `{uri}`: {reason}")]
    Encode {
        /// The series' uri.
        uri: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<WindowError> for String {
    /// Lets `ctx.window()?` work in an `on_update` returning `Result<_, String>`.
    fn from(e: WindowError) -> String {
        e.to_string()
    }
}

/// The values of one uri: one kind per uri.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Numbers of a datapoint uri.
    Datapoint(Vec<f64>),
    /// Texts of a datasource uri.
    Datasource(Vec<String>),
}

impl Values {
    /// The metric kind.
    pub fn kind(&self) -> Kind {
        match self {
            Values::Datapoint(_) => Kind::Datapoint,
            Values::Datasource(_) => Kind::Datasource,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Datapoint(v) => v.len(),
            Values::Datasource(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at index `i`.
    pub fn get(&self, i: usize) -> Option<ValueRef<'_>> {
        match self {
            Values::Datapoint(v) => v.get(i).copied().map(ValueRef::Datapoint),
            Values::Datasource(v) => v.get(i).map(|s| ValueRef::Datasource(s)),
        }
    }
}

/// A borrowed value of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// A number.
    Datapoint(f64),
    /// A text.
    Datasource(&'a str),
}

impl<'a> ValueRef<'a> {
    /// The number, if this is a datapoint.
    pub fn as_datapoint(&self) -> Option<f64> {
        match self {
            ValueRef::Datapoint(v) => Some(*v),
            ValueRef::Datasource(_) => None,
        }
    }

    /// The text, if this is a datasource (borrowed from the series, not
    /// from this `ValueRef`).
    pub fn as_datasource(&self) -> Option<&'a str> {
        match *self {
            ValueRef::Datapoint(_) => None,
            ValueRef::Datasource(s) => Some(s),
        }
    }
}

/// The samples of one uri in the window, ascending by timestamp.
///
/// `ts[i]` is the timestamp of value `i`. A decoded series is never empty
/// and its two vectors have the same length; the accessors also behave (no
/// panics) on hand-built series that break this.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The uri, as subscribed.
    pub uri: String,
    /// Timestamps, µs since the Unix epoch (UTC), ascending.
    pub ts: Vec<i64>,
    /// The values, same order as `ts`.
    pub values: Values,
}

impl Series {
    /// A datapoint series (for tests and [`encode`]).
    pub fn datapoint(uri: impl Into<String>, ts: Vec<i64>, values: Vec<f64>) -> Series {
        Series {
            uri: uri.into(),
            ts,
            values: Values::Datapoint(values),
        }
    }

    /// A datasource series (for tests and [`encode`]).
    pub fn datasource<S: Into<String>>(
        uri: impl Into<String>,
        ts: Vec<i64>,
        values: impl IntoIterator<Item = S>,
    ) -> Series {
        Series {
            uri: uri.into(),
            ts,
            values: Values::Datasource(values.into_iter().map(Into::into).collect()),
        }
    }

    /// The metric kind.
    pub fn kind(&self) -> Kind {
        self.values.kind()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ts.len().min(self.values.len())
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numbers, if this is a datapoint series.
    pub fn datapoints(&self) -> Option<&[f64]> {
        match &self.values {
            Values::Datapoint(v) => Some(v),
            Values::Datasource(_) => None,
        }
    }

    /// The texts, if this is a datasource series.
    pub fn datasources(&self) -> Option<&[String]> {
        match &self.values {
            Values::Datapoint(_) => None,
            Values::Datasource(v) => Some(v),
        }
    }

    /// Sample `i` (0 = oldest) as `(ts, value)`.
    pub fn get(&self, i: usize) -> Option<(i64, ValueRef<'_>)> {
        Some((*self.ts.get(i)?, self.values.get(i)?))
    }

    /// The oldest sample.
    pub fn first(&self) -> Option<(i64, ValueRef<'_>)> {
        self.get(0)
    }

    /// The newest sample.
    pub fn last(&self) -> Option<(i64, ValueRef<'_>)> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The value at exactly `ts` (the last one if several share it).
    pub fn at(&self, ts: i64) -> Option<ValueRef<'_>> {
        let (t, v) = self.latest_at_or_before(ts)?;
        (t == ts).then_some(v)
    }

    /// The newest sample with a timestamp `<= ts`.
    pub fn latest_at_or_before(&self, ts: i64) -> Option<(i64, ValueRef<'_>)> {
        let end = self.ts[..self.len()].partition_point(|&t| t <= ts);
        self.get(end.checked_sub(1)?)
    }

    /// Indices of the samples with `after < ts <= upto`, for slicing
    /// [`Series::ts`] and [`Series::datapoints`] / [`Series::datasources`].
    ///
    /// `series.range(time::before(ctx.ts, HOUR), ctx.ts)` selects the last
    /// hour up to the fire.
    pub fn range(&self, after: i64, upto: i64) -> Range<usize> {
        let ts = &self.ts[..self.len()];
        let start = ts.partition_point(|&t| t <= after);
        let end = ts.partition_point(|&t| t <= upto).max(start);
        start..end
    }

    /// The samples as `(ts, value)`, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i64, ValueRef<'_>)> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// A decoded window: one [`Series`] per uri that has samples, in stream order
/// (the subscription's order), plus the Arrow record batches it came from.
#[derive(Debug, Clone, Default)]
pub struct Window {
    series: Vec<Series>,
    batches: Vec<RecordBatch>,
    schema: Option<SchemaRef>,
}

impl Window {
    /// A window with no samples.
    pub fn empty() -> Window {
        Window::default()
    }

    /// Decode an Arrow IPC stream. An empty slice is an empty window.
    ///
    /// Checks the schema (the four columns, by name, with their types; extra
    /// columns are ignored) and the row rules listed in the [module
    /// docs](self); never panics on malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Window, WindowError> {
        if bytes.is_empty() {
            return Ok(Window::empty());
        }
        let stream = read_projected(bytes)?;
        let mut decoder = Decoder::default();
        for batch in &stream.batches {
            decoder.push_batch(&PROJECTED, batch)?;
        }
        Ok(Window {
            series: decoder.finish(),
            batches: stream.batches,
            schema: Some(stream.schema),
        })
    }

    /// The series of `uri`, if the window has samples of it.
    pub fn series(&self, uri: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.uri == uri)
    }

    /// All series, in stream order.
    pub fn iter(&self) -> std::slice::Iter<'_, Series> {
        self.series.iter()
    }

    /// The uris that have samples, in stream order.
    pub fn uris(&self) -> impl Iterator<Item = &str> + '_ {
        self.series.iter().map(|s| s.uri.as_str())
    }

    /// Number of uris with samples.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the window holds no samples at all.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Total number of samples (rows) over all uris.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(Series::len).sum()
    }

    /// The record batches of the stream, for authors who want to work with
    /// Arrow directly. Each holds exactly the four contract columns in
    /// contract order (`uri`, `ts`, `datapoint`, `datasource`; extra columns
    /// of the stream are dropped). Empty for an empty byte slice.
    pub fn record_batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The schema exactly as the stream declared it, with any extra columns
    /// and its nullability flags (`None` for an empty byte slice).
    pub fn stream_schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// Take the series out of the window.
    pub fn into_series(self) -> Vec<Series> {
        self.series
    }
}

impl<'a> IntoIterator for &'a Window {
    type Item = &'a Series;
    type IntoIter = std::slice::Iter<'a, Series>;

    fn into_iter(self) -> Self::IntoIter {
        self.series.iter()
    }
}

/// Encode `series` as a window stream in the contract's format: the schema,
/// one record batch with every row (none if there are no samples), and the
/// end-of-stream marker. Meant for tests; komlogd has its own encoder.
///
/// Fails if a series has `ts` and values of different lengths. Order and
/// grouping are not checked: decode the result to check them.
pub fn encode(series: &[Series]) -> Result<Vec<u8>, WindowError> {
    let rows: usize = series.iter().map(|s| s.ts.len()).sum();
    let mut uri = StringBuilder::with_capacity(rows, rows * 8);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(TIME_ZONE);
    let mut datapoint = Float64Builder::with_capacity(rows);
    let mut datasource = StringBuilder::new();
    for s in series {
        if s.ts.len() != s.values.len() {
            return Err(WindowError::Encode {
                uri: s.uri.clone(),
                reason: format!("{} timestamps but {} values", s.ts.len(), s.values.len()),
            });
        }
        for (i, &t) in s.ts.iter().enumerate() {
            uri.append_value(&s.uri);
            ts.append_value(t);
            match &s.values {
                Values::Datapoint(v) => {
                    datapoint.append_option(v.get(i).copied());
                    datasource.append_null();
                }
                Values::Datasource(v) => {
                    datapoint.append_null();
                    datasource.append_option(v.get(i));
                }
            }
        }
    }
    let schema = Arc::new(schema());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uri.finish()),
        Arc::new(ts.finish()),
        Arc::new(datapoint.finish()),
        Arc::new(datasource.finish()),
    ];
    let ipc = |e: arrow_schema::ArrowError| WindowError::Ipc(e.to_string());
    let mut writer = StreamWriter::try_new(Vec::new(), &schema).map_err(ipc)?;
    if rows > 0 {
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(ipc)?;
        writer.write(&batch).map_err(ipc)?;
    }
    writer.finish().map_err(ipc)?;
    writer.into_inner().map_err(ipc)
}

/// Read a stream, its batches projected on the four contract columns in
/// contract order (see [`PROJECTED`]).
fn read_projected(bytes: &[u8]) -> Result<stream::Stream, WindowError> {
    stream::read(bytes, |schema| {
        let c = Columns::locate(schema)?;
        Ok(vec![c.uri, c.ts, c.datapoint, c.datasource])
    })
}

/// The columns of a batch from [`read_projected`].
const PROJECTED: Columns = Columns {
    uri: 0,
    ts: 1,
    datapoint: 2,
    datasource: 3,
};

/// Positions of the contract's columns in a stream's schema.
struct Columns {
    uri: usize,
    ts: usize,
    datapoint: usize,
    datasource: usize,
}

impl Columns {
    fn locate(schema: &Schema) -> Result<Columns, WindowError> {
        let find = |column: &'static str, ok: fn(&DataType) -> bool, expected: &'static str| {
            let index = schema
                .index_of(column)
                .map_err(|_| WindowError::MissingColumn { column })?;
            let found = schema.field(index).data_type();
            if ok(found) {
                Ok(index)
            } else {
                Err(WindowError::ColumnType {
                    column,
                    found: found.to_string(),
                    expected,
                })
            }
        };
        Ok(Columns {
            uri: find(URI, |t| *t == DataType::Utf8, "Utf8")?,
            ts: find(
                TS,
                |t| {
                    matches!(t, DataType::Timestamp(TimeUnit::Microsecond, Some(tz))
                        if tz.as_ref() == TIME_ZONE)
                },
                "Timestamp(Microsecond, \"UTC\")",
            )?,
            datapoint: find(DATAPOINT, |t| *t == DataType::Float64, "Float64")?,
            datasource: find(DATASOURCE, |t| *t == DataType::Utf8, "Utf8")?,
        })
    }
}

/// The contract columns of one record batch, with their Arrow types.
#[derive(Clone, Copy)]
struct BatchColumns<'a> {
    uris: &'a StringArray,
    ts: &'a TimestampMicrosecondArray,
    dp: &'a Float64Array,
    ds: &'a StringArray,
}

impl<'a> BatchColumns<'a> {
    fn of(c: &Columns, batch: &'a RecordBatch) -> Result<BatchColumns<'a>, WindowError> {
        let mistyped =
            |column: &'static str, expected: &'static str, index: usize| WindowError::ColumnType {
                column,
                found: batch.column(index).data_type().to_string(),
                expected,
            };
        Ok(BatchColumns {
            uris: batch
                .column(c.uri)
                .as_string_opt::<i32>()
                .ok_or_else(|| mistyped(URI, "Utf8", c.uri))?,
            ts: batch
                .column(c.ts)
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| mistyped(TS, "Timestamp(Microsecond, \"UTC\")", c.ts))?,
            dp: batch
                .column(c.datapoint)
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| mistyped(DATAPOINT, "Float64", c.datapoint))?,
            ds: batch
                .column(c.datasource)
                .as_string_opt::<i32>()
                .ok_or_else(|| mistyped(DATASOURCE, "Utf8", c.datasource))?,
        })
    }
}

/// One row's value.
enum RowValue<'a> {
    Datapoint(f64),
    Datasource(&'a str),
}

/// Accumulates rows into series, checking grouping, order and kinds.
#[derive(Default)]
struct Decoder {
    done: Vec<Series>,
    seen: BTreeSet<String>,
    current: Option<Series>,
    row: usize,
}

impl Decoder {
    fn push_batch(&mut self, c: &Columns, batch: &RecordBatch) -> Result<(), WindowError> {
        let cols = BatchColumns::of(c, batch)?;
        let rows = batch.num_rows();
        if cols.uris.null_count() > 0 || cols.ts.null_count() > 0 {
            // Row by row, so the error names the first bad row.
            return self.push_rows(&cols, 0..rows);
        }
        let mut start = 0;
        while start < rows {
            let uri = cols.uris.value(start);
            let mut end = start + 1;
            while end < rows && cols.uris.value(end) == uri {
                end += 1;
            }
            if !self.push_run(&cols, uri, start..end) {
                // Something in the run breaks a rule: find and name it.
                self.push_rows(&cols, start..end)?;
            }
            start = end;
        }
        Ok(())
    }

    /// Append a run of rows of one uri in bulk, if every row follows the
    /// rules (one kind, ascending, the uri not seen before this run). Returns
    /// `false`, having changed nothing, if a row does not: the caller then
    /// goes row by row to report it.
    fn push_run(&mut self, cols: &BatchColumns<'_>, uri: &str, rows: Range<usize>) -> bool {
        let len = rows.len();
        let valid_in_run = |nulls: Option<&NullBuffer>| {
            nulls.map_or(len, |n| len - n.slice(rows.start, len).null_count())
        };
        let (datapoints, datasources) =
            (valid_in_run(cols.dp.nulls()), valid_in_run(cols.ds.nulls()));
        let kind = match (datapoints, datasources) {
            (n, 0) if n == len => Kind::Datapoint,
            (0, n) if n == len => Kind::Datasource,
            _ => return false,
        };
        let ts = &cols.ts.values()[rows.clone()];
        if !ts.is_sorted() {
            return false;
        }
        match &self.current {
            Some(series) if series.uri == uri => {
                let behind = series.ts.last().is_some_and(|&previous| ts[0] < previous);
                if series.kind() != kind || behind {
                    return false;
                }
            }
            _ if self.seen.contains(uri) => return false,
            _ => {}
        }
        let series = match &mut self.current {
            Some(series) if series.uri == uri => series,
            slot => {
                if let Some(done) = slot.take() {
                    self.seen.insert(done.uri.clone());
                    self.done.push(done);
                }
                let values = match kind {
                    Kind::Datapoint => Values::Datapoint(Vec::with_capacity(len)),
                    Kind::Datasource => Values::Datasource(Vec::with_capacity(len)),
                };
                slot.insert(Series {
                    uri: uri.to_owned(),
                    ts: Vec::with_capacity(len),
                    values,
                })
            }
        };
        series.ts.extend_from_slice(ts);
        match &mut series.values {
            Values::Datapoint(v) => v.extend_from_slice(&cols.dp.values()[rows]),
            Values::Datasource(v) => v.extend(rows.map(|i| cols.ds.value(i).to_owned())),
        }
        self.row += len;
        true
    }

    /// Append rows one by one, checking each.
    fn push_rows(
        &mut self,
        cols: &BatchColumns<'_>,
        rows: Range<usize>,
    ) -> Result<(), WindowError> {
        let BatchColumns { uris, ts, dp, ds } = *cols;
        for i in rows {
            let row = self.row;
            self.row += 1;
            if uris.is_null(i) {
                return Err(WindowError::NullValue { row, column: URI });
            }
            if ts.is_null(i) {
                return Err(WindowError::NullValue { row, column: TS });
            }
            let uri = uris.value(i);
            let t = ts.value(i);
            let value = match (dp.is_valid(i), ds.is_valid(i)) {
                (true, false) => RowValue::Datapoint(dp.value(i)),
                (false, true) => RowValue::Datasource(ds.value(i)),
                (false, false) => {
                    return Err(WindowError::BadRow {
                        row,
                        uri: uri.to_owned(),
                        reason: "neither `datapoint` nor `datasource` is set",
                    });
                }
                (true, true) => {
                    return Err(WindowError::BadRow {
                        row,
                        uri: uri.to_owned(),
                        reason: "both `datapoint` and `datasource` are set",
                    });
                }
            };
            self.push_row(row, uri, t, value)?;
        }
        Ok(())
    }

    fn push_row(
        &mut self,
        row: usize,
        uri: &str,
        t: i64,
        value: RowValue<'_>,
    ) -> Result<(), WindowError> {
        let series = match &mut self.current {
            Some(series) if series.uri == uri => series,
            slot => {
                if let Some(done) = slot.take() {
                    self.seen.insert(done.uri.clone());
                    self.done.push(done);
                }
                if self.seen.contains(uri) {
                    return Err(WindowError::NotGrouped {
                        uri: uri.to_owned(),
                        row,
                    });
                }
                let values = match value {
                    RowValue::Datapoint(_) => Values::Datapoint(Vec::new()),
                    RowValue::Datasource(_) => Values::Datasource(Vec::new()),
                };
                slot.insert(Series {
                    uri: uri.to_owned(),
                    ts: Vec::new(),
                    values,
                })
            }
        };
        if let Some(&previous) = series.ts.last()
            && t < previous
        {
            return Err(WindowError::Unordered {
                uri: uri.to_owned(),
                row,
                ts: t,
                previous,
            });
        }
        match (&mut series.values, value) {
            (Values::Datapoint(v), RowValue::Datapoint(x)) => v.push(x),
            (Values::Datasource(v), RowValue::Datasource(x)) => v.push(x.to_owned()),
            _ => {
                return Err(WindowError::MixedKinds {
                    uri: uri.to_owned(),
                    row,
                });
            }
        }
        series.ts.push(t);
        Ok(())
    }

    fn finish(mut self) -> Vec<Series> {
        if let Some(s) = self.current.take() {
            self.done.push(s);
        }
        self.done
    }
}

mod stream;

#[cfg(test)]
mod tests;
