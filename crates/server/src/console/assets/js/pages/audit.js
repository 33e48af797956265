// The audit log: who changed what, when, with the object before and after.
// Actor, action, object and time are searched by the server over the whole
// log (kept in the address, so a search can be bookmarked); the quick
// filter narrows the entries loaded.

import { h, replace } from '../dom.js';
import { get } from '../api.js';
import { dateTime } from '../format.js';
import { errorBox } from '../forms.js';

// The server-side search fields: query parameter, label, placeholder.
const SEARCH = [
  ['actor', 'Actor', 'user:admin, token:ci, device:web-01'],
  ['action', 'Action', 'policy.update, or policy.* for every kind'],
  ['object_kind', 'Object kind', 'policy, group, device, tenant…'],
  ['object_name', 'Object name', 'Exact name'],
];

// The time window: query parameter (Unix seconds) and label.
const WINDOW = [
  ['since', 'From'],
  ['until', 'Until'],
];

// Unix seconds as a `datetime-local` value (the browser's time zone).
function localInput(secs) {
  const d = new Date(secs * 1000);
  if (!Number.isFinite(secs) || Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function render(main, ctx) {
  ctx.title('Audit log');
  const entries = [];
  const fields = Object.fromEntries(SEARCH.map(([key, , placeholder]) => [key,
    h('input', { type: 'text', id: `audit-${key}`, name: key, placeholder, value: ctx.query.get(key) || '', autocomplete: 'off' })]));
  const times = Object.fromEntries(WINDOW.map(([key]) => [key,
    h('input', { type: 'datetime-local', id: `audit-${key}`, name: key, value: ctx.query.get(key) ? localInput(Number(ctx.query.get(key))) : '' })]));
  const searchStatus = h('div', { role: 'status' });
  const searchForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Search the audit log' },
    ...SEARCH.map(([key, label]) => h('div', { class: 'filter' }, h('label', { for: `audit-${key}` }, label), fields[key])),
    ...WINDOW.map(([key, label]) => h('div', { class: 'filter' }, h('label', { for: `audit-${key}` }, label), times[key])),
    h('div', { class: 'filter' }, h('button', { type: 'submit', class: 'btn' }, 'Search the log')));
  // The search as query parameters, empty fields left out; times as Unix
  // seconds, read in the browser's time zone.
  const searched = () => {
    const params = new URLSearchParams();
    for (const [key] of SEARCH) {
      const v = fields[key].value.trim();
      if (v) params.set(key, v);
    }
    for (const [key] of WINDOW) {
      const at = times[key].value ? Math.floor(new Date(times[key].value).getTime() / 1000) : NaN;
      if (Number.isFinite(at)) params.set(key, String(at));
    }
    return params;
  };
  const filter = h('input', { type: 'search', id: 'audit-filter', placeholder: 'Actor, action or object' });
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'btn', id: 'audit-more' }, 'Older entries');
  const count = h('p', { class: 'count', role: 'status' });
  const moreStatus = h('div', { role: 'status' });

  function draw() {
    const q = filter.value.trim().toLowerCase();
    const rows = entries.filter((a) => !q || `${a.actor} ${a.action} ${a.object_kind} ${a.object_name}`.toLowerCase().includes(q));
    replace(count, `${rows.length} of ${entries.length} entries loaded`);
    if (!rows.length) {
      const none = entries.length ? 'No entry matches this filter.' : searched().toString() ? 'No entry matches this search.' : 'No entry yet.';
      replace(body, h('tr', {}, h('td', { colspan: 5, class: 'empty' }, none)));
      return;
    }
    replace(body, rows.map((a) => h('tr', {},
      h('td', {}, h('time', { datetime: new Date(a.at * 1000).toISOString() }, dateTime(a.at))),
      h('td', {}, a.actor),
      h('th', { scope: 'row' }, h('code', {}, a.action)),
      h('td', {}, `${a.object_kind} `, h('strong', {}, a.object_name)),
      h('td', {}, a.before || a.after ? h('details', {},
        h('summary', {}, 'Before and after'),
        h('div', { class: 'diff' },
          h('div', {}, h('h4', {}, 'Before'), h('pre', {}, a.before ? JSON.stringify(a.before, null, 2) : '—')),
          h('div', {}, h('h4', {}, 'After'), h('pre', {}, a.after ? JSON.stringify(a.after, null, 2) : '—')))) : h('span', { class: 'muted' }, '—')))));
  }

  async function load() {
    const params = searched();
    params.set('limit', '100');
    if (entries.length) params.set('before', String(entries[entries.length - 1].id));
    const page = await get(`/audit?${params}`);
    entries.push(...page);
    more.hidden = page.length < 100;
    draw();
  }
  filter.addEventListener('input', draw);
  searchForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const qs = searched().toString();
    history.replaceState(null, '', `#/audit${qs ? `?${qs}` : ''}`);
    replace(searchStatus);
    entries.length = 0;
    try {
      await load();
    } catch (err) {
      draw();
      replace(searchStatus, errorBox(err));
    }
  });
  // Older entries that fail to load say why, and the button stays to retry.
  more.addEventListener('click', async () => {
    replace(moreStatus);
    try {
      await load();
    } catch (err) {
      replace(moreStatus, errorBox(err));
    }
  });
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Audit log')),
    h('p', { class: 'lead' }, 'Every change, by whom and when, newest first. Entries are written in the same transaction as the change.'),
    searchForm, searchStatus,
    h('div', { class: 'filters' }, h('div', { class: 'filter' }, h('label', { for: 'audit-filter' }, 'Filter'), filter)),
    count,
    h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'audit-table' },
      h('caption', { class: 'sr-only' }, 'Audit log entries'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Object', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
      body)),
    more, moreStatus);
  await load();
}
