"""`counter` in Python: a stateful impulse, as the Rust example (examples/counter).

It counts the fires it has seen and writes the running count to
``<uri>.count`` at ``ctx.ts`` for each updated uri. Built for the
``stateful-impulse`` world: at a swap the count is handed to the next
version as 8 little-endian bytes (an unsigned 64-bit integer), the format
of the Rust ``counter``, so the two can replace each other and count on.
A state of another length is refused (the next version starts from zero).
"""

import struct

from komlog_impulse import ImpulseError, StatefulImpulse, datapoint

# Module level: componentize-py makes a new WitWorld object for every call.
_count = 0


class WitWorld(StatefulImpulse):
    def update(self, ctx):
        global _count
        _count += 1
        return [datapoint(uri + ".count", ctx.ts, float(_count)) for uri in ctx.updated]

    def save(self):
        return struct.pack("<Q", _count)

    def load(self, state):
        global _count
        if len(state) != 8:
            raise ImpulseError(f"expected 8 bytes of state, got {len(state)}")
        (_count,) = struct.unpack("<Q", state)
