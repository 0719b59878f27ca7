"""Write komlogd impulses in Python (built with componentize-py).

This module owns the Python side of the `komlog:impulse@0.1.0` contract
(wit/impulse.wit) that is not generated bindings:

* ``Impulse``: a base class for the app's ``WitWorld``; implement ``update``
  (and optionally ``describe``) and raise ``ImpulseError`` to fail a fire;
* ``StatefulImpulse``: the same for the ``stateful-impulse`` world (build
  with ``-w stateful-impulse``); implement ``save`` and ``load`` too, so the
  state carries on when a new version of the module is swapped in;
* ``Context``: the fire's ``ts``, ``updated``, ``others`` and ``params`` with
  parameter helpers, and the window decoded on first use;
* ``Window`` / ``Series``: a pure-Python reader of the window's Arrow IPC
  stream (schema ``uri: utf8``, ``ts: timestamp[us, UTC]``,
  ``datapoint: float64?``, ``datasource: utf8?``), with no pyarrow;
* ``datapoint`` / ``datasource`` / ``subscription``: builders of the WIT
  records;
* ``log``: the host's log import (``log.info("...")``);
* ``format_f64``: a number as Rust's ``{}`` prints it (``2``, ``2.5``,
  ``0.0000001``), so texts match the Rust SDK's.

Outside a component (plain CPython, for unit tests) the builders return
look-alike records and ``log`` writes to stderr.
"""

import bisect
import re
import struct
import sys

__all__ = [
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "before",
    "ImpulseError",
    "WindowError",
    "Impulse",
    "StatefulImpulse",
    "Context",
    "Window",
    "Series",
    "datapoint",
    "datasource",
    "subscription",
    "log",
    "format_f64",
]

# Durations in the contract's unit, microseconds.
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_I64_MIN = -(2**63)


def before(ts, delta):
    """The timestamp ``delta`` µs before ``ts``, saturating at the smallest s64."""
    return max(ts - delta, _I64_MIN)


class ImpulseError(Exception):
    """A failure of this fire: becomes the ``err`` case of ``on-update``."""


class WindowError(ImpulseError):
    """The window bytes are not a stream of the contract's form."""


# --------------------------------------------------------------- bindings

try:  # Inside a component built by componentize-py.
    from componentize_py_types import Err as _Err
    from wit_world.imports import host as _host
    from wit_world.imports import types as _types

    def _sample(uri, ts, value):
        return _types.Sample(uri, ts, value)

    def _datapoint_value(v):
        return _types.Value_Datapoint(v)

    def _datasource_value(text):
        return _types.Value_Datasource(text)

    def _subscription(uris, past_delta, past_count, min_exec_delta):
        return _types.Subscription(
            list(uris),
            _types.DataRequirements(past_delta, past_count),
            min_exec_delta,
        )

    _LEVELS = {
        "debug": _host.Level.DEBUG,
        "info": _host.Level.INFO,
        "warn": _host.Level.WARN,
        "error": _host.Level.ERROR,
    }

    def _log(level, message):
        _host.log(_LEVELS[level], message)

except ImportError:  # Plain CPython: look-alike records, log to stderr.
    from collections import namedtuple

    _Err = None
    _Sample = namedtuple("Sample", "uri ts value")
    _Value = namedtuple("Value", "kind value")
    _Subscription = namedtuple(
        "Subscription", "uris past_delta past_count min_exec_delta"
    )

    def _sample(uri, ts, value):
        return _Sample(uri, ts, value)

    def _datapoint_value(v):
        return _Value("datapoint", v)

    def _datasource_value(text):
        return _Value("datasource", text)

    def _subscription(uris, past_delta, past_count, min_exec_delta):
        return _Subscription(list(uris), past_delta, past_count, min_exec_delta)

    def _log(level, message):
        print(f"[{level}] {message}", file=sys.stderr)


def datapoint(uri, ts, value):
    """A datapoint sample (a finite number) of ``uri`` at ``ts``."""
    return _sample(uri, ts, _datapoint_value(float(value)))


def datasource(uri, ts, text):
    """A datasource sample (a text) of ``uri`` at ``ts``."""
    return _sample(uri, ts, _datasource_value(text))


def subscription(uris, past_delta=None, past_count=None, min_exec_delta=None):
    """A default subscription for ``describe``; durations in µs."""
    return _subscription(uris, past_delta, past_count, min_exec_delta)


class _Log:
    """``log.debug/info/warn/error(message)``: a line in the agent's log."""

    @staticmethod
    def debug(message):
        _log("debug", message)

    @staticmethod
    def info(message):
        _log("info", message)

    @staticmethod
    def warn(message):
        _log("warn", message)

    @staticmethod
    def error(message):
        _log("error", message)


log = _Log()


# ----------------------------------------------------------------- numbers

# Rust's `f64::from_str` grammar: no underscores, no hex, no inner spaces.
_NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
    re.IGNORECASE,
)


def format_f64(x):
    """``x`` as Rust's ``{}`` prints an f64: the shortest digits that read back
    as ``x``, written out without an exponent (``1e21`` → ``1000…0``,
    ``1e-7`` → ``0.0000001``); ``2.0`` → ``2``; ``-0.0`` → ``-0``."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    sign = "-" if str(x).startswith("-") else ""
    text = repr(abs(x))  # shortest round-trip digits, maybe with an exponent
    mantissa, _, exponent = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # Position of the decimal point relative to the start of `digits`.
    point = len(whole) - (len(whole + frac) - len((whole + frac).lstrip("0")))
    point += int(exponent) if exponent else 0
    digits = digits.rstrip("0")
    if not digits:
        return sign + "0"
    if point <= 0:
        return sign + "0." + "0" * (-point) + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


# ----------------------------------------------------------------- context


class Context:
    """What one fire receives. ``ts``: µs since the epoch (UTC);
    ``updated``/``others``: the subscription's uris; ``params``: list of
    ``(name, text)`` in file order; ``window_bytes``: the Arrow stream."""

    __slots__ = ("ts", "updated", "others", "params", "window_bytes", "_window")

    def __init__(self, ts, updated, others, params, window_bytes):
        self.ts = ts
        self.updated = list(updated)
        self.others = list(others)
        self.params = [tuple(p) for p in params]
        self.window_bytes = bytes(window_bytes)
        self._window = None

    @classmethod
    def from_wit(cls, ctx):
        """Wrap the generated ``types.Context``."""
        return cls(ctx.ts, ctx.updated, ctx.others, ctx.params, ctx.window)

    def param(self, name):
        """The raw text of parameter ``name`` (the first if repeated), or None."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def param_f64(self, name):
        """Parameter ``name`` as a finite number, None if absent; raises
        ``ImpulseError`` naming it if it is not a finite number. Surrounding
        whitespace is ignored."""
        raw = self.param(name)
        if raw is None:
            return None
        text = raw.strip()
        if not _NUMBER.match(text):
            raise ImpulseError(f"param `{name}` is not a number: `{raw}`")
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            raise ImpulseError(f"param `{name}` must be a finite number, got `{raw}`")
        return value

    def window(self):
        """The decoded window (decoded once); raises ``WindowError``."""
        if self._window is None:
            self._window = Window.decode(self.window_bytes)
        return self._window


class Impulse:
    """Base class for the app's ``WitWorld``.

    Override ``update(self, ctx: Context) -> list`` (samples from
    ``datapoint``/``datasource``) and optionally ``describe(self)`` (a
    ``subscription(...)`` or None). Raise ``ImpulseError`` to fail the fire
    with a message; any other exception traps the instance.
    """

    def describe(self):
        return None

    def update(self, ctx):
        raise NotImplementedError("implement update(self, ctx)")

    def on_update(self, ctx):
        try:
            return self.update(Context.from_wit(ctx))
        except ImpulseError as e:
            if _Err is None:
                raise
            raise _Err(str(e)) from None


class StatefulImpulse(Impulse):
    """Base class for the app's ``WitWorld`` in the ``stateful-impulse`` world.

    Besides ``update``, override ``save(self) -> bytes`` (the state, at a
    swap, from the old version's instance) and ``load(self, state: bytes)``
    (on the new version's instance, before its first fire; raise
    ``ImpulseError`` to refuse a state it cannot read, and the new version
    starts fresh). The state must live at module level: componentize-py
    makes a new ``WitWorld`` object for every call.
    """

    def save(self):
        raise NotImplementedError("implement save(self) -> bytes")

    def load(self, state):
        raise NotImplementedError("implement load(self, state)")

    def snapshot(self):
        return bytes(self.save())

    def restore(self, state):
        try:
            self.load(bytes(state))
        except ImpulseError as e:
            if _Err is None:
                raise
            raise _Err(str(e)) from None


# ------------------------------------------------------------------ window


class Series:
    """The samples of one uri, ascending by ts. ``kind`` is ``"datapoint"`` or
    ``"datasource"``; ``ts`` and ``values`` are parallel lists."""

    __slots__ = ("uri", "kind", "ts", "values")

    def __init__(self, uri, kind, ts, values):
        self.uri = uri
        self.kind = kind
        self.ts = ts
        self.values = values

    def __len__(self):
        return len(self.ts)

    def __iter__(self):
        return iter(zip(self.ts, self.values))

    def datapoints(self):
        """The numbers, or None for a datasource series."""
        return self.values if self.kind == "datapoint" else None

    def datasources(self):
        """The texts, or None for a datapoint series."""
        return self.values if self.kind == "datasource" else None

    def last(self):
        """``(ts, value)`` of the latest sample, or None."""
        return (self.ts[-1], self.values[-1]) if self.ts else None

    def at(self, ts):
        """The value at exactly ``ts``, or None."""
        i = bisect.bisect_left(self.ts, ts)
        if i < len(self.ts) and self.ts[i] == ts:
            return self.values[i]
        return None

    def range(self, after, upto):
        """``(start, end)`` indices of the samples with ``after < ts <= upto``."""
        start = bisect.bisect_right(self.ts, after)
        end = max(bisect.bisect_right(self.ts, upto), start)
        return start, end


class Window:
    """A decoded window: one ``Series`` per uri with samples, in stream order."""

    __slots__ = ("series_list",)

    def __init__(self, series_list):
        self.series_list = series_list

    def __iter__(self):
        return iter(self.series_list)

    def __len__(self):
        return len(self.series_list)

    def series(self, uri):
        """The series of ``uri``, or None if the window has no samples of it."""
        for s in self.series_list:
            if s.uri == uri:
                return s
        return None

    def uris(self):
        return [s.uri for s in self.series_list]

    @classmethod
    def decode(cls, data):
        """Decode the window's Arrow IPC stream; empty bytes are an empty window."""
        if not data:
            return cls([])
        try:
            rows = _read_stream(memoryview(bytes(data)))
        except WindowError:
            raise
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
            raise WindowError(f"window is not a valid Arrow IPC stream: {e}") from None
        return cls(_group(rows))


# A flatbuffer table: reads fields by index through its vtable.
class _Table:
    __slots__ = ("buf", "pos", "vtable", "vtable_len")

    def __init__(self, buf, pos):
        self.buf = buf
        self.pos = pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_len = struct.unpack_from("<H", buf, self.vtable)[0]

    def _offset(self, field):
        at = 4 + 2 * field
        if at + 2 > self.vtable_len:
            return 0
        return struct.unpack_from("<H", self.buf, self.vtable + at)[0]

    def scalar(self, field, fmt, default):
        off = self._offset(field)
        if off == 0:
            return default
        return struct.unpack_from(fmt, self.buf, self.pos + off)[0]

    def _target(self, field):
        off = self._offset(field)
        if off == 0:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, field):
        at = self._target(field)
        return None if at is None else _Table(self.buf, at)

    def string(self, field):
        at = self._target(field)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        if at + 4 + n > len(self.buf):
            raise ValueError("string past the end of the message")
        return bytes(self.buf[at + 4 : at + 4 + n]).decode("utf-8")

    def vector(self, field):
        """``(start, length)`` of a vector field, ``(0, 0)`` if absent."""
        at = self._target(field)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def tables(self, field):
        start, n = self.vector(field)
        out = []
        for i in range(n):
            at = start + 4 * i
            out.append(_Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0]))
        return out


# Arrow type ids (Schema.fbs `Type` union) and buffers per column of each type.
_UTF8, _FLOAT, _TIMESTAMP = 5, 3, 10
_BUFFERS = {1: 0, 2: 2, 3: 2, 4: 3, 5: 3, 6: 2, 7: 2, 8: 2, 9: 2, 10: 2, 11: 2, 15: 2, 18: 2, 19: 3, 20: 3}
_TYPE_NAMES = {2: "int", 3: "floating point", 4: "binary", 5: "utf8", 6: "bool", 10: "timestamp", 20: "large utf8"}
_COLUMNS = ("uri", "ts", "datapoint", "datasource")
_EXPECTED = {
    "uri": "utf8",
    "ts": "timestamp[us, UTC]",
    "datapoint": "float64",
    "datasource": "utf8",
}


def _column_type(field):
    """A short name of the field's type, matching ``_EXPECTED`` when it fits."""
    type_id = field.scalar(2, "<B", 0)
    detail = field.table(3)
    if type_id == _UTF8:
        return "utf8"
    if type_id == _FLOAT:
        precision = detail.scalar(0, "<h", 0) if detail else 0
        return {0: "float16", 1: "float32", 2: "float64"}.get(precision, "float?")
    if type_id == _TIMESTAMP:
        unit = detail.scalar(0, "<h", 0) if detail else 0
        tz = detail.string(1) if detail else None
        unit_name = {0: "s", 1: "ms", 2: "us", 3: "ns"}.get(unit, "?")
        return f"timestamp[{unit_name}, {tz}]" if tz else f"timestamp[{unit_name}]"
    return _TYPE_NAMES.get(type_id, f"type #{type_id}")


def _read_schema(schema):
    """Column index and first buffer index of each contract column."""
    fields = schema.tables(1)
    located = {}
    buffer = 0
    for index, field in enumerate(fields):
        name = field.string(0)
        type_id = field.scalar(2, "<B", 0)
        if name in _EXPECTED and name not in located:
            found = _column_type(field)
            expected = _EXPECTED[name]
            if found != expected and not (name == "ts" and found == "timestamp[us, +00:00]"):
                raise WindowError(f"window column `{name}` has type {found}, expected {expected}")
            located[name] = (index, buffer)
        if type_id not in _BUFFERS or field.vector(5)[1]:
            raise WindowError(f"window column `{name}` has an unsupported type (nested or #{type_id})")
        buffer += _BUFFERS[type_id]
    for name in _COLUMNS:
        if name not in located:
            raise WindowError(f"window has no `{name}` column")
    return located


def _read_stream(data):
    """Every row of the stream as ``(uri, ts, datapoint, datasource)``."""
    pos = 0
    columns = None
    rows = []
    while pos < len(data):
        if pos + 4 > len(data):
            raise WindowError("window is not a valid Arrow IPC stream: truncated message header")
        length = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        if length == -1:  # continuation marker, then the real length
            length = struct.unpack_from("<i", data, pos)[0]
            pos += 4
        if length == 0:
            break  # end of stream
        if length < 0 or pos + length > len(data):
            raise WindowError("window is not a valid Arrow IPC stream: truncated message")
        meta = data[pos : pos + length]
        pos += length
        message = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
        header_type = message.scalar(1, "<B", 0)
        body_len = message.scalar(3, "<q", 0)
        if body_len < 0 or pos + body_len > len(data):
            raise WindowError("window is not a valid Arrow IPC stream: truncated message body")
        body = data[pos : pos + body_len]
        pos += body_len
        header = message.table(2)
        if header_type == 1:
            columns = _read_schema(header)
        elif header_type == 3:
            if columns is None:
                raise WindowError("window is not a valid Arrow IPC stream: record batch before the schema")
            _read_batch(header, body, columns, rows)
        elif header_type == 2:
            raise WindowError("window has a dictionary batch; the contract has no dictionaries")
    if columns is None:
        raise WindowError("window is not a valid Arrow IPC stream: no schema message")
    return rows


def _read_batch(batch, body, columns, rows):
    if batch.table(3) is not None:
        raise WindowError("window batch is compressed; the contract has no compression")
    n = batch.scalar(0, "<q", 0)
    nodes_at, node_count = batch.vector(1)
    buffers_at, buffer_count = batch.vector(2)
    meta = batch.buf

    def node(i):
        if i >= node_count:
            raise WindowError("window batch has fewer field nodes than columns")
        return struct.unpack_from("<qq", meta, nodes_at + 16 * i)

    def buffer(i):
        if i >= buffer_count:
            raise WindowError("window batch has fewer buffers than its columns need")
        offset, length = struct.unpack_from("<qq", meta, buffers_at + 16 * i)
        if offset < 0 or length < 0 or offset + length > len(body):
            raise WindowError("window batch buffer lies outside the message body")
        return body[offset : offset + length]

    def validity(column, name, nullable):
        index, first = columns[column]
        _, nulls = node(index)
        if nulls == 0:
            return None
        if not nullable:
            raise WindowError(f"window row {len(rows)}: `{name}` is null")
        bits = buffer(first)
        if len(bits) * 8 < n:
            raise WindowError(f"window column `{name}`: validity bitmap too short")
        return bits

    def texts(column, name, nullable):
        index, first = columns[column]
        valid = validity(column, name, nullable)
        offsets = struct.unpack_from(f"<{n + 1}i", buffer(first + 1), 0) if n else (0,)
        chars = buffer(first + 2)
        out = []
        for i in range(n):
            if valid is not None and not (valid[i >> 3] >> (i & 7)) & 1:
                out.append(None)
                continue
            start, end = offsets[i], offsets[i + 1]
            if not 0 <= start <= end <= len(chars):
                raise WindowError(f"window column `{name}`: bad string offsets at row {i}")
            out.append(bytes(chars[start:end]).decode("utf-8"))
        return out

    uris = texts("uri", "uri", False)
    if any(u is None for u in uris):
        raise WindowError("window: `uri` is null")
    validity("ts", "ts", False)
    ts = list(struct.unpack_from(f"<{n}q", buffer(columns["ts"][1] + 1), 0))
    dp_valid = validity("datapoint", "datapoint", True)
    dp_values = struct.unpack_from(f"<{n}d", buffer(columns["datapoint"][1] + 1), 0)
    ds_values = texts("datasource", "datasource", True)
    base = len(rows)
    for i in range(n):
        has_dp = dp_valid is None or (dp_valid[i >> 3] >> (i & 7)) & 1
        has_ds = ds_values[i] is not None
        if has_dp == has_ds:
            reason = "both datapoint and datasource are set" if has_dp else "neither datapoint nor datasource is set"
            raise WindowError(f"window row {base + i} (uri `{uris[i]}`): {reason}")
        rows.append((uris[i], ts[i], dp_values[i] if has_dp else None, ds_values[i]))


def _group(rows):
    """Rows → series, checking grouping, one kind per uri and ascending ts."""
    out = []
    seen = set()
    current = None
    for row, (uri, ts, dp, ds) in enumerate(rows):
        kind = "datapoint" if ds is None else "datasource"
        if current is None or current.uri != uri:
            if uri in seen:
                raise WindowError(
                    f"window rows of uri `{uri}` are not grouped together (it appears again at row {row})"
                )
            seen.add(uri)
            current = Series(uri, kind, [], [])
            out.append(current)
        elif current.kind != kind:
            raise WindowError(f"window uri `{uri}` holds both datapoint and datasource samples (row {row})")
        elif ts < current.ts[-1]:
            raise WindowError(
                f"window uri `{uri}`: ts {ts} at row {row} comes before the previous ts {current.ts[-1]}"
            )
        current.ts.append(ts)
        current.values.append(ds if dp is None else dp)
    return out
