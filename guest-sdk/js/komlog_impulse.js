// Write komlogd impulses in JavaScript (built with componentize-js).
//
// This module owns the JavaScript side of the `komlog:impulse@0.1.0`
// contract (wit/impulse.wit) that the bindings do not give:
//
// * defineImpulse({ describe, update }): the world's `describe` and
//   `onUpdate` exports; `update(ctx)` returns samples, and throwing an
//   ImpulseError fails the fire with its message (the `err` case); with
//   `save` and `load` too, the `stateful-impulse` world's `snapshot` and
//   `restore`;
// * Context: the fire's ts (a BigInt, µs since the epoch, UTC), updated,
//   others and params, parameter helpers, and the window decoded on first use;
// * Window / Series: a reader of the window's Arrow IPC stream (schema
//   uri: utf8, ts: timestamp[us, UTC], datapoint: float64?, datasource: utf8?)
//   in plain JavaScript; timestamps are BigInts;
// * datapoint / datasource / subscription: builders of the WIT records
//   (s64/u64 → BigInt, variants as { tag, val });
// * log.debug/info/warn/error: the host's log import;
// * formatF64: a number as Rust's `{}` prints it (2, 2.5, 0.0000001), so
//   texts match the Rust SDK's.
//
// Keep this file next to the app (`import ... from './komlog_impulse.js'`).

import { log as hostLog } from 'komlog:impulse/host@0.1.0';

/** Durations in the contract's unit, microseconds (BigInt). */
export const SECOND = 1000000n;
export const MINUTE = 60n * SECOND;
export const HOUR = 60n * MINUTE;
export const DAY = 24n * HOUR;

const I64_MIN = -(2n ** 63n);

/** The timestamp `delta` µs before `ts`, saturating at the smallest s64. */
export function before(ts, delta) {
  const v = BigInt(ts) - BigInt(delta);
  return v < I64_MIN ? I64_MIN : v;
}

/** A failure of this fire: becomes the `err` case of `on-update`. */
export class ImpulseError extends Error {}

/** The window bytes are not a stream of the contract's form. */
export class WindowError extends ImpulseError {}

// ------------------------------------------------------------ builders

/** A datapoint sample (a finite number) of `uri` at `ts`. */
export function datapoint(uri, ts, value) {
  return { uri, ts: BigInt(ts), value: { tag: 'datapoint', val: Number(value) } };
}

/** A datasource sample (a text) of `uri` at `ts`. */
export function datasource(uri, ts, text) {
  return { uri, ts: BigInt(ts), value: { tag: 'datasource', val: String(text) } };
}

/** A default subscription for `describe`; durations in µs (BigInt or number). */
export function subscription(uris, { pastDelta, pastCount, minExecDelta } = {}) {
  const u64 = (v) => (v === undefined || v === null ? undefined : BigInt(v));
  return {
    uris: [...uris],
    dataReqs: {
      pastDelta: u64(pastDelta),
      pastCount: pastCount === undefined || pastCount === null ? undefined : Number(pastCount),
    },
    minExecDelta: u64(minExecDelta),
  };
}

/** log.debug/info/warn/error(message): a line in the agent's log. */
export const log = {
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

/**
 * The world's exports from an impulse object: `update(ctx: Context)` returns
 * samples, `describe()` (optional) returns a subscription or undefined.
 *
 *   export const { describe, onUpdate } = defineImpulse({ update(ctx) { ... } });
 *
 * For the `stateful-impulse` world (build with `--world-name
 * stateful-impulse`), give `save()` (the state as a Uint8Array, at a swap,
 * from the old version's instance) and `load(state)` (on the new version's
 * instance, before its first fire; throw an ImpulseError to refuse a state,
 * and the new version starts fresh) too, and export `snapshot` and `restore`:
 *
 *   export const { describe, onUpdate, snapshot, restore } =
 *     defineImpulse({ update(ctx) { ... }, save() { ... }, load(state) { ... } });
 */
export function defineImpulse(impulse) {
  const asErr = (e) => {
    if (e instanceof ImpulseError) {
      throw e.message;
    }
    throw e;
  };
  return {
    describe() {
      return impulse.describe ? impulse.describe() : undefined;
    },
    onUpdate(ctx) {
      try {
        return impulse.update(new Context(ctx));
      } catch (e) {
        return asErr(e);
      }
    },
    snapshot() {
      if (!impulse.save) {
        throw new Error('a stateful impulse needs save()');
      }
      return Uint8Array.from(impulse.save());
    },
    restore(state) {
      if (!impulse.load) {
        throw new Error('a stateful impulse needs load(state)');
      }
      try {
        impulse.load(Uint8Array.from(state));
      } catch (e) {
        asErr(e);
      }
    },
  };
}

// ------------------------------------------------------------- numbers

// Rust's `f64::from_str` grammar: no underscores, no hex, no inner spaces.
const NUMBER = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$/i;

/**
 * `x` as Rust's `{}` prints an f64: the shortest digits that read back as
 * `x`, written out without an exponent (1e21 → "1000…0", 1e-7 →
 * "0.0000001"); 2 → "2"; -0 → "-0".
 */
export function formatF64(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  const text = String(Math.abs(x)); // shortest round-trip digits, maybe "1.5e-7"
  const [mantissa, exponent] = text.split('e');
  const [whole, frac = ''] = mantissa.split('.');
  const all = whole + frac;
  const stripped = all.replace(/^0+/, '');
  let point = whole.length - (all.length - stripped.length) + (exponent ? Number(exponent) : 0);
  const digits = stripped.replace(/0+$/, '');
  if (digits === '') return sign + '0';
  if (point <= 0) return sign + '0.' + '0'.repeat(-point) + digits;
  if (point >= digits.length) return sign + digits + '0'.repeat(point - digits.length);
  return sign + digits.slice(0, point) + '.' + digits.slice(point);
}

// ------------------------------------------------------------- context

/**
 * What one fire receives: `ts` (BigInt µs), `updated` and `others` (uris),
 * `params` ([name, text] pairs in file order) and `windowBytes`.
 */
export class Context {
  constructor(ctx) {
    this.ts = BigInt(ctx.ts);
    this.updated = [...ctx.updated];
    this.others = [...ctx.others];
    this.params = ctx.params.map(([k, v]) => [k, v]);
    this.windowBytes = ctx.window;
    this._window = undefined;
  }

  /** The raw text of parameter `name` (the first if repeated), or undefined. */
  param(name) {
    const found = this.params.find(([k]) => k === name);
    return found ? found[1] : undefined;
  }

  /**
   * Parameter `name` as a finite number, undefined if absent; throws an
   * ImpulseError naming it if it is not a finite number. Surrounding
   * whitespace is ignored.
   */
  paramF64(name) {
    const raw = this.param(name);
    if (raw === undefined) return undefined;
    const text = raw.trim();
    if (!NUMBER.test(text)) {
      throw new ImpulseError(`param \`${name}\` is not a number: \`${raw}\``);
    }
    const value = /^[+-]?(inf|infinity|nan)$/i.test(text) ? NaN : Number(text);
    if (!Number.isFinite(value)) {
      throw new ImpulseError(`param \`${name}\` must be a finite number, got \`${raw}\``);
    }
    return value;
  }

  /** The decoded window (decoded once); throws a WindowError. */
  window() {
    if (this._window === undefined) {
      this._window = Window.decode(this.windowBytes);
    }
    return this._window;
  }
}

// -------------------------------------------------------------- window

/**
 * The samples of one uri, ascending by ts. `kind` is 'datapoint' or
 * 'datasource'; `ts` (BigInts) and `values` are parallel arrays.
 */
export class Series {
  constructor(uri, kind) {
    this.uri = uri;
    this.kind = kind;
    this.ts = [];
    this.values = [];
  }

  get length() {
    return this.ts.length;
  }

  /** The numbers, or undefined for a datasource series. */
  datapoints() {
    return this.kind === 'datapoint' ? this.values : undefined;
  }

  /** The texts, or undefined for a datapoint series. */
  datasources() {
    return this.kind === 'datasource' ? this.values : undefined;
  }

  /** [ts, value] of the latest sample, or undefined. */
  last() {
    const n = this.ts.length;
    return n ? [this.ts[n - 1], this.values[n - 1]] : undefined;
  }

  /** The value at exactly `ts`, or undefined. */
  at(ts) {
    const t = BigInt(ts);
    const i = this._firstAbove(t - 1n);
    return i < this.ts.length && this.ts[i] === t ? this.values[i] : undefined;
  }

  /** [start, end) indices of the samples with after < ts <= upto. */
  range(after, upto) {
    const start = this._firstAbove(BigInt(after));
    const end = Math.max(this._firstAbove(BigInt(upto)), start);
    return [start, end];
  }

  // Index of the first sample with ts > t.
  _firstAbove(t) {
    let lo = 0;
    let hi = this.ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ts[mid] <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** A decoded window: one Series per uri with samples, in stream order. */
export class Window {
  constructor(series) {
    this.seriesList = series;
  }

  [Symbol.iterator]() {
    return this.seriesList[Symbol.iterator]();
  }

  /** The series of `uri`, or undefined if the window has no samples of it. */
  series(uri) {
    return this.seriesList.find((s) => s.uri === uri);
  }

  uris() {
    return this.seriesList.map((s) => s.uri);
  }

  /** Decode the window's Arrow IPC stream; empty bytes are an empty window. */
  static decode(bytes) {
    if (!bytes || bytes.length === 0) return new Window([]);
    let rows;
    try {
      rows = readStream(bytes);
    } catch (e) {
      if (e instanceof WindowError) throw e;
      throw new WindowError(`window is not a valid Arrow IPC stream: ${e.message ?? e}`);
    }
    return new Window(group(rows));
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

// A flatbuffer table: reads fields by index through its vtable.
class Table {
  constructor(view, pos) {
    this.view = view;
    this.pos = pos;
    this.vtable = pos - view.getInt32(pos, true);
    this.vtableLen = view.getUint16(this.vtable, true);
  }

  offset(field) {
    const at = 4 + 2 * field;
    return at + 2 > this.vtableLen ? 0 : this.view.getUint16(this.vtable + at, true);
  }

  u8(field, dflt) {
    const o = this.offset(field);
    return o ? this.view.getUint8(this.pos + o) : dflt;
  }

  i16(field, dflt) {
    const o = this.offset(field);
    return o ? this.view.getInt16(this.pos + o, true) : dflt;
  }

  i64(field, dflt) {
    const o = this.offset(field);
    return o ? Number(this.view.getBigInt64(this.pos + o, true)) : dflt;
  }

  target(field) {
    const o = this.offset(field);
    if (!o) return undefined;
    const at = this.pos + o;
    return at + this.view.getUint32(at, true);
  }

  table(field) {
    const at = this.target(field);
    return at === undefined ? undefined : new Table(this.view, at);
  }

  string(field) {
    const at = this.target(field);
    if (at === undefined) return undefined;
    const n = this.view.getUint32(at, true);
    const start = this.view.byteOffset + at + 4;
    if (at + 4 + n > this.view.byteLength) throw new Error('string past the end of the message');
    return utf8.decode(new Uint8Array(this.view.buffer, start, n));
  }

  // [start, length] of a vector field, [0, 0] if absent.
  vector(field) {
    const at = this.target(field);
    return at === undefined ? [0, 0] : [at + 4, this.view.getUint32(at, true)];
  }

  tables(field) {
    const [start, n] = this.vector(field);
    const out = [];
    for (let i = 0; i < n; i++) {
      const at = start + 4 * i;
      out.push(new Table(this.view, at + this.view.getUint32(at, true)));
    }
    return out;
  }
}

// Arrow type ids (Schema.fbs `Type` union) and buffers per column of each type.
const UTF8 = 5;
const FLOAT = 3;
const TIMESTAMP = 10;
const BUFFERS = { 1: 0, 2: 2, 3: 2, 4: 3, 5: 3, 6: 2, 7: 2, 8: 2, 9: 2, 10: 2, 11: 2, 15: 2, 18: 2, 19: 3, 20: 3 };
const TYPE_NAMES = { 2: 'int', 3: 'floating point', 4: 'binary', 5: 'utf8', 6: 'bool', 10: 'timestamp', 20: 'large utf8' };
const EXPECTED = { uri: 'utf8', ts: 'timestamp[us, UTC]', datapoint: 'float64', datasource: 'utf8' };

function columnType(field) {
  const typeId = field.u8(2, 0);
  const detail = field.table(3);
  if (typeId === UTF8) return 'utf8';
  if (typeId === FLOAT) {
    const precision = detail ? detail.i16(0, 0) : 0;
    return ['float16', 'float32', 'float64'][precision] ?? 'float?';
  }
  if (typeId === TIMESTAMP) {
    const unit = ['s', 'ms', 'us', 'ns'][detail ? detail.i16(0, 0) : 0] ?? '?';
    const tz = detail ? detail.string(1) : undefined;
    return tz ? `timestamp[${unit}, ${tz}]` : `timestamp[${unit}]`;
  }
  return TYPE_NAMES[typeId] ?? `type #${typeId}`;
}

// Column index and first buffer index of each contract column.
function readSchema(schema) {
  const located = {};
  let buffer = 0;
  schema.tables(1).forEach((field, index) => {
    const name = field.string(0);
    const typeId = field.u8(2, 0);
    if (name in EXPECTED && !(name in located)) {
      const found = columnType(field);
      const expected = EXPECTED[name];
      if (found !== expected && !(name === 'ts' && found === 'timestamp[us, +00:00]')) {
        throw new WindowError(`window column \`${name}\` has type ${found}, expected ${expected}`);
      }
      located[name] = [index, buffer];
    }
    if (!(typeId in BUFFERS) || field.vector(5)[1]) {
      throw new WindowError(`window column \`${name}\` has an unsupported type (nested or #${typeId})`);
    }
    buffer += BUFFERS[typeId];
  });
  for (const name of Object.keys(EXPECTED)) {
    if (!(name in located)) throw new WindowError(`window has no \`${name}\` column`);
  }
  return located;
}

// Every row of the stream as [uri, ts, datapoint | undefined, datasource | undefined].
function readStream(bytes) {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let columns;
  const rows = [];
  const bad = (what) => new WindowError(`window is not a valid Arrow IPC stream: ${what}`);
  while (pos < data.byteLength) {
    if (pos + 4 > data.byteLength) throw bad('truncated message header');
    let length = data.getInt32(pos, true);
    pos += 4;
    if (length === -1) {
      length = data.getInt32(pos, true);
      pos += 4;
    }
    if (length === 0) break;
    if (length < 0 || pos + length > data.byteLength) throw bad('truncated message');
    const meta = new DataView(bytes.buffer, bytes.byteOffset + pos, length);
    pos += length;
    const message = new Table(meta, meta.getUint32(0, true));
    const headerType = message.u8(1, 0);
    const bodyLen = message.i64(3, 0);
    if (bodyLen < 0 || pos + bodyLen > data.byteLength) throw bad('truncated message body');
    const body = new DataView(bytes.buffer, bytes.byteOffset + pos, bodyLen);
    pos += bodyLen;
    const header = message.table(2);
    if (headerType === 1) {
      columns = readSchema(header);
    } else if (headerType === 3) {
      if (!columns) throw bad('record batch before the schema');
      readBatch(header, body, columns, rows);
    } else if (headerType === 2) {
      throw new WindowError('window has a dictionary batch; the contract has no dictionaries');
    }
  }
  if (!columns) throw bad('no schema message');
  return rows;
}

function readBatch(batch, body, columns, rows) {
  if (batch.table(3)) throw new WindowError('window batch is compressed; the contract has no compression');
  const n = batch.i64(0, 0);
  const [nodesAt, nodeCount] = batch.vector(1);
  const [buffersAt, bufferCount] = batch.vector(2);
  const meta = batch.view;
  const nullCount = (i) => {
    if (i >= nodeCount) throw new WindowError('window batch has fewer field nodes than columns');
    return Number(meta.getBigInt64(nodesAt + 16 * i + 8, true));
  };
  const buffer = (i) => {
    if (i >= bufferCount) throw new WindowError('window batch has fewer buffers than its columns need');
    const offset = Number(meta.getBigInt64(buffersAt + 16 * i, true));
    const length = Number(meta.getBigInt64(buffersAt + 16 * i + 8, true));
    if (offset < 0 || length < 0 || offset + length > body.byteLength) {
      throw new WindowError('window batch buffer lies outside the message body');
    }
    return new DataView(body.buffer, body.byteOffset + offset, length);
  };
  const validity = (name, nullable) => {
    const [index, first] = columns[name];
    if (nullCount(index) === 0) return undefined;
    if (!nullable) throw new WindowError(`window row ${rows.length}: \`${name}\` is null`);
    const bits = buffer(first);
    if (bits.byteLength * 8 < n) throw new WindowError(`window column \`${name}\`: validity bitmap too short`);
    return bits;
  };
  const isSet = (bits, i) => bits === undefined || ((bits.getUint8(i >> 3) >> (i & 7)) & 1) === 1;
  const texts = (name, nullable) => {
    const first = columns[name][1];
    const valid = validity(name, nullable);
    const offsets = buffer(first + 1);
    const chars = buffer(first + 2);
    const out = [];
    for (let i = 0; i < n; i++) {
      if (!isSet(valid, i)) {
        out.push(undefined);
        continue;
      }
      const start = offsets.getInt32(4 * i, true);
      const end = offsets.getInt32(4 * i + 4, true);
      if (!(0 <= start && start <= end && end <= chars.byteLength)) {
        throw new WindowError(`window column \`${name}\`: bad string offsets at row ${i}`);
      }
      out.push(utf8.decode(new Uint8Array(chars.buffer, chars.byteOffset + start, end - start)));
    }
    return out;
  };
  const uris = texts('uri', false);
  validity('ts', false);
  const ts = buffer(columns.ts[1] + 1);
  const dpValid = validity('datapoint', true);
  const dp = buffer(columns.datapoint[1] + 1);
  const ds = texts('datasource', true);
  if (ts.byteLength < 8 * n || dp.byteLength < 8 * n) {
    throw new WindowError('window batch value buffer too short');
  }
  const base = rows.length;
  for (let i = 0; i < n; i++) {
    const hasDp = isSet(dpValid, i);
    const hasDs = ds[i] !== undefined;
    if (hasDp === hasDs) {
      const reason = hasDp ? 'both datapoint and datasource are set' : 'neither datapoint nor datasource is set';
      throw new WindowError(`window row ${base + i} (uri \`${uris[i]}\`): ${reason}`);
    }
    rows.push([uris[i], ts.getBigInt64(8 * i, true), hasDp ? dp.getFloat64(8 * i, true) : undefined, ds[i]]);
  }
}

// Rows → series, checking grouping, one kind per uri and ascending ts.
function group(rows) {
  const out = [];
  const seen = new Set();
  let current;
  rows.forEach(([uri, ts, dp, ds], row) => {
    const kind = ds === undefined ? 'datapoint' : 'datasource';
    if (!current || current.uri !== uri) {
      if (seen.has(uri)) {
        throw new WindowError(`window rows of uri \`${uri}\` are not grouped together (it appears again at row ${row})`);
      }
      seen.add(uri);
      current = new Series(uri, kind);
      out.push(current);
    } else if (current.kind !== kind) {
      throw new WindowError(`window uri \`${uri}\` holds both datapoint and datasource samples (row ${row})`);
    } else if (ts < current.ts[current.ts.length - 1]) {
      throw new WindowError(
        `window uri \`${uri}\`: ts ${ts} at row ${row} comes before the previous ts ${current.ts[current.ts.length - 1]}`,
      );
    }
    current.ts.push(ts);
    current.values.push(ds === undefined ? dp : ds);
  });
  return out;
}
