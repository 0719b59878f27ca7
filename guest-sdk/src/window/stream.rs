//! Reading an Arrow IPC stream without trusting it: message framing, bounds
//! checks on every buffer, then arrow's own decoder on what passed.
//!
//! arrow-ipc validates array contents but still panics on some malformed
//! metadata (for example a buffer that points past the message body). A
//! panic in a guest is a trap that costs the instance, so this module walks
//! the stream itself, rejects such messages with an error, and only then
//! hands each record batch to [`RecordBatchDecoder`]. Only the contract's
//! four columns are decoded (extra columns are skipped, never materialised).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::RecordBatchDecoder;
use arrow_ipc::{MessageHeader, MetadataVersion, root_as_message};
use arrow_schema::{DataType, Schema, SchemaRef, UnionMode};

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

/// What a schema message gives: the schema, the projected column indices
/// and the fixed-width buffers to check in each record batch.
#[derive(Clone)]
struct ReadSchema {
    schema: SchemaRef,
    indices: Vec<usize>,
    typed: Vec<TypedBuffer>,
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

/// The schema, projection and typed buffers of `meta` if it is the last
/// schema message that read well on this thread.
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
    let no_dictionaries = HashMap::new();

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
                let typed = typed_buffers(&s, &indices, message.version())?;
                let read = ReadSchema {
                    schema: Arc::new(s),
                    indices,
                    typed,
                };
                LAST_SCHEMA.set(Some(KnownSchema {
                    meta: meta.to_vec(),
                    body_len,
                    read: read.clone(),
                }));
                schema = Some(read);
            }
            MessageHeader::RecordBatch => {
                let Some(ReadSchema {
                    schema,
                    indices,
                    typed,
                }) = &schema
                else {
                    return Err(err("record batch before the schema message"));
                };
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| err("unreadable record batch message"))?;
                check_batch(&batch, body_len, typed)?;
                let body = Buffer::from(body);
                let version = message.version();
                let decoded = RecordBatchDecoder::try_new(
                    &body,
                    batch,
                    schema.clone(),
                    &no_dictionaries,
                    &version,
                )
                .and_then(|d| {
                    d.with_projection(Some(indices))
                        .with_require_alignment(false)
                        .read_record_batch()
                })
                .map_err(|e| err(format!("bad record batch: {e}")))?;
                batches.push(decoded);
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
fn check_batch(
    batch: &arrow_ipc::RecordBatch<'_>,
    body_len: usize,
    typed: &[TypedBuffer],
) -> Result<(), WindowError> {
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
    for t in typed {
        // A missing buffer is reported by arrow as a count mismatch.
        if let Some(b) = buffers.iter().nth(t.index)
            && b.length() % t.width != 0
        {
            return Err(err(format!(
                "buffer {} of column `{}` has {} bytes, not a multiple of {}",
                t.index,
                t.column,
                b.length(),
                t.width
            )));
        }
    }
    Ok(())
}

/// A buffer arrow reads as a slice of fixed-width values: its length must be
/// a multiple of the width or arrow panics.
#[derive(Clone)]
pub(super) struct TypedBuffer {
    /// Index in the record batch's buffer list.
    index: usize,
    /// Its element width in bytes.
    width: i64,
    /// The column it belongs to, for the error message.
    column: String,
}

/// The fixed-width buffers of the projected columns, located by counting
/// the buffers of every column before them (arrow's IPC layout).
fn typed_buffers(
    schema: &Schema,
    projected: &[usize],
    version: MetadataVersion,
) -> Result<Vec<TypedBuffer>, WindowError> {
    let mut typed = Vec::new();
    let mut next = 0usize;
    for (i, field) in schema.fields().iter().enumerate() {
        let count = buffer_count(field.data_type(), version).ok_or_else(|| {
            err(format!(
                "column `{}` has type {}, which windows do not support",
                field.name(),
                field.data_type()
            ))
        })?;
        if projected.contains(&i) {
            // Projected columns are Utf8 (validity, i32 offsets, bytes) or
            // 64-bit primitives (validity, values): buffer 1 is the typed one.
            let width = match field.data_type() {
                DataType::Utf8 => 4,
                DataType::Timestamp(..) | DataType::Float64 => 8,
                other => {
                    return Err(err(format!(
                        "column `{}` has unexpected type {other}",
                        field.name()
                    )));
                }
            };
            typed.push(TypedBuffer {
                index: next + 1,
                width,
                column: field.name().clone(),
            });
        }
        next += count;
    }
    Ok(typed)
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
