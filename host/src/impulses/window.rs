//! Encoding of an impulse's window as an Apache Arrow IPC stream.
//!
//! Schema (documented item by item in `wit/impulse.wit`):
//!
//! | column | type | nulls |
//! |---|---|---|
//! | `uri` | utf8 | no |
//! | `ts` | timestamp[us, tz=UTC] | no |
//! | `datapoint` | float64 | set for datapoint samples |
//! | `datasource` | utf8 | set for datasource samples |
//!
//! One stream per fire: schema message, at most one record batch (none when the
//! window is empty), end-of-stream marker. Rows come grouped by uri in the
//! impulse's subscription order, ts ascending.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, StreamWriter,
    write_message,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::model::Value;

/// The timezone of the `ts` column.
pub const TS_TIMEZONE: &str = "UTC";

/// The window schema.
pub fn window_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("uri", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some(TS_TIMEZONE.into())),
            false,
        ),
        Field::new("datapoint", DataType::Float64, true),
        Field::new("datasource", DataType::Utf8, true),
    ]))
}

/// The IPC end-of-stream marker: continuation marker and a zero length.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// One utf8 column being filled: offsets, bytes and validity, kept between fires
/// so their capacity is reused (arrow's builders give theirs up on `finish`).
#[derive(Default)]
struct TextColumn {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    valid: Vec<bool>,
}

impl TextColumn {
    fn push(&mut self, text: Option<&str>) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        if let Some(t) = text {
            self.bytes.extend_from_slice(t.as_bytes());
        }
        // Offsets are i32 in the utf8 type; a window holds far less than 2 GiB.
        self.offsets
            .push(i32::try_from(self.bytes.len()).unwrap_or(i32::MAX));
        self.valid.push(text.is_some());
    }

    fn array(&mut self, nullable: bool) -> Result<StringArray, ArrowError> {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(Buffer::from_slice_ref(&self.offsets)));
        let values = Buffer::from_slice_ref(&self.bytes);
        let nulls = nullable.then(|| NullBuffer::from(self.valid.as_slice()));
        let array = StringArray::try_new(offsets, values, nulls);
        self.offsets.clear();
        self.bytes.clear();
        self.valid.clear();
        array
    }
}

/// Builds window streams. The schema message never changes, so it is encoded
/// once and copied into every stream; only the record batch is encoded per fire.
/// Column storage is reused between fires.
pub struct WindowEncoder {
    schema: SchemaRef,
    schema_message: Vec<u8>,
    options: IpcWriteOptions,
    generator: IpcDataGenerator,
    context: IpcWriteContext,
    uri: TextColumn,
    ts: Vec<i64>,
    datapoint: Vec<f64>,
    datapoint_valid: Vec<bool>,
    datasource: TextColumn,
}

impl Default for WindowEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowEncoder {
    /// A new encoder.
    pub fn new() -> Self {
        let schema = window_schema();
        // StreamWriter writes the schema message on creation: keep those bytes.
        let schema_message = StreamWriter::try_new(Vec::new(), &schema)
            .map(|w| w.get_ref().clone())
            .unwrap_or_default();
        let options = IpcWriteOptions::default()
            .try_with_compression(None::<CompressionType>)
            .unwrap_or_default();
        WindowEncoder {
            schema,
            schema_message,
            options,
            generator: IpcDataGenerator::default(),
            context: IpcWriteContext::default(),
            uri: TextColumn::default(),
            ts: Vec::new(),
            datapoint: Vec::new(),
            datapoint_valid: Vec::new(),
            datasource: TextColumn::default(),
        }
    }

    /// Append one row.
    pub fn push(&mut self, uri: &str, ts: i64, value: &Value) {
        self.uri.push(Some(uri));
        self.ts.push(ts);
        match value {
            Value::Datapoint(v) => {
                self.datapoint.push(*v);
                self.datapoint_valid.push(true);
                self.datasource.push(None);
            }
            Value::Datasource(s) => {
                self.datapoint.push(0.0);
                self.datapoint_valid.push(false);
                self.datasource.push(Some(s));
            }
        }
    }

    /// Rows pushed since the last [`WindowEncoder::finish_into`].
    pub fn rows(&self) -> usize {
        self.ts.len()
    }

    /// Write the stream of the rows pushed so far into `out` (cleared first) and
    /// reset the encoder for the next window.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        out.clear();
        let rows = self.ts.len();
        let uri = self.uri.array(false)?;
        let datasource = self.datasource.array(true)?;
        let ts = TimestampMicrosecondArray::new(
            ScalarBuffer::from(Buffer::from_slice_ref(&self.ts)),
            None,
        )
        .with_timezone(TS_TIMEZONE);
        let datapoint = Float64Array::new(
            ScalarBuffer::from(Buffer::from_slice_ref(&self.datapoint)),
            Some(NullBuffer::from(self.datapoint_valid.as_slice())),
        );
        self.ts.clear();
        self.datapoint.clear();
        self.datapoint_valid.clear();
        if self.schema_message.is_empty() {
            return Err(ArrowError::IpcError(
                "the window schema could not be encoded".into(),
            ));
        }
        out.extend_from_slice(&self.schema_message);
        if rows > 0 {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(uri),
                Arc::new(ts),
                Arc::new(datapoint),
                Arc::new(datasource),
            ];
            let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
            let mut dictionaries = DictionaryTracker::new(false);
            let (_, encoded) = self.generator.encode(
                &batch,
                &mut dictionaries,
                &self.options,
                &mut self.context,
            )?;
            write_message(&mut *out, encoded, &self.options)?;
        }
        out.extend_from_slice(&END_OF_STREAM);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampMicrosecondType};
    use arrow_ipc::reader::StreamReader;

    #[test]
    fn round_trip_through_the_arrow_reader() {
        let mut enc = WindowEncoder::new();
        enc.push("a.b", 10, &Value::Datapoint(1.5));
        enc.push("a.b", 20, &Value::Datapoint(-2.0));
        enc.push("t", 15, &Value::Datasource("hello".into()));
        let mut out = Vec::new();
        enc.finish_into(&mut out).unwrap();
        let reader = StreamReader::try_new(std::io::Cursor::new(&out), None).unwrap();
        assert_eq!(reader.schema(), window_schema());
        let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 3);
        let uri = b.column(0).as_string::<i32>();
        assert_eq!(uri.value(2), "t");
        let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.values().to_vec(), vec![10, 20, 15]);
        let dp = b.column(2).as_primitive::<Float64Type>();
        assert_eq!(dp.value(1), -2.0);
        assert!(dp.is_null(2));
        let ds = b.column(3).as_string::<i32>();
        assert!(ds.is_null(0));
        assert_eq!(ds.value(2), "hello");
        // The encoder is reusable and an empty window has no batch.
        enc.finish_into(&mut out).unwrap();
        let reader = StreamReader::try_new(std::io::Cursor::new(&out), None).unwrap();
        assert_eq!(reader.count(), 0);
    }

    #[test]
    fn streams_are_byte_identical_to_arrows_stream_writer() {
        let rows = [
            ("a", 1, Value::Datapoint(1.0)),
            ("b", 2, Value::Datasource("x".into())),
        ];
        let mut enc = WindowEncoder::new();
        for (uri, ts, v) in &rows {
            enc.push(uri, *ts, v);
        }
        let mut ours = Vec::new();
        enc.finish_into(&mut ours).unwrap();

        use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
        let mut uri = StringBuilder::new();
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone(TS_TIMEZONE);
        let mut dp = Float64Builder::new();
        let mut ds = StringBuilder::new();
        for (u, t, v) in &rows {
            uri.append_value(u);
            ts.append_value(*t);
            match v {
                Value::Datapoint(x) => {
                    dp.append_value(*x);
                    ds.append_null();
                }
                Value::Datasource(x) => {
                    dp.append_null();
                    ds.append_value(x);
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(uri.finish()),
            Arc::new(ts.finish()),
            Arc::new(dp.finish()),
            Arc::new(ds.finish()),
        ];
        let batch = RecordBatch::try_new(window_schema(), columns).unwrap();
        let mut theirs = Vec::new();
        let mut writer = StreamWriter::try_new(&mut theirs, &window_schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        assert_eq!(ours, theirs);
    }
}
