// `counter` in JavaScript: a stateful impulse, as the Rust example
// (examples/counter).
//
// It counts the fires it has seen and writes the running count to
// `<uri>.count` at ctx.ts for each updated uri. Built for the
// `stateful-impulse` world: at a swap the count is handed to the next version
// as 8 little-endian bytes (an unsigned 64-bit integer), the format of the
// Rust and Python counters, so they can replace each other and count on. A
// state of another length is refused (the next version starts from zero).

import { ImpulseError, datapoint, defineImpulse } from './komlog_impulse.js';

let count = 0n;

export const { describe, onUpdate, snapshot, restore } = defineImpulse({
  update(ctx) {
    count += 1n;
    return ctx.updated.map((uri) => datapoint(`${uri}.count`, ctx.ts, Number(count)));
  },
  save() {
    const state = new Uint8Array(8);
    new DataView(state.buffer).setBigUint64(0, count, true);
    return state;
  },
  load(state) {
    if (state.length !== 8) {
      throw new ImpulseError(`expected 8 bytes of state, got ${state.length}`);
    }
    count = new DataView(state.buffer, state.byteOffset, 8).getBigUint64(0, true);
  },
});
