"""Against a real komlogd agent: counters from many threads add up, gauges,
timings, events and custom values land at their uris, read back through the
agent's ``query`` request; a missing agent never blocks the caller."""

import json
import os
import socket
import threading
import time

import pytest

from komlog_metrics import Metrics

# A prefix of our own, so a reused agent's older samples do not count.
RUN = "py%d_%d" % (os.getpid(), time.time_ns() // 1000)


def query(sock_path, uri, limit=1000):
    """The newest samples of ``uri`` (one-shot ``query`` request)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(("query " + json.dumps({"uri": uri, "limit": limit}) + "\n").encode())
        line = s.makefile("rb").readline()
    answer = json.loads(line)
    assert not answer.get("error"), answer
    return answer["samples"]


def test_increments_from_threads_add_up(agent_socket):
    threads, per_thread = 8, 25000
    name = RUN + ".hits"
    metrics = Metrics(agent_socket, queue_size=threads * per_thread, flush_interval=0.2)

    def work():
        for _ in range(per_thread):
            metrics.increment(name)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert metrics.flush(30)
    assert metrics.dropped == 0
    assert metrics.send_failures == 0, metrics.last_error
    rows = query(agent_socket, name)
    assert 1 <= len(rows) < 1000
    assert sum(float(r["datapoint"]) for r in rows) == threads * per_thread
    metrics.close()


def test_values_land_at_their_uris(agent_socket, monkeypatch):
    monkeypatch.setenv("KOMLOGD_SOCKET", agent_socket)
    metrics = Metrics()  # the socket from KOMLOGD_SOCKET
    assert metrics.socket == agent_socket
    metrics.gauge(RUN + ".queue depth", 42, tags={"queue": "mail"})
    metrics.timing(RUN + ".db", 12.5)
    metrics.event(RUN + ".deploys", "v1.2.3 rolled out", tags=["env:prod"])
    metrics.custom(RUN + ".db", "pool size", 7)
    metrics.decrement(RUN + ".jobs")
    metrics.decrement(RUN + ".jobs")

    with metrics.timed(RUN + ".block"):
        time.sleep(0.01)

    @metrics.timed(RUN + ".fn")
    def work(x):
        return x * 2

    assert work(21) == 42
    assert metrics.flush(30), metrics.last_error
    assert [r["datapoint"] for r in query(agent_socket, RUN + ".queue_depth.queue_mail")] == ["42"]
    assert [r["datapoint"] for r in query(agent_socket, RUN + ".db")] == ["12.5"]
    assert [r["datasource"] for r in query(agent_socket, RUN + ".deploys.env_prod")] == [
        "v1.2.3 rolled out"
    ]
    assert [r["datapoint"] for r in query(agent_socket, RUN + ".db.pool_size")] == ["7"]
    assert [r["datapoint"] for r in query(agent_socket, RUN + ".jobs")] == ["-2"]
    block = query(agent_socket, RUN + ".block")
    assert len(block) == 1 and float(block[0]["datapoint"]) >= 10.0
    assert len(query(agent_socket, RUN + ".fn")) == 1
    assert metrics.rejected == 0
    metrics.close()


def test_refused_samples_are_counted(agent_socket):
    metrics = Metrics(agent_socket)
    name = RUN + ".kind"
    metrics.gauge(name, 1)
    assert metrics.flush(30)
    # The uri holds numbers now: a text there is refused, and counted.
    metrics.event(name, "text")
    metrics.gauge(RUN + ".nan", float("nan"))
    assert metrics.flush(30)
    assert metrics.rejected == 2
    assert metrics.send_failures == 0
    metrics.close()


def test_a_missing_agent_never_blocks(tmp_path):
    metrics = Metrics(
        str(tmp_path / "komlogd.sock"), queue_size=1000, flush_interval=60, batch_size=100
    )
    start = time.monotonic()
    for i in range(5000):
        metrics.gauge("down.g", i)
        metrics.increment("down.c")
    took = time.monotonic() - start
    assert took < 5, took
    metrics.flush(5)  # whatever waits (the queue may have been full)
    metrics.increment("down.c")
    assert not metrics.flush(5)
    assert metrics.send_failures >= 1
    assert metrics.lost + metrics.dropped >= 1
    assert "no komlogd agent answers" in metrics.last_error
    # The queue bounds what waits; what did not fit was dropped, counted.
    assert metrics.dropped + metrics.lost + metrics.sent <= 10000 + 2
    start = time.monotonic()
    metrics.close(5)
    assert time.monotonic() - start < 5
