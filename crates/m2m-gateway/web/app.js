// The m2m dashboard: one ES module, no build step, no framework.
//
// - The access token is kept in memory only (`session`); the refresh token
//   is an HttpOnly cookie that only `/app/session/refresh` sees. A reload,
//   or a 401, refreshes through the cookie once.
// - Pages are chosen by the hash: `#/` (the therapist's patients, or the
//   patient's own progress), `#/patients/<id>`, `#/patients/<id>/games/<id>`
//   and, for a patient, `#/games/<id>`.
// - Live updates come from `/v1/events`, read with fetch() (EventSource
//   cannot send a bearer token) and parsed here; a change reloads the data
//   the page shows.
// - Nothing sets an inline style: looks are classes of app.css (the
//   Content-Security-Policy forbids inline styles; uPlot's own CSSOM
//   assignments are allowed by it).
// - Every chart's container carries `data-points`, the number of points
//   plotted per series.

const HEADLINE = [
  ['rom_deg.mean', 'Range of motion'],
  ['peak_force_n.mean', 'Peak force'],
  ['repetitions', 'Repetitions'],
  ['smoothness.sparc', 'Smoothness (SPARC)'],
  ['tremor.index', 'Tremor index'],
  ['score', 'Score'],
];
const UNITS = { deg: '°', N: 'N', count: '', dimensionless: '', ratio: '', points: 'pts' };
const COLORS = ['#1b6ac9', '#d1495b', '#2e933c', '#edae49', '#7b2cbf', '#00798c', '#8d6346', '#e36397'];
const CHANGE_EVENTS = new Set([
  'game.processed', 'game.failed', 'patient.game.processed', 'patient.game.failed',
]);
const GAMES_PAGE = 10;
const WEEKS = 12;

const main = document.getElementById('main');
const who = document.getElementById('who');
const liveBadge = document.getElementById('live');
const logoutButton = document.getElementById('logout');

// ---------------------------------------------------------------- DOM

/** An element with attributes (`class`, `text`, `data-*`, `aria-*`, …) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function fmtNumber(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  const text = v.toLocaleString(undefined, { maximumFractionDigits: digits });
  // A small negative value rounds to "-0": say 0.
  return /^-0([.,]0*)?$/.test(text) ? '0' : text;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

function fmtDateTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : '–';
}

/** "3 h ago", "2 d ago": how long ago `iso` was. */
function fmtAgo(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return 'just now';
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function fmtMinutes(seconds) {
  return `${Math.round((seconds || 0) / 60)} min`;
}

/** The local calendar date of `d` as YYYY-MM-DD. */
function isoDate(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// ------------------------------------------------------------ session

/** The access token and role, in memory only. */
const session = { token: null, role: null, timer: null };
let refreshing = null;

function setSession(tokens) {
  clearTimeout(session.timer);
  session.token = tokens ? tokens.access_token : null;
  session.role = tokens ? tokens.role : null;
  if (tokens) {
    // Refreshed a minute before it expires, so that requests rarely meet a 401.
    const ms = Math.max(30, tokens.expires_in - 60) * 1000;
    session.timer = setTimeout(() => refreshSession(), ms);
  }
}

/** Exchanges the refresh cookie for a new access token; true when it worked. One at a time. */
function refreshSession() {
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const r = await fetch('/app/session/refresh', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: '{}',
          credentials: 'same-origin',
        });
        if (!r.ok) {
          setSession(null);
          return false;
        }
        setSession(await r.json());
        return true;
      } catch {
        return false;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

class HttpError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

/** GET an API path as JSON with the access token; after a 401, refreshes once and retries. */
async function api(path, retry = true) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` } });
  if (r.status === 401 && retry && (await refreshSession())) return api(path, false);
  if (r.status === 401) {
    signedOut();
    throw new HttpError(401, 'Your session has ended: log in again.');
  }
  if (!r.ok) {
    let detail;
    try {
      detail = (await r.json()).detail;
    } catch {
      detail = undefined;
    }
    throw new HttpError(r.status, detail);
  }
  return r.json();
}

// --------------------------------------------------------------- live

const live = { ctrl: null };
let changeTimer = null;

function setLive(state) {
  liveBadge.hidden = state === null;
  liveBadge.className = `live ${state || ''}`;
  liveBadge.textContent = state === 'on' ? 'Live' : 'Reconnecting…';
  document.body.dataset.live = state || '';
}

function stopLive() {
  if (live.ctrl) live.ctrl.abort();
  live.ctrl = null;
  setLive(null);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/** Reads `/v1/events` until logout, reconnecting with exponential backoff (1 s to 30 s, jittered). */
async function connectLive() {
  stopLive();
  const ctrl = new AbortController();
  live.ctrl = ctrl;
  let attempt = 0;
  let opened = false;
  while (!ctrl.signal.aborted) {
    try {
      const r = await fetch('/v1/events', {
        headers: { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' },
        signal: ctrl.signal,
      });
      if (r.status === 401) {
        if (!(await refreshSession())) {
          signedOut();
          return;
        }
      } else if (r.ok) {
        setLive('on');
        attempt = 0;
        // The stream starts at the present: what changed while it was closed is reloaded.
        if (opened) onChange();
        opened = true;
        await readSse(r.body, (event) => {
          if (CHANGE_EVENTS.has(event.event)) onChange();
        });
      }
    } catch {
      // A network error or the abort: handled below.
    }
    if (ctrl.signal.aborted) return;
    setLive('off');
    const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    await sleep(delay, ctrl.signal);
  }
}

/**
 * A streaming parser of text/event-stream: calls `onEvent({event, data})` for
 * each event (a blank line ends one); comments (`:`) and `id:` are skipped.
 */
async function readSse(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (data.length) onEvent({ event: event || 'message', data: data.join('\n') });
        event = '';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
    }
  }
}

/** A change arrived: the page reloads its data (at most once per 300 ms burst). */
function onChange() {
  clearTimeout(changeTimer);
  changeTimer = setTimeout(() => {
    if (current && current.refresh) current.refresh().catch(showError);
  }, 300);
}

// ------------------------------------------------------------- charts

/** Releases the charts of the page being left. */
const charts = new Set();

/**
 * A uPlot line chart in `container`: `xs` (seconds), `series` of
 * `{label, values, color, dash, points}`. `container` must be in the page,
 * to take its width.
 */
function lineChart(container, { xs, series, time, height = 200 }) {
  container.dataset.points = String(xs.length);
  const width = () => Math.max(240, container.clientWidth);
  const opts = {
    width: width(),
    height,
    scales: { x: { time } },
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    axes: [{ grid: { stroke: '#eceff3' } }, { size: 56, grid: { stroke: '#eceff3' } }],
    series: [
      { label: time ? 'Played' : 's', value: time ? (u, v) => (v == null ? '–' : fmtDateTime(v * 1000)) : undefined },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.color || COLORS[i % COLORS.length],
        width: s.width || 1.5,
        dash: s.dash,
        points: { show: !!s.points, size: 6 },
        value: (u, v) => (v == null ? '–' : fmtNumber(v)),
      })),
    ],
  };
  const plot = new window.uPlot(opts, [xs, ...series.map((s) => s.values)], container);
  const observer = new ResizeObserver(() => {
    if (Math.abs(plot.width - width()) > 2) plot.setSize({ width: width(), height });
  });
  observer.observe(container);
  charts.add({ plot, observer });
}

function destroyCharts(within) {
  for (const c of [...charts]) {
    if (!within || within.contains(c.plot.root)) {
      c.observer.disconnect();
      c.plot.destroy();
      charts.delete(c);
    }
  }
}

/**
 * Theil–Sen line over the points `(xs, ys)`: the slope is the median of the
 * slopes between every pair of points at different times (the rule of the
 * server's `trend_per_week`, docs/metrics.md), the intercept the median of
 * `y − slope·x`. The line is computed here from the series, over the same
 * last ten games as `trend_per_week`, so its slope per week equals it.
 */
function theilSen(xs, ys) {
  const median = (v) => {
    const s = [...v].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const slopes = [];
  for (let i = 0; i < xs.length; i++) {
    for (let j = i + 1; j < xs.length; j++) {
      if (xs[j] > xs[i]) slopes.push((ys[j] - ys[i]) / (xs[j] - xs[i]));
    }
  }
  if (!slopes.length) return null;
  const slope = median(slopes);
  const intercept = median(xs.map((x, i) => ys[i] - slope * x));
  return { slope, intercept };
}

const TREND_GAMES = 10;
const MIN_TREND_GAMES = 3;

// ------------------------------------------------------------- pieces

/** The progress cards: a chart per headline metric, with its trend line. */
function progressSection() {
  const node = el('section', { 'aria-labelledby': 'progress-h' },
    el('h2', { id: 'progress-h', text: 'Progress' }));
  const cards = el('div', { class: 'cards', id: 'progress' });
  node.append(cards);
  function draw(progress) {
    destroyCharts(cards);
    cards.replaceChildren();
    const metrics = progress.metrics || {};
    const shown = HEADLINE.filter(([key]) => metrics[key]);
    if (!shown.length) {
      cards.append(el('p', { class: 'muted', text: 'No processed games yet.' }));
      return;
    }
    for (const [key, label] of shown) {
      const m = metrics[key];
      const unit = UNITS[m.unit] ?? m.unit;
      const xs = m.series.map((p) => Date.parse(p.at) / 1000);
      const ys = m.series.map((p) => p.value);
      const from = Math.max(0, xs.length - TREND_GAMES);
      const line = xs.length - from >= MIN_TREND_GAMES ? theilSen(xs.slice(from), ys.slice(from)) : null;
      const trend = xs.map((x, i) => (line && i >= from ? line.slope * x + line.intercept : null));
      const pct = m.improvement_pct;
      const summary = el('p', { class: 'summary' },
        `latest ${fmtNumber(m.latest)} ${unit} · baseline ${fmtNumber(m.baseline)} ${unit}`,
        typeof pct === 'number'
          ? el('span', { class: pct >= 0 ? 'better' : 'worse', text: ` · ${pct >= 0 ? '+' : ''}${fmtNumber(pct)} %` })
          : null,
        typeof m.trend_per_week === 'number' ? ` · trend ${fmtNumber(m.trend_per_week)} ${unit}/week` : null);
      const chart = el('div', {
        class: 'chart', 'data-metric': key, role: 'img',
        'aria-label': `${label} over ${xs.length} games`,
      });
      cards.append(el('article', { class: 'card' }, el('h3', { text: label }), summary, chart));
      lineChart(chart, {
        xs,
        time: true,
        series: [
          { label, values: ys, points: true, width: 2 },
          { label: 'Trend (Theil–Sen)', values: trend, color: '#7a8594', dash: [6, 4] },
        ],
      });
    }
  }
  return { node, draw };
}

/** The games table, paged with `before`/`next`; `href(game)` links a row to its page. */
function gamesSection(base, href) {
  const node = el('section', { 'aria-labelledby': 'games-h' }, el('h2', { id: 'games-h', text: 'Games' }));
  const body = el('tbody');
  const table = el('div', { class: 'table-wrap' },
    el('table', { id: 'games' },
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col', text: 'Played' }),
        el('th', { scope: 'col', text: 'Game' }),
        el('th', { scope: 'col', class: 'num', text: 'Score' }),
        el('th', { scope: 'col', class: 'num hide-narrow', text: 'Duration' }),
        el('th', { scope: 'col', text: 'Status' }))),
      body));
  const newer = el('button', { type: 'button', class: 'secondary', text: 'Newer', onclick: () => go(-1) });
  const older = el('button', { type: 'button', class: 'secondary', text: 'Older', onclick: () => go(1) });
  const where = el('span', { class: 'muted' });
  node.append(table, el('nav', { class: 'pager', 'aria-label': 'games pages' }, newer, older, where));
  // cursors[i] is the `before` of page i (undefined for the first page).
  let cursors = [undefined];
  let page = 0;
  let next;

  async function load() {
    const before = cursors[page];
    const data = await api(`${base}/games?limit=${GAMES_PAGE}${before ? `&before=${encodeURIComponent(before)}` : ''}`);
    next = data.next;
    body.replaceChildren(...data.games.map((g) => el('tr', { 'data-game-id': g.game_id },
      el('td', {}, el('a', { href: href(g), text: fmtDateTime(g.started_at) })),
      el('td', { text: g.game }),
      el('td', { class: 'num', text: fmtNumber(g.score) }),
      el('td', { class: 'num hide-narrow', text: `${fmtNumber(g.samples / g.sample_rate_hz)} s` }),
      el('td', { class: `status-${g.status}`, text: g.status }))));
    if (!data.games.length) {
      body.append(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'No games yet.' })));
    }
    newer.disabled = page === 0;
    older.disabled = !next;
    where.textContent = `page ${page + 1}`;
  }

  async function go(step) {
    if (step > 0 && next) {
      cursors = cursors.slice(0, page + 1).concat([next]);
      page += 1;
    } else if (step < 0 && page > 0) {
      page -= 1;
    }
    await load().catch(showError);
  }

  return { node, load };
}

/** The 12-week adherence calendar: a column per week (Monday first), a cell per day. */
function adherenceSection(base) {
  const node = el('section', { 'aria-labelledby': 'adherence-h' },
    el('h2', { id: 'adherence-h', text: `Adherence, last ${WEEKS} weeks` }));
  const wrap = el('div', { class: 'calendar-wrap' });
  node.append(wrap);

  function level(day) {
    if (!day.games) return 0;
    const minutes = day.active_seconds / 60;
    return minutes < 5 ? 1 : minutes < 15 ? 2 : minutes < 30 ? 3 : 4;
  }

  async function load() {
    const today = new Date();
    const monday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - ((today.getDay() + 6) % 7));
    const start = new Date(monday.getFullYear(), monday.getMonth(), monday.getDate() - 7 * (WEEKS - 1));
    const data = await api(`${base}/adherence?from=${isoDate(start)}&to=${isoDate(today)}`);
    const grid = el('div', { class: 'calendar', id: 'calendar', role: 'list', 'aria-label': 'games per day' });
    ['Mon', '', 'Wed', '', 'Fri', '', 'Sun'].forEach((d) => grid.append(el('div', { class: 'day label', 'aria-hidden': 'true', text: d })));
    let games = 0;
    let seconds = 0;
    let active = 0;
    for (const day of data.days) {
      const lvl = level(day);
      games += day.games;
      seconds += day.active_seconds;
      if (day.games) active += 1;
      const text = `${dateOnly.format(new Date(`${day.date}T12:00:00`))}: ${day.games} game${day.games === 1 ? '' : 's'}, ${fmtMinutes(day.active_seconds)}`;
      grid.append(el('div', {
        class: `day lvl${lvl}`, role: 'listitem', title: text, 'aria-label': text,
        'data-date': day.date, 'data-games': day.games,
      }));
    }
    // The rest of this week, not yet lived.
    for (let i = data.days.length; i % 7 !== 0; i++) grid.append(el('div', { class: 'day future', 'aria-hidden': 'true' }));
    const legend = el('div', { class: 'legend', 'aria-label': 'legend: active minutes per day' },
      'Active minutes per day:',
      ...['none', 'under 5', '5–15', '15–30', '30 or more'].flatMap((label, i) => [
        el('span', { class: `swatch lvl${i}`, 'aria-hidden': 'true' }), label,
      ]));
    wrap.replaceChildren(
      el('p', { class: 'summary muted', text: `${games} games, ${fmtMinutes(seconds)} on ${active} days (time zone ${data.tz})` }),
      grid, legend);
  }

  return { node, load };
}

/** A game's metrics, flattened to their dotted keys (docs/metrics.md). */
function flatten(obj, prefix = '') {
  return Object.entries(obj || {}).flatMap(([k, v]) => (v && typeof v === 'object'
    ? flatten(v, `${prefix}${k}.`)
    : [[`${prefix}${k}`, v]]));
}

// --------------------------------------------------------------- pages

/** The page on screen: `{node, load, refresh}`. */
let current = null;

function heading(title, back) {
  return el('div', {}, back ? el('a', { class: 'back', href: back.href, text: `← ${back.text}` }) : null,
    el('h1', { text: title }));
}

/** The therapist's home: the linked patients, sortable by last activity or name. */
function patientListPage() {
  const node = el('div', {}, heading('Patients'));
  const wrap = el('div', { class: 'table-wrap' });
  node.append(wrap);
  let patients = [];
  let sort = 'activity';

  function sortButton(key, label) {
    return el('button', {
      type: 'button', class: 'sort', 'aria-pressed': String(sort === key), 'data-sort': key,
      text: label, onclick: () => { sort = key; draw(); },
    });
  }

  function draw() {
    const rows = [...patients];
    if (sort === 'name') rows.sort((a, b) => a.username.localeCompare(b.username));
    else rows.sort((a, b) => (b.last_game_at ? Date.parse(b.last_game_at) : -Infinity) - (a.last_game_at ? Date.parse(a.last_game_at) : -Infinity));
    const ariaSort = (key) => (sort === key ? (key === 'name' ? 'ascending' : 'descending') : 'none');
    wrap.replaceChildren(el('table', { id: 'patients' },
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col', 'aria-sort': ariaSort('name') }, sortButton('name', 'Patient')),
        el('th', { scope: 'col', 'aria-sort': ariaSort('activity') }, sortButton('activity', 'Last activity')),
        el('th', { scope: 'col', class: 'num', text: 'Games (7 d)' }),
        el('th', { scope: 'col', class: 'num hide-narrow', text: 'Active (7 d)' }),
        el('th', { scope: 'col', text: 'Flags' }))),
      el('tbody', {}, rows.length ? rows.map((p) => el('tr', { 'data-patient-id': p.patient_id },
        el('td', {}, el('a', { href: `#/patients/${p.patient_id}`, text: p.username })),
        el('td', { title: p.last_game_at ? fmtDateTime(p.last_game_at) : undefined, text: fmtAgo(p.last_game_at) }),
        el('td', { class: 'num', text: p.games_7d }),
        el('td', { class: 'num hide-narrow', text: fmtMinutes(p.active_seconds_7d) }),
        el('td', {}, (p.flags || []).map((f) => el('span', {
          class: `flag ${f === 'inactive' ? 'inactive' : 'declining'}`, text: flagText(f),
        })))))
        : el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'No linked patients yet: give a patient an invite code.' })))));
  }

  async function load() {
    patients = (await api('/v1/patients')).patients;
    draw();
  }
  return { node, load, refresh: load };
}

function flagText(flag) {
  if (flag === 'inactive') return 'inactive';
  const key = flag.replace(/^declining:/, '');
  const label = (HEADLINE.find(([k]) => k === key) || [key, key])[1];
  return `declining ${label.toLowerCase()}`;
}

/** A therapist's view of one patient: progress, adherence and games. */
function patientPage(patientId) {
  const base = `/v1/patients/${encodeURIComponent(patientId)}`;
  const title = el('h1', { text: 'Patient' });
  const node = el('div', {}, el('a', { class: 'back', href: '#/', text: '← Patients' }), title);
  const progress = progressSection();
  const adherence = adherenceSection(base);
  const games = gamesSection(base, (g) => `#/patients/${patientId}/games/${g.game_id}`);
  node.append(progress.node, adherence.node, games.node);

  async function load() {
    const [list, prog] = await Promise.all([api('/v1/patients'), api(`${base}/progress`)]);
    const patient = list.patients.find((p) => p.patient_id === patientId);
    title.textContent = patient ? patient.username : 'Patient';
    progress.draw(prog);
    await Promise.all([adherence.load(), games.load()]);
  }
  return { node, load, refresh: load };
}

/** A patient's own view: their progress and games. */
function ownPage() {
  const node = el('div', {}, heading('My progress'));
  const progress = progressSection();
  const games = gamesSection('/v1', (g) => `#/games/${g.game_id}`);
  node.append(progress.node, games.node);
  async function load() {
    progress.draw(await api('/v1/progress'));
    await games.load();
  }
  return { node, load, refresh: load };
}

/** One game: its metrics and plots of its flex, force and gyro channels (at most 1000 points). */
function gamePage(base, gameId, back) {
  const game = `${base}/games/${encodeURIComponent(gameId)}`;
  const title = el('h1', { text: 'Game' });
  const facts = el('p', { class: 'muted' });
  const metrics = el('dl', { class: 'metrics', id: 'metrics' });
  const plots = el('div', { class: 'cards signals', id: 'signals' });
  const node = el('div', {}, el('a', { class: 'back', href: back.href, text: `← ${back.text}` }), title, facts,
    el('section', { 'aria-labelledby': 'metrics-h' }, el('h2', { id: 'metrics-h', text: 'Metrics' }), metrics),
    el('section', { 'aria-labelledby': 'signals-h' }, el('h2', { id: 'signals-h', text: 'Signals' }), plots));
  let status;

  async function load() {
    const g = await api(game);
    status = g.status;
    title.textContent = `${g.game} · ${fmtDateTime(g.started_at)}`;
    facts.textContent = `${g.status} · score ${fmtNumber(g.score)} · ${fmtNumber(g.samples / g.sample_rate_hz)} s at ${fmtNumber(g.sample_rate_hz)} Hz${g.error ? ` · ${g.error}` : ''}`;
    const rows = flatten(g.metrics);
    metrics.replaceChildren(...(rows.length
      ? rows.map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: fmtNumber(v) })))
      : [el('p', { class: 'muted', text: g.status === 'queued' ? 'Not analysed yet.' : 'No metrics.' })]));
    const samples = await api(`${game}/samples?max_points=1000`);
    destroyCharts(plots);
    plots.replaceChildren();
    for (const [prefix, label] of [['flex_', 'Flex'], ['force_', 'Force'], ['gyro_', 'Gyroscope']]) {
      const names = Object.keys(samples.channels).filter((n) => n.startsWith(prefix)).sort();
      if (!names.length) continue;
      const chart = el('div', {
        class: 'chart wide', 'data-group': prefix.slice(0, -1), role: 'img',
        'aria-label': `${label} channels over ${samples.t.length} points`,
      });
      plots.append(el('article', { class: 'card' }, el('h3', { text: label }), chart));
      lineChart(chart, {
        xs: samples.t,
        time: false,
        height: 240,
        series: names.map((n) => ({ label: n.slice(prefix.length), values: samples.channels[n] })),
      });
    }
  }
  // A game that was queued is reloaded when a change arrives.
  async function refresh() {
    if (status === 'queued') await load();
  }
  return { node, load, refresh };
}

function notFoundPage() {
  return { node: heading('Not found', { href: '#/', text: 'Home' }), load: async () => {} };
}

function pageFor(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (session.role === 'therapist') {
    if (!parts.length) return patientListPage();
    if (parts[0] === 'patients' && parts.length === 2) return patientPage(parts[1]);
    if (parts[0] === 'patients' && parts[2] === 'games' && parts.length === 4) {
      return gamePage(`/v1/patients/${encodeURIComponent(parts[1])}`, parts[3], { href: `#/patients/${parts[1]}`, text: 'Patient' });
    }
  } else {
    if (!parts.length) return ownPage();
    if (parts[0] === 'games' && parts.length === 2) return gamePage('/v1', parts[1], { href: '#/', text: 'My progress' });
  }
  return notFoundPage();
}

async function route() {
  if (!session.token) {
    showLogin();
    return;
  }
  destroyCharts();
  const page = pageFor(location.hash);
  current = page;
  main.replaceChildren(page.node);
  main.setAttribute('aria-busy', 'true');
  try {
    await page.load();
  } catch (e) {
    if (current === page) showError(e);
  } finally {
    main.removeAttribute('aria-busy');
  }
}

function showError(e) {
  const text = e && e.status === 404 ? 'Not found, or not linked to you.' : (e && e.message) || String(e);
  main.append(el('p', { class: 'error', role: 'alert', text }));
}

// --------------------------------------------------------------- login

function showLogin(message) {
  stopLive();
  destroyCharts();
  current = null;
  who.textContent = '';
  logoutButton.hidden = true;
  const error = el('p', { class: 'error', role: 'alert', id: 'login-error', text: message || '' });
  const username = el('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const password = el('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = el('button', { type: 'submit', text: 'Log in' });
  const form = el('form', { class: 'login', id: 'login', 'aria-labelledby': 'login-h' },
    el('h1', { id: 'login-h', text: 'Log in' }),
    el('label', { for: 'username', text: 'Username' }), username,
    el('label', { for: 'password', text: 'Password' }), password,
    submit, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const r = await fetch('/app/session', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: username.value, password: password.value }),
        credentials: 'same-origin',
      });
      if (r.ok) {
        setSession(await r.json());
        signedIn(username.value);
        return;
      }
      error.textContent = r.status === 429
        ? `Too many attempts: try again in ${r.headers.get('Retry-After') || 'a few'} seconds.`
        : r.status === 401 || r.status === 422 ? 'Wrong username or password.' : `Login failed (${r.status}).`;
    } catch {
      error.textContent = 'The server cannot be reached.';
    }
    submit.disabled = false;
  });
  main.replaceChildren(form);
  username.focus();
}

function signedIn(name) {
  who.textContent = name ? `${name} (${session.role})` : session.role;
  if (!name) {
    // After a reload only the cookie is known: the account says its name.
    api('/v1/me').then((me) => { who.textContent = `${me.username} (${me.role})`; }, () => {});
  }
  logoutButton.hidden = false;
  connectLive();
  route();
}

function signedOut() {
  setSession(null);
  showLogin('Your session has ended: log in again.');
}

logoutButton.addEventListener('click', async () => {
  stopLive();
  setSession(null);
  try {
    await fetch('/app/session', {
      method: 'DELETE',
      headers: { 'Content-Type': 'application/json' },
      body: '{}',
      credentials: 'same-origin',
    });
  } finally {
    showLogin();
  }
});

window.addEventListener('hashchange', () => {
  if (session.token) route();
});

// At start, the refresh cookie (if any) opens the session.
refreshSession().then((ok) => (ok ? signedIn() : showLogin()));
