"""The cost of ``Metrics.gauge()`` on the caller's thread against an empty
method called the same way in the same run: p50 per call and the ratio.

Run: ``python3 bench.py`` (with the package installed, or from this folder).
No agent is needed: the client's socket does not exist, so its daemon thread
drops the batches; the queue is big enough that no call finds it full (the
run prints ``dropped``, which must be 0).
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from komlog_metrics import Metrics  # noqa: E402

PER_ROUND = 100
ROUNDS = 3000


class Empty:
    def gauge(self, name, value, tags=None):
        pass


def p50(call):
    per_call = []
    clock = time.perf_counter_ns
    for _ in range(ROUNDS):
        start = clock()
        for i in range(PER_ROUND):
            call(i)
        per_call.append((clock() - start) / PER_ROUND)
    per_call.sort()
    return per_call[len(per_call) // 2]


def main():
    with tempfile.TemporaryDirectory() as d:
        metrics = Metrics(
            os.path.join(d, "no-agent.sock"), queue_size=4 * PER_ROUND * ROUNDS * 2
        )
        empty = Empty()
        tags = {"host": "web-1"}
        p50(lambda i: empty.gauge("bench.gauge", i))
        results = {"gauge": [], "gauge_tags": [], "empty": []}
        for _ in range(3):
            results["empty"].append(p50(lambda i: empty.gauge("bench.gauge", i)))
            results["gauge"].append(p50(lambda i: metrics.gauge("bench.gauge", i)))
            results["gauge_tags"].append(
                p50(lambda i: metrics.gauge("bench.gauge", i, tags))
            )
        med = {k: sorted(v)[1] for k, v in results.items()}
        print("Python %s" % sys.version.split()[0])
        print("gauge():             p50 %.0f ns per call" % med["gauge"])
        print("gauge() with a tag:  p50 %.0f ns per call" % med["gauge_tags"])
        print("empty method, same arguments: p50 %.0f ns per call" % med["empty"])
        print(
            "ratio gauge/empty: %.1fx (target: gauge <= 3 us)"
            % (med["gauge"] / max(med["empty"], 1.0))
        )
        print("dropped: %d" % metrics.dropped)
        metrics.close(1)


if __name__ == "__main__":
    main()
