"""The naming rule, on the cases the Rust crate's tests check too."""

import json
import re
from pathlib import Path

from komlog_metrics import custom_uri, uri

CASES = json.loads((Path(__file__).parent / "naming_cases.json").read_text("utf-8"))
LOCAL_URI = re.compile(r"\A([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\Z")


def test_shared_cases():
    assert len(CASES) >= 10
    for case in CASES:
        tags = [tuple(t) for t in case["tags"]]
        assert uri(case["name"], tags) == case["uri"], case


def test_tag_forms():
    pairs = [("status", "200"), ("method", "GET")]
    want = "req.method_GET.status_200"
    assert uri("req", pairs) == want
    assert uri("req", dict(pairs)) == want
    # Kaneda's tags are strings: "key:value", or a bare flag.
    assert uri("req", ["status:200", "method:GET"]) == want
    assert uri("req", ["canary"]) == "req.canary_"
    assert uri("req", None) == "req"


def test_custom_joins_name_and_metric():
    assert custom_uri("db", "pool size") == "db.pool_size"
    assert custom_uri("db", "", {"a": "1"}) == "db._.a_1"


def test_every_result_is_a_valid_uri():
    names = ["", ".", "..", "a.", ".b", "a b", "\u00fc", "x.y.z", "-_-", "\n"]
    tags = ["", ".", "a.b", "\u00fc", "v 1", "ok"]
    for name in names:
        assert LOCAL_URI.match(uri(name)), name
        for k in tags:
            for v in tags:
                u = uri(name, [(k, v), ("z", v)])
                assert LOCAL_URI.match(u), (name, k, v, u)
