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

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
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

/// Builds window streams. The schema message never changes, so it is encoded
/// once and copied into every stream; only the record batch is encoded per fire.
pub struct WindowEncoder {
    schema: SchemaRef,
    schema_message: Vec<u8>,
    options: IpcWriteOptions,
    generator: IpcDataGenerator,
    compression: IpcWriteContext,
    uri: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    datapoint: Float64Builder,
    datasource: StringBuilder,
    rows: usize,
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
            compression: IpcWriteContext::default(),
            uri: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone(TS_TIMEZONE),
            datapoint: Float64Builder::new(),
            datasource: StringBuilder::new(),
            rows: 0,
        }
    }

    /// Append one row.
    pub fn push(&mut self, uri: &str, ts: i64, value: &Value) {
        self.uri.append_value(uri);
        self.ts.append_value(ts);
        match value {
            Value::Datapoint(v) => {
                self.datapoint.append_value(*v);
                self.datasource.append_null();
            }
            Value::Datasource(s) => {
                self.datapoint.append_null();
                self.datasource.append_value(s);
            }
        }
        self.rows += 1;
    }

    /// Rows pushed since the last [`WindowEncoder::finish_into`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Write the stream of the rows pushed so far into `out` (cleared first) and
    /// reset the encoder for the next window.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        out.clear();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.uri.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.datapoint.finish()),
            Arc::new(self.datasource.finish()),
        ];
        let rows = std::mem::take(&mut self.rows);
        if self.schema_message.is_empty() {
            return Err(ArrowError::IpcError(
                "the window schema could not be encoded".into(),
            ));
        }
        out.extend_from_slice(&self.schema_message);
        if rows > 0 {
            let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
            let mut dictionaries = DictionaryTracker::new(false);
            let (_, encoded) = self.generator.encode(
                &batch,
                &mut dictionaries,
                &self.options,
                &mut self.compression,
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

        let mut reference = WindowEncoder::new();
        for (uri, ts, v) in &rows {
            reference.push(uri, *ts, v);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(reference.uri.finish()),
            Arc::new(reference.ts.finish()),
            Arc::new(reference.datapoint.finish()),
            Arc::new(reference.datasource.finish()),
        ];
        let batch = RecordBatch::try_new(window_schema(), columns).unwrap();
        let mut theirs = Vec::new();
        let mut writer = StreamWriter::try_new(&mut theirs, &window_schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        assert_eq!(ours, theirs);
    }
}
