"""The client: naming, the queue, the daemon thread and the socket exchange."""

import collections
import functools
import json
import math
import os
import re
import socket as _socket
import threading
import time
from datetime import timedelta

SOCKET_ENV = "KOMLOGD_SOCKET"

# The most samples one request carries (the agent takes up to 10,000) and,
# roughly, the most JSON (the agent takes up to 16 MiB).
MAX_BATCH = 10000
MAX_REQUEST_BYTES = 4 << 20

_OUTSIDE_LEVEL = re.compile(r"[^A-Za-z0-9_-]")
_LOCAL_URI = re.compile(r"(?:[A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+")
# How often the daemon thread drains the queue between flushes.
_POLL = 0.05

_SAMPLE = 0
_COUNT = 1
_FLUSH = 2
_STOP = 3


def _level_part(text):
    return _OUTSIDE_LEVEL.sub("_", str(text))


def _tag_pairs(tags):
    """Tags as (key, value) pairs: a dict, pairs, or Kaneda's strings
    ("key:value", or "flag" as ("flag", ""))."""
    if not tags:
        return []
    if isinstance(tags, dict):
        return [(str(k), str(v)) for k, v in tags.items()]
    pairs = []
    for tag in tags:
        if isinstance(tag, str):
            key, _, value = tag.partition(":")
            pairs.append((key, value))
        else:
            key, value = tag
            pairs.append((str(key), str(value)))
    return pairs


def uri(name, tags=None):
    """The komlog uri of metric ``name`` with ``tags`` (see the module doc).

    >>> uri("http.latency", {"route": "/a", "host": "web-1"})
    'http.latency.host_web-1.route__a'
    """
    name = str(name)
    if not tags and _LOCAL_URI.fullmatch(name):
        return name
    levels = [_level_part(level) or "_" for level in name.split(".")]
    for key, value in sorted(_tag_pairs(tags)):
        levels.append(_level_part(key) + "_" + _level_part(value))
    return ".".join(levels)


def custom_uri(name, metric, tags=None):
    """The uri of Kaneda's ``custom(name, metric, ...)``: ``name.metric``."""
    return uri(str(name) + "." + str(metric), tags)


def _now_us():
    return time.time_ns() // 1000


def _number(value):
    """A datapoint's JSON value: non-finite numbers go as null, which the
    agent refuses for that sample alone."""
    value = float(value)
    return value if math.isfinite(value) else None


class _Aggregator:
    """The samples and counter sums between two flushes."""

    def __init__(self):
        self.pending = []
        self.counts = {}
        self.last_ts = {}

    def sample(self, uri_, ts, datapoint=None, datasource=None):
        # Two samples of one uri never share a time: the later moves on 1 µs.
        last = self.last_ts.get(uri_)
        if last is not None and ts <= last:
            ts = last + 1
        self.last_ts[uri_] = ts
        if datasource is None:
            self.pending.append({"uri": uri_, "ts": ts, "datapoint": datapoint})
        else:
            self.pending.append({"uri": uri_, "ts": ts, "datasource": datasource})

    def count(self, uri_, delta):
        self.counts[uri_] = self.counts.get(uri_, 0) + delta

    def drain(self, ts):
        counts, self.counts = self.counts, {}
        for uri_, total in counts.items():
            self.sample(uri_, ts, datapoint=float(total))
        pending, self.pending = self.pending, []
        return pending


def _requests(samples, batch_size):
    """``samples <json>\\n`` lines of at most ``batch_size`` samples each."""
    out = []
    parts = []
    size = 0
    for s in samples:
        text = json.dumps(s, separators=(",", ":"), allow_nan=False)
        if parts and (len(parts) >= batch_size or size + len(text) > MAX_REQUEST_BYTES):
            out.append(("samples [" + ",".join(parts) + "]\n", len(parts)))
            parts, size = [], 0
        parts.append(text)
        size += len(text) + 1
    if parts:
        out.append(("samples [" + ",".join(parts) + "]\n", len(parts)))
    return out


class SendError(Exception):
    """A batch did not reach the agent."""


class _Connection:
    """A kept-open connection to the control socket, reopened on demand."""

    def __init__(self, path, io_timeout):
        self.path = path
        self.io_timeout = io_timeout
        self.sock = None
        self.reader = None

    def close(self):
        if self.sock is not None:
            try:
                self.reader.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.reader = None

    def _connect(self):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.io_timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise SendError("no komlogd agent answers on %s: %s" % (self.path, e))
        self.sock = sock
        self.reader = sock.makefile("rb")

    def ready(self):
        """Open the connection unless it is open."""
        if self.sock is None:
            self._connect()

    def send(self, line):
        """Send one request line, return its decoded answer. A kept-open
        connection the agent closed is reopened once and the batch sent again
        (the agent holds a repeated sample, it is not counted twice)."""
        for _ in range(2):
            reused = self.sock is not None
            if not reused:
                self._connect()
            try:
                self.sock.sendall(line.encode("utf-8"))
                answer = self.reader.readline()
                if not answer.endswith(b"\n"):
                    raise OSError("the agent closed the connection")
                decoded = json.loads(answer.decode("utf-8"))
            except (OSError, ValueError) as e:
                self.close()
                if reused:
                    continue
                raise SendError("%s: %s" % (self.path, e))
            if decoded.get("error"):
                self.close()
                raise SendError("the agent refused the batch: %s" % decoded["error"])
            return decoded
        raise SendError("%s: the agent closed the connection twice" % self.path)


class _Timed:
    """Kaneda's ``timed``: a context manager and a decorator."""

    def __init__(self, metrics, name, tags):
        self._metrics = metrics
        self._name = name
        self._tags = tags
        self._start = None

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        elapsed = (time.perf_counter() - self._start) * 1000.0
        self._metrics.timing(self._name, elapsed, self._tags)
        return False

    def __call__(self, func):
        name = self._name
        if name is None:
            name = func.__module__ + "." + func.__name__
        metrics, tags = self._metrics, self._tags

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                metrics.timing(name, (time.perf_counter() - start) * 1000.0, tags)

        return wrapper


class Metrics:
    """Kaneda's Metrics, reporting to the local komlogd agent.

    ``socket``: the agent's ``komlogd.sock``; by default ``$KOMLOGD_SOCKET``.
    About ``queue_size`` measurements may wait (more are dropped and counted);
    the daemon thread drains them every 50 ms and sends them every
    ``flush_interval`` seconds, or when ``batch_size`` samples wait. It waits
    up to ``io_timeout`` seconds for the agent; the calls never wait.

    The queue is a ``collections.deque`` whose length is checked before each
    append (thread-safe under CPython; concurrent callers may overshoot the
    bound by one each): a ``queue.Queue`` took the call from about 1 us to
    3.5 us, its lock and condition being most of the cost.
    """

    def __init__(
        self,
        socket=None,
        queue_size=100000,
        flush_interval=1.0,
        batch_size=1000,
        io_timeout=10.0,
    ):
        if socket is None:
            socket = os.environ.get(SOCKET_ENV)
        if not socket:
            raise ValueError(
                "no agent socket: pass Metrics(socket=...) or set %s to the agent's komlogd.sock"
                % SOCKET_ENV
            )
        self.socket = str(socket)
        self._queue = collections.deque()
        self._queue_size = max(1, int(queue_size))
        self._asks = collections.deque()
        self._wake = threading.Event()
        self._flush_interval = float(flush_interval)
        self._batch_size = max(1, min(int(batch_size), MAX_BATCH))
        self._conn = _Connection(self.socket, float(io_timeout))
        self._lock = threading.Lock()
        self._uris = {}
        self._closed = False
        self.dropped = 0
        """Measurements dropped because the queue was full."""
        self.send_failures = 0
        """Requests that did not reach the agent."""
        self.lost = 0
        """Samples in those failed requests (dropped)."""
        self.sent = 0
        """Samples the agent accepted."""
        self.rejected = 0
        """Samples the agent refused."""
        self.last_error = None
        """Why the last request failed."""
        self._thread = threading.Thread(
            target=self._run, name="komlog-metrics", daemon=True
        )
        self._thread.start()

    # -- the calls ------------------------------------------------------

    def _uri(self, name, tags):
        if not tags:
            key = name
        elif isinstance(tags, dict):
            key = (name, tuple(tags.items()))
        else:
            key = (name, tuple(tags))
        found = self._uris.get(key)
        if found is None:
            found = uri(name, tags)
            if len(self._uris) < 10000:
                try:
                    self._uris[key] = found
                except TypeError:  # unhashable tags: not cached
                    pass
        return found

    def _put(self, item):
        if len(self._queue) < self._queue_size:
            self._queue.append(item)
        else:
            with self._lock:
                self.dropped += 1

    def gauge(self, name, value, tags=None):
        """Record ``value`` as the current value of ``name``."""
        self._put((_SAMPLE, self._uri(name, tags), _now_us(), _number(value), None))

    def increment(self, name, tags=None):
        """Add 1 to the counter ``name`` (summed per flush)."""
        self._put((_COUNT, self._uri(name, tags), 1))

    def decrement(self, name, tags=None):
        """Take 1 from the counter ``name``."""
        self._put((_COUNT, self._uri(name, tags), -1))

    def timing(self, name, value, tags=None):
        """Record a duration in milliseconds (a number, or a timedelta)."""
        if isinstance(value, timedelta):
            value = value.total_seconds() * 1000.0
        self._put((_SAMPLE, self._uri(name, tags), _now_us(), _number(value), None))

    def event(self, name, text, tags=None):
        """Record a text (a datasource sample) at ``name``."""
        self._put((_SAMPLE, self._uri(name, tags), _now_us(), None, str(text)))

    def custom(self, name, metric, value, tags=None, id_=None):
        """Record ``value`` at ``name.metric``: a number as a datapoint, any
        other value as text (JSON for other than strings). ``id_`` has no
        komlog counterpart (the uri and the time identify a sample)."""
        u = custom_uri(name, metric, tags)
        if isinstance(value, (int, float)):
            item = (_SAMPLE, u, _now_us(), _number(value), None)
        elif isinstance(value, str):
            item = (_SAMPLE, u, _now_us(), None, value)
        else:
            item = (_SAMPLE, u, _now_us(), None, json.dumps(value, default=str))
        self._put(item)

    def timed(self, name=None, tags=None):
        """Time a block (``with metrics.timed("x"):``) or a function
        (``@metrics.timed("x")``; without a name, ``module.function``)."""
        return _Timed(self, name, tags)

    # -- flushing -------------------------------------------------------

    def _ask(self, kind, timeout):
        done = threading.Event()
        outcome = []
        self._asks.append((kind, done, outcome))
        self._wake.set()
        if not done.wait(timeout):
            return False
        return bool(outcome and outcome[0])

    def flush(self, timeout=2.0):
        """Send everything queued so far; wait at most ``timeout`` seconds.
        True when the agent took it all."""
        if self._closed or not self._thread.is_alive():
            return False
        return self._ask(_FLUSH, timeout)

    def close(self, timeout=2.0):
        """Flush and stop the daemon thread (waiting at most ``timeout``)."""
        if self._closed:
            return True
        self._closed = True
        ok = self._thread.is_alive() and self._ask(_STOP, timeout)
        self._thread.join(timeout)
        return ok

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- the daemon thread ----------------------------------------------

    def _send(self, agg):
        samples = agg.drain(_now_us())
        if not samples:
            return True
        try:
            self._conn.ready()  # no encoding for an agent that is not there
        except SendError as e:
            self._failed(len(samples), e)
            return False
        ok = True
        for line, n in _requests(samples, self._batch_size):
            try:
                answer = self._conn.send(line)
            except SendError as e:
                self._failed(n, e)
                ok = False
                continue
            with self._lock:
                self.sent += int(answer.get("accepted", 0))
                self.rejected += len(answer.get("rejected") or [])
        return ok

    def _failed(self, n, error):
        with self._lock:
            self.send_failures += 1
            self.lost += n
            self.last_error = str(error)

    def _safe_send(self, agg):
        try:
            return self._send(agg)
        except Exception as e:  # the thread must outlive any surprise
            self.last_error = repr(e)
            return False

    def _drain(self, agg):
        pop = self._queue.popleft
        batch = self._batch_size
        while True:
            try:
                item = pop()
            except IndexError:
                return
            if item[0] == _COUNT:
                agg.count(item[1], item[2])
            else:
                agg.sample(item[1], item[2], item[3], item[4])
                if len(agg.pending) >= batch:
                    self._safe_send(agg)

    def _run(self):
        agg = _Aggregator()
        next_flush = time.monotonic() + self._flush_interval
        while True:
            wait = min(_POLL, max(0.0, next_flush - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
            # The requests first: what was queued before them is drained next.
            asks = []
            while self._asks:
                asks.append(self._asks.popleft())
            self._drain(agg)
            if asks or time.monotonic() >= next_flush:
                ok = self._safe_send(agg)
                next_flush = time.monotonic() + self._flush_interval
                for kind, done, outcome in asks:
                    outcome.append(ok)
                    done.set()
                if any(kind == _STOP for kind, _, _ in asks):
                    self._conn.close()
                    return
