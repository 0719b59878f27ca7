// `@NAME@`: a komlogd impulse.
//
// For each updated uri that holds numbers, it writes the mean of that uri's
// samples in the window to the datapoint `<uri>.@NAME@` at the fire's
// timestamp. How much history the window holds is set by `data_reqs` in
// komlogd.yaml (by default, the latest sample only).
//
// komlog_impulse.js (beside this file) is the komlogd JavaScript SDK.

import { datapoint, defineImpulse } from './komlog_impulse.js';

export const { describe, onUpdate } = defineImpulse({
  update(ctx) {
    const window = ctx.window();
    const out = [];
    for (const uri of ctx.updated) {
      const values = window.series(uri)?.datapoints();
      if (!values || values.length === 0) continue;
      let total = 0;
      for (const v of values) total += v;
      out.push(datapoint(`${uri}.@NAME@`, ctx.ts, total / values.length));
    }
    return out;
  },
});
