"""Counters sum per flush; one uri never repeats a time; requests are cut."""

import json

from komlog_metrics._metrics import _Aggregator, _requests


def test_counters_sum_per_flush():
    agg = _Aggregator()
    for _ in range(5):
        agg.count("hits", 1)
    agg.count("hits", -2)
    agg.count("misses", 1)
    out = sorted(agg.drain(1000), key=lambda s: s["uri"])
    assert out == [
        {"uri": "hits", "ts": 1000, "datapoint": 3.0},
        {"uri": "misses", "ts": 1000, "datapoint": 1.0},
    ]
    assert agg.drain(2000) == []
    agg.count("hits", 1)
    assert agg.drain(3000) == [{"uri": "hits", "ts": 3000, "datapoint": 1.0}]


def test_one_uri_never_repeats_a_time():
    agg = _Aggregator()
    agg.sample("t", 10, datapoint=1.0)
    agg.sample("t", 10, datapoint=2.0)
    agg.sample("t", 5, datapoint=3.0)
    agg.sample("u", 10, datasource="x")
    out = agg.drain(0)
    assert [(s["uri"], s["ts"]) for s in out] == [("t", 10), ("t", 11), ("t", 12), ("u", 10)]
    assert out[3]["datasource"] == "x"
    agg.count("t", 1)
    assert agg.drain(12)[0]["ts"] == 13


def test_requests_are_cut_by_count():
    samples = [{"uri": "a", "ts": i, "datapoint": float(i)} for i in range(25)]
    reqs = _requests(samples, 10)
    assert [n for _, n in reqs] == [10, 10, 5]
    for line, n in reqs:
        assert line.startswith("samples [") and line.endswith("]\n")
        assert len(json.loads(line[len("samples "):])) == n
    assert _requests([], 10) == []
