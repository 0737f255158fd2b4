// Live decisions: server-sent events from GET /admin/decisions/stream, filtered by the
// server; the per-rule hit counts are counted here over what the filter lets through.
'use strict';

const $ = (id) => document.getElementById(id);
// The table keeps the recent past only: older rows leave the page (the counts stay).
const MAX_ROWS = 500;
const state = { source: null, shown: 0, hits: new Map() };

function filterQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($('filters'))) {
    if (String(value).trim()) params.set(name, String(value).trim());
  }
  return params;
}

function setStatus(text, live) {
  $('stream-status').textContent = text;
  $('stream-status').className = 'status ' + (live ? 'live' : 'down');
}

function ruleName(d) {
  return d.rule_id || (d.kind === 'connect' || d.kind === 'disconnect' || d.kind === 'reauth' ? '(connection)' : '(default action)');
}

function countHit(d) {
  if (d.verdict !== 'allow' && d.verdict !== 'deny') return;
  const name = ruleName(d);
  const hit = state.hits.get(name) || { allow: 0, deny: 0 };
  hit[d.verdict] += 1;
  state.hits.set(name, hit);
}

function renderHits() {
  const rows = [...state.hits.entries()].sort((a, b) => (b[1].allow + b[1].deny) - (a[1].allow + a[1].deny));
  $('hits').tBodies[0].replaceChildren(...rows.map(([name, h]) => el('tr', { 'data-rule': name },
    el('td', { class: 'mono' }, name), el('td', { class: 'allow' }, h.allow), el('td', { class: 'deny' }, h.deny),
    el('td', {}, h.allow + h.deny))));
}

function addRow(d) {
  const time = new Date(d.ts * 1000).toISOString().slice(11, 23);
  const row = el('tr', { 'data-verdict': d.verdict, 'data-client-id': d.client_id, 'data-kind': d.kind, 'data-topic': d.topic },
    el('td', { class: 'mono' }, time), el('td', {}, d.kind), el('td', { class: d.verdict }, d.verdict),
    el('td', {}, text(d.reason)), el('td', { class: 'mono' }, text(d.client_id)), el('td', { class: 'mono' }, text(d.user_id)),
    el('td', { class: 'mono' }, text(d.topic)), el('td', {}, text(d.qos)), el('td', { class: 'mono' }, text(d.rule_id)),
    el('td', { class: 'mono' }, text(d.pattern)));
  const body = $('decisions').tBodies[0];
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  state.shown += 1;
  $('shown').textContent = `${state.shown} shown`;
}

function connect() {
  if (state.source) state.source.close();
  const query = filterQuery().toString();
  history.replaceState(null, '', location.pathname + (query ? '?' + query : ''));
  setStatus('connecting', false);
  document.body.dataset.live = '';
  const source = new EventSource('/admin/decisions/stream' + (query ? '?' + query : ''));
  state.source = source;
  source.addEventListener('hello', () => { setStatus('live', true); document.body.dataset.live = '1'; });
  source.addEventListener('decision', (ev) => {
    const d = JSON.parse(ev.data);
    addRow(d);
    countHit(d);
    renderHits();
  });
  source.addEventListener('status', (ev) => {
    const s = JSON.parse(ev.data);
    $('dropped').textContent = `${s.dropped} dropped`;
    $('dropped').dataset.dropped = s.dropped;
  });
  source.addEventListener('error', () => {
    document.body.dataset.live = '';
    setStatus(source.readyState === EventSource.CLOSED ? 'closed: reload the page' : 'reconnecting', false);
  });
}

function clearView() {
  state.hits.clear();
  state.shown = 0;
  $('decisions').tBodies[0].replaceChildren();
  $('shown').textContent = '0 shown';
  renderHits();
}

for (const [name, value] of new URLSearchParams(location.search)) {
  const field = $('filters').elements.namedItem(name);
  if (field) field.value = value;
}
$('filters').addEventListener('submit', (ev) => { ev.preventDefault(); clearView(); connect(); });
$('clear').addEventListener('click', clearView);
connect();
