// The page's benchmark in a real headless Chromium, driven by playwright-core.
// Run by hub/benches/web.rs, which starts the hub, writes the data, and
// uploads the live samples when this script writes `need live` (it answers
// `done` once they are all sent). Results are printed as table rows.
//
// Environment:
//   KOMLOG_WEB_URL, KOMLOG_WEB_USER, KOMLOG_WEB_PASSWORD  the hub and its user
//   KOMLOG_BENCH_CHARTS  JSON [{name, hash}]: the charts to load, by address
//   KOMLOG_BENCH_RUNS    page loads per chart (after 2 not counted)
//   KOMLOG_BENCH_LIVE    live samples the Rust side uploads to live.cpu
//   CHROMIUM             the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env, need } from './conversation.mjs';

const URL_ = env('KOMLOG_WEB_URL').replace(/\/$/, '');
const CHARTS = JSON.parse(env('KOMLOG_BENCH_CHARTS'));
const RUNS = Number(env('KOMLOG_BENCH_RUNS'));
const LIVE = Number(env('KOMLOG_BENCH_LIVE'));


const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
};
const ms = (x) => x.toFixed(1).padStart(8);

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];

// A plain server-sent-events client: when each sample of the stream arrived
// (ms since the epoch), by the sample's time.
async function readLive(uri, cookie, arrived, stop) {
  const r = await fetch(`${URL_}/api/v1/live?uri=${encodeURIComponent(uri)}`, {
    headers: { cookie, accept: 'text/event-stream' },
    signal: stop,
  });
  if (!r.ok) throw new Error(`live stream: ${r.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of r.body) {
      const at = performance.timeOrigin + performance.now();
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split('\n').find((l) => l.startsWith('data:'));
        if (event.includes('event: sample') && data) arrived.push({ t: JSON.parse(data.slice(5)).t, at });
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'komlog-bench-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    viewport: { width: 2400, height: 900 },
  });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
    const login = await ctx.request.post(URL_ + '/api/v1/login', {
      data: { user: env('KOMLOG_WEB_USER'), password: env('KOMLOG_WEB_PASSWORD') },
    });
    if (!login.ok()) throw new Error(`login: ${login.status()} ${await login.text()}`);

    console.log(`navigation to a drawn chart: a fresh load of the chart's address until its first draw (${RUNS} loads each)`);
    console.log(`${'chart'.padEnd(30)} ${'points'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'x base'.padStart(8)}`);
    let base = null;
    let n = 0;
    const breakdown = [];
    for (const chart of CHARTS) {
      const times = [];
      const steps = [];
      let points = 0;
      for (let i = 0; i < RUNS + 2; i++) {
        n++;
        await page.goto(`${URL_}/web/?load=${n}${chart.hash}`);
        await page.waitForFunction(() => performance.getEntriesByName('chart-drawn').length > 0, null, { timeout: 30000 });
        const [t, p, marks] = await page.evaluate(() => {
          // When each step of the load ended, ms from navigation start.
          const end = (re) => {
            const e = performance.getEntriesByType('resource').find((r) => re.test(r.name));
            return e ? e.responseEnd : NaN;
          };
          const nav = performance.getEntriesByType('navigation')[0];
          return [
            performance.getEntriesByName('chart-drawn')[0].startTime,
            Object.values(window.komlogWeb.points())[0] || 0,
            {
              html: nav.responseEnd,
              'app.js': end(/\/app\.js$/),
              'script run': nav.domContentLoadedEventEnd,
              '/me': end(/\/api\/v1\/me$/),
              '/series': end(/\/api\/v1\/series\?/),
            },
          ];
        });
        if (p === 0) throw new Error(`${chart.name}: the chart drew no point`);
        points = p;
        if (i >= 2) {
          times.push(t);
          steps.push(marks);
        }
      }
      const p50 = quantile(times, 0.5);
      base ??= p50;
      console.log(`${chart.name.padEnd(30)} ${String(points).padStart(8)} ${ms(p50)} ${ms(quantile(times, 0.99))} ${(p50 / base).toFixed(2).padStart(7)}x`);
      breakdown.push([chart.name, steps]);
    }
    console.log("\nwhere a load's time goes: p50 of when each step ended, ms from navigation start");
    const names = Object.keys(breakdown[0][1][0]);
    console.log(`${'chart'.padEnd(30)} ${names.map((n) => n.padStart(10)).join(' ')}`);
    for (const [name, steps] of breakdown) {
      console.log(`${name.padEnd(30)} ${names.map((n) => quantile(steps.map((s) => s[n]), 0.5).toFixed(1).padStart(10)).join(' ')}`);
    }

    // Live: the chart of live.cpu, following the present.
    await page.goto(`${URL_}/web/?load=live#data?uri=live.cpu&span=3600000000`);
    await page.waitForFunction(() => performance.getEntriesByName('chart-drawn').length > 0, null, { timeout: 30000 });
    const cookie = (await ctx.cookies(URL_)).map((c) => `${c.name}=${c.value}`).join('; ');
    const arrived = [];
    const stop = new AbortController();
    const reading = readLive('live.cpu', cookie, arrived, stop.signal);
    await page.waitForTimeout(1000); // both streams open
    await need('live');
    await page.waitForFunction((n) => window.komlogWeb.liveDrawn().length >= n, LIVE, { timeout: 20000 });
    const deadline = Date.now() + 5000;
    while (arrived.length < LIVE && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    stop.abort();
    await reading;
    const drawn = await page.evaluate(() => window.komlogWeb.liveDrawn());
    const latency = (xs) => xs.map(({ t, at }) => at - t / 1000);
    const pixel = latency(drawn);
    const sse = latency(arrived);
    console.log(`\nupload to pixel: ${LIVE} datapoints uploaded over a websocket session, 20 a second, to a chart following the present`);
    console.log(`${'path'.padEnd(30)} ${'samples'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)}`);
    console.log(`${'/api/v1/live, plain client'.padEnd(30)} ${String(sse.length).padStart(8)} ${ms(quantile(sse, 0.5))} ${ms(quantile(sse, 0.99))} ${ms(Math.max(...sse))}`);
    console.log(`${'drawn on the page (Chromium)'.padEnd(30)} ${String(pixel.length).padStart(8)} ${ms(quantile(pixel, 0.5))} ${ms(quantile(pixel, 0.99))} ${ms(Math.max(...pixel))}`);
    if (sse.length !== LIVE || pixel.length !== LIVE) throw new Error(`expected ${LIVE} live samples, got ${sse.length} and ${pixel.length}`);
  } finally {
    await ctx.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

setTimeout(() => {
  process.stderr.write('the benchmark took longer than 10 minutes\n');
  process.exit(1);
}, 600_000).unref();

try {
  await main();
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`);
  process.exitCode = 1;
} finally {
  process.stdin.destroy();
}
