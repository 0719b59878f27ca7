//! Native tests of the window decoder. Streams are built with arrow directly
//! (not with [`super::encode`]) so encoder and decoder can't share a mistake.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::*;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A stream with the contract's schema and one batch per element of `batches`.
fn stream(batches: &[Rows]) -> Vec<u8> {
    stream_with(schema(), batches)
}

/// The contract's columns, all declared nullable (so nulls can be written).
fn nullable_schema() -> Schema {
    Schema::new(
        schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    )
}

/// Like [`stream`] with another schema of the same four columns.
fn stream_with(schema: Schema, batches: &[Rows]) -> Vec<u8> {
    let schema = Arc::new(schema);
    let batches: Vec<RecordBatch> = batches
        .iter()
        .map(|r| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(r.uri.clone())) as ArrayRef,
                    Arc::new(TimestampMicrosecondArray::from(r.ts.clone()).with_timezone("UTC")),
                    Arc::new(Float64Array::from(r.dp.clone())),
                    Arc::new(StringArray::from(r.ds.clone())),
                ],
            )
            .expect("valid test batch")
        })
        .collect();
    write_stream(&schema, &batches)
}

fn write_stream(schema: &Schema, batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = StreamWriter::try_new(Vec::new(), schema).expect("writer");
    for b in batches {
        w.write(b).expect("write batch");
    }
    w.finish().expect("finish");
    w.into_inner().expect("into_inner")
}

/// Columns of one batch (nullable everywhere so tests can put nulls in).
#[derive(Clone, Default)]
struct Rows {
    uri: Vec<Option<&'static str>>,
    ts: Vec<Option<i64>>,
    dp: Vec<Option<f64>>,
    ds: Vec<Option<&'static str>>,
}

impl Rows {
    fn dp(mut self, uri: &'static str, ts: i64, v: f64) -> Self {
        self.uri.push(Some(uri));
        self.ts.push(Some(ts));
        self.dp.push(Some(v));
        self.ds.push(None);
        self
    }

    fn ds(mut self, uri: &'static str, ts: i64, v: &'static str) -> Self {
        self.uri.push(Some(uri));
        self.ts.push(Some(ts));
        self.dp.push(None);
        self.ds.push(Some(v));
        self
    }

    fn raw(
        mut self,
        uri: Option<&'static str>,
        ts: Option<i64>,
        dp: Option<f64>,
        ds: Option<&'static str>,
    ) -> Self {
        self.uri.push(uri);
        self.ts.push(ts);
        self.dp.push(dp);
        self.ds.push(ds);
        self
    }
}

/// A stream whose schema has the given fields, one row: uri "a", ts 1, datapoint 1.0.
fn one_row_with(fields: Vec<(Field, ArrayRef)>) -> Vec<u8> {
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = fields.into_iter().unzip();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("valid test batch");
    write_stream(&schema, &[batch])
}

fn uri_col() -> (Field, ArrayRef) {
    (
        Field::new("uri", DataType::Utf8, false),
        Arc::new(StringArray::from(vec!["a"])),
    )
}
fn ts_col() -> (Field, ArrayRef) {
    (
        Field::new("ts", ts_type(), false),
        Arc::new(TimestampMicrosecondArray::from(vec![1]).with_timezone("UTC")),
    )
}
fn dp_col() -> (Field, ArrayRef) {
    (
        Field::new("datapoint", DataType::Float64, true),
        Arc::new(Float64Array::from(vec![Some(1.0)])),
    )
}
fn ds_col() -> (Field, ArrayRef) {
    (
        Field::new("datasource", DataType::Utf8, true),
        Arc::new(StringArray::from(vec![None::<&str>])),
    )
}

/// Decode, failing the test if the decoder panics.
fn decode_no_panic(bytes: &[u8]) -> Result<Window, WindowError> {
    match catch_unwind(AssertUnwindSafe(|| Window::decode(bytes))) {
        Ok(r) => r,
        Err(_) => {
            let hex: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
            panic!(
                "Window::decode panicked on {} bytes starting {hex}",
                bytes.len()
            )
        }
    }
}

/// A decode of damaged bytes either fails or gives a window that keeps every
/// promise of a decoded window, checked here without the decoder: each series
/// is non-empty, has one value per timestamp, ascending timestamps and a uri
/// of its own, and the SDK's encoder writes it back to the same series. (Damage
/// to the data itself, a timestamp or a letter of a text, is not detectable:
/// such bytes decode to other data.)
fn rejected_or_well_formed(bytes: &[u8]) {
    let Ok(w) = decode_no_panic(bytes) else {
        return;
    };
    let hex: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    let mut uris = std::collections::HashSet::new();
    for s in w.iter() {
        assert!(!s.ts.is_empty(), "an empty series from {hex}…: {s:?}");
        assert_eq!(s.ts.len(), s.values.len(), "from {hex}…: {s:?}");
        assert!(
            s.ts.windows(2).all(|p| p[0] <= p[1]),
            "timestamps out of order from {hex}…: {s:?}"
        );
        assert!(uris.insert(s.uri.as_str()), "uri twice from {hex}…: {w:?}");
    }
    let series: Vec<Series> = w.iter().cloned().collect();
    let again = Window::decode(&encode(&series).expect("re-encode")).expect("decode again");
    let bits = |s: &Series| match &s.values {
        Values::Datapoint(v) => v
            .iter()
            .map(|x| x.to_bits().to_string())
            .collect::<Vec<_>>(),
        Values::Datasource(v) => v.clone(),
    };
    assert_eq!(again.len(), series.len(), "from {hex}…");
    for (a, b) in again.iter().zip(&series) {
        assert_eq!(
            (&a.uri, &a.ts, a.values.kind(), bits(a)),
            (&b.uri, &b.ts, b.values.kind(), bits(b)),
            "the window from {hex}… does not survive encoding"
        );
    }
}

fn sample_stream() -> Vec<u8> {
    stream(&[
        Rows::default()
            .dp("cpu.user", 10, 1.5)
            .dp("cpu.user", 20, 2.5),
        Rows::default()
            .dp("cpu.user", 30, -3.0)
            .ds("df", 30, "Filesystem ...")
            .ds("df", 40, ""),
    ])
}

#[test]
fn decodes_datapoint_and_datasource_series_across_batches() {
    let w = decode_no_panic(&sample_stream()).expect("valid window");
    assert_eq!(w.len(), 2);
    assert!(!w.is_empty());
    assert_eq!(w.sample_count(), 5);
    assert_eq!(w.uris().collect::<Vec<_>>(), vec!["cpu.user", "df"]);
    assert_eq!(w.record_batches().len(), 2);
    assert_eq!(w.record_batches()[0].num_rows(), 2);
    assert_eq!(
        w.stream_schema().map(|s| s.as_ref().clone()),
        Some(schema())
    );

    let cpu = w.series("cpu.user").expect("cpu.user");
    assert_eq!(
        cpu,
        &Series::datapoint("cpu.user", vec![10, 20, 30], vec![1.5, 2.5, -3.0])
    );
    assert_eq!(cpu.kind(), Kind::Datapoint);
    assert_eq!(cpu.datapoints(), Some(&[1.5, 2.5, -3.0][..]));
    assert_eq!(cpu.datasources(), None);
    assert_eq!(cpu.last(), Some((30, ValueRef::Datapoint(-3.0))));

    let df = w.series("df").expect("df");
    assert_eq!(
        df,
        &Series::datasource("df", vec![30, 40], ["Filesystem ...", ""])
    );
    assert_eq!(df.kind(), Kind::Datasource);
    assert_eq!(df.datapoints(), None);
    assert_eq!(
        df.datasources(),
        Some(&["Filesystem ...".to_string(), String::new()][..])
    );
    assert_eq!(
        df.first(),
        Some((30, ValueRef::Datasource("Filesystem ...")))
    );

    assert!(w.series("nope").is_none());
    let via_iter: Vec<&str> = w.iter().map(|s| s.uri.as_str()).collect();
    let via_into_iter: Vec<&str> = (&w).into_iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(via_iter, via_into_iter);
    assert_eq!(w.into_series().len(), 2);
}

#[test]
fn empty_bytes_and_empty_streams_are_empty_windows() {
    let w = decode_no_panic(&[]).expect("empty bytes");
    assert!(w.is_empty());
    assert_eq!(w.len(), 0);
    assert!(w.record_batches().is_empty());
    assert!(w.stream_schema().is_none());

    // Schema message and end-of-stream only.
    let w = decode_no_panic(&stream(&[])).expect("schema-only stream");
    assert!(w.is_empty());
    assert!(w.record_batches().is_empty());
    assert!(w.stream_schema().is_some());

    // One batch with zero rows.
    let w = decode_no_panic(&stream(&[Rows::default()])).expect("zero-row batch");
    assert!(w.is_empty());
    assert_eq!(w.record_batches().len(), 1);
    assert_eq!(w.sample_count(), 0);
}

#[test]
fn equal_timestamps_are_accepted() {
    let w = decode_no_panic(&stream(&[Rows::default().dp("a", 5, 1.0).dp("a", 5, 2.0)]))
        .expect("equal ts");
    let a = w.series("a").unwrap();
    assert_eq!(a.ts, vec![5, 5]);
    assert_eq!(a.at(5), Some(ValueRef::Datapoint(2.0)), "last of equal ts");
}

#[test]
fn extra_columns_and_other_column_orders_are_accepted() {
    let extra = (
        Field::new("future", DataType::Int64, true),
        Arc::new(Int64Array::from(vec![9])) as ArrayRef,
    );
    let bytes = one_row_with(vec![ds_col(), extra, dp_col(), ts_col(), uri_col()]);
    let w = decode_no_panic(&bytes).expect("reordered with extra column");
    assert_eq!(
        w.series("a"),
        Some(&Series::datapoint("a", vec![1], vec![1.0]))
    );
}

#[test]
fn missing_columns_are_named() {
    let cases: [(&str, Vec<(Field, ArrayRef)>); 4] = [
        ("uri", vec![ts_col(), dp_col(), ds_col()]),
        ("ts", vec![uri_col(), dp_col(), ds_col()]),
        ("datapoint", vec![uri_col(), ts_col(), ds_col()]),
        ("datasource", vec![uri_col(), ts_col(), dp_col()]),
    ];
    for (column, fields) in cases {
        let err = decode_no_panic(&one_row_with(fields)).expect_err(column);
        assert_eq!(err, WindowError::MissingColumn { column }, "{column}");
        assert_eq!(
            err.to_string(),
            format!("window schema has no `{column}` column")
        );
    }
}

#[test]
fn mistyped_columns_are_named_with_both_types() {
    let ts_int = (
        Field::new("ts", DataType::Int64, false),
        Arc::new(Int64Array::from(vec![1])) as ArrayRef,
    );
    let ts_no_tz = (
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![1])) as ArrayRef,
    );
    let ts_other_tz = (
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Madrid".into())),
            false,
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![1]).with_timezone("Europe/Madrid"))
            as ArrayRef,
    );
    let ts_ms = (
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Arc::new(TimestampMillisecondArray::from(vec![1]).with_timezone("UTC")) as ArrayRef,
    );
    let uri_large = (
        Field::new("uri", DataType::LargeUtf8, false),
        Arc::new(LargeStringArray::from(vec!["a"])) as ArrayRef,
    );
    let dp_f32 = (
        Field::new("datapoint", DataType::Float32, true),
        Arc::new(Float32Array::from(vec![Some(1.0)])) as ArrayRef,
    );
    let ds_int = (
        Field::new("datasource", DataType::Int64, true),
        Arc::new(Int64Array::from(vec![None::<i64>])) as ArrayRef,
    );
    let cases = [
        ("ts", vec![uri_col(), ts_int, dp_col(), ds_col()]),
        ("ts", vec![uri_col(), ts_no_tz, dp_col(), ds_col()]),
        ("ts", vec![uri_col(), ts_other_tz, dp_col(), ds_col()]),
        ("ts", vec![uri_col(), ts_ms, dp_col(), ds_col()]),
        ("uri", vec![uri_large, ts_col(), dp_col(), ds_col()]),
        ("datapoint", vec![uri_col(), ts_col(), dp_f32, ds_col()]),
        ("datasource", vec![uri_col(), ts_col(), dp_col(), ds_int]),
    ];
    for (column, fields) in cases {
        let found = fields
            .iter()
            .find(|(f, _)| f.name() == column)
            .map(|(f, _)| f.data_type().to_string())
            .unwrap();
        let err = decode_no_panic(&one_row_with(fields)).expect_err(column);
        let WindowError::ColumnType {
            column: named,
            found: reported,
            expected,
        } = &err
        else {
            panic!("expected ColumnType for {column}, got {err:?}");
        };
        assert_eq!(*named, column);
        assert_eq!(*reported, found);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{column}`")) && msg.contains(&found) && msg.contains(expected),
            "{msg}"
        );
    }
}

#[test]
fn garbage_is_an_ipc_error() {
    let inputs: [&[u8]; 6] = [
        b"x",
        b"hello, world",
        &[0xff; 64],
        &[0; 64],
        b"\xff\xff\xff\xff\x10\x00\x00\x00garbage-garbage!",
        b"ARROW1\0\0",
    ];
    for bytes in inputs {
        let err = decode_no_panic(bytes).expect_err("garbage");
        assert!(matches!(err, WindowError::Ipc(_)), "{bytes:02x?}: {err:?}");
        assert!(
            err.to_string()
                .starts_with("window is not a valid Arrow IPC stream: ")
        );
    }
}

#[test]
fn arrow_file_format_is_rejected() {
    let schema = Arc::new(schema());
    let mut w = FileWriter::try_new(Vec::new(), &schema).unwrap();
    w.finish().unwrap();
    let bytes = w.into_inner().unwrap();
    let err = decode_no_panic(&bytes).expect_err("file format");
    assert!(matches!(err, WindowError::Ipc(_)), "{err:?}");
}

#[test]
fn truncated_streams_never_panic_and_cut_batches_fail() {
    let full = sample_stream();
    let schema_only_len = stream(&[]).len() - 8; // without the end-of-stream marker
    for n in 1..full.len() {
        let r = decode_no_panic(&full[..n]);
        // Cutting into the first message can never give a valid window.
        if n < schema_only_len {
            assert!(r.is_err(), "prefix of {n} bytes decoded");
        }
        if let Ok(w) = r {
            // A cut on a message boundary reads as a shorter stream: whatever
            // decoded must be a prefix of the real data.
            for s in w.iter() {
                let full_w = Window::decode(&full).unwrap();
                let real = full_w.series(&s.uri).unwrap();
                assert!(s.ts.len() <= real.ts.len());
                assert_eq!(s.ts[..], real.ts[..s.ts.len()]);
            }
        }
    }
}

/// xorshift64: deterministic pseudo-random numbers for the fuzz tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn corrupted_streams_never_panic() {
    let full = sample_stream();
    // Every byte, a few bit patterns.
    for i in 0..full.len() {
        for flip in [0x01u8, 0x02, 0x10, 0x80, 0xff] {
            let mut bytes = full.clone();
            bytes[i] ^= flip;
            rejected_or_well_formed(&bytes);
        }
    }
    // Random 32-bit words written over aligned positions (lengths, offsets,
    // counts), one to three at a time.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut bytes = full.clone();
        for _ in 0..(1 + rng.next() % 3) {
            let at = (rng.next() as usize % (full.len() / 4)) * 4;
            let word = match rng.next() % 4 {
                0 => (rng.next() % 64) as u32,
                1 => u32::MAX - (rng.next() % 64) as u32,
                2 => 1 << (rng.next() % 32),
                _ => rng.next() as u32,
            };
            bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
        rejected_or_well_formed(&bytes);
    }
    // Pure garbage of various sizes, with and without a plausible header, is
    // never a window.
    for len in [1usize, 7, 8, 9, 16, 100, 1000] {
        for _ in 0..50 {
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(
                decode_no_panic(&bytes).is_err(),
                "{len} random bytes decoded"
            );
            if len >= 8 {
                bytes[..4].copy_from_slice(&[0xff; 4]);
                bytes[4..8].copy_from_slice(&((len - 8) as u32).to_le_bytes());
                assert!(
                    decode_no_panic(&bytes).is_err(),
                    "{len} random bytes behind a message header decoded"
                );
            }
        }
    }
}

#[test]
fn stream_structure_errors() {
    let schema_only = stream(&[]);
    let full = sample_stream();
    // A stream may end without the end-of-stream marker.
    let no_eos = &full[..full.len() - 8];
    let w = decode_no_panic(no_eos).expect("stream without end marker");
    assert_eq!(w.sample_count(), 5);
    // Two schema messages.
    let mut twice = schema_only[..schema_only.len() - 8].to_vec();
    twice.extend_from_slice(&schema_only);
    let err = decode_no_panic(&twice).unwrap_err();
    assert_eq!(
        err,
        WindowError::Ipc("a second schema message in the stream".into())
    );
    // A record batch with no schema before it.
    let batch_only = &full[schema_only.len() - 8..];
    let err = decode_no_panic(batch_only).unwrap_err();
    assert_eq!(
        err,
        WindowError::Ipc("record batch before the schema message".into())
    );
    // Only an end-of-stream marker.
    let err = decode_no_panic(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(
        err,
        WindowError::Ipc("the stream has no schema message".into())
    );
}

#[test]
fn record_batches_hold_the_contract_columns_in_order() {
    let extra = (
        Field::new(
            "nested",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
        Arc::new(arrow_array::ListArray::from_iter_primitive::<
            arrow_array::types::Int64Type,
            _,
            _,
        >(vec![Some(vec![Some(1), None])])) as ArrayRef,
    );
    let bytes = one_row_with(vec![ds_col(), extra, dp_col(), ts_col(), uri_col()]);
    let w = decode_no_panic(&bytes).expect("valid");
    let batch = &w.record_batches()[0];
    assert_eq!(batch.schema().fields().len(), 4);
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, vec!["uri", "ts", "datapoint", "datasource"]);
    let declared = w.stream_schema().expect("schema");
    assert_eq!(
        declared.fields().len(),
        5,
        "stream schema keeps extra columns"
    );
    assert_eq!(declared.field(1).name(), "nested");
}

#[test]
fn null_uri_or_ts_is_rejected_with_its_row() {
    let bytes = stream_with(
        nullable_schema(),
        &[
            Rows::default().dp("a", 1, 1.0),
            Rows::default().raw(None, Some(2), Some(1.0), None),
        ],
    );
    assert_eq!(
        decode_no_panic(&bytes).unwrap_err(),
        WindowError::NullValue {
            row: 1,
            column: "uri"
        }
    );
    let bytes = stream_with(
        nullable_schema(),
        &[Rows::default().raw(Some("a"), None, Some(1.0), None)],
    );
    let err = decode_no_panic(&bytes).unwrap_err();
    assert_eq!(
        err,
        WindowError::NullValue {
            row: 0,
            column: "ts"
        }
    );
    assert_eq!(err.to_string(), "window row 0: `ts` is null");
}

#[test]
fn rows_need_exactly_one_value() {
    let bytes = stream(&[Rows::default().raw(Some("a"), Some(1), None, None)]);
    let err = decode_no_panic(&bytes).unwrap_err();
    assert!(
        matches!(&err, WindowError::BadRow { row: 0, uri, .. } if uri == "a"),
        "{err:?}"
    );
    assert!(err.to_string().contains("neither"), "{err}");

    let bytes =
        stream(&[Rows::default()
            .dp("a", 1, 1.0)
            .raw(Some("a"), Some(2), Some(1.0), Some("x"))]);
    let err = decode_no_panic(&bytes).unwrap_err();
    assert!(
        matches!(&err, WindowError::BadRow { row: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("both"), "{err}");
}

#[test]
fn a_uri_holds_one_kind() {
    let bytes = stream(&[Rows::default().dp("a", 1, 1.0).ds("a", 2, "x")]);
    assert_eq!(
        decode_no_panic(&bytes).unwrap_err(),
        WindowError::MixedKinds {
            uri: "a".into(),
            row: 1
        }
    );
}

#[test]
fn timestamps_must_ascend_within_a_uri_even_across_batches() {
    let bytes = stream(&[
        Rows::default().dp("a", 10, 1.0),
        Rows::default().dp("a", 9, 1.0),
    ]);
    let err = decode_no_panic(&bytes).unwrap_err();
    assert_eq!(
        err,
        WindowError::Unordered {
            uri: "a".into(),
            row: 1,
            ts: 9,
            previous: 10
        }
    );
    assert!(err.to_string().contains("ts 9 at row 1"), "{err}");
    // A new uri may start earlier than the previous uri ended.
    let ok = stream(&[Rows::default().dp("a", 10, 1.0).dp("b", 1, 1.0)]);
    assert_eq!(decode_no_panic(&ok).unwrap().len(), 2);
}

#[test]
fn rows_of_a_uri_must_be_grouped() {
    let bytes = stream(&[Rows::default()
        .dp("a", 1, 1.0)
        .dp("b", 1, 1.0)
        .dp("a", 2, 1.0)]);
    assert_eq!(
        decode_no_panic(&bytes).unwrap_err(),
        WindowError::NotGrouped {
            uri: "a".into(),
            row: 2
        }
    );
}

#[test]
fn encode_round_trips() {
    let series = vec![
        Series::datapoint("cpu", vec![-5, 0, 7], vec![0.0, f64::MAX, -1e-300]),
        Series::datasource("log", vec![3], ["ü ñ 🚀\nline"]),
        Series::datapoint("one", vec![i64::MAX], vec![1.0]),
    ];
    let bytes = encode(&series).unwrap();
    let w = decode_no_panic(&bytes).unwrap();
    assert_eq!(w.clone().into_series(), series);
    assert_eq!(w.record_batches().len(), 1);

    let empty = encode(&[]).unwrap();
    assert!(!empty.is_empty(), "schema-only stream");
    let w = decode_no_panic(&empty).unwrap();
    assert!(w.is_empty());
    assert!(w.stream_schema().is_some());
}

#[test]
fn encode_rejects_length_mismatch() {
    let err = encode(&[Series::datapoint("a", vec![1, 2], vec![1.0])]).unwrap_err();
    assert_eq!(
        err,
        WindowError::Encode {
            uri: "a".into(),
            reason: "2 timestamps but 1 values".into()
        }
    );
}

#[test]
fn series_accessors() {
    let s = Series::datapoint("a", vec![10, 20, 20, 30], vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(s.len(), 4);
    assert_eq!(s.get(1), Some((20, ValueRef::Datapoint(2.0))));
    assert_eq!(s.get(4), None);
    assert_eq!(s.first(), Some((10, ValueRef::Datapoint(1.0))));
    assert_eq!(s.last(), Some((30, ValueRef::Datapoint(4.0))));
    assert_eq!(s.at(20), Some(ValueRef::Datapoint(3.0)));
    assert_eq!(s.at(25), None);
    assert_eq!(
        s.latest_at_or_before(25),
        Some((20, ValueRef::Datapoint(3.0)))
    );
    assert_eq!(s.latest_at_or_before(9), None);
    assert_eq!(
        s.latest_at_or_before(i64::MAX),
        Some((30, ValueRef::Datapoint(4.0)))
    );
    assert_eq!(s.range(10, 30), 1..4);
    assert_eq!(s.range(9, 20), 0..3);
    assert_eq!(s.range(30, 40), 4..4);
    assert_eq!(s.range(40, 10), 4..4, "inverted bounds give an empty range");
    assert_eq!(s.range(i64::MIN, i64::MAX), 0..4);
    assert_eq!(
        s.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        vec![10, 20, 20, 30]
    );
    assert_eq!(s.iter().next_back(), s.last());
    assert_eq!(ValueRef::Datapoint(2.0).as_datapoint(), Some(2.0));
    assert_eq!(ValueRef::Datapoint(2.0).as_datasource(), None);
    assert_eq!(ValueRef::Datasource("x").as_datasource(), Some("x"));
    assert_eq!(ValueRef::Datasource("x").as_datapoint(), None);
}

#[test]
fn series_accessors_tolerate_inconsistent_hand_built_series() {
    let s = Series::datapoint("a", vec![1, 2, 3], vec![1.0]);
    assert_eq!(s.len(), 1);
    assert_eq!(s.last(), Some((1, ValueRef::Datapoint(1.0))));
    assert_eq!(s.range(0, 10), 0..1);
    assert_eq!(
        s.latest_at_or_before(3),
        Some((1, ValueRef::Datapoint(1.0)))
    );
    assert_eq!(s.iter().count(), 1);
    let empty = Series::datasource::<String>("e", vec![], []);
    assert!(empty.is_empty());
    assert_eq!(empty.last(), None);
    assert_eq!(empty.first(), None);
    assert_eq!(empty.at(0), None);
    assert_eq!(empty.range(i64::MIN, i64::MAX), 0..0);
}

#[test]
fn canonical_schema_matches_the_contract() {
    let s = schema();
    let cols: Vec<(&str, &DataType, bool)> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("uri", &DataType::Utf8, false),
            ("ts", &ts_type(), false),
            ("datapoint", &DataType::Float64, true),
            ("datasource", &DataType::Utf8, true),
        ]
    );
}

/// A longer fuzz run: `KOMLOG_FUZZ_ITERS=1000000 cargo test -p komlog-guest
/// --release -- --ignored fuzz`. Mutates several valid streams (bytes, words,
/// insertions, deletions) and fails on any panic.
#[test]
#[ignore = "long-running fuzz; run explicitly"]
fn fuzz_decode_long() {
    let iters: usize = std::env::var("KOMLOG_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed: u64 = std::env::var("KOMLOG_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x2545_f491_4f6c_dd1d);
    let extra = (
        Field::new(
            "nested",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
        Arc::new(arrow_array::ListArray::from_iter_primitive::<
            arrow_array::types::Int64Type,
            _,
            _,
        >(vec![Some(vec![Some(1), None])])) as ArrayRef,
    );
    let corpus = [
        sample_stream(),
        stream(&[]),
        one_row_with(vec![ds_col(), extra, dp_col(), ts_col(), uri_col()]),
        encode(&[
            Series::datasource("x", vec![1, 2, 3], ["a", "bb", "ccc"]),
            Series::datapoint("y", vec![1], vec![f64::NAN]),
        ])
        .unwrap(),
    ];
    let mut rng = Rng(seed);
    for _ in 0..iters {
        let mut bytes = corpus[rng.next() as usize % corpus.len()].clone();
        for _ in 0..(1 + rng.next() % 4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.next() as usize % bytes.len();
            match rng.next() % 6 {
                0 => bytes[at] = rng.next() as u8,
                1 => bytes[at] ^= 1 << (rng.next() % 8),
                2 => {
                    let at = at & !3;
                    if at + 4 <= bytes.len() {
                        let word = match rng.next() % 3 {
                            0 => (rng.next() % 256) as u32,
                            1 => u32::MAX - (rng.next() % 256) as u32,
                            _ => rng.next() as u32,
                        };
                        bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
                    }
                }
                3 => {
                    let at = at & !7;
                    if at + 8 <= bytes.len() {
                        let word = (rng.next() % 4096) as i64 - 2048;
                        bytes[at..at + 8].copy_from_slice(&word.to_le_bytes());
                    }
                }
                4 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, rng.next() as u8),
            }
        }
        rejected_or_well_formed(&bytes);
    }
}

#[test]
fn extra_columns_of_unsupported_types_are_rejected_by_name() {
    let view = (
        Field::new("view", DataType::Utf8View, true),
        Arc::new(arrow_array::StringViewArray::from(vec!["v"])) as ArrayRef,
    );
    let bytes = one_row_with(vec![uri_col(), view, ts_col(), dp_col(), ds_col()]);
    let err = decode_no_panic(&bytes).unwrap_err();
    assert_eq!(
        err,
        WindowError::Ipc("column `view` has type Utf8View, which windows do not support".into())
    );
}

/// Decode `bytes` checking every row one by one (the decoder's slow path),
/// as the reference for the bulk path.
fn decode_row_by_row(bytes: &[u8]) -> Result<Vec<Series>, WindowError> {
    let stream = read_projected(bytes)?;
    let mut decoder = Decoder::default();
    for batch in &stream.batches {
        let cols = BatchColumns::of(&PROJECTED, batch)?;
        decoder.push_rows(&cols, 0..batch.num_rows())?;
    }
    Ok(decoder.finish())
}

#[test]
fn bulk_decoding_agrees_with_row_by_row_checks() {
    // Random windows, mostly valid, some breaking one rule or another (null
    // uri or ts, no or two values, mixed kinds, time going back, a uri
    // coming back): the bulk path must give the same series, or the same
    // error naming the same row, as checking every row.
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..3_000 {
        let mut batches = Vec::new();
        let mut uri = 0usize;
        let mut ts = 0i64;
        for _ in 0..(1 + rng.next() % 3) {
            let mut rows = Rows::default();
            for _ in 0..(rng.next() % 12) {
                if rng.next().is_multiple_of(4) {
                    uri += 1;
                }
                if rng.next().is_multiple_of(40) {
                    uri = uri.saturating_sub(1 + (rng.next() % 2) as usize);
                }
                ts += (rng.next() % 3) as i64;
                if rng.next().is_multiple_of(40) {
                    ts -= 5;
                }
                let name = ["a", "b", "c", "d", "e", "f"][uri % 6];
                let datasource = (uri + (rng.next().is_multiple_of(60)) as usize) % 2 == 1;
                let (dp, ds) = match (rng.next() % 80, datasource) {
                    (0, _) => (None, None),
                    (1, _) => (Some(1.0), Some("x")),
                    (_, false) => (Some(ts as f64), None),
                    (_, true) => (None, Some(["x", "yy", "é"][uri % 3])),
                };
                let uri_cell = (!rng.next().is_multiple_of(100)).then_some(name);
                let ts_cell = (!rng.next().is_multiple_of(100)).then_some(ts);
                rows = rows.raw(uri_cell, ts_cell, dp, ds);
            }
            batches.push(rows);
        }
        let bytes = stream_with(nullable_schema(), &batches);
        let bulk = decode_no_panic(&bytes).map(Window::into_series);
        let reference = decode_row_by_row(&bytes);
        assert_eq!(bulk, reference, "stream of {} batches", batches.len());
        if bulk.is_ok() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    // Both kinds of outcome were exercised.
    assert!(
        valid > 500 && invalid > 500,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn a_known_schema_is_reused_and_a_new_one_replaces_it() {
    // The same schema message read again takes the cached path; a stream
    // with another schema (extra column, other order) is read afresh; the
    // first one read again still decodes right.
    let first = sample_stream();
    let expected = decode_no_panic(&first).expect("decodes").into_series();
    assert_eq!(
        decode_no_panic(&first)
            .expect("decodes again")
            .into_series(),
        expected
    );
    let (uri, ts, dp, ds) = (uri_col(), ts_col(), dp_col(), ds_col());
    let extra = (
        Field::new("extra", DataType::Int64, true),
        Arc::new(Int64Array::from(vec![7])) as ArrayRef,
    );
    let other = one_row_with(vec![ds, extra, ts, dp, uri]);
    let window = decode_no_panic(&other).expect("other schema decodes");
    assert_eq!(
        window.into_series(),
        vec![Series::datapoint("a", vec![1], vec![1.0])]
    );
    assert_eq!(
        decode_no_panic(&first).expect("first again").into_series(),
        expected
    );
    // A known schema followed by a cut stream is still an error.
    let cut = &first[..first.len() - 20];
    assert!(decode_no_panic(cut).is_err());
}

/// Where the little-endian i32 `offsets` of a string column are in `bytes`.
fn find_offsets(bytes: &[u8], offsets: &[i32]) -> usize {
    let pattern: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("the offsets are in the stream")
}

#[test]
fn string_offsets_out_of_order_or_past_the_text_are_errors() {
    let bytes = stream(&[Rows::default().ds("a", 1, "xyz").ds("a", 2, "uvwxyz")]);
    let at = find_offsets(&bytes, &[0, 3, 9]);
    let with_offsets = |new: [i32; 3]| {
        let mut b = bytes.clone();
        let new: Vec<u8> = new.iter().flat_map(|o| o.to_le_bytes()).collect();
        b[at..at + new.len()].copy_from_slice(&new);
        decode_no_panic(&b)
    };
    assert!(with_offsets([0, 3, 9]).is_ok());
    for (bad, says) in [
        ([0, 9, 3], "offsets out of order"),
        ([-1, 3, 9], "offsets out of order"),
        ([0, 3, 4000], "4000 needed"),
    ] {
        match with_offsets(bad) {
            Err(WindowError::Ipc(message)) => assert!(
                message.contains("`datasource`") && message.contains(says),
                "{bad:?}: {message}"
            ),
            other => panic!("{bad:?}: expected an IPC error, got {other:?}"),
        }
    }
    // Offsets that split a multi-byte character are refused by arrow's check.
    let bytes = stream(&[Rows::default().ds("a", 1, "é").ds("a", 2, "x")]);
    let at = find_offsets(&bytes, &[0, 2, 3]);
    let mut split = bytes.clone();
    split[at + 4..at + 8].copy_from_slice(&1i32.to_le_bytes());
    assert!(matches!(decode_no_panic(&split), Err(WindowError::Ipc(_))));
}

#[test]
fn nested_extra_columns_before_the_contract_columns_are_skipped() {
    // Each nested column has field nodes and buffers of its own and of its
    // children: the contract columns after it must still be found.
    use arrow_array::types::Int64Type;
    use arrow_array::{FixedSizeListArray, ListArray, NullArray, StructArray};
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1), None])]);
    let fixed = FixedSizeListArray::from_iter_primitive::<Int64Type, _, _>(
        vec![Some(vec![Some(1), Some(2)])],
        2,
    );
    let record = StructArray::from(vec![
        (
            Arc::new(Field::new("n", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![5])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("s", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["nested"])) as ArrayRef,
        ),
    ]);
    let column =
        |name: &str, array: ArrayRef| (Field::new(name, array.data_type().clone(), true), array);
    let bytes = one_row_with(vec![
        column("list", Arc::new(list)),
        uri_col(),
        column("record", Arc::new(record)),
        ts_col(),
        column("nothing", Arc::new(NullArray::new(1))),
        column("fixed", Arc::new(fixed)),
        ds_col(),
        dp_col(),
    ]);
    let w = decode_no_panic(&bytes).expect("nested extra columns are skipped");
    assert_eq!(
        w.into_series(),
        vec![Series::datapoint("a", vec![1], vec![1.0])]
    );
}

/// `bytes` (a schema message, record batch messages, the end marker) with
/// every record batch's metadata rebuilt after `edit` changed its row count,
/// field nodes or buffers; the bodies are kept as they are.
fn with_batch_metadata(
    bytes: &[u8],
    edit: impl Fn(&mut i64, &mut Vec<arrow_ipc::FieldNode>, &mut Vec<arrow_ipc::Buffer>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = i32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if len == 0 {
            out.extend_from_slice(&bytes[pos..pos + 8]);
            break;
        }
        let meta = &bytes[pos + 8..pos + 8 + len];
        let message = arrow_ipc::root_as_message(meta).expect("test stream metadata");
        let body_len = message.bodyLength() as usize;
        let body = &bytes[pos + 8 + len..pos + 8 + len + body_len];
        pos += 8 + len + body_len;
        let Some(batch) = message.header_as_record_batch() else {
            out.extend_from_slice(&bytes[pos - 8 - len - body_len..pos]);
            continue;
        };
        let mut rows = batch.length();
        let mut nodes: Vec<_> = batch.nodes().unwrap().iter().copied().collect();
        let mut buffers: Vec<_> = batch.buffers().unwrap().iter().copied().collect();
        edit(&mut rows, &mut nodes, &mut buffers);
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let nodes = fbb.create_vector(&nodes);
        let buffers = fbb.create_vector(&buffers);
        let mut rb = arrow_ipc::RecordBatchBuilder::new(&mut fbb);
        rb.add_length(rows);
        rb.add_nodes(nodes);
        rb.add_buffers(buffers);
        let rb = rb.finish();
        let mut mb = arrow_ipc::MessageBuilder::new(&mut fbb);
        mb.add_version(message.version());
        mb.add_header_type(arrow_ipc::MessageHeader::RecordBatch);
        mb.add_bodyLength(body_len as i64);
        mb.add_header(rb.as_union_value());
        let m = mb.finish();
        fbb.finish(m, None);
        let mut meta = fbb.finished_data().to_vec();
        meta.resize(meta.len().next_multiple_of(8), 0);
        out.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&(meta.len() as i32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(body);
    }
    out
}

#[test]
fn record_batch_metadata_that_does_not_fit_its_columns_is_named() {
    // Five rows: three datapoints, two datasources. Nodes: uri, ts,
    // datapoint, datasource; three buffers each but two for ts and datapoint
    // (validity, values) — validity, offsets, text for the strings.
    let bytes = stream(&[Rows::default()
        .dp("a", 1, 1.0)
        .dp("a", 2, 2.0)
        .dp("a", 3, 3.0)
        .ds("b", 1, "x")
        .ds("b", 2, "yz")]);
    let same = with_batch_metadata(&bytes, |_, _, _| {});
    assert_eq!(
        decode_no_panic(&same)
            .expect("rebuilt unchanged")
            .sample_count(),
        5
    );
    type Edit = fn(&mut i64, &mut Vec<arrow_ipc::FieldNode>, &mut Vec<arrow_ipc::Buffer>);
    let cases: [(&str, Edit, &str); 9] = [
        (
            "negative rows",
            |rows, _, _| *rows = -1,
            "negative row count -1",
        ),
        (
            "a column shorter than the batch",
            |_, nodes, _| nodes[0] = arrow_ipc::FieldNode::new(4, 0),
            "column `uri` has 4 rows in a batch of 5",
        ),
        (
            "too few field nodes",
            |_, nodes, _| nodes.truncate(2),
            "no field node for column `datapoint`",
        ),
        (
            "too few buffers",
            |_, _, buffers| {
                buffers.pop();
            },
            "no buffer 2 for column `datasource`",
        ),
        (
            "a validity bitmap too short",
            // datapoint's validity (buffer 5): null for the two datasource rows.
            |_, _, buffers| buffers[5] = arrow_ipc::Buffer::new(buffers[5].offset(), 0),
            "buffer 0 of column `datapoint` has 0 bytes, 1 needed",
        ),
        (
            "a values buffer too short",
            |_, _, buffers| buffers[4] = arrow_ipc::Buffer::new(buffers[4].offset(), 8),
            "buffer 1 of column `ts` has 8 bytes, 40 needed",
        ),
        (
            "a misaligned buffer",
            |_, _, buffers| buffers[4] = arrow_ipc::Buffer::new(buffers[4].offset() + 4, 8),
            "is misaligned or outside",
        ),
        (
            "a buffer past the body",
            |_, _, buffers| buffers[4] = arrow_ipc::Buffer::new(1 << 20, 40),
            "is misaligned or outside",
        ),
        (
            "more nulls than rows",
            |_, nodes, _| nodes[2] = arrow_ipc::FieldNode::new(5, 6),
            "bad field node: length 5, null count 6",
        ),
    ];
    for (what, edit, says) in cases {
        match decode_no_panic(&with_batch_metadata(&bytes, edit)) {
            Err(WindowError::Ipc(message)) => {
                assert!(message.contains(says), "{what}: {message}")
            }
            other => panic!("{what}: expected an IPC error, got {other:?}"),
        }
    }
}
