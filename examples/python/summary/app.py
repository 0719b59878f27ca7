"""`summary` in Python: hourly statistics of CPU metrics.

Behaves exactly as the Rust example (examples/summary): ``describe()``
subscribes to ``cpu.system`` and ``cpu.user`` with ``past_delta`` = 1 h; for
each updated datapoint uri it writes the datasource ``<uri>.last_60min_stats``
at ``ctx.ts``, five ``name: value`` lines (count, mean, sample std, min, max)
over the samples with ts in ``(ctx.ts - 1h, ctx.ts]``, numbers printed as
Rust's ``{}`` prints them. Datasource uris, and updated uris with no sample in
the last hour, are skipped.
"""

import math

from komlog_impulse import HOUR, Impulse, before, datasource, format_f64, log, subscription

URIS = ["cpu.system", "cpu.user"]
SUFFIX = ".last_60min_stats"


def stats_text(values):
    """The five lines for a non-empty list of numbers (summed in order, as
    the Rust example does, so every digit matches)."""
    n = len(values)
    total = 0.0
    for v in values:
        total += v
    mean = total / n
    std = 0.0
    if n > 1:
        squares = 0.0
        for v in values:
            squares += (v - mean) * (v - mean)
        std = math.sqrt(squares / (n - 1))
    low = math.inf
    high = -math.inf
    for v in values:
        if v < low:
            low = v
        if v > high:
            high = v
    return (
        f"count: {n}\nmean: {format_f64(mean)}\nstd: {format_f64(std)}\n"
        f"min: {format_f64(low)}\nmax: {format_f64(high)}"
    )


class WitWorld(Impulse):
    def describe(self):
        return subscription(URIS, past_delta=HOUR)

    def update(self, ctx):
        window = ctx.window()
        after = before(ctx.ts, HOUR)
        out = []
        for uri in ctx.updated:
            series = window.series(uri)
            if series is None:
                log.warn(f"summary: no samples of {uri} in the window")
                continue
            values = series.datapoints()
            if values is None:
                log.debug(f"summary: {uri} is a datasource, skipped")
                continue
            start, end = series.range(after, ctx.ts)
            recent = values[start:end]
            if not recent:
                log.warn(f"summary: no samples of {uri} in the last hour")
                continue
            out.append(datasource(uri + SUFFIX, ctx.ts, stats_text(recent)))
        return out
