// `summary` in JavaScript: hourly statistics of CPU metrics.
//
// Behaves exactly as the Rust example (examples/summary): describe()
// subscribes to cpu.system and cpu.user with past_delta = 1 h; for each
// updated datapoint uri it writes the datasource `<uri>.last_60min_stats` at
// ctx.ts, five `name: value` lines (count, mean, sample std, min, max) over the
// samples with ts in (ctx.ts - 1h, ctx.ts], numbers printed as Rust's `{}`
// prints them. Datasource uris, and updated uris with no sample in the last
// hour, are skipped.

import { HOUR, before, datasource, defineImpulse, formatF64, log, subscription } from './komlog_impulse.js';

const URIS = ['cpu.system', 'cpu.user'];
const SUFFIX = '.last_60min_stats';

// The five lines for a non-empty array of numbers (summed in order, as the
// Rust example does, so every digit matches).
function statsText(values) {
  const n = values.length;
  let total = 0;
  for (const v of values) total += v;
  const mean = total / n;
  let std = 0;
  if (n > 1) {
    let squares = 0;
    for (const v of values) squares += (v - mean) * (v - mean);
    std = Math.sqrt(squares / (n - 1));
  }
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return `count: ${n}\nmean: ${formatF64(mean)}\nstd: ${formatF64(std)}\nmin: ${formatF64(low)}\nmax: ${formatF64(high)}`;
}

export const { describe, onUpdate } = defineImpulse({
  describe() {
    return subscription(URIS, { pastDelta: HOUR });
  },

  update(ctx) {
    const window = ctx.window();
    const after = before(ctx.ts, HOUR);
    const out = [];
    for (const uri of ctx.updated) {
      const series = window.series(uri);
      if (!series) {
        log.warn(`summary: no samples of ${uri} in the window`);
        continue;
      }
      const values = series.datapoints();
      if (!values) {
        log.debug(`summary: ${uri} is a datasource, skipped`);
        continue;
      }
      const [start, end] = series.range(after, ctx.ts);
      const recent = values.slice(start, end);
      if (recent.length === 0) {
        log.warn(`summary: no samples of ${uri} in the last hour`);
        continue;
      }
      out.push(datasource(uri + SUFFIX, ctx.ts, statsText(recent)));
    }
    return out;
  },
});
