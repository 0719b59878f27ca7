"""`@NAME@`: a komlogd impulse.

For each updated uri that holds numbers, it writes the mean of that uri's
samples in the window to the datapoint ``<uri>.@NAME@`` at the fire's
timestamp. How much history the window holds is set by ``data_reqs`` in
komlogd.yaml (by default, the latest sample only).

komlog_impulse.py (beside this file) is the komlogd Python SDK.
"""

from komlog_impulse import Impulse, datapoint


class WitWorld(Impulse):
    def update(self, ctx):
        window = ctx.window()
        out = []
        for uri in ctx.updated:
            series = window.series(uri)
            values = series.datapoints() if series is not None else None
            if not values:
                continue
            total = 0.0
            for v in values:
                total += v
            out.append(datapoint(f"{uri}.@NAME@", ctx.ts, total / len(values)))
        return out
