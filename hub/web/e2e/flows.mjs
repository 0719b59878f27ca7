// The page's flows in a real headless Chromium, driven by playwright-core.
// Run by host/tests/suite/web.rs, which starts the hub and a komlogd agent and
// answers this script's requests on stdin: the script writes `need <what>` on
// stdout and waits for one line back (`done <detail>`).
//
// Environment:
//   KOMLOG_WEB_URL        the hub, e.g. http://127.0.0.1:8123
//   KOMLOG_WEB_USER, KOMLOG_WEB_PASSWORD    the owner of the data (alice)
//   KOMLOG_WEB_USER2, KOMLOG_WEB_PASSWORD2  a second user (bob)
//   KOMLOG_WEB_POINTS     datapoints of host.cpu in the last hour at start
//   KOMLOG_WEB_TEXTS      the datasource host.log's texts, oldest first, JSON
//   KOMLOG_WEB_NEW_KEY    an OpenSSH public key line to add as an agent
//   KOMLOG_WEB_OUT        where screenshots and downloads go
//   CHROMIUM              the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env, need, step, check } from './conversation.mjs';

const URL_ = env('KOMLOG_WEB_URL').replace(/\/$/, '');
const OUT = env('KOMLOG_WEB_OUT');
const POINTS = Number(env('KOMLOG_WEB_POINTS'));
const TEXTS = JSON.parse(env('KOMLOG_WEB_TEXTS'));
mkdirSync(OUT, { recursive: true });


const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];
const profiles = [];
const contexts = [];
async function browser() {
  const dir = mkdtempSync(join(tmpdir(), 'komlog-web-'));
  profiles.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    acceptDownloads: true,
    viewport: { width: 1200, height: 900 },
  });
  contexts.push(ctx);
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  page.on('dialog', (d) => d.accept());
  return { ctx, page };
}
const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
const points = (page) => page.evaluate(() => window.komlogWeb.points());

async function login(page, user, password) {
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
}

async function main() {
  const alice = await browser();
  const a = alice.page;

  // The files and the headers they go out with.
  const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
  const redirect = await a.request.get(URL_ + '/web', { maxRedirects: 0 });
  check(redirect.status() === 308 && redirect.headers().location === '/web/', `/web redirects: ${redirect.status()}`);
  for (const [path, type] of [['/web/', 'text/html'], ['/web/app.js', 'text/javascript'], ['/web/app.css', 'text/css']]) {
    const h = (await a.request.get(URL_ + path)).headers();
    check(h['content-type'].startsWith(type), `${path}: content-type ${h['content-type']}`);
    check(h['cache-control'] === 'no-cache', `${path}: cache-control ${h['cache-control']}`);
    check(h['content-security-policy'] === CSP, `${path}: content-security-policy ${h['content-security-policy']}`);
    check(h['x-content-type-options'] === 'nosniff', `${path}: x-content-type-options`);
  }
  step('files served with their headers');

  // Log in: a wrong password is refused with the API's message.
  await a.goto(URL_ + '/web');
  check(a.url() === URL_ + '/web/', `redirected to /web/, at ${a.url()}`);
  await a.waitForSelector('#login-form', { state: 'visible' });
  await shot(a, 'login');
  await login(a, env('KOMLOG_WEB_USER'), 'not the password');
  await a.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  const refused = await a.textContent('#login-error');
  check(/password|user|refused|wrong|invalid/i.test(refused), `a refusal message, got ${JSON.stringify(refused)}`);
  check(await a.isHidden('#nav'), 'not logged in');
  await shot(a, 'login-refused');
  step(`wrong password refused: ${refused}`);
  await login(a, env('KOMLOG_WEB_USER'), env('KOMLOG_WEB_PASSWORD'));
  await a.waitForSelector('#nav', { state: 'visible' });
  step('logged in');

  // The tree shows the uploaded uris; the chart draws every point.
  const cpu = a.locator('#tree button.uri[data-uri="host.cpu"]');
  await cpu.waitFor();
  const info = await cpu.locator('.info').textContent();
  check(info.startsWith(`datapoint · ${POINTS} ·`), `tree info of host.cpu: ${info}`);
  await a.fill('#filter', 'host.l');
  await a.locator('#tree button.uri[data-uri="host.cpu"]').waitFor({ state: 'detached' });
  await a.locator('#tree button.uri[data-uri="host.log"]').waitFor();
  await a.fill('#filter', '');
  await cpu.waitFor();
  step('tree and filter');
  await a.click('[data-range="3600"]');
  await cpu.focus(); // keyboard: a uri is a button
  await a.keyboard.press('Enter');
  await a.waitForFunction((n) => window.komlogWeb.points()['host.cpu'] === n, POINTS, { timeout: 10000 });
  check(await a.evaluate(() => performance.getEntriesByName('chart-drawn').length === 1), 'chart-drawn mark');
  await shot(a, 'chart');
  step(`chart draws ${POINTS} points`);

  // A new upload appears on the open chart within one second.
  await a.waitForTimeout(500); // the live stream is open once the chart is
  await need('upload host.cpu');
  const t0 = Date.now();
  await a.waitForFunction((n) => window.komlogWeb.points()['host.cpu'] === n, POINTS + 1, { timeout: 1000, polling: 20 });
  step(`live sample on the chart after ${Date.now() - t0} ms`);

  // The keyboard on the focused chart: End and ← walk the values (read out in
  // #cursor-value), + and − zoom, shift+← pans; then back to the last hour.
  const cursorShows = (re) => a.waitForFunction((src) => new RegExp(src).test(document.querySelector('#cursor-value').textContent), re.source);
  await a.focus('#chart');
  await a.keyboard.press('End');
  await cursorShows(/host\.cpu 7\.5$/);
  await a.keyboard.press('ArrowLeft');
  await cursorShows(/host\.cpu 10$/);
  await a.keyboard.press('Home');
  await cursorShows(/host\.cpu 1\.5$/);
  const span0 = (await a.evaluate(() => window.komlogWeb.range())).span;
  await a.keyboard.press('+');
  await a.waitForFunction((s) => Math.abs(window.komlogWeb.range().span - s / 2) <= 2, span0);
  await a.keyboard.press('-');
  await a.waitForFunction((s) => Math.abs(window.komlogWeb.range().span - s) <= 4, span0);
  const from0 = (await a.evaluate(() => window.komlogWeb.range())).from;
  await a.keyboard.press('Shift+ArrowLeft');
  await a.waitForFunction((f) => window.komlogWeb.range().from < f, from0);
  check(!(await a.evaluate(() => window.komlogWeb.range().follow)), 'a moved range stops following');
  await a.keyboard.press('Escape');
  await cursorShows(/^$/);
  await a.click('[data-range="3600"]');
  await a.waitForFunction((n) => window.komlogWeb.range().follow && window.komlogWeb.points()['host.cpu'] === n, POINTS + 1);
  step('keyboard: values walked and read out, zoom, pan');

  // The tree's branches fold and open, by mouse and by keyboard.
  const hostBranch = a.locator('#tree button.toggle[data-branch="host"]');
  check((await hostBranch.getAttribute('aria-expanded')) === 'true', 'host is open');
  await hostBranch.click();
  await cpu.waitFor({ state: 'hidden' });
  check((await hostBranch.getAttribute('aria-expanded')) === 'false', 'host is folded');
  await shot(a, 'tree-folded');
  await a.keyboard.press('Enter'); // the toggle keeps the focus
  await cpu.waitFor({ state: 'visible' });
  check((await hostBranch.getAttribute('aria-expanded')) === 'true', 'host is open again');
  step('tree branches fold and open');

  // Two uris: one chart, then with Stack one chart each, their cursors in step.
  const mem = a.locator('#tree button.uri[data-uri="host.mem"]');
  await mem.click();
  await a.waitForFunction(() => window.komlogWeb.points()['host.mem'] === 2);
  check((await a.evaluate(() => window.komlogWeb.plots())) === 1, 'two uris on one chart');
  await a.check('#stack');
  await a.waitForFunction(() => window.komlogWeb.plots() === 2);
  check((await a.locator('#chart canvas').count()) === 2, 'a canvas per chart');
  check(a.url().includes('stack=1'), `the address says stacked: ${a.url()}`);
  await a.focus('#chart');
  await a.keyboard.press('End');
  await cursorShows(/host\.cpu 7\.5, host\.mem 4$/);
  await shot(a, 'stacked');
  await a.uncheck('#stack');
  await a.waitForFunction(() => window.komlogWeb.plots() === 1);
  await mem.click();
  await a.waitForFunction(() => !('host.mem' in window.komlogWeb.points()));
  step('two uris on one chart, and stacked with synced cursors');

  // The datasource's text, inserted as text, with its neighbours and supplies.
  const last = TEXTS[TEXTS.length - 1];
  await a.click('#tree button.uri[data-uri="host.log"]');
  await a.waitForFunction((t) => document.querySelector('#text-body').textContent === t, last);
  check(await a.evaluate(() => window.__xss === undefined), 'no script from the text ran');
  check(await a.evaluate(() => document.querySelector('#text-body').children.length === 0), 'the text made no elements');
  check(await a.isVisible('#text-body'), 'the text is visible');
  check((await a.textContent('#text-supplies')).includes('host.cpu'), 'supplies shown');
  check(await a.isDisabled('#text-next'), 'no next text');
  await a.waitForSelector('#timeline canvas');
  await a.click('#text-prev');
  await a.waitForFunction((t) => document.querySelector('#text-body').textContent === t, TEXTS[TEXTS.length - 2]);
  await a.click('#text-next');
  await a.waitForFunction((t) => document.querySelector('#text-body').textContent === t, last);
  check(await a.evaluate(() => window.__xss === undefined), 'no script from the text ran');
  await shot(a, 'datasource');
  step('datasource text shown literally, previous and next');

  // Export: the CSV and JSON downloads of host.cpu.
  for (const format of ['csv', 'json']) {
    const [download] = await Promise.all([
      a.waitForEvent('download'),
      a.click(`#exports a[data-uri="host.cpu"][data-export="${format}"]`),
    ]);
    const path = join(OUT, `host.cpu.${format}`);
    copyFileSync(await download.path(), path);
    await need(`check-export ${path}`);
  }
  step('exports match the store');

  // Time zone toggle.
  await a.check('#utc');
  check((await a.textContent('#range-text')).includes('UTC'), 'UTC times');
  await a.uncheck('#utc');

  // Phone width.
  await a.setViewportSize({ width: 390, height: 844 });
  await shot(a, 'phone');
  await a.setViewportSize({ width: 1200, height: 900 });

  // Agents: the running agent, connected; add a key, revoke it.
  await a.click('nav a[href="#agents"]');
  await a.waitForSelector('#agents-list tr');
  check((await a.locator('#agents-list tr').count()) === 1, 'one agent');
  check((await a.textContent('#agents-list tr td:nth-child(4)')) === 'yes', 'the agent is connected');
  await a.fill('#agent-key', env('KOMLOG_WEB_NEW_KEY'));
  await a.click('#agent-form button[type=submit]');
  await a.waitForFunction(() => document.querySelectorAll('#agents-list tr').length === 2);
  await shot(a, 'agents');
  await a.locator('#agents-list tr')
    .filter({ has: a.locator('td:nth-child(4)', { hasText: /^no$/ }) })
    .locator('button').click();
  await a.waitForFunction(() => document.querySelectorAll('#agents-list tr').length === 1);
  step('agents listed, added, revoked');

  // Share host with the second user, who sees it, then loses it.
  await a.click('nav a[href="#shares"]');
  await a.fill('#share-prefix', 'host.cpu');
  await a.fill('#share-with', env('KOMLOG_WEB_USER2'));
  await a.click('#share-form button[type=submit]');
  await a.waitForSelector('#shares-given tr');
  await shot(a, 'shares');
  const bob = await browser();
  const b = bob.page;
  await b.goto(URL_ + '/web/');
  await login(b, env('KOMLOG_WEB_USER2'), env('KOMLOG_WEB_PASSWORD2'));
  const shared = b.locator(`#tree button.uri[data-uri="${env('KOMLOG_WEB_USER')}:host.cpu"]`);
  await shared.waitFor();
  await b.click('[data-range="3600"]');
  await shared.click();
  await b.waitForFunction(
    ([u, n]) => window.komlogWeb.points()[u] === n,
    [`${env('KOMLOG_WEB_USER')}:host.cpu`, POINTS + 1],
    { timeout: 10000 },
  );
  // Zoom: a drag across the middle of the chart narrows the range to it.
  const before = await b.evaluate(() => window.komlogWeb.range());
  const box = await b.locator('#chart .u-over').boundingBox();
  await b.mouse.move(box.x + box.width * 0.25, box.y + box.height / 2);
  await b.mouse.down();
  await b.mouse.move(box.x + box.width * 0.75, box.y + box.height / 2, { steps: 5 });
  await b.mouse.up();
  await b.waitForFunction((span) => window.komlogWeb.range().span < span * 0.6, before.span);
  const zoomed = await b.evaluate(() => window.komlogWeb.range());
  check(!zoomed.follow && zoomed.from > before.from && zoomed.to < before.to, `zoomed in: ${JSON.stringify(zoomed)}`);
  await b.click('#pan-left');
  await b.waitForFunction((from) => window.komlogWeb.range().from < from, zoomed.from);
  // The wheel zooms around the pointer.
  const panned = await b.evaluate(() => window.komlogWeb.range());
  await b.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await b.mouse.wheel(0, -200);
  await b.waitForFunction((span) => window.komlogWeb.range().span < span * 0.9, panned.span);
  const wheeled = await b.evaluate(() => window.komlogWeb.range());
  check(wheeled.from > panned.from && wheeled.to < panned.to, `wheel zoomed in: ${JSON.stringify(wheeled)}`);
  // Around the pointer, in the middle of the shown range (even while the chart
  // may still draw the range before the pan).
  const middle = (r) => (r.from + r.to) / 2;
  check(Math.abs(middle(wheeled) - middle(panned)) < panned.span * 0.02,
    `wheel zoomed around the pointer: ${JSON.stringify({ panned, wheeled })}`);
  step('zoom by dragging and by the wheel, pan');

  // The address of the chart opens the same chart in another tab.
  await b.waitForFunction((f) => location.hash.includes(`from=${f}`), wheeled.from);
  const link = b.url();
  const tab = await bob.ctx.newPage();
  await tab.goto(link);
  await tab.waitForFunction(([u, f]) => window.komlogWeb.range().from === f && (window.komlogWeb.points()[u] ?? -1) >= 0,
    [`${env('KOMLOG_WEB_USER')}:host.cpu`, wheeled.from]);
  check(JSON.stringify(await tab.evaluate(() => window.komlogWeb.range())) === JSON.stringify(wheeled), 'the link gives the same range');
  await tab.close();
  step('a chart\'s address opens the same chart');
  await b.click('nav a[href="#shares"]');
  await b.waitForSelector('#shares-received tr');
  await b.click('nav a[href="#data"]');
  await shared.waitFor();
  await shot(b, 'shared-with-bob');
  step('the second user sees the share');
  await a.locator('#shares-given tr', { hasText: 'host.cpu' }).locator('button').click();
  await a.waitForFunction(() => document.querySelectorAll('#shares-given tr').length === 0);
  await b.reload();
  await b.waitForSelector('#nav', { state: 'visible' });
  await b.locator('#tree h3').first().waitFor();
  check((await shared.count()) === 0, 'the revoked share is gone from the tree');
  const status = await b.evaluate(
    (u) => fetch('/api/v1/series?uri=' + encodeURIComponent(u)).then((r) => r.status),
    `${env('KOMLOG_WEB_USER')}:host.cpu`,
  );
  check(status === 404, `the revoked uri answers 404, got ${status}`);
  await shot(b, 'share-revoked');
  step('the share is gone after revocation');

  // Log out.
  await a.click('#logout');
  await a.waitForSelector('#login-form', { state: 'visible' });
  step('logged out');
}

// Past three minutes something hangs: give up rather than wait forever.
setTimeout(() => {
  process.stderr.write('the flows took longer than 180 s\n');
  process.exit(1);
}, 180_000).unref();

try {
  await main();
  process.stdout.write('all flows passed\n');
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`);
  process.exitCode = 1;
} finally {
  for (const ctx of contexts) await ctx.close().catch(() => {});
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
  process.stdin.destroy();
}
