// The policy simulator: every decision comes from POST /admin/simulate, the code of
// `mqttgate acl simulate`; the editor is checked by POST /admin/policy/validate, the code
// of `mqttgate acl validate`, whose line numbers are the editor's own.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  activeText: null,       // the active policy as loaded, to tell an edit from it
  editedValid: true,      // the last validation of the editor text
  cases: [],              // {identity, client_id, action, topic, qos, retain, expect, result}
  lastRequest: null,
  lastDecision: null,
};

// -- the editor ------------------------------------------------------------------------

function renderGutter(marks) {
  const lines = $('policy').value.split('\n').length;
  const gutter = $('gutter');
  gutter.replaceChildren();
  for (let n = 1; n <= lines; n++) {
    const mark = marks.get(n);
    gutter.append(el('div', { class: mark ? mark.severity : null, 'data-line': n, title: mark ? mark.message : null }, n));
  }
  gutter.scrollTop = $('policy').scrollTop;
}

function selectLine(line) {
  const area = $('policy');
  const lines = area.value.split('\n');
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || '').length);
  area.scrollTop = Math.max(0, (line - 5) * 18);
}

function renderProblems(result) {
  const list = $('problems');
  list.replaceChildren();
  const marks = new Map();
  const problems = [...result.errors, ...result.warnings];
  for (const p of problems) {
    if (p.line && (!marks.has(p.line) || p.severity === 'error')) marks.set(p.line, p);
    list.append(el('li', {
      class: p.severity, 'data-line': p.line, 'data-code': p.code,
      onclick: () => p.line && selectLine(p.line),
    }, `${p.line ? 'line ' + p.line : 'document'}: ${p.severity}: ${p.message} [${p.code}]` + (p.pointer ? `  ${p.pointer}` : '')));
  }
  if (result.valid && problems.length === 0) {
    list.append(el('li', { class: 'ok' }, `valid: ${result.rules} rules, version ${result.policy_version}`));
  }
  renderGutter(marks);
}

function edited() {
  return state.activeText !== null && $('policy').value !== state.activeText;
}

function renderPolicyState() {
  const badge = $('policy-state');
  badge.textContent = edited() ? 'edited (simulated as written)' : 'active';
  badge.className = 'badge' + (edited() ? ' edited' : '');
}

let validateTimer = null;
async function validateNow() {
  const { status, data } = await api('POST', '/admin/policy/validate', $('policy').value);
  if (status !== 200) return;
  state.editedValid = data.valid;
  renderProblems(data);
}

function onEdit() {
  renderPolicyState();
  renderGutter(new Map());
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validateNow, 250);
}

async function loadActive() {
  const { status, data } = await api('GET', '/admin/policy');
  if (status !== 200) {
    $('problems').replaceChildren(el('li', { class: 'error' }, `cannot load the policy: ${data && data.error}`));
    return;
  }
  state.activeText = JSON.stringify(data.policy, null, 2) + '\n';
  $('policy').value = state.activeText;
  $('policy-version').textContent = `version ${data.version}` + (data.source ? ` from ${data.source}` : '');
  renderPolicyState();
  await validateNow();
}

// -- one request ------------------------------------------------------------------------

function readIdentity(raw) {
  const value = JSON.parse(raw);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('an identity is a JSON object of bindings');
  return value;
}

/** The request of the form, in the shape of one case of CASES.json. */
function formCase() {
  let identity;
  try {
    identity = readIdentity($('identity').value);
    $('identity-error').textContent = '';
  } catch (e) {
    $('identity-error').textContent = `identity: ${e.message}`;
    return null;
  }
  const out = { identity, action: $('action').value, topic: $('topic').value,
                qos: Number($('qos').value), retain: $('retain').checked };
  const clientId = $('client-id').value.trim();
  if (clientId) out.client_id = clientId;
  return out;
}

/** One decision from the admin API for a case (its expect and result are left out). */
async function decide(c, explain) {
  const body = { identity: c.identity, action: c.action, topic: c.topic, qos: c.qos, retain: c.retain, explain };
  if (c.client_id) body.client_id = c.client_id;
  if (edited()) {
    if (!state.editedValid) throw new Error('the edited policy has errors: fix the marked lines first');
    body.policy = JSON.parse($('policy').value);
  }
  const { status, data } = await api('POST', '/admin/simulate', body);
  if (status !== 200) throw new Error((data && data.error) || `HTTP ${status}`);
  return data;
}

function renderDecision(d) {
  const facts = [['reason', d.reason], ['rule', d.rule_id], ['bound pattern', d.pattern],
                 ['granted QoS', d.granted_qos], ['policy version', d.policy_version]];
  const trace = el('table', { id: 'trace' },
    el('thead', {}, el('tr', {}, el('th', {}, 'rule'), el('th', {}, 'effect'), el('th', {}, 'outcome'),
                                 el('th', {}, 'detail'), el('th', {}, 'pattern'))),
    el('tbody', {}, (d.explain || []).map((s) => el('tr', { 'data-rule': s.rule_id },
      el('td', { class: 'mono' }, s.rule_id), el('td', {}, s.effect), el('td', {}, s.outcome),
      el('td', {}, text(s.detail)), el('td', { class: 'mono' }, text(s.pattern))))));
  $('result').replaceChildren(
    el('span', { class: 'verdict ' + d.verdict, id: 'verdict' }, d.verdict.toUpperCase()),
    el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k), el('dd', { 'data-fact': k }, text(v))])),
    el('h2', {}, 'Explain trace ', el('span', { class: 'muted' }, 'every rule considered, in order')),
    trace);
}

async function simulate() {
  $('simulate-error').textContent = '';
  const c = formCase();
  if (!c) return;
  try {
    const d = await decide(c, true);
    state.lastRequest = c;
    state.lastDecision = d;
    renderDecision(d);
  } catch (e) {
    $('simulate-error').textContent = e.message;
  }
}

// -- cases --------------------------------------------------------------------------------

/** A case as `mqttgate acl test` reads it (gateway/acl/cases.py). */
function caseJson(c) {
  const out = { identity: c.identity };
  if (c.client_id) out.client_id = c.client_id;
  Object.assign(out, { action: c.action, topic: c.topic, qos: c.qos, retain: c.retain, expect: c.expect });
  return out;
}

function renderCases() {
  const body = $('cases').tBodies[0];
  body.replaceChildren();
  state.cases.forEach((c, i) => {
    const r = c.result;
    const outcome = r ? (r.error ? 'error' : r.verdict) : '';
    const rowClass = r ? (!r.error && r.verdict === c.expect ? 'pass' : 'fail') : '';
    const update = (key, parse) => (ev) => { c[key] = parse(ev.target); c.result = null; renderCases(); };
    body.append(el('tr', { class: rowClass, 'data-case': i + 1 },
      el('td', {}, i + 1),
      el('td', {}, el('input', { type: 'text', class: 'identity', value: JSON.stringify(c.identity),
        onchange: (ev) => { try { c.identity = readIdentity(ev.target.value); c.result = null; } catch (e) { ev.target.value = JSON.stringify(c.identity); } renderCases(); } })),
      el('td', {}, el('input', { type: 'text', value: c.client_id || '', onchange: update('client_id', (t) => t.value.trim() || undefined) })),
      el('td', {}, el('select', { onchange: update('action', (t) => t.value) },
        ['publish', 'subscribe'].map((a) => el('option', { selected: a === c.action }, a)))),
      el('td', {}, el('input', { type: 'text', value: c.topic, onchange: update('topic', (t) => t.value) })),
      el('td', {}, el('select', { onchange: update('qos', (t) => Number(t.value)) },
        [0, 1, 2].map((q) => el('option', { selected: q === c.qos }, q)))),
      el('td', {}, el('input', { type: 'checkbox', checked: c.retain, onchange: update('retain', (t) => t.checked) })),
      el('td', {}, el('select', { class: 'expect', onchange: update('expect', (t) => t.value) },
        ['allow', 'deny'].map((v) => el('option', { selected: v === c.expect }, v)))),
      el('td', { class: 'outcome ' + (r && !r.error ? r.verdict : ''), title: r && r.error ? r.error : null }, outcome),
      el('td', { class: 'mono' }, r && !r.error ? text(r.rule_id) : ''),
      el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: () => { state.cases.splice(i, 1); renderCases(); } }, 'remove'))));
  });
  const ran = state.cases.filter((c) => c.result);
  const failed = ran.filter((c) => c.result.error || c.result.verdict !== c.expect).length;
  $('cases-summary').textContent = ran.length === state.cases.length && ran.length > 0
    ? `${ran.length} cases, ${ran.length - failed} passed, ${failed} failed`
    : `${state.cases.length} cases`;
}

function addCase() {
  const c = formCase();
  if (!c) return;
  const known = state.lastDecision && JSON.stringify(state.lastRequest) === JSON.stringify(c);
  c.expect = known ? state.lastDecision.verdict : 'allow';
  state.cases.push(c);
  renderCases();
}

async function runCases() {
  $('cases-error').textContent = '';
  for (const c of state.cases) {
    try {
      c.result = await decide(c, false);
    } catch (e) {
      c.result = { error: e.message };
    }
  }
  renderCases();
}

function downloadCases() {
  const blob = new Blob([JSON.stringify(state.cases.map(caseJson), null, 2) + '\n'], { type: 'application/json' });
  const link = el('a', { href: URL.createObjectURL(blob), download: 'CASES.json' });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function loadCases(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  try {
    const data = JSON.parse(await file.text());
    if (!Array.isArray(data)) throw new Error('a case table is a JSON list of case objects');
    state.cases = data.map((raw, i) => {
      if (!['publish', 'subscribe'].includes(raw.action) || typeof raw.topic !== 'string') throw new Error(`case ${i + 1}: action and topic are required`);
      return { identity: raw.identity || {}, client_id: raw.client_id, action: raw.action, topic: raw.topic,
               qos: raw.qos || 0, retain: !!raw.retain, expect: raw.expect === 'deny' ? 'deny' : 'allow' };
    });
    $('cases-error').textContent = '';
  } catch (e) {
    $('cases-error').textContent = `${file.name}: ${e.message}`;
  }
  ev.target.value = '';
  renderCases();
}

// -- wiring ---------------------------------------------------------------------------------

$('policy').addEventListener('input', onEdit);
$('policy').addEventListener('scroll', () => { $('gutter').scrollTop = $('policy').scrollTop; });
$('load-active').addEventListener('click', loadActive);
$('simulate').addEventListener('click', simulate);
$('add-case').addEventListener('click', addCase);
$('run-cases').addEventListener('click', runCases);
$('download-cases').addEventListener('click', downloadCases);
$('load-cases').addEventListener('change', loadCases);
window.simulatorReady = loadActive().then(() => { renderCases(); document.body.dataset.ready = '1'; });
