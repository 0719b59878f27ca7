//! Reading an Arrow IPC stream without trusting it: message framing, bounds
//! checks on every buffer, then the contract's columns built from the
//! message body with arrow's checked constructors.
//!
//! arrow-ipc parses and verifies the flatbuffer metadata and converts the
//! schema. Its record batch reader is not used: it panics on some malformed
//! metadata (for example a buffer that points past the message body), and a
//! panic in a guest is a trap that costs the instance; it also validates
//! every string on its own, which made it most of a small window's cost.
//! This module locates the node and buffers of each contract column itself
//! (counting those of the columns before it), checks their sizes, offsets
//! and validity bitmaps, and builds the arrays with arrow-array's `try_new`
//! constructors (which check UTF-8 once per column). Only the contract's
//! four columns are read (extra columns are skipped, never materialised).

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, RecordBatchOptions, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::{MessageHeader, MetadataVersion, root_as_message};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit, UnionMode};

use super::WindowError;

/// Marks a message in the current (0.15+) framing.
const CONTINUATION: u32 = 0xFFFF_FFFF;

/// What [`read`] found: the stream's schema and its record batches, each
/// projected on `projection` (computed from the schema by the caller).
pub(super) struct Stream {
    pub(super) schema: SchemaRef,
    pub(super) batches: Vec<RecordBatch>,
}

fn err(msg: impl Into<String>) -> WindowError {
    WindowError::Ipc(msg.into())
}

/// Read a little-endian `u32` at `pos`.
fn u32_at(bytes: &[u8], pos: usize) -> Option<u32> {
    let b = bytes.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// What a schema message gives: the schema, the schema of the projected
/// batches, and where each projected column lies in a record batch.
#[derive(Clone)]
struct ReadSchema {
    schema: SchemaRef,
    projected: SchemaRef,
    columns: Arc<[ColumnLayout]>,
}

/// A schema message already read on this thread, and what came of it.
struct KnownSchema {
    /// The message's metadata bytes, exactly.
    meta: Vec<u8>,
    /// Its body length (from the metadata).
    body_len: usize,
    read: ReadSchema,
}

thread_local! {
    /// The last schema message that read well. komlogd sends the same schema
    /// at every fire, and verifying and converting it costs more than
    /// decoding a small window's rows: identical bytes reuse the result.
    static LAST_SCHEMA: RefCell<Option<KnownSchema>> = const { RefCell::new(None) };
}

/// What came of `meta` if it is the last schema message that read well on
/// this thread.
fn known_schema(meta: &[u8]) -> Option<(usize, ReadSchema)> {
    LAST_SCHEMA.with_borrow(|known| {
        let known = known.as_ref().filter(|k| k.meta == meta)?;
        Some((known.body_len, known.read.clone()))
    })
}

/// Read a stream. `project` maps the schema to the column indices to decode
/// (it also checks the schema, returning its error unchanged). It must
/// depend on the schema alone: its result is kept with the schema and
/// reused when the same schema message comes again.
pub(super) fn read(
    bytes: &[u8],
    project: impl FnOnce(&Schema) -> Result<Vec<usize>, WindowError>,
) -> Result<Stream, WindowError> {
    let mut pos = 0usize;
    let mut schema: Option<ReadSchema> = None;
    let mut project = Some(project);
    let mut batches = Vec::new();

    loop {
        if pos == bytes.len() {
            // A stream may end without the end-of-stream marker.
            break;
        }
        let Some(mut len) = u32_at(bytes, pos) else {
            return Err(err(format!("truncated message header at byte {pos}")));
        };
        pos += 4;
        if len == CONTINUATION {
            len = u32_at(bytes, pos)
                .ok_or_else(|| err(format!("truncated message header at byte {pos}")))?;
            pos += 4;
        }
        if len == 0 {
            // End-of-stream marker.
            break;
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= i32::MAX as usize)
            .ok_or_else(|| err(format!("bad message length {len} at byte {}", pos - 4)))?;
        let meta = bytes
            .get(pos..pos.saturating_add(len))
            .ok_or_else(|| err(format!("truncated message metadata at byte {pos}")))?;
        pos += len;
        if schema.is_none()
            && let Some((body_len, known)) = known_schema(meta)
        {
            pos = pos
                .checked_add(body_len)
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| err(format!("truncated message body at byte {pos}")))?;
            project = None;
            schema = Some(known);
            continue;
        }
        let message = root_as_message(meta)
            .map_err(|e| err(format!("bad message metadata at byte {}: {e}", pos - len)))?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| err(format!("negative body length {}", message.bodyLength())))?;
        let body = bytes
            .get(pos..pos.saturating_add(body_len))
            .ok_or_else(|| err(format!("truncated message body at byte {pos}")))?;
        pos += body_len;

        match message.header_type() {
            MessageHeader::Schema => {
                if schema.is_some() {
                    return Err(err("a second schema message in the stream"));
                }
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| err("unreadable schema message"))?;
                let s = arrow_ipc::convert::try_fb_to_schema(fb)
                    .map_err(|e| err(format!("bad schema: {e}")))?;
                let Some(project) = project.take() else {
                    return Err(err("a second schema message in the stream"));
                };
                let indices = project(&s)?;
                let columns = column_layouts(&s, &indices, message.version())?;
                let projected = s
                    .project(&indices)
                    .map_err(|e| err(format!("bad schema: {e}")))?;
                let read = ReadSchema {
                    schema: Arc::new(s),
                    projected: Arc::new(projected),
                    columns,
                };
                LAST_SCHEMA.set(Some(KnownSchema {
                    meta: meta.to_vec(),
                    body_len,
                    read: read.clone(),
                }));
                schema = Some(read);
            }
            MessageHeader::RecordBatch => {
                let Some(read) = &schema else {
                    return Err(err("record batch before the schema message"));
                };
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| err("unreadable record batch message"))?;
                batches.push(read_batch(&batch, body, read)?);
            }
            MessageHeader::DictionaryBatch => {
                return Err(err("dictionary batches are not allowed in a window"));
            }
            other => {
                return Err(err(format!("unexpected message type {other:?}")));
            }
        }
    }

    let Some(ReadSchema { schema, .. }) = schema else {
        return Err(err("the stream has no schema message"));
    };
    Ok(Stream { schema, batches })
}

/// Reject record batch metadata that arrow would panic on (or that no
/// honest writer produces): compression, negative lengths and counts, and
/// buffers that are not 8-byte aligned (the format requires it) or lie
/// outside the message body.
fn check_batch(batch: &arrow_ipc::RecordBatch<'_>, body_len: usize) -> Result<(), WindowError> {
    if batch.compression().is_some() {
        return Err(err("compressed record batches are not supported"));
    }
    let rows = batch.length();
    if rows < 0 {
        return Err(err(format!("negative row count {rows}")));
    }
    let nodes = batch
        .nodes()
        .ok_or_else(|| err("record batch without field nodes"))?;
    for node in nodes.iter() {
        if node.length() < 0 || node.null_count() < 0 || node.null_count() > node.length() {
            return Err(err(format!(
                "bad field node: length {}, null count {}",
                node.length(),
                node.null_count()
            )));
        }
    }
    let buffers = batch
        .buffers()
        .ok_or_else(|| err("record batch without buffers"))?;
    for b in buffers.iter() {
        let end = b.offset().checked_add(b.length());
        let inside = b.offset() >= 0
            && b.offset() % 8 == 0
            && b.length() >= 0
            && end.is_some_and(|end| usize::try_from(end).is_ok_and(|end| end <= body_len));
        if !inside {
            return Err(err(format!(
                "buffer at offset {} of length {} is misaligned or outside the {body_len}-byte body",
                b.offset(),
                b.length()
            )));
        }
    }
    Ok(())
}

/// Where a projected column lies in every record batch of the stream.
struct ColumnLayout {
    /// Index of its field node.
    node: usize,
    /// Index of its first buffer (the validity bitmap).
    buffer: usize,
    /// What it holds.
    kind: ColumnKind,
    /// Its name, for errors.
    name: String,
}

/// The column types a window's contract columns have.
#[derive(Clone, Copy)]
enum ColumnKind {
    /// `Utf8`: validity, i32 offsets, bytes.
    Utf8,
    /// `Timestamp(Microsecond, "UTC")`: validity, i64 values.
    Timestamp,
    /// `Float64`: validity, f64 values.
    Float64,
}

/// The layout of the projected columns, found by counting the nodes and
/// buffers of every column before them (arrow's IPC layout: one node per
/// field and per nested child, depth first).
fn column_layouts(
    schema: &Schema,
    projected: &[usize],
    version: MetadataVersion,
) -> Result<Arc<[ColumnLayout]>, WindowError> {
    let mut at = vec![None; schema.fields().len()];
    let (mut node, mut buffer) = (0usize, 0usize);
    for (i, field) in schema.fields().iter().enumerate() {
        let unsupported = || {
            err(format!(
                "column `{}` has type {}, which windows do not support",
                field.name(),
                field.data_type()
            ))
        };
        let buffers = buffer_count(field.data_type(), version).ok_or_else(unsupported)?;
        let nodes = node_count(field.data_type()).ok_or_else(unsupported)?;
        at[i] = Some((node, buffer));
        node += nodes;
        buffer += buffers;
    }
    projected
        .iter()
        .map(|&i| {
            let field = schema
                .fields()
                .get(i)
                .ok_or_else(|| err(format!("no column {i} to project")))?;
            let kind = match field.data_type() {
                DataType::Utf8 => ColumnKind::Utf8,
                DataType::Timestamp(TimeUnit::Microsecond, _) => ColumnKind::Timestamp,
                DataType::Float64 => ColumnKind::Float64,
                other => {
                    return Err(err(format!(
                        "column `{}` has unexpected type {other}",
                        field.name()
                    )));
                }
            };
            let (node, buffer) = at[i].ok_or_else(|| err(format!("no column {i} to project")))?;
            Ok(ColumnLayout {
                node,
                buffer,
                kind,
                name: field.name().clone(),
            })
        })
        .collect()
}

/// Build the projected record batch of a message whose metadata passed
/// [`check_batch`].
fn read_batch(
    batch: &arrow_ipc::RecordBatch<'_>,
    body: &[u8],
    read: &ReadSchema,
) -> Result<RecordBatch, WindowError> {
    check_batch(batch, body.len())?;
    let rows = usize::try_from(batch.length())
        .map_err(|_| err(format!("bad row count {}", batch.length())))?;
    let body = Buffer::from(body);
    let columns = read
        .columns
        .iter()
        .map(|column| read_column(batch, &body, rows, column))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(read.projected.clone(), columns, &options)
        .map_err(|e| err(format!("bad record batch: {e}")))
}

/// One projected column of a record batch. The buffers lie inside `body`
/// and are 8-byte aligned ([`check_batch`]); here their sizes are checked
/// against the column's length before arrow sees them.
fn read_column(
    batch: &arrow_ipc::RecordBatch<'_>,
    body: &Buffer,
    rows: usize,
    column: &ColumnLayout,
) -> Result<ArrayRef, WindowError> {
    let name = &column.name;
    let nodes = batch
        .nodes()
        .ok_or_else(|| err("record batch without field nodes"))?;
    if column.node >= nodes.len() {
        return Err(err(format!("no field node for column `{name}`")));
    }
    let node = nodes.get(column.node);
    let len = usize::try_from(node.length()).unwrap_or(usize::MAX);
    if len != rows {
        return Err(err(format!(
            "column `{name}` has {} rows in a batch of {rows}",
            node.length()
        )));
    }
    let buffers = batch
        .buffers()
        .ok_or_else(|| err("record batch without buffers"))?;
    // Offsets and lengths were checked against the body by check_batch.
    let buffer = |i: usize, bytes_needed: usize| -> Result<Buffer, WindowError> {
        let index = column.buffer + i;
        if index >= buffers.len() {
            return Err(err(format!("no buffer {i} for column `{name}`")));
        }
        let b = buffers.get(index);
        let (offset, length) = (b.offset() as usize, b.length() as usize);
        if length < bytes_needed {
            return Err(err(format!(
                "buffer {i} of column `{name}` has {length} bytes, {bytes_needed} needed"
            )));
        }
        Ok(body.slice_with_length(offset, bytes_needed))
    };
    let nulls = if node.null_count() == 0 {
        None
    } else {
        let bits = BooleanBuffer::new(buffer(0, len.div_ceil(8))?, 0, len);
        Some(NullBuffer::new(bits))
    };
    let width = |bytes: usize| {
        len.checked_mul(bytes)
            .ok_or_else(|| err(format!("column `{name}` is too long")))
    };
    let array: ArrayRef = match column.kind {
        ColumnKind::Utf8 if len == 0 => Arc::new(StringArray::new_null(0)),
        ColumnKind::Utf8 => {
            let offsets_len = width(4)?
                .checked_add(4)
                .ok_or_else(|| err(format!("column `{name}` is too long")))?;
            let offsets: ScalarBuffer<i32> = ScalarBuffer::new(buffer(1, offsets_len)?, 0, len + 1);
            let ordered = offsets.first().is_some_and(|&first| first >= 0)
                && offsets.windows(2).all(|w| w[0] <= w[1]);
            if !ordered {
                return Err(err(format!("column `{name}` has offsets out of order")));
            }
            let end = offsets.last().map_or(0, |&last| last as usize);
            let text = buffer(2, end)?;
            Arc::new(
                StringArray::try_new(OffsetBuffer::new(offsets), text, nulls)
                    .map_err(|e| err(format!("column `{name}`: {e}")))?,
            )
        }
        ColumnKind::Timestamp => Arc::new(
            TimestampMicrosecondArray::try_new(
                ScalarBuffer::new(buffer(1, width(8)?)?, 0, len),
                nulls,
            )
            .map_err(|e| err(format!("column `{name}`: {e}")))?
            .with_timezone(super::TIME_ZONE),
        ),
        ColumnKind::Float64 => Arc::new(
            Float64Array::try_new(ScalarBuffer::new(buffer(1, width(8)?)?, 0, len), nulls)
                .map_err(|e| err(format!("column `{name}`: {e}")))?,
        ),
    };
    Ok(array)
}

/// How many field nodes a column of type `dt` has: its own and its
/// children's. `None` where [`buffer_count`] has none.
fn node_count(dt: &DataType) -> Option<usize> {
    use DataType::*;
    Some(match dt {
        List(f)
        | LargeList(f)
        | Map(f, _)
        | ListView(f)
        | LargeListView(f)
        | FixedSizeList(f, _) => 1 + node_count(f.data_type())?,
        Struct(fields) => {
            let mut n = 1;
            for f in fields {
                n += node_count(f.data_type())?;
            }
            n
        }
        RunEndEncoded(run_ends, values) => {
            1 + node_count(run_ends.data_type())? + node_count(values.data_type())?
        }
        Union(fields, _) => {
            let mut n = 1;
            for (_, f) in fields.iter() {
                n += node_count(f.data_type())?;
            }
            n
        }
        Utf8View | BinaryView | Dictionary(..) => return None,
        _ => 1,
    })
}

/// How many IPC buffers a column of type `dt` occupies (mirrors arrow-ipc's
/// reader). `None` for types windows never carry and whose layout depends on
/// more than the type (views, dictionaries).
fn buffer_count(dt: &DataType, version: MetadataVersion) -> Option<usize> {
    use DataType::*;
    Some(match dt {
        Null => 0,
        Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16
        | Float32 | Float64 | Timestamp(..) | Date32 | Date64 | Time32(_) | Time64(_)
        | Duration(_) | Interval(_) | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) | FixedSizeBinary(_) => 2,
        Utf8 | Binary | LargeBinary | LargeUtf8 => 3,
        List(f) | LargeList(f) | Map(f, _) => 2 + buffer_count(f.data_type(), version)?,
        ListView(f) | LargeListView(f) => 3 + buffer_count(f.data_type(), version)?,
        FixedSizeList(f, _) => 1 + buffer_count(f.data_type(), version)?,
        Struct(fields) => {
            let mut n = 1;
            for f in fields {
                n += buffer_count(f.data_type(), version)?;
            }
            n
        }
        RunEndEncoded(run_ends, values) => {
            buffer_count(run_ends.data_type(), version)?
                + buffer_count(values.data_type(), version)?
        }
        Union(fields, mode) => {
            let mut n = usize::from(version < MetadataVersion::V5) + 1;
            n += usize::from(*mode == UnionMode::Dense);
            for (_, f) in fields.iter() {
                n += buffer_count(f.data_type(), version)?;
            }
            n
        }
        Utf8View | BinaryView | Dictionary(..) => return None,
    })
}
