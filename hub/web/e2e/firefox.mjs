// The page's main flows in a real headless Firefox ESR, driven by
// puppeteer-core over WebDriver BiDi (playwright cannot drive a stock
// Firefox). Run by host/tests/suite/web.rs like flows.mjs, with the same
// conversation: the script writes `need <what>` on stdout and waits for one
// line back (`done <detail>`); it ends with `all flows passed`.
//
// Environment:
//   KOMLOG_WEB_URL        the hub, e.g. http://127.0.0.1:8123
//   KOMLOG_WEB_USER, KOMLOG_WEB_PASSWORD    the owner of the data (alice)
//   KOMLOG_WEB_POINTS     datapoints of host.cpu in the last hour at start
//   KOMLOG_WEB_TEXTS      the datasource host.log's texts, oldest first, JSON
//   KOMLOG_WEB_OUT        where screenshots (firefox-*.png) and downloads go
//   FIREFOX               the browser (default /usr/bin/firefox-esr)
// (KOMLOG_WEB_USER2, KOMLOG_WEB_PASSWORD2 and KOMLOG_WEB_NEW_KEY are set too:
// shares and agents are left to flows.mjs.)
import puppeteer from 'puppeteer-core';
import { mkdtempSync, rmSync, mkdirSync, copyFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env, need, step, check } from './conversation.mjs';

const URL_ = env('KOMLOG_WEB_URL').replace(/\/$/, '');
const OUT = env('KOMLOG_WEB_OUT');
const POINTS = Number(env('KOMLOG_WEB_POINTS'));
const TEXTS = JSON.parse(env('KOMLOG_WEB_TEXTS'));
mkdirSync(OUT, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const profile = mkdtempSync(join(tmpdir(), 'komlog-web-firefox-'));
const downloads = mkdtempSync(join(tmpdir(), 'komlog-web-firefox-downloads-'));
let browser;

const shot = (page, name) => page.screenshot({ path: join(OUT, `firefox-${name}.png`), fullPage: true });
const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
// Rendered: in the layout and not hidden by an ancestor.
const visible = (page, sel) => page.evaluate((s) => {
  const e = document.querySelector(s);
  return !!e && e.checkVisibility();
}, sel);

async function fill(page, sel, value) {
  await page.$eval(sel, (e) => { e.value = ''; });
  await page.type(sel, value);
}

async function login(page, user, password) {
  await fill(page, '#login-user', user);
  await fill(page, '#login-password', password);
  await page.click('#login-form button[type=submit]');
}

// The file a click saved into `downloads` (the page names it): a new one
// ending in `.ext`, complete (no .part file beside it) and the same size twice
// in a row.
async function downloaded(before, ext, timeout = 10000) {
  const end = Date.now() + timeout;
  let size = -1;
  while (Date.now() < end) {
    const files = readdirSync(downloads);
    const fresh = files.filter((f) => !before.includes(f) && f.endsWith(`.${ext}`));
    if (fresh.length === 1 && !files.some((f) => f.endsWith('.part'))) {
      const path = join(downloads, fresh[0]);
      const now = statSync(path).size;
      if (now > 0 && now === size) return path;
      size = now;
    }
    await sleep(100);
  }
  throw new Error(`no .${ext} download in ${downloads}: ${readdirSync(downloads)}`);
}

async function main() {
  browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: profile,
    defaultViewport: { width: 1200, height: 900 },
  });
  step(`launched ${await browser.version()}`);
  // Downloads go to a directory of this run, without asking.
  const ctx = await browser.createBrowserContext({
    downloadBehavior: { policy: 'allow', downloadPath: downloads },
  });
  const a = await ctx.newPage();
  a.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  a.on('dialog', (d) => d.accept());

  // Log in: a wrong password is refused with the API's message.
  await a.goto(URL_ + '/web');
  check(a.url() === URL_ + '/web/', `redirected to /web/, at ${a.url()}`);
  await a.waitForSelector('#login-form', { visible: true });
  await shot(a, 'login');
  await login(a, env('KOMLOG_WEB_USER'), 'not the password');
  await a.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  const refused = await text(a, '#login-error');
  check(/password|user|refused|wrong|invalid/i.test(refused), `a refusal message, got ${JSON.stringify(refused)}`);
  check(!(await visible(a, '#nav')), 'not logged in');
  await shot(a, 'login-refused');
  step(`wrong password refused: ${refused}`);
  await login(a, env('KOMLOG_WEB_USER'), env('KOMLOG_WEB_PASSWORD'));
  await a.waitForSelector('#nav', { visible: true });
  step('logged in');

  // The tree shows host.cpu with its count; Enter on it draws every point.
  const CPU = '#tree button.uri[data-uri="host.cpu"]';
  await a.waitForSelector(CPU);
  const info = await text(a, `${CPU} .info`);
  check(info.startsWith(`datapoint · ${POINTS} ·`), `tree info of host.cpu: ${info}`);
  step(`tree: ${info}`);
  await a.click('[data-range="3600"]');
  await a.focus(CPU); // keyboard: a uri is a button
  await a.keyboard.press('Enter');
  await a.waitForFunction((n) => window.komlogWeb.points()['host.cpu'] === n, { timeout: 10000 }, POINTS);
  check(await a.evaluate(() => performance.getEntriesByName('chart-drawn').length === 1), 'chart-drawn mark');
  await shot(a, 'chart');
  step(`chart draws ${POINTS} points`);

  // A new upload appears on the open chart within one second.
  await sleep(500); // the live stream is open once the chart is
  await need('upload host.cpu');
  const t0 = Date.now();
  await a.waitForFunction(
    (n) => window.komlogWeb.points()['host.cpu'] === n,
    { timeout: 1000, polling: 20 },
    POINTS + 1,
  );
  step(`live sample on the chart after ${Date.now() - t0} ms`);

  // The datasource's text, inserted as text, with its neighbours and supplies.
  const last = TEXTS[TEXTS.length - 1];
  const showing = (t) => a.waitForFunction((t) => document.querySelector('#text-body').textContent === t, {}, t);
  await a.click('#tree button.uri[data-uri="host.log"]');
  await showing(last);
  check(await a.evaluate(() => window.__xss === undefined), 'no script from the text ran');
  check(await a.evaluate(() => document.querySelector('#text-body').children.length === 0), 'the text made no elements');
  check(await visible(a, '#text-body'), 'the text is visible');
  check((await text(a, '#text-supplies')).includes('host.cpu'), 'supplies shown');
  check(await a.$eval('#text-next', (e) => e.disabled), 'no next text');
  await a.click('#text-prev');
  await showing(TEXTS[TEXTS.length - 2]);
  await a.click('#text-next');
  await showing(last);
  check(await a.evaluate(() => window.__xss === undefined), 'no script from the text ran');
  await shot(a, 'datasource');
  step('datasource text shown literally, previous and next');

  // Export: a click on each link downloads the file, which the test compares
  // with what was uploaded and what the store holds.
  for (const format of ['csv', 'json']) {
    const before = readdirSync(downloads);
    await a.click(`#exports a[data-uri="host.cpu"][data-export="${format}"]`);
    const path = join(OUT, `firefox-host.cpu.${format}`);
    copyFileSync(await downloaded(before, format), path);
    await need(`check-export ${path}`);
  }
  step('exports downloaded and match the store');

  // Time zone toggle.
  await a.click('#utc');
  check(await a.$eval('#utc', (e) => e.checked), 'UTC checked');
  check((await text(a, '#range-text')).includes('UTC'), 'UTC times');
  await shot(a, 'utc');
  await a.click('#utc');
  check(!(await text(a, '#range-text')).includes('UTC'), 'local times again');
  step('UTC toggle');

  // Phone width.
  await a.setViewport({ width: 390, height: 844 });
  await shot(a, 'phone');
  await a.setViewport({ width: 1200, height: 900 });
  step('phone width');

  // Log out.
  await a.click('#logout');
  await a.waitForSelector('#login-form', { visible: true });
  check(!(await visible(a, '#nav')), 'logged out');
  await shot(a, 'logged-out');
  step('logged out');
}

// Past three minutes something hangs: give up rather than wait forever.
setTimeout(() => {
  process.stderr.write('the flows took longer than 180 s\n');
  browser?.process()?.kill('SIGKILL');
  process.exit(1);
}, 180_000).unref();

try {
  await main();
  process.stdout.write('all flows passed\n');
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`);
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => browser.process()?.kill('SIGKILL'));
  for (const d of [profile, downloads]) rmSync(d, { recursive: true, force: true });
  process.stdin.destroy();
}
