// `threshold` in JavaScript: flag values above (or below) a threshold.
//
// Behaves exactly as the Rust example (examples/threshold). Params:
// `threshold` (required finite number) and `direction` (`above`, the default,
// or `below`). For each updated datapoint uri it writes the datapoint
// `<uri>._anomaly` at ctx.ts: 1 if the latest value (the one at ctx.ts, else
// the last in the window) is strictly beyond the threshold, else 0.
// describe() returns none.

import { ImpulseError, datapoint, defineImpulse, log } from './komlog_impulse.js';

function directionOf(raw) {
  const text = raw === undefined ? undefined : raw.trim();
  if (text === undefined || text === 'above') return 'above';
  if (text === 'below') return 'below';
  throw new ImpulseError(`param \`direction\` must be \`above\` or \`below\`, got \`${text}\``);
}

export const { describe, onUpdate } = defineImpulse({
  update(ctx) {
    const threshold = ctx.paramF64('threshold');
    if (threshold === undefined) {
      throw new ImpulseError('param `threshold` is required (a number)');
    }
    const direction = directionOf(ctx.param('direction'));
    const window = ctx.window();
    const out = [];
    for (const uri of ctx.updated) {
      const series = window.series(uri);
      if (!series) {
        log.warn(`threshold: no samples of ${uri} in the window`);
        continue;
      }
      let latest = series.at(ctx.ts);
      if (latest === undefined && series.length) latest = series.last()[1];
      if (series.kind !== 'datapoint' || latest === undefined) {
        log.debug(`threshold: ${uri} is not a datapoint series, skipped`);
        continue;
      }
      const beyond = direction === 'above' ? latest > threshold : latest < threshold;
      out.push(datapoint(`${uri}._anomaly`, ctx.ts, beyond ? 1 : 0));
    }
    return out;
  },
});
