// The komlog-hub page: log in, browse the uris, plot datapoints, read
// datasource texts, export, manage shares and agent keys. Vanilla JS over the
// JSON API at /api/v1/ (hub/web/openapi.json). Texts from the store are only
// ever inserted with textContent.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './app.css';

const API = '/api/v1';
const $ = (id) => document.getElementById(id);

// A set of strings kept in localStorage (empty when absent or unreadable).
function storedSet(key) {
  try {
    const v = JSON.parse(localStorage.getItem(key) || '[]');
    return new Set(Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);
  } catch (e) {
    return new Set();
  }
}

const state = {
  me: null, // {user, csrf}
  utc: localStorage.getItem('komlog-utc') === '1',
  selected: [], // datapoint uris on the chart, as the API writes them
  series: new Map(), // uri -> {t: [µs], v: [number|null]}
  range: { from: 0, to: 0, span: 3600e6, follow: true },
  stack: localStorage.getItem('komlog-stack') === '1', // one chart per uri
  plots: [], // the uPlot charts drawn, one or one per uri
  plotKey: '',
  cursor: -1, // the data index the keyboard cursor is on
  collapsed: storedSet('komlog-collapsed'), // folded branches of the tree
  drawn: false,
  liveDrawn: [], // [{t, at}]: when each live sample was first drawn (ms since the epoch)
  pendingLive: [],
  live: null,
  text: null, // the datasource shown: {uri, t}
  timeline: null,
};

// ---- the API ----

async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.me) headers['X-CSRF-Token'] = state.me.csrf;
  const r = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(data.error || `${r.status} ${r.statusText}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

const qs = (params) => new URLSearchParams(params).toString();

function say(text) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
}

function failed(e) {
  if (e.status === 401) return showLogin();
  say(e.message);
}

// ---- times ----

const pad = (n, w = 2) => String(n).padStart(w, '0');

function fmtTime(us) {
  if (us === null || us === undefined) return '—';
  const d = new Date(us / 1000);
  const u = state.utc;
  const s = `${d[u ? 'getUTCFullYear' : 'getFullYear']()}-${pad(d[u ? 'getUTCMonth' : 'getMonth']() + 1)}-${pad(d[u ? 'getUTCDate' : 'getDate']())} ` +
    `${pad(d[u ? 'getUTCHours' : 'getHours']())}:${pad(d[u ? 'getUTCMinutes' : 'getMinutes']())}:${pad(d[u ? 'getUTCSeconds' : 'getSeconds']())}`;
  return u ? s + ' UTC' : s;
}

// A datetime-local input's value, in the shown zone, to µs, and back.
function inputToUs(value) {
  if (!value) return null;
  const ms = state.utc ? Date.parse(value + 'Z') : new Date(value).getTime();
  return Number.isNaN(ms) ? null : ms * 1000;
}

function usToInput(us) {
  return fmtTime(us).replace(' UTC', '').replace(' ', 'T');
}

const nowUs = () => Date.now() * 1000;

// ---- pages ----

const PAGES = ['login', 'data', 'shares', 'agents'];

function showPage(name) {
  for (const p of PAGES) $(p).hidden = p !== name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === '#' + name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (name === 'data') loadTree();
  if (name === 'shares') loadShares();
  if (name === 'agents') loadAgents();
}

// `#data?uri=a.b&uri=c.d&from=µs&to=µs` (or `&span=µs` to follow the present;
// `&stack=1`) opens those uris over that range: the address of a chart can
// be bookmarked and shared.
function route() {
  if (!state.me) return showLogin();
  const [name, query] = location.hash.slice(1).split('?');
  if (name === 'data' && query) applyLink(new URLSearchParams(query));
  showPage(PAGES.includes(name) && name !== 'login' ? name : 'data');
  if (name === 'data' && query) refresh();
}

function applyLink(p) {
  const uris = p.getAll('uri').filter((u) => u);
  if (uris.length) state.selected = [...new Set(uris)];
  const from = Number(p.get('from'));
  const to = Number(p.get('to'));
  const span = Number(p.get('span'));
  if (p.has('from') && p.has('to') && Number.isFinite(from) && Number.isFinite(to) && from < to) {
    state.range = { from, to, span: to - from, follow: false };
  } else if (Number.isFinite(span) && span > 0) {
    state.range = { from: 0, to: 0, span, follow: true };
  }
  if (p.has('stack')) setStack(p.get('stack') === '1');
}

// The chart's address, kept current without adding history entries.
function linkOf() {
  const p = new URLSearchParams();
  for (const u of state.selected) p.append('uri', u);
  if (state.range.follow) p.set('span', String(state.range.span));
  else {
    p.set('from', String(state.range.from));
    p.set('to', String(state.range.to));
  }
  if (state.stack) p.set('stack', '1');
  return '#data?' + p.toString();
}

function showLogin() {
  state.me = null;
  stopLive();
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  for (const p of PAGES) $(p).hidden = p !== 'login';
  $('login-user').focus();
}

function loggedIn(me) {
  state.me = me;
  $('who').textContent = me.user;
  $('nav').hidden = false;
  $('logout').hidden = false;
  say('');
  route();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  try {
    const me = await api('/login', {
      method: 'POST',
      body: { user: $('login-user').value, password: $('login-password').value },
    });
    $('login-password').value = '';
    loggedIn(me);
  } catch (e) {
    $('login-error').textContent = e.message;
  }
});

$('logout').addEventListener('click', async () => {
  try {
    await api('/logout', { method: 'POST' });
  } catch (e) {
    /* the session may be gone already */
  }
  state.selected = [];
  state.series.clear();
  showLogin();
});

$('utc').checked = state.utc;
$('utc').addEventListener('change', () => {
  state.utc = $('utc').checked;
  localStorage.setItem('komlog-utc', state.utc ? '1' : '0');
  destroyPlots();
  if (state.timeline) { state.timeline.destroy(); state.timeline = null; }
  route();
  if (state.me) refresh();
  if (state.text) showText(state.text.uri, state.text.t, 'at');
});

window.addEventListener('hashchange', route);

// ---- the uri tree ----

let treeData = null;

async function loadTree() {
  try {
    treeData = await api('/uris?' + qs({ filter: $('filter').value.trim() }));
  } catch (e) {
    return failed(e);
  }
  renderTree();
}

let filterTimer = 0;
$('filter').addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(loadTree, 200);
});

function renderTree() {
  const root = $('tree');
  root.replaceChildren();
  if (!treeData) return;
  root.append(group('Own', '', treeData.own));
  for (const s of treeData.shared) root.append(group(`Shared by ${s.owner}`, s.owner + ':', s.uris));
}

// The uris as a tree of their dot-separated levels: a node may be a uri, a
// branch, or both (`host` and `host.cpu`).
function levels(uris) {
  const root = { children: new Map() };
  for (const m of uris) {
    let node = root;
    const parts = m.uri.split('.');
    parts.forEach((part, i) => {
      if (!node.children.has(part)) {
        node.children.set(part, { name: part, path: parts.slice(0, i + 1).join('.'), children: new Map(), meta: null });
      }
      node = node.children.get(part);
    });
    node.meta = m;
  }
  return root;
}

function group(title, prefix, uris) {
  const box = document.createElement('div');
  box.className = 'group';
  const h = document.createElement('h3');
  h.textContent = title;
  box.append(h);
  if (!uris.length) {
    const p = document.createElement('p');
    p.className = 'none';
    p.textContent = 'none';
    box.append(p);
    return box;
  }
  box.append(branch(levels(uris), prefix, 0));
  return box;
}

function saveCollapsed() {
  localStorage.setItem('komlog-collapsed', JSON.stringify([...state.collapsed]));
}

// While a filter is typed every match is shown, whatever was collapsed.
const filtering = () => $('filter').value.trim() !== '';

function branch(node, prefix, depth) {
  const ul = document.createElement('ul');
  if (depth === 0) ul.setAttribute('role', 'list');
  for (const child of [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const key = prefix + child.path;
    const li = document.createElement('li');
    const row = document.createElement('div');
    row.className = 'row';
    const hasChildren = child.children.size > 0;
    const collapsed = hasChildren && !filtering() && state.collapsed.has(key);
    if (hasChildren) {
      const t = document.createElement('button');
      t.type = 'button';
      t.className = 'toggle';
      t.dataset.branch = key;
      t.setAttribute('aria-expanded', String(!collapsed));
      t.setAttribute('aria-label', `${collapsed ? 'Expand' : 'Collapse'} ${key}`);
      t.textContent = collapsed ? '▸' : '▾';
      t.addEventListener('click', () => {
        if (state.collapsed.has(key)) state.collapsed.delete(key);
        else state.collapsed.add(key);
        saveCollapsed();
        const open = !state.collapsed.has(key);
        t.setAttribute('aria-expanded', String(open));
        t.setAttribute('aria-label', `${open ? 'Collapse' : 'Expand'} ${key}`);
        t.textContent = open ? '▾' : '▸';
        li.querySelector(':scope > ul').hidden = !open;
      });
      row.append(t);
    } else {
      const spacer = document.createElement('span');
      spacer.className = 'toggle';
      row.append(spacer);
    }
    if (child.meta) row.append(uriButton(prefix, child.meta, child.name));
    else {
      const name = document.createElement('span');
      name.className = 'branch name';
      name.textContent = child.name;
      row.append(name);
    }
    li.append(row);
    if (hasChildren) {
      const sub = branch(child, prefix, depth + 1);
      sub.hidden = collapsed;
      li.append(sub);
    }
    ul.append(li);
  }
  return ul;
}

function uriButton(prefix, m, label) {
  const uri = prefix + m.uri;
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'uri';
  b.dataset.uri = uri;
  b.dataset.kind = m.kind;
  b.title = uri;
  b.setAttribute('aria-label', `${uri}, ${m.kind}, ${m.count} samples`);
  b.setAttribute('aria-pressed', String(state.selected.includes(uri) || state.text?.uri === uri));
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = label;
  const info = document.createElement('span');
  info.className = 'info';
  info.textContent = `${m.kind} · ${m.count} · ${fmtTime(m.first)} → ${fmtTime(m.last)}`;
  b.append(name, info);
  b.addEventListener('click', () => (m.kind === 'datasource' ? openText(uri) : toggleUri(uri)));
  return b;
}

function markTree() {
  for (const b of document.querySelectorAll('#tree button.uri')) {
    const u = b.dataset.uri;
    b.setAttribute('aria-pressed', String(state.selected.includes(u) || state.text?.uri === u));
  }
}

// ---- the chart ----

function toggleUri(uri) {
  const i = state.selected.indexOf(uri);
  if (i >= 0) state.selected.splice(i, 1);
  else state.selected.push(uri);
  markTree();
  refresh();
}

function setRange(from, to, follow) {
  from = Math.round(from);
  to = Math.round(to);
  state.range = { from, to, span: to - from, follow };
  refresh();
}

for (const b of document.querySelectorAll('[data-range]')) {
  b.addEventListener('click', () => {
    const span = Number(b.dataset.range) * 1e6;
    const now = nowUs();
    setRange(now - span, now, true);
  });
}

function pan(fraction) {
  const { from, to } = state.range;
  const d = (to - from) * fraction;
  setRange(from + d, to + d, false);
}
$('pan-left').addEventListener('click', () => pan(-0.5));
$('pan-right').addEventListener('click', () => pan(0.5));

$('custom-range').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const from = inputToUs($('from').value);
  const to = inputToUs($('to').value);
  if (from === null || to === null || from >= to) return say('Give a start before the end.');
  setRange(from, to, false);
});

function chartWidth() {
  return Math.max(200, Math.floor($('chart').clientWidth || 600));
}

// Read every selected uri over the range, then draw.
async function refresh() {
  if (state.range.follow) {
    const now = nowUs();
    state.range.from = now - state.range.span;
    state.range.to = now;
  }
  const { from, to } = state.range;
  $('from').value = usToInput(from);
  $('to').value = usToInput(to);
  $('range-text').textContent = `${fmtTime(from)} → ${fmtTime(to)}`;
  const uris = [...state.selected];
  try {
    const answers = await Promise.all(
      uris.map((uri) => api('/series?' + qs({ uri, from, to, columns: chartWidth() }))),
    );
    state.series.clear();
    answers.forEach((a, i) => state.series.set(uris[i], { t: a.points.t, v: a.points.v }));
  } catch (e) {
    return failed(e);
  }
  drawChart();
  renderExports();
  startLive();
  if (state.text) drawTimeline();
  if (!$('data').hidden) history.replaceState(null, '', linkOf());
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];

function tzDate(ts) {
  return state.utc ? uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC') : new Date(ts * 1e3);
}

// The table of one chart: seconds, then one column of values per uri.
function tableOf(uris) {
  const tables = uris.map((u) => {
    const s = state.series.get(u);
    return [s.t.map((t) => t / 1e6), s.v];
  });
  if (!tables.length) return [[]];
  return tables.length === 1 ? tables[0] : uPlot.join(tables);
}

// One chart for every uri, or with "Stack" one chart per uri, the cursors synced.
function chartGroups() {
  const uris = state.selected.filter((u) => state.series.has(u));
  return state.stack && uris.length > 1 ? uris.map((u) => [u]) : uris.length ? [uris] : [];
}

// Dots on the values when they are few for the chart's width (uPlot's own
// rule looks at the span the data covers, and hides lone values between gaps).
function showPoints(u, si) {
  let n = 0;
  for (const v of u.data[si]) if (v !== null && v !== undefined) n++;
  return n * 8 * uPlot.pxRatio <= u.bbox.width;
}

function destroyPlots() {
  for (const p of state.plots) p.destroy();
  state.plots = [];
  state.plotKey = '';
  state.cursor = -1;
}

function drawChart() {
  const groups = chartGroups();
  const box = $('chart');
  const key = groups.map((g) => g.join('\n')).join('|') + (state.utc ? 'Z' : '');
  if (state.plotKey !== key) destroyPlots();
  if (!groups.length) {
    box.replaceChildren();
    $('cursor-value').textContent = '';
    return;
  }
  if (state.plots.length) {
    groups.forEach((g, i) => {
      state.plots[i].setData(tableOf(g), false);
      state.plots[i].setScale('x', { min: state.range.from / 1e6, max: state.range.to / 1e6 });
    });
    return;
  }
  box.replaceChildren();
  const all = groups.flat();
  const height = groups.length > 1 ? Math.max(140, Math.floor(420 / groups.length)) : 320;
  state.plots = groups.map((g) => makePlot(g, all, height, box));
  state.plotKey = key;
}

function makePlot(uris, all, height, box) {
  const scaleX = { time: true, auto: false, range: () => [state.range.from / 1e6, state.range.to / 1e6] };
  const opts = {
    width: chartWidth(),
    height,
    tzDate,
    scales: { x: scaleX },
    series: [
      { label: 'time', value: (u, v) => (v == null ? '' : fmtTime(v * 1e6)) },
      ...uris.map((u) => ({
        label: u,
        stroke: COLORS[all.indexOf(u) % COLORS.length],
        width: 1.5,
        spanGaps: false,
        points: { size: 5, show: showPoints },
      })),
    ],
    cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: 'komlog' } },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 3) return;
        const a = timeAt(u, u.select.left);
        const b = timeAt(u, u.select.left + u.select.width);
        u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
        setRange(a, b, false);
      }],
      draw: [() => {
        if (!state.drawn) {
          state.drawn = true;
          performance.mark('chart-drawn');
        }
        if (state.pendingLive.length) {
          const at = performance.timeOrigin + performance.now();
          for (const t of state.pendingLive) state.liveDrawn.push({ t, at });
          state.pendingLive = [];
        }
      }],
      ready: [(u) => enableMouse(u)],
    },
  };
  const holder = document.createElement('div');
  box.append(holder);
  return new uPlot(opts, tableOf(uris), holder);
}

// The shown range, zoomed by `factor` (< 1 in, > 1 out) around `at` (µs).
function zoom(factor, at) {
  const { from, to } = state.range;
  const center = at ?? (from + to) / 2;
  let a = center - (center - from) * factor;
  let b = center + (to - center) * factor;
  if (b - a < 1000) return; // a millisecond is as close as it gets
  applyRangeNow(a, b);
}

// Moves the charts at once, and reads the new range when the wheel or the
// keys have been still for a moment.
let rangeTimer = 0;
function applyRangeNow(from, to) {
  from = Math.round(from);
  to = Math.round(to);
  state.range = { from, to, span: to - from, follow: false };
  for (const p of state.plots) p.setScale('x', { min: from / 1e6, max: to / 1e6 });
  $('range-text').textContent = `${fmtTime(state.range.from)} → ${fmtTime(state.range.to)}`;
  clearTimeout(rangeTimer);
  rangeTimer = setTimeout(refresh, 150);
}

// The mouse: drag zooms to the dragged span (uPlot's select), shift-drag
// pans, the wheel zooms around the pointer.
function enableMouse(u) {
  u.over.addEventListener('mousedown', (ev) => {
    if (!ev.shiftKey) return;
    ev.preventDefault();
    ev.stopPropagation();
    const x0 = ev.clientX;
    const up = (e) => {
      window.removeEventListener('mouseup', up, true);
      const dx = e.clientX - x0;
      const { from, to } = state.range;
      const d = -(dx / u.over.clientWidth) * (to - from);
      if (dx) setRange(from + d, to + d, false);
    };
    window.addEventListener('mouseup', up, true);
  }, true);
  u.over.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    zoom(ev.deltaY < 0 ? 0.8 : 1.25, timeAt(u, overX(u, ev)));
  }, { passive: false });
}

// The time (µs) at `x` CSS pixels into a chart's plotting area, read from the
// shown range rather than from the chart's scale: a pan or a zoom sets the
// range at once, and the chart may draw the previous one until its data comes.
function timeAt(u, x) {
  const { from, to } = state.range;
  return from + (x / u.over.clientWidth) * (to - from);
}

// The pointer's x in the chart's plotting area, in CSS pixels (an event's
// offsetX is relative to its target, which may be the cursor's dot over it).
function overX(u, ev) {
  return ev.clientX - u.over.getBoundingClientRect().left;
}

// The keyboard, on the focused chart: ← → walk the cursor from value to value
// (Home, End: the first and last), Shift+← → pan, + − zoom, Esc hides the
// cursor. The values under the cursor are read out in #cursor-value.
$('chart').addEventListener('keydown', (ev) => {
  const u = state.plots[0];
  if (!u) return;
  const xs = u.data[0];
  const has = (i) => u.data.slice(1).some((col) => col[i] !== null && col[i] !== undefined);
  const walk = (from, step) => {
    for (let i = from; i >= 0 && i < xs.length; i += step) if (has(i)) return i;
    return -1;
  };
  let idx = -2;
  switch (ev.key) {
    case 'ArrowLeft':
    case 'ArrowRight': {
      const step = ev.key === 'ArrowLeft' ? -1 : 1;
      if (ev.shiftKey) {
        const d = (state.range.to - state.range.from) * 0.1 * step;
        applyRangeNow(state.range.from + d, state.range.to + d);
        break;
      }
      const start = state.cursor < 0 ? (step > 0 ? 0 : xs.length - 1) : state.cursor + step;
      idx = walk(start, step);
      if (idx < 0) idx = state.cursor;
      break;
    }
    case 'Home': idx = walk(0, 1); break;
    case 'End': idx = walk(xs.length - 1, -1); break;
    case '+':
    case '=': zoom(0.5, state.cursor >= 0 ? xs[state.cursor] * 1e6 : undefined); break;
    case '-':
    case '_': zoom(2, state.cursor >= 0 ? xs[state.cursor] * 1e6 : undefined); break;
    case 'Escape': idx = -1; break;
    default: return;
  }
  ev.preventDefault();
  if (idx !== -2) moveCursor(idx);
});

// Puts the cursor of every chart on the first chart's value `idx` (-1: none).
function moveCursor(idx) {
  state.cursor = idx;
  const out = $('cursor-value');
  if (idx < 0) {
    for (const p of state.plots) p.setCursor({ left: -10, top: -10 });
    out.textContent = '';
    return;
  }
  const x = state.plots[0].data[0][idx];
  const parts = [];
  for (const p of state.plots) {
    p.setCursor({ left: p.valToPos(x, 'x'), top: p.bbox.height / uPlot.pxRatio / 2 });
    const i = p === state.plots[0] ? idx : p.cursor.idx;
    p.series.slice(1).forEach((s, k) => {
      const v = i === null || i === undefined ? null : p.data[k + 1][i];
      parts.push(`${s.label} ${v === null || v === undefined ? '—' : v}`);
    });
  }
  out.textContent = `${fmtTime(x * 1e6)}: ${parts.join(', ')}`;
}

$('stack').checked = state.stack;
$('stack').addEventListener('change', () => {
  setStack($('stack').checked);
  drawChart();
  history.replaceState(null, '', linkOf());
});

function setStack(on) {
  state.stack = on;
  $('stack').checked = on;
  localStorage.setItem('komlog-stack', on ? '1' : '0');
}

let resizeTimer = 0;
window.addEventListener('resize', () => {
  for (const p of state.plots) p.setSize({ width: chartWidth(), height: p.height });
  if (state.timeline) state.timeline.setSize({ width: chartWidth(), height: 120 });
  // Read again with as many columns as the chart now has pixels.
  clearTimeout(resizeTimer);
  if (state.plots.length) resizeTimer = setTimeout(refresh, 300);
});

// ---- live samples ----

function stopLive() {
  if (state.live) state.live.close();
  state.live = null;
}

function startLive() {
  const uris = [...state.selected];
  if (state.text) uris.push(state.text.uri);
  const key = uris.join('\n');
  if (state.live && state.live.komlogKey === key) return;
  stopLive();
  if (!uris.length) return;
  const es = new EventSource(API + '/live?' + uris.map((u) => 'uri=' + encodeURIComponent(u)).join('&'));
  es.komlogKey = key;
  es.addEventListener('sample', (ev) => onSample(JSON.parse(ev.data)));
  es.addEventListener('lagged', () => refresh());
  es.addEventListener('revoked', () => {
    stopLive();
    say('A share was withdrawn: some uris may no longer be read.');
    state.selected = [];
    state.text = null;
    $('text-panel').hidden = true;
    loadTree();
    refresh();
  });
  state.live = es;
}

function onSample(s) {
  const uri = s.owner === state.me?.user ? s.uri : `${s.owner}:${s.uri}`;
  const series = state.series.get(uri);
  if (series && typeof s.value === 'number') {
    if (state.range.follow && s.t > state.range.to) {
      state.range.to = s.t;
      state.range.from = s.t - state.range.span;
    }
    if (s.t >= state.range.from && s.t <= state.range.to) {
      let i = series.t.length;
      while (i > 0 && series.t[i - 1] > s.t) i--;
      series.t.splice(i, 0, s.t);
      series.v.splice(i, 0, s.value);
      state.pendingLive.push(s.t);
      drawChart();
    }
  }
  if (state.text && state.text.uri === uri) {
    $('text-next').disabled = false;
    drawTimeline();
  }
}

// ---- datasource texts ----

async function openText(uri) {
  state.text = { uri, t: null };
  markTree();
  await showText(uri, nowUs(), 'at');
}

async function showText(uri, at, dir) {
  let a;
  try {
    a = await api('/text?' + qs({ uri, at, dir }));
  } catch (e) {
    if (e.status === 404) return say(`${uri}: no text ${dir} ${fmtTime(at)}`);
    return failed(e);
  }
  say('');
  state.text = { uri, t: a.t, prev: a.prev, next: a.next };
  $('text-panel').hidden = false;
  $('text-uri').textContent = uri;
  $('text-time').textContent = fmtTime(a.t);
  $('text-body').textContent = a.text;
  $('text-prev').disabled = a.prev === null;
  $('text-next').disabled = a.next === null;
  const owner = uri.includes(':') ? uri.slice(0, uri.indexOf(':') + 1) : '';
  const supplies = (a.supplies || []).map((s) => owner + s);
  $('text-supplies').textContent = supplies.length ? 'Supplies: ' + supplies.join(', ') : '';
  // The datapoints it supplies, plotted beside it.
  const before = state.selected.join('\n');
  for (const s of supplies) if (!state.selected.includes(s)) state.selected.push(s);
  markTree();
  if (state.selected.join('\n') !== before) await refresh();
  else {
    startLive();
    renderExports();
  }
  drawTimeline();
}

$('text-prev').addEventListener('click', () => state.text && showText(state.text.uri, state.text.t, 'before'));
$('text-next').addEventListener('click', () => state.text && showText(state.text.uri, state.text.t, 'after'));

// How many texts each column of the range holds; a click shows the text there.
async function drawTimeline() {
  if (!state.text) return;
  const { from, to } = state.range.follow ? { from: nowUs() - state.range.span, to: nowUs() } : state.range;
  const width = chartWidth();
  let a;
  try {
    a = await api('/series?' + qs({ uri: state.text.uri, from, to, columns: Math.min(200, width) }));
  } catch (e) {
    return failed(e);
  }
  const xs = a.counts.i.map((i) => (from + (i + 0.5) * a.column_us) / 1e6);
  const data = [xs, a.counts.n];
  if (state.timeline) state.timeline.destroy();
  $('timeline').replaceChildren();
  state.timeline = new uPlot({
    width,
    height: 120,
    tzDate,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true, auto: false, range: () => [from / 1e6, to / 1e6] },
      y: { range: (u, min, max) => [0, Math.max(1, max)] },
    },
    axes: [{}, { size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 1000, 10000] }],
    series: [{}, { label: 'texts', stroke: '#555', fill: 'rgba(80,80,80,0.3)', paths: uPlot.paths.bars({ size: [0.9, 12] }) }],
    hooks: {
      ready: [(u) => u.over.addEventListener('click', (ev) => {
        const x = u.posToVal(overX(u, ev), 'x');
        showText(state.text.uri, Math.round(x * 1e6), 'at');
      })],
    },
  }, data, $('timeline'));
}

// ---- export ----

function exportUrl(uri, format) {
  const to = state.range.follow ? Math.max(state.range.to, nowUs()) : state.range.to;
  return API + '/samples?' + qs({ uri, from: state.range.from, to, limit: 100000, format });
}

function renderExports() {
  const box = $('exports');
  box.replaceChildren();
  const uris = [...state.selected];
  if (state.text && !uris.includes(state.text.uri)) uris.push(state.text.uri);
  for (const uri of uris) {
    const row = document.createElement('div');
    const label = document.createElement('span');
    label.textContent = `Export ${uri}: `;
    row.append(label);
    for (const format of ['csv', 'json']) {
      const a = document.createElement('a');
      a.href = exportUrl(uri, format);
      // The range as it is when clicked (live samples move a following range).
      a.addEventListener('click', () => { a.href = exportUrl(uri, format); });
      a.download = `${uri.replace(':', '_')}.${format}`;
      a.className = 'button';
      a.dataset.export = format;
      a.dataset.uri = uri;
      a.textContent = format.toUpperCase();
      row.append(a, ' ');
    }
    box.append(row);
  }
}

// ---- shares ----

function cell(tr, text) {
  const td = document.createElement('td');
  td.textContent = text;
  tr.append(td);
  return td;
}

function button(text, onclick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.addEventListener('click', onclick);
  return b;
}

async function loadShares() {
  let s;
  try {
    s = await api('/shares');
  } catch (e) {
    return failed(e);
  }
  const given = $('shares-given');
  given.replaceChildren();
  for (const g of s.given) {
    const tr = document.createElement('tr');
    cell(tr, g.prefix);
    cell(tr, g.with);
    cell(tr, '').append(button('Revoke', async () => {
      try {
        await api('/shares?' + qs({ prefix: g.prefix, with: g.with }), { method: 'DELETE' });
      } catch (e) {
        return failed(e);
      }
      loadShares();
    }));
    given.append(tr);
  }
  const received = $('shares-received');
  received.replaceChildren();
  for (const r of s.received) {
    const tr = document.createElement('tr');
    cell(tr, r.owner);
    cell(tr, r.prefix);
    received.append(tr);
  }
}

$('share-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await api('/shares', { method: 'POST', body: { prefix: $('share-prefix').value.trim(), with: $('share-with').value.trim() } });
  } catch (e) {
    return failed(e);
  }
  say('');
  $('share-prefix').value = '';
  $('share-with').value = '';
  loadShares();
});

// ---- agents ----

async function loadAgents() {
  let a;
  try {
    a = await api('/agents');
  } catch (e) {
    return failed(e);
  }
  const list = $('agents-list');
  list.replaceChildren();
  for (const g of a.agents) {
    const tr = document.createElement('tr');
    cell(tr, g.id);
    cell(tr, g.fingerprint).className = 'mono';
    cell(tr, g.last_login === null || g.last_login === undefined ? 'never' : fmtTime(g.last_login));
    cell(tr, g.connected ? 'yes' : 'no');
    cell(tr, '').append(button('Revoke', async () => {
      if (!confirm(`Revoke agent ${g.id}? Its sessions are closed.`)) return;
      try {
        await api('/agents/' + encodeURIComponent(g.id), { method: 'DELETE' });
      } catch (e) {
        return failed(e);
      }
      loadAgents();
    }));
    list.append(tr);
  }
}

$('agent-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await api('/agents', { method: 'POST', body: { public_key: $('agent-key').value } });
  } catch (e) {
    return failed(e);
  }
  say('');
  $('agent-key').value = '';
  loadAgents();
});

// ---- for tests and benchmarks ----

window.komlogWeb = {
  // Values drawn for each uri on the chart (nulls, the gaps, not counted).
  points: () => Object.fromEntries(
    state.selected.filter((u) => state.series.has(u)).map((u) => [u, state.series.get(u).v.filter((v) => v !== null).length]),
  ),
  plots: () => state.plots.length,
  range: () => ({ ...state.range }),
  // When each live sample (by its time, µs) was first drawn (ms since the epoch).
  liveDrawn: () => state.liveDrawn.slice(),
};

// ---- start ----

api('/me').then(loggedIn, showLogin);
