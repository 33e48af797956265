// All devices: name, OS, managed by, labels, tags, enrollment status and
// code, problems (errors, conflicts, stale check-ins), last check-in;
// search as you type over every column's text, filter, sort by any column.
// Filters and sorting live in the URL, so a view can be bookmarked and
// shared, and Back returns to it.
//
// A tenant of up to WHOLE_LIST_MAX devices is listed whole and filtered in
// the page; a bigger one is paged by the server (search, filters and sorting
// in the database, a page at a time, and only that page is refreshed).

import { h, replace, announce, keepFocus } from '../dom.js';
import { get, getPage } from '../api.js';
import { chips, enrollmentBadge, managedByText, when, platformName, PLATFORMS, plural } from '../format.js';
import { select } from '../forms.js';

const COLUMNS = [
  ['name', 'Name', (d) => d.name],
  ['os', 'OS', (d) => `${d.os} ${d.os_version}`],
  ['type', 'Type', (d) => d.type],
  ['managed_by', 'Managed by', (d) => d.managed_by],
  ['labels', 'Labels', (d) => d.labels.join(',')],
  ['tags', 'Tags', (d) => d.tags.join(',')],
  ['enrollment', 'Enrollment', (d) => d.enrollment.status],
  ['problems', 'Problems', (d) => problemRank(d)],
  ['last_check_in', 'Last check-in', (d) => d.last_check_in ?? -1],
];

/** Up to this many devices, the list is fetched whole. */
const WHOLE_LIST_MAX = 2000;
const PAGE_SIZE = 50;
/** Columns the server can sort by. */
const SERVER_SORTS = new Set(['name', 'os', 'type', 'managed_by', 'enrollment', 'last_check_in']);

/** Errors weigh most, then conflicts, then a missed check-in. */
const problemRank = (d) => (d.problems?.errors ?? 0) * 1e6 + (d.problems?.conflicts ?? 0) * 1e3 + (d.problems?.stale ? 1 : 0);

const PROBLEM_FILTERS = [
  ['', 'Any'],
  ['any', 'Any problem'],
  ['errors', 'Errors'],
  ['conflicts', 'Conflicts'],
  ['stale', 'Not checked in'],
  ['none', 'No problem'],
];

function hasProblem(d, which) {
  const p = d.problems ?? {};
  switch (which) {
    case 'any': return problemRank(d) > 0;
    case 'errors': return p.errors > 0;
    case 'conflicts': return p.conflicts > 0;
    case 'stale': return Boolean(p.stale);
    case 'none': return problemRank(d) === 0;
    default: return true;
  }
}

/** Everything a search matches: every column's text. */
const searchText = (d) => [d.name, d.os, platformName(d.os), d.os_version, d.type, d.managed_by, ...d.labels, ...d.tags, d.enrollment.status, d.enrollment.code ?? '']
  .join('\n').toLowerCase();

function problemsCell(d) {
  const p = d.problems ?? {};
  const parts = [
    p.errors ? h('span', { class: 'badge st-error' }, plural(p.errors, 'error')) : null,
    p.conflicts ? h('span', { class: 'badge st-conflict' }, plural(p.conflicts, 'conflict')) : null,
    p.stale ? h('span', { class: 'badge st-pending', title: 'No check-in for more than 3 hours' }, 'Not checked in') : null,
  ].filter(Boolean);
  if (parts.length) return h('span', { class: 'mini-counts' }, parts);
  // Problems are what the device reported: one that never checked in
  // (a simulated device) has said nothing either way.
  return h('span', { class: 'muted' }, d.last_check_in ? 'None' : 'No report yet');
}

export async function render(main, ctx) {
  ctx.title('Devices');
  const q = (k) => ctx.query.get(k) || '';
  const asked = Number(q('page_size'));
  const pageSizeAsked = Number.isInteger(asked) && asked >= 1 && asked <= 1000 ? asked : 0;
  const pageSize = pageSizeAsked || PAGE_SIZE;
  const state = {
    sort: COLUMNS.some(([k]) => k === q('sort')) ? q('sort') : 'name',
    dir: q('dir') === 'desc' ? -1 : 1,
    q: '', os: '', managed: '', enrollment: '', label: '', problems: '',
    devices: [],
    lastJson: '',
    // Server paging: asked for with `?page_size=N`, or a tenant too big
    // to list whole.
    paged: pageSizeAsked > 0,
    cursors: [null],
    pageIndex: 0,
    total: 0,
    next: null,
  };
  const search = h('input', { type: 'search', id: 'device-search', placeholder: 'Name, OS, tag, label…', value: q('q') });
  const os = select([['', 'Any OS'], ...PLATFORMS], q('os'), { id: 'device-os' });
  const managed = select([['', 'Anyone'], ...(q('managed') ? [[q('managed'), q('managed')]] : [])], q('managed'), { id: 'device-managed' });
  const enrollment = select([['', 'Any status'], ...(q('enrollment') ? [[q('enrollment'), q('enrollment')]] : [])], q('enrollment'), { id: 'device-enrollment' });
  const label = select([['', 'Any label'], ['Joined', 'Joined'], ['Managed', 'Managed']], q('label'), { id: 'device-label' });
  const problems = select(PROBLEM_FILTERS, q('problems'), { id: 'device-problems' });
  const count = h('p', { class: 'count', role: 'status' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of devices', hidden: true });
  const table = h('table', { class: 'data', id: 'devices-table' });
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter devices', onsubmit: (e) => e.preventDefault() },
    h('div', { class: 'filter' }, h('label', { for: 'device-search' }, 'Search'), search),
    h('div', { class: 'filter' }, h('label', { for: 'device-os' }, 'OS'), os),
    h('div', { class: 'filter' }, h('label', { for: 'device-managed' }, 'Managed by'), managed),
    h('div', { class: 'filter' }, h('label', { for: 'device-enrollment' }, 'Enrollment'), enrollment),
    h('div', { class: 'filter' }, h('label', { for: 'device-label' }, 'Label'), label),
    h('div', { class: 'filter' }, h('label', { for: 'device-problems' }, 'Problems'), problems));
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Devices')),
    h('p', { class: 'lead' }, 'Devices that enrolled through rampart-agent, and simulated devices loaded from files. ',
      h('strong', {}, 'Managed by'), ' shows who manages their security settings; the ', h('em', {}, 'Joined'),
      ' label marks devices whose trust Rampart created, ', h('em', {}, 'Managed'), ' those whose settings it manages now.'),
    filters, count, h('div', { class: 'table-wrap' }, table), pager);

  /** Writes the view into the URL without reloading the page. */
  function remember() {
    const params = new URLSearchParams();
    for (const [k, v] of [['q', search.value.trim()], ['os', state.os], ['managed', state.managed], ['enrollment', state.enrollment],
      ['label', state.label], ['problems', state.problems], ['sort', state.sort === 'name' ? '' : state.sort], ['dir', state.dir === -1 ? 'desc' : ''],
      ['page_size', pageSizeAsked ? String(pageSizeAsked) : '']]) {
      if (v) params.set(k, v);
    }
    const qs = params.toString();
    history.replaceState(null, '', `#/devices${qs ? `?${qs}` : ''}`);
  }

  let typing = null;
  const update = () => {
    state.q = search.value.trim().toLowerCase();
    state.os = os.value;
    state.managed = managed.value;
    state.enrollment = enrollment.value;
    state.label = label.value;
    state.problems = problems.value;
    remember();
    if (!state.paged) {
      draw();
      return;
    }
    // Paged: the server filters; start again from the first page once the
    // typing stops.
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.cursors = [null];
      state.pageIndex = 0;
      loadPage().catch(() => {});
    }, 250);
  };
  for (const c of [search, os, managed, enrollment, label, problems]) c.addEventListener('input', update);

  /** The server's query for the current view and page. */
  function pageQuery() {
    const params = new URLSearchParams({ limit: String(pageSize) });
    for (const [k, v] of [['search', search.value.trim()], ['os', state.os], ['managed_by', state.managed], ['enrollment', state.enrollment], ['label', state.label]]) {
      if (v) params.set(k, v);
    }
    if (SERVER_SORTS.has(state.sort)) {
      params.set('sort', state.sort);
      if (state.dir === -1) params.set('order', 'desc');
    }
    const cursor = state.cursors[state.pageIndex];
    if (cursor) params.set('cursor', cursor);
    return params.toString();
  }

  async function loadPage() {
    const page = await getPage(`/devices?${pageQuery()}`);
    if (page.total !== null) state.total = page.total;
    state.next = page.next;
    const json = JSON.stringify(page.items);
    if (json === state.lastJson) return;
    state.lastJson = json;
    state.devices = page.items;
    fillOptions(managed, new Set([...page.items.map((d) => d.managed_by), state.managed].filter(Boolean)), 'Anyone');
    fillOptions(enrollment, new Set([...page.items.map((d) => d.enrollment.status), state.enrollment].filter(Boolean)), 'Any status');
    draw();
  }

  function fillOptions(sel, values, anyLabel) {
    const cur = sel.value;
    replace(sel, h('option', { value: '' }, anyLabel), [...values].sort().map((v) => h('option', { value: v, selected: v === cur }, v)));
  }

  function drawPager() {
    pager.hidden = !state.paged;
    if (!state.paged) return;
    const go = (index) => {
      state.pageIndex = index;
      state.lastJson = '';
      loadPage().catch(() => {});
    };
    replace(pager,
      h('button', { type: 'button', class: 'btn', id: 'devices-prev', disabled: state.pageIndex === 0, onclick: () => go(state.pageIndex - 1) }, 'Previous page'),
      h('button', {
        type: 'button', class: 'btn', id: 'devices-next', disabled: !state.next,
        onclick: () => {
          state.cursors[state.pageIndex + 1] = state.next;
          go(state.pageIndex + 1);
        },
      }, 'Next page'));
  }

  function draw() {
    drawPager();
    if (state.paged) problems.disabled = true;
    const col = COLUMNS.find(([k]) => k === state.sort) ?? COLUMNS[0];
    // Paged, the server filtered and sorted the page already.
    const rows = state.paged ? state.devices : state.devices
      .filter((d) => !state.q || state.q.split(/\s+/).every((word) => searchText(d).includes(word)))
      .filter((d) => hasProblem(d, state.problems))
      .filter((d) => !state.os || d.os === state.os)
      .filter((d) => !state.managed || d.managed_by === state.managed)
      .filter((d) => !state.enrollment || d.enrollment.status === state.enrollment)
      .filter((d) => !state.label || d.labels.includes(state.label))
      .sort((a, b) => {
        const x = col[2](a);
        const y = col[2](b);
        return (x < y ? -1 : x > y ? 1 : a.name.localeCompare(b.name)) * state.dir;
      });
    const first = state.pageIndex * pageSize;
    replace(count, state.paged
      ? (rows.length ? `Devices ${first + 1}–${first + rows.length} of ${state.total}` : `No device of ${state.total} matches`)
      : `${plural(rows.length, 'device')} shown of ${state.devices.length}`);
    keepFocus(table, () => replace(table,
      h('caption', { class: 'sr-only' }, 'Devices, sortable by each column'),
      h('thead', {}, h('tr', {}, COLUMNS.map(([key, label]) => {
        const sorted = state.sort === key;
        // Paged, only the columns the server sorts by can be sorted.
        if (state.paged && !SERVER_SORTS.has(key)) return h('th', { scope: 'col' }, label);
        return h('th', { scope: 'col', 'aria-sort': sorted ? (state.dir === 1 ? 'ascending' : 'descending') : 'none' },
          h('button', {
            type: 'button', class: 'sort',
            onclick: () => {
              state.dir = sorted ? -state.dir : 1;
              state.sort = key;
              remember();
              if (state.paged) {
                state.cursors = [null];
                state.pageIndex = 0;
                state.lastJson = '';
                loadPage().catch(() => {});
              } else {
                draw();
              }
              table.querySelector(`th:nth-child(${COLUMNS.findIndex(([k]) => k === key) + 1}) button`)?.focus();
              announce(`Sorted by ${label}, ${state.dir === 1 ? 'ascending' : 'descending'}`);
            },
          }, label));
      }))),
      h('tbody', {}, rows.length ? rows.map((d) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/devices/${encodeURIComponent(d.name)}` }, d.name)),
        h('td', {}, `${platformName(d.os)} ${d.os_version}`),
        h('td', {}, d.type),
        h('td', {}, managedByText(d)),
        h('td', {}, chips(d.labels, 'chip chip-label')),
        h('td', {}, chips(d.tags)),
        h('td', {}, enrollmentBadge(d.enrollment)),
        h('td', { class: 'problems-cell' }, problemsCell(d)),
        h('td', {}, when(d.last_check_in)))) : h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'empty' }, 'No device matches these filters.')))));
  }

  async function load() {
    if (state.paged) {
      await loadPage();
      return;
    }
    const list = await get('/devices');
    const json = JSON.stringify(list);
    if (json === state.lastJson) return;
    state.lastJson = json;
    state.devices = list;
    fillOptions(managed, new Set(list.map((d) => d.managed_by)), 'Anyone');
    fillOptions(enrollment, new Set(list.map((d) => d.enrollment.status)), 'Any status');
    update();
  }
  if (!state.paged && (await getPage('/devices?limit=1')).total > WHOLE_LIST_MAX) state.paged = true;
  if (state.paged) {
    // The server filters and pages; the problems filter needs every device.
    state.q = search.value.trim().toLowerCase();
    state.os = os.value;
    state.managed = managed.value;
    state.enrollment = enrollment.value;
    state.label = label.value;
    problems.value = '';
    problems.title = 'Not available when devices are paged by the server';
  }
  await load();
  const timer = setInterval(() => { if (ctx.current() && !document.hidden) load().catch(() => {}); }, 5000);
  ctx.onCleanup(() => clearInterval(timer));
}
