// funnelfold's dashboard: plain JavaScript over the JSON API, no framework and no
// build step. Every number on the page comes from one API answer, formatted, never
// recomputed here (conversion rates excepted: sessions and conversions, divided).
'use strict';

const KEY = 'funnelfold.apiKey';
const REFRESH_MS = 5000;
const LIVE_MAX_ITEMS = 200;
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  funnel: null,
  tab: 'overview',
  range: { range: '7d' },
  events: { cursor: null, paged: false, filter: {} },
  sessions: { cursor: null, paged: false },
  traffic: { rows: [], sort: 'sessions', dir: -1 },
  paths: { steps: 5, limit: 20, startsWith: '', drawn: null },
  retention: { weeks: 12, drawn: null },
  live: null,
  timer: null,
};

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = 'Bearer ' + key;
  return headers;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    method: options.method || 'GET',
    headers: Object.assign(authHeaders(), options.body ? { 'Content-Type': 'application/json' } : {}),
    body: options.body ? JSON.stringify(options.body) : undefined,
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const e = body && body.error;
    throw new ApiError(response.status, e ? e.code : 'http_' + response.status, e ? e.message : response.statusText);
  }
  return body;
}

function funnelPath(suffix) {
  return '/v1/funnels/' + encodeURIComponent(state.funnel) + suffix;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

function rangeParams() {
  if (state.range.range) return { range: state.range.range };
  return { from: state.range.from, to: state.range.to };
}

// ---------------------------------------------------------------------------------
// Formatting

const integer = new Intl.NumberFormat('en-US');
const percent = new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 });

function fmtInt(n) {
  return integer.format(n || 0);
}

// Revenue is a map of currency to an exact decimal string; currencies are never added.
function fmtMoney(revenue) {
  const parts = Object.entries(revenue || {}).map(([currency, amount]) => {
    try {
      return new Intl.NumberFormat('en-US', { style: 'currency', currency }).format(Number(amount));
    } catch (_) {
      return amount + ' ' + currency;
    }
  });
  return parts.length ? parts.join(' + ') : '—';
}

function fmtTime(ms) {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

function fmtDuration(ms) {
  const s = Math.round((ms || 0) / 1000);
  const m = Math.floor(s / 60);
  return m ? m + 'm ' + String(s % 60).padStart(2, '0') + 's' : s + 's';
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') node.textContent = v;
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function cell(text, numeric) {
  return el('td', numeric ? { class: 'num', text } : { text });
}

// ---------------------------------------------------------------------------------
// Errors and keys

function showError(e) {
  const box = $('#error');
  if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
    $('#key-form').hidden = false;
    box.textContent = e.status === 401
      ? 'This server needs an API key: ' + e.message
      : 'This key may not read this funnel: ' + e.message;
  } else {
    box.textContent = (e instanceof ApiError ? e.code + ': ' : '') + e.message;
  }
  box.hidden = false;
}

function clearError() {
  $('#error').hidden = true;
}

function setStatus(text) {
  $('#status').textContent = text;
}

// ---------------------------------------------------------------------------------
// Funnels

async function loadFunnels() {
  const { funnels } = await api('/v1/funnels');
  const picker = $('#funnel-picker');
  picker.replaceChildren(el('option', { value: '', text: 'Choose a funnel…' }));
  for (const f of funnels) picker.append(el('option', { value: f.funnelId, text: f.funnelId }));
  if (state.funnel) {
    if (!funnels.some((f) => f.funnelId === state.funnel)) {
      picker.append(el('option', { value: state.funnel, text: state.funnel }));
    }
    picker.value = state.funnel;
  }
  const body = $('#funnels-table tbody');
  body.replaceChildren(...funnels.map((f) => {
    const link = el('a', { href: '/funnels/' + encodeURIComponent(f.funnelId), text: f.funnelId });
    return el('tr', {}, [el('td', {}, [link]), cell(fmtInt(f.events), true), cell(fmtInt(f.visitors), true),
      cell(fmtTime(f.firstEventAt)), cell(fmtTime(f.lastEventAt))]);
  }));
  $('#funnels-empty').hidden = funnels.length > 0;
  return funnels;
}

// ---------------------------------------------------------------------------------
// Overview

async function loadOverview() {
  const o = await api(funnelPath('/overview') + query(rangeParams()));
  const tiles = [
    ['Visitors', fmtInt(o.visitors), 'visitors'],
    ['New visitors', fmtInt(o.newVisitors), 'new-visitors'],
    ['Returning visitors', fmtInt(o.returningVisitors), 'returning-visitors'],
    ['Sessions', fmtInt(o.sessions), 'sessions'],
    ['Engaged sessions', fmtInt(o.engagedSessions), 'engaged-sessions'],
    ['Engagement rate', o.sessions ? percent.format(o.engagementRate) : '—', 'engagement-rate'],
    ['Bounce rate', o.sessions ? percent.format(o.bounceRate) : '—', 'bounce-rate'],
    ['Conversions', fmtInt(o.conversions), 'conversions'],
    ['Revenue', fmtMoney(o.revenue), 'revenue'],
    ['Bot events', fmtInt(o.botEvents), 'bot-events'],
  ];
  $('#overview-tiles').replaceChildren(...tiles.map(([label, value, name]) =>
    el('div', { class: 'tile', 'data-tile': name }, [el('span', { class: 'label', text: label }), el('span', { class: 'value', text: value })])));
  drawChart($('#overview-chart'), o.days || []);
  $('#overview-empty').hidden = o.sessions > 0;
  // The API's map is by name; the busiest bot goes first.
  const bots = Object.entries(o.bots || {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  $('#overview-bots tbody').replaceChildren(...bots.map(([bot, events]) =>
    el('tr', { 'data-bot': bot }, [cell(bot), cell(fmtInt(events), true)])));
  $('#overview-bots').hidden = bots.length === 0;
  $('#overview-bots-empty').hidden = bots.length > 0;
}

const CHANNEL_COLORS = ['#2563eb', '#16a34a', '#f59e0b', '#db2777', '#7c3aed', '#0891b2', '#dc2626', '#65a30d', '#9333ea', '#ea580c', '#475569'];

// Stacked bars of sessions per day, one colour per GA4 channel group, drawn as SVG.
function drawChart(container, days) {
  const channels = [...new Set(days.flatMap((d) => Object.keys(d.channels || {})))].sort();
  const max = Math.max(1, ...days.map((d) => d.sessions || 0));
  const width = 720;
  const height = 220;
  const pad = 30;
  const barW = days.length ? (width - pad) / days.length : 0;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height + 20}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Sessions per day by channel');
  days.forEach((d, i) => {
    let y = height;
    channels.forEach((c, ci) => {
      const n = (d.channels || {})[c] || 0;
      if (!n) return;
      const h = (n / max) * (height - 10);
      y -= h;
      const rect = document.createElementNS(SVG, 'rect');
      rect.setAttribute('x', String(pad + i * barW + 1));
      rect.setAttribute('y', String(y));
      rect.setAttribute('width', String(Math.max(1, barW - 2)));
      rect.setAttribute('height', String(h));
      rect.setAttribute('fill', CHANNEL_COLORS[ci % CHANNEL_COLORS.length]);
      rect.setAttribute('data-day', d.day);
      rect.setAttribute('data-channel', c);
      rect.setAttribute('data-sessions', String(n));
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${d.day} ${c}: ${fmtInt(n)}`;
      rect.append(title);
      svg.append(rect);
    });
    if (days.length <= 14 || i % Math.ceil(days.length / 10) === 0) {
      const label = document.createElementNS(SVG, 'text');
      label.setAttribute('x', String(pad + i * barW + barW / 2));
      label.setAttribute('y', String(height + 14));
      label.setAttribute('text-anchor', 'middle');
      label.setAttribute('class', 'axis');
      label.textContent = d.day.slice(5);
      svg.append(label);
    }
  });
  const top = document.createElementNS(SVG, 'text');
  top.setAttribute('x', '0');
  top.setAttribute('y', '12');
  top.setAttribute('class', 'axis');
  top.textContent = fmtInt(max);
  svg.append(top);
  const legend = el('ul', { class: 'legend' }, channels.map((c, ci) => {
    const swatch = el('span', { class: 'swatch swatch-' + (ci % CHANNEL_COLORS.length) });
    return el('li', {}, [swatch, c]);
  }));
  container.replaceChildren(svg, legend);
}

// ---------------------------------------------------------------------------------
// Events

function visitorLink(row) {
  const link = el('a', { href: '#', class: 'visitor', 'data-anonymous-id': row.anonymousId, text: row.displayName || row.anonymousId });
  link.title = row.anonymousId;
  link.addEventListener('click', (e) => {
    e.preventDefault();
    $('#filter-visitor').value = row.anonymousId;
    state.events.filter.anonymousId = row.anonymousId;
    switchTab('events');
    loadEvents(false).catch(showError);
    loadTimeline(row.anonymousId).catch(showError);
  });
  return link;
}

function eventRow(e) {
  return el('tr', { 'data-event-id': e.eventId }, [
    cell(fmtTime(e.timestamp)),
    el('td', {}, [visitorLink(e)]),
    cell(e.eventName),
    cell(e.path || '—'),
    cell(e.source ? e.source + ' / ' + (e.medium || '') : '—'),
    cell(e.deviceType || '—'),
    cell(Object.keys(e.revenue || {}).length ? fmtMoney(e.revenue) : '', true),
  ]);
}

async function loadEvents(more) {
  const f = state.events.filter;
  const page = await api(funnelPath('/events') + query({
    limit: 50,
    include: 'session',
    cursor: more ? state.events.cursor : null,
    eventName: f.eventName,
    anonymousId: f.anonymousId,
  }));
  const body = $('#events-table tbody');
  const rows = page.events.map(eventRow);
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
  state.events.cursor = page.nextCursor;
  state.events.paged = more;
  $('#events-more').hidden = !page.nextCursor;
  $('#events-empty').hidden = body.children.length > 0;
}

async function loadTimeline(anonymousId) {
  const box = $('#timeline');
  const profiles = await api(funnelPath('/profiles/lookup'), { method: 'POST', body: { anonymousIds: [anonymousId] } });
  const p = profiles[anonymousId];
  const timeline = await api(funnelPath('/profiles/' + encodeURIComponent(anonymousId) + '/timeline'));
  const close = el('button', { type: 'button', class: 'close', text: 'Close' });
  close.addEventListener('click', () => { box.hidden = true; });
  const facts = p ? [
    ['First seen', fmtTime(p.firstSeen)], ['Last seen', fmtTime(p.lastSeen)],
    ['Sessions', fmtInt(p.totalSessions)], ['Events', fmtInt(p.totalEvents)],
    ['First touch', p.firstTouch ? p.firstTouch.source + ' / ' + p.firstTouch.medium : '—'],
    ['Last non-direct', p.lastNonDirect ? p.lastNonDirect.source + ' / ' + p.lastNonDirect.medium : '—'],
    ['Revenue', fmtMoney(p.revenue)],
  ] : [];
  const dl = el('dl', {}, facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  const sessions = el('table', { class: 'grid' }, [
    el('thead', {}, [el('tr', {}, ['Started', 'Landing page', 'Pageviews', 'Source / medium', 'Converted'].map((t) => el('th', { text: t })))]),
    el('tbody', {}, timeline.sessions.map((s) => el('tr', {}, [
      cell(fmtTime(s.startedAt)), cell(s.landingPage || '—'), cell(fmtInt(s.pageviews), true),
      cell(s.source + ' / ' + s.medium), cell(s.converted ? 'yes' : 'no'),
    ]))),
  ]);
  box.replaceChildren(close, el('h3', { text: p ? p.displayName : anonymousId }), dl, sessions);
  box.hidden = false;
}

// ---------------------------------------------------------------------------------
// Sessions

function sessionRow(s) {
  return el('tr', { 'data-session-id': s.sessionId }, [
    cell(fmtTime(s.startedAt)),
    el('td', {}, [visitorLink(s)]),
    cell(s.landingPage || '—'),
    cell(s.exitPage || '—'),
    cell(fmtInt(s.pageviews), true),
    cell(fmtDuration(s.durationMs), true),
    cell(s.bounce ? 'yes' : 'no'),
    cell([s.source, s.medium, s.campaign].join(' / ')),
    cell(s.channel),
    cell(s.converted ? 'yes' : 'no'),
    cell(Object.keys(s.revenue || {}).length ? fmtMoney(s.revenue) : '', true),
  ]);
}

async function loadSessions(more) {
  const page = await api(funnelPath('/sessions') + query({ limit: 50, cursor: more ? state.sessions.cursor : null }));
  const body = $('#sessions-table tbody');
  const rows = page.sessions.map(sessionRow);
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
  state.sessions.cursor = page.nextCursor;
  state.sessions.paged = more;
  $('#sessions-more').hidden = !page.nextCursor;
  $('#sessions-empty').hidden = body.children.length > 0;
}

// ---------------------------------------------------------------------------------
// Traffic sources

function sortKey(row, key) {
  if (key === 'rate') return row.sessions ? row.conversions / row.sessions : 0;
  if (key === 'revenue') return Object.values(row.revenue || {}).reduce((a, v) => a + Number(v), 0);
  return row[key];
}

function renderTraffic() {
  const { rows, sort, dir } = state.traffic;
  const sorted = [...rows].sort((a, b) => {
    const x = sortKey(a, sort);
    const y = sortKey(b, sort);
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
  $('#traffic-table tbody').replaceChildren(...sorted.map((r) => el('tr', {}, [
    cell(r.source), cell(r.medium), cell(r.campaign), cell(r.channel),
    cell(fmtInt(r.sessions), true), cell(fmtInt(r.engagedSessions), true),
    cell(r.sessions ? percent.format(r.engagementRate) : '—', true),
    cell(fmtInt(r.conversions), true),
    cell(r.sessions ? percent.format(r.conversions / r.sessions) : '—', true),
    cell(fmtMoney(r.revenue), true),
  ])));
  for (const th of document.querySelectorAll('#traffic-table th')) {
    th.classList.toggle('sorted', th.dataset.sort === sort);
    th.setAttribute('aria-sort', th.dataset.sort === sort ? (dir < 0 ? 'descending' : 'ascending') : 'none');
  }
  $('#traffic-empty').hidden = rows.length > 0;
}

async function loadTraffic() {
  state.traffic.rows = await api(funnelPath('/traffic-sources') + query(Object.assign(rangeParams(), { limit: 1000 })));
  renderTraffic();
}

// ---------------------------------------------------------------------------------
// Paths: the page flows of the range as a Sankey diagram (sankey.js)

function pathsParams() {
  const p = state.paths;
  return Object.assign(rangeParams(), { steps: p.steps, limit: p.limit, startsWith: p.startsWith });
}

async function loadPaths() {
  const url = funnelPath('/paths') + query(pathsParams());
  const answer = await api(url);
  // The 5 s refresh redraws only what changed, so a hovered band keeps its title.
  const drawn = url + ' ' + JSON.stringify(answer);
  if (drawn === state.paths.drawn) return;
  state.paths.drawn = drawn;
  const empty = answer.links.length === 0;
  const chart = $('#paths-chart');
  if (empty) chart.replaceChildren();
  else Sankey.draw(chart, answer, fmtInt, (path) => setLanding(path));
  chart.dataset.query = url;
  $('#paths-empty').hidden = !empty;
}

function setLanding(path) {
  state.paths.startsWith = path;
  $('#paths-start').value = path;
  refresh(true);
}

// ---------------------------------------------------------------------------------
// Retention: the cohort table, one row per cohort week, shaded by the share active

function heatClass(share) {
  return 'heat-' + Math.min(10, Math.max(0, Math.round(share * 10)));
}

async function loadRetention() {
  const url = funnelPath('/retention') + query({ weeks: state.retention.weeks });
  const { cohorts } = await api(url);
  const drawn = url + ' ' + JSON.stringify(cohorts);
  if (drawn === state.retention.drawn) return;
  state.retention.drawn = drawn;
  const offsets = Math.max(0, ...cohorts.map((c) => c.active.length));
  const head = [el('th', { text: 'Cohort week' }), el('th', { class: 'num', text: 'Visitors' })];
  for (let k = 0; k < offsets; k++) head.push(el('th', { class: 'num', text: 'Week ' + k }));
  $('#retention-table thead').replaceChildren(el('tr', {}, head));
  $('#retention-table tbody').replaceChildren(...cohorts.map((c) => {
    const cells = c.active.map((n, k) => {
      const share = c.visitors ? n / c.visitors : 0;
      const td = el('td', {
        class: 'num ' + (c.visitors ? heatClass(share) : 'heat-none'),
        'data-offset': k,
        'data-count': n,
        text: c.visitors ? percent.format(share) : '—',
      });
      td.title = `${fmtInt(n)} of ${fmtInt(c.visitors)} visitors of the week of ${c.week} active ${k === 0 ? 'that week' : k + (k === 1 ? ' week' : ' weeks') + ' later'}`;
      return td;
    });
    return el('tr', { 'data-week': c.week }, [cell(c.week), el('td', { class: 'num visitors', text: fmtInt(c.visitors) }), ...cells]);
  }));
  $('#retention-table').dataset.query = url;
  $('#retention-empty').hidden = cohorts.some((c) => c.visitors > 0);
}

// ---------------------------------------------------------------------------------
// Live: Server-Sent Events read through fetch, so that the key goes in a header
// (EventSource cannot send one).

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
}

function liveItem(type, data) {
  if (type === 'event') {
    return el('li', { class: 'live-event' }, [
      el('time', { text: fmtTime(data.timestamp) }), ' ',
      el('strong', { text: data.displayName || data.anonymousId }), ' ',
      el('span', { class: 'name', text: data.eventName }), ' ',
      el('span', { text: data.path || '' }), ' ',
      el('span', { class: 'muted', text: data.source ? data.source + ' / ' + (data.medium || '') : '' }),
    ]);
  }
  if (type === 'session') {
    return el('li', { class: 'live-session' }, [
      el('span', { class: 'muted', text: 'session ' }),
      el('strong', { text: data.displayName || data.anonymousId || '' }), ' ',
      el('span', { text: (data.landingPage || '') + ' → ' + (data.exitPage || '') + ', ' + fmtInt(data.pageviews) + ' pageviews' }),
    ]);
  }
  return el('li', { class: 'notice', text: data.message || JSON.stringify(data) });
}

async function startLive() {
  stopLive();
  const controller = new AbortController();
  state.live = controller;
  const feed = $('#live-feed');
  const status = $('#live-state');
  try {
    const response = await fetch(funnelPath('/live'), { headers: Object.assign(authHeaders(), { Accept: 'text/event-stream' }), signal: controller.signal });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { body = null; }
      const e = body && body.error;
      throw new ApiError(response.status, e ? e.code : 'http_' + response.status, e ? e.message : response.statusText);
    }
    status.textContent = 'Connected: events appear here as they are folded.';
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) type = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (!data.length) continue; // a heartbeat
        let parsed;
        try { parsed = JSON.parse(data.join('\n')); } catch (_) { continue; }
        feed.prepend(liveItem(type, parsed));
        while (feed.children.length > LIVE_MAX_ITEMS) feed.lastChild.remove();
      }
    }
    status.textContent = 'The stream ended; switch tabs to reconnect.';
  } catch (e) {
    if (controller.signal.aborted) return;
    status.textContent = 'Not connected.';
    showError(e);
  }
}

// ---------------------------------------------------------------------------------
// Tabs, range, refresh

const loaders = {
  overview: () => loadOverview(),
  events: () => loadEvents(false),
  sessions: () => loadSessions(false),
  traffic: () => loadTraffic(),
  paths: () => loadPaths(),
  retention: () => loadRetention(),
  live: () => { startLive(); return Promise.resolve(); },
};

function switchTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('.tabs button')) {
    b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  }
  for (const p of document.querySelectorAll('.panel')) p.hidden = p.dataset.panel !== tab;
  $('#range').hidden = !(tab === 'overview' || tab === 'traffic' || tab === 'paths');
  if (tab !== 'live') stopLive();
}

async function refresh(initial) {
  if (!state.funnel) return;
  // Paged lists and the live feed are left alone: a refresh would lose the reader's place.
  if (!initial && (state.tab === 'live' || (state.tab === 'events' && state.events.paged) || (state.tab === 'sessions' && state.sessions.paged))) return;
  try {
    await loaders[state.tab]();
    clearError();
    setStatus('Updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    showError(e);
  }
}

function selectRange(range) {
  state.range = range;
  for (const b of document.querySelectorAll('#range button[data-range]')) {
    b.setAttribute('aria-pressed', String(b.dataset.range === range.range));
  }
  refresh(true);
}

function route() {
  const match = location.pathname.match(/^\/funnels\/([^/]+)/);
  state.funnel = match ? decodeURIComponent(match[1]) : null;
  $('#home').hidden = !!state.funnel;
  $('#funnel').hidden = !state.funnel;
  document.title = state.funnel ? state.funnel + ' · funnelfold' : 'funnelfold';
}

async function start() {
  route();
  $('#key-entry').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('#key-input').value);
    $('#key-input').value = '';
    $('#key-form').hidden = true;
    clearError();
    boot();
  });
  $('#funnel-picker').addEventListener('change', (e) => {
    if (e.target.value) location.assign('/funnels/' + encodeURIComponent(e.target.value));
  });
  for (const b of document.querySelectorAll('.tabs button')) {
    b.addEventListener('click', () => { switchTab(b.dataset.tab); refresh(true); });
  }
  for (const b of document.querySelectorAll('#range button[data-range]')) {
    b.addEventListener('click', () => selectRange({ range: b.dataset.range }));
  }
  $('#range-apply').addEventListener('click', () => {
    const from = $('#range-from').value;
    const to = $('#range-to').value;
    if (!from || !to) return showError(new Error('choose both a from and a to date'));
    // `to` is exclusive in the API: the chosen day counts whole.
    const end = new Date(to + 'T00:00:00Z');
    end.setUTCDate(end.getUTCDate() + 1);
    selectRange({ from: from + 'T00:00:00Z', to: end.toISOString() });
  });
  $('#events-filters').addEventListener('submit', (e) => {
    e.preventDefault();
    state.events.filter = { eventName: $('#filter-event').value.trim(), anonymousId: $('#filter-visitor').value.trim() };
    loadEvents(false).catch(showError);
  });
  $('#filter-clear').addEventListener('click', () => {
    $('#filter-event').value = '';
    $('#filter-visitor').value = '';
    state.events.filter = {};
    $('#timeline').hidden = true;
    loadEvents(false).catch(showError);
  });
  $('#events-more').addEventListener('click', () => loadEvents(true).catch(showError));
  $('#sessions-more').addEventListener('click', () => loadSessions(true).catch(showError));
  for (const th of document.querySelectorAll('#traffic-table th[data-sort]')) {
    th.addEventListener('click', () => {
      const key = th.dataset.sort;
      state.traffic.dir = state.traffic.sort === key ? -state.traffic.dir : -1;
      state.traffic.sort = key;
      renderTraffic();
    });
  }
  $('#paths-steps').addEventListener('change', (e) => {
    state.paths.steps = Number(e.target.value);
    refresh(true);
  });
  $('#paths-limit').addEventListener('change', (e) => {
    state.paths.limit = Number(e.target.value);
    refresh(true);
  });
  $('#paths-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setLanding($('#paths-start').value.trim());
  });
  $('#paths-clear').addEventListener('click', () => setLanding(''));
  $('#retention-weeks').addEventListener('change', (e) => {
    state.retention.weeks = Number(e.target.value);
    refresh(true);
  });
  switchTab('overview');
  for (const b of document.querySelectorAll('#range button[data-range]')) {
    b.setAttribute('aria-pressed', String(b.dataset.range === '7d'));
  }
  boot();
  state.timer = setInterval(() => refresh(false), REFRESH_MS);
}

async function boot() {
  try {
    await loadFunnels();
    clearError();
  } catch (e) {
    showError(e);
    return;
  }
  await refresh(true);
}

document.addEventListener('DOMContentLoaded', start);
