"""`threshold` in Python: flag values above (or below) a threshold.

Behaves exactly as the Rust example (examples/threshold). Params:
``threshold`` (required finite number) and ``direction`` (``above``, the
default, or ``below``). For each updated datapoint uri it writes the
datapoint ``<uri>._anomaly`` at ``ctx.ts``: 1.0 if the latest value (the one
at ``ctx.ts``, else the last in the window) is strictly beyond the threshold,
else 0.0. ``describe()`` returns None.
"""

from komlog_impulse import Impulse, ImpulseError, datapoint, log


def direction_of(raw):
    text = None if raw is None else raw.strip()
    if text is None or text == "above":
        return "above"
    if text == "below":
        return "below"
    raise ImpulseError(f"param `direction` must be `above` or `below`, got `{text}`")


class WitWorld(Impulse):
    def update(self, ctx):
        threshold = ctx.param_f64("threshold")
        if threshold is None:
            raise ImpulseError("param `threshold` is required (a number)")
        direction = direction_of(ctx.param("direction"))
        window = ctx.window()
        out = []
        for uri in ctx.updated:
            series = window.series(uri)
            if series is None:
                log.warn(f"threshold: no samples of {uri} in the window")
                continue
            latest = series.at(ctx.ts)
            if latest is None and len(series):
                latest = series.last()[1]
            if series.kind != "datapoint" or latest is None:
                log.debug(f"threshold: {uri} is not a datapoint series, skipped")
                continue
            beyond = latest > threshold if direction == "above" else latest < threshold
            out.append(datapoint(uri + "._anomaly", ctx.ts, 1.0 if beyond else 0.0))
        return out
