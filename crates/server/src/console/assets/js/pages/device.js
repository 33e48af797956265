// One device: its facts, enrollment, Policy sync, re-enrollment approval,
// tags, delete, and each setting's status with its effective value and
// source policies — problems first, and the status tiles filter the table
// (the filter is kept in the URL); for a conflict, the other policies that
// manage the same setting.

import { h, replace, announce, idFor, keepFocus } from '../dom.js';
import { get, post, put, del, seg, can, catalogMap, ApiError } from '../api.js';
import { chips, enrollmentBadge, managedByText, when, dateTime, platformName, statusBadge, statusName, backendNote, valueNode, policyLinks, conflictNode, withCode, STATUSES } from '../format.js';
import { field, showErrors, clearErrors, errorBox } from '../forms.js';
import { confirmDialog } from '../dialog.js';

/** The order settings are listed in: what needs attention first. A sort
 * is stable, so the report's own order holds within a status. */
const PROBLEMS_FIRST = ['conflict', 'error', 'pending', 'recorded', 'succeeded', 'not_applicable'];

export async function render(main, ctx) {
  const name = ctx.params.name;
  ctx.title(name);
  const path = `/devices/${seg(name)}`;
  const [device, report, catalog] = await Promise.all([get(path), get(`/reports${path}`), catalogMap()]);
  const expanded = new Set();
  const STATUS_KEYS = STATUSES.map(([k]) => k);
  let shown = STATUS_KEYS.includes(ctx.query.get('status')) ? ctx.query.get('status') : '';
  const syncStatus = h('p', { class: 'action-status', role: 'status', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  if (can('security_manager')) {
    // A sync asks the agent to check in for its policy: only a device
    // Rampart manages has one to fetch.
    if (device.enrollment.status === 'enrolled') {
      actions.append(h('button', { type: 'button', class: 'btn btn-primary', id: 'policy-sync', onclick: sync }, 'Policy sync'));
    }
    actions.append(
      h('button', { type: 'button', class: 'btn', id: 'reenroll-device', onclick: confirmReenroll }, 'Allow re-enrollment'),
      h('button', { type: 'button', class: 'btn btn-danger', id: 'delete-device', onclick: confirmDelete }, 'Delete'));
  }
  const summary = h('div', { class: 'card' });
  const tagsCard = h('section', { class: 'card', 'aria-labelledby': 'tags-h' });
  const statusCard = h('section', { class: 'card', 'aria-labelledby': 'settings-h' });
  const tamperCard = h('div');
  main.append(
    h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/devices' }, 'Devices'), ' › ', h('span', { 'aria-current': 'page' }, name)),
    h('div', { class: 'page-head' }, h('h1', {}, name), actions),
    syncStatus, summary, statusCard, tamperCard, tagsCard);

  let lastJson = '';
  function draw(d, r) {
    const json = JSON.stringify([d, r]);
    if (json === lastJson) return;
    lastJson = json;
    const inSync = r.applied_digest && r.applied_digest === r.digest;
    replace(summary,
      h('dl', { class: 'facts' },
        h('div', {}, h('dt', {}, 'OS'), h('dd', {}, `${platformName(d.os)} ${d.os_version}`)),
        h('div', {}, h('dt', {}, 'Type'), h('dd', {}, d.type)),
        h('div', {}, h('dt', {}, 'Managed by'), h('dd', { id: 'managed-by' }, managedByText(d))),
        h('div', {}, h('dt', {}, 'Labels'), h('dd', {}, chips(d.labels, 'chip chip-label'))),
        d.conditions?.length ? h('div', {}, h('dt', {}, 'Conditions'), h('dd', { id: 'conditions' }, chips(d.conditions))) : null,
        h('div', {}, h('dt', {}, 'Enrollment'), h('dd', { id: 'enrollment' }, enrollmentBadge(d.enrollment),
          d.enrollment.code ? h('code', { class: 'code-after' }, d.enrollment.code) : null,
          d.enrollment.reason ? h('span', { class: 'muted block' }, d.enrollment.reason) : null)),
        h('div', {}, h('dt', {}, 'Last check-in'), h('dd', {}, when(d.last_check_in), d.last_check_in ? h('span', { class: 'muted block' }, dateTime(d.last_check_in)) : null)),
        h('div', {}, h('dt', {}, 'Agent'), h('dd', {}, d.agent_version || h('span', { class: 'muted' }, 'none (simulated device)'))),
        h('div', {}, h('dt', {}, 'Policy'), h('dd', {},
          !r.managed ? h('span', {}, 'not managed', r.reason ? h('span', { class: 'muted block' }, r.reason) : null)
            : inSync ? h('span', { class: 'ok-text' }, 'applied (in sync)')
              : h('span', { class: 'pending-text' }, r.applied_digest ? 'an older version is applied; waiting for the device' : 'not applied yet')))),
      // A code's cause and fix, from the same table as docs/troubleshooting.md.
      d.enrollment.help ? h('div', { class: 'warning', id: 'device-help', role: 'note' },
        h('p', {}, h('strong', {}, 'Why: '), withCode(d.enrollment.help.cause)),
        h('p', {}, h('strong', {}, 'Fix: '), withCode(d.enrollment.help.fix))) : null);
    keepFocus(statusCard, () => drawSettings(r));
    replace(tamperCard, r.tamper_events?.length
      ? h('section', { class: 'card', 'aria-labelledby': 'tamper-h' },
        h('h2', { id: 'tamper-h' }, 'Changes undone on the device'),
        h('ul', {}, r.tamper_events.map((t) => h('li', {}, h('code', {}, JSON.stringify(t))))))
      : null);
  }

  /** Shows only the settings in `status` (or all), and says so in the URL. */
  function showOnly(status) {
    shown = shown === status ? '' : status;
    history.replaceState(null, '', `#/devices/${seg(name)}${shown ? `?status=${shown}` : ''}`);
    keepFocus(statusCard, () => drawSettings(lastReport));
    announce(shown ? `Showing ${statusName(shown)} settings` : 'Showing every setting');
  }

  let lastReport = report;
  function drawSettings(r) {
    lastReport = r;
    const countTiles = h('ul', { class: 'counts', 'aria-label': 'Settings by status; choose one to show only those' },
      STATUSES.map(([k, label]) => h('li', { class: `count-tile st-${k}${shown === k ? ' selected' : ''}`, dataset: { status: k } },
        h('button', { type: 'button', class: 'tile-button', 'aria-pressed': String(shown === k), onclick: () => showOnly(k) },
          h('span', { class: 'num' }, String(r.counts[k] ?? 0)), h('span', {}, label)))));
    const rows = [];
    const listed = r.settings
      .filter((s) => !shown || s.status === shown)
      .sort((a, b) => PROBLEMS_FIRST.indexOf(a.status) - PROBLEMS_FIRST.indexOf(b.status));
    for (const s of listed) {
      const def = catalog.get(s.setting);
      const key = `${s.setting}|${s.key ?? ''}`;
      const detailId = idFor('detail', key);
      const open = expanded.has(key);
      const toggle = h('button', {
        type: 'button', class: 'linklike setting-toggle', 'aria-expanded': String(open), 'aria-controls': detailId,
        dataset: { setting: s.setting },
        onclick: (e) => {
          if (expanded.has(key)) expanded.delete(key); else expanded.add(key);
          const nowOpen = expanded.has(key);
          e.currentTarget.setAttribute('aria-expanded', String(nowOpen));
          document.getElementById(detailId).hidden = !nowOpen;
        },
      }, def?.title ?? s.setting);
      rows.push(h('tr', { class: `row-${s.status}`, dataset: { setting: s.setting } },
        h('th', { scope: 'row' }, toggle, h('code', { class: 'setting-id' }, s.setting), s.key ? h('span', { class: 'key', title: s.key }, ` [${s.key_name ?? s.key}]`) : null),
        h('td', {}, statusBadge(s.status), backendNote(s.backend)),
        h('td', {}, s.status === 'conflict' ? h('span', { class: 'muted' }, 'not applied') : valueNode(s.value)),
        h('td', {}, s.observed === null || s.observed === undefined ? h('span', { class: 'muted' }, '—') : valueNode(s.observed)),
        h('td', {}, policyLinks(s.sources)),
        h('td', { class: 'notes' },
          s.status === 'conflict' && s.conflicting?.length
            ? conflictNode(s.conflicting)
            : s.status === 'conflict' ? h('span', {}, 'Conflict between ', policyLinks(s.other_policies)) : null,
          s.error_code ? h('code', {}, s.error_code) : null,
          // The badge already says "recorded, not enforced".
          s.error_message && !(s.status === 'recorded' && !s.error_code) ? h('span', { class: 'block' }, s.error_message) : null,
          s.status === 'not_applicable' && s.reason ? h('span', {}, s.reason) : null)));
      rows.push(h('tr', { class: 'detail-row', id: detailId, hidden: !open },
        h('td', { colspan: 6 }, h('div', { class: 'setting-detail' },
          def ? h('p', {}, withCode(def.description)) : null,
          s.reason ? h('p', {}, h('strong', {}, 'Why: '), s.reason) : null,
          h('p', {}, h('strong', {}, 'Source policies: '), policyLinks(s.sources)),
          h('p', { class: 'other-policies' }, h('strong', {}, 'Other policies that manage this setting: '),
            policyLinks(s.other_policies.length ? s.other_policies : s.sources.length > 1 ? s.sources : [])),
          h('p', {}, h('a', { href: `#/reports/settings/${seg(s.setting)}` }, `Status of ${def?.title ?? s.setting} on every device`))))));
    }
    replace(statusCard,
      h('h2', { id: 'settings-h' }, 'Per-setting status'),
      r.managed ? countTiles : h('p', { class: 'notice' }, `Rampart does not manage this device's settings: ${r.reason ?? 'out of scope'}.`),
      r.managed ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'device-settings' },
        h('caption', { class: 'sr-only' }, 'Each setting: status, effective value, value read back from the device, source policies'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Setting'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Effective value'),
          h('th', { scope: 'col' }, 'Reported by the device'), h('th', { scope: 'col' }, 'Source policies'), h('th', { scope: 'col' }, 'Notes'))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'empty' },
          shown ? [`No setting is ${statusName(shown).toLowerCase()}. `, h('button', { type: 'button', class: 'linklike', onclick: () => showOnly(shown) }, 'Show every setting')]
            : 'No policy sets anything on this device.'))))) : null);
  }

  function drawTags(d) {
    const input = h('input', { type: 'text', value: d.tags.join(', '), disabled: !can('security_manager') });
    const status = h('p', { class: 'action-status', role: 'status' });
    const form = h('form', { class: 'inline-form', novalidate: true },
      field({ path: 'tags', label: 'Tags', control: input, help: 'Comma separated. Dynamic groups and pilot mode read tags.' }),
      can('security_manager') ? h('button', { type: 'submit', class: 'btn' }, 'Save tags') : null,
      status);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const tags = input.value.split(',').map((t) => t.trim()).filter(Boolean);
      try {
        const updated = await put(`${path}/tags`, { tags });
        input.value = updated.tags.join(', ');
        replace(status, 'Tags saved.');
        announce('Tags saved');
        refresh();
      } catch (err) {
        const rest = err instanceof ApiError ? showErrors(form, err.details) : [];
        replace(status, err.details?.length && !rest.length ? '' : errorBox(err, rest));
        input.focus();
      }
    });
    replace(tagsCard, h('h2', { id: 'tags-h' }, 'Device tags'), form);
  }

  async function sync() {
    replace(syncStatus, 'Asking the device to sync…');
    try {
      const r = await post(`${path}/sync`);
      const text = r.connected
        ? 'Sync requested: the device is connected and will check in within seconds.'
        : 'Sync requested: the device is not connected now and will sync at its next check-in.';
      replace(syncStatus, text);
    } catch (err) {
      replace(syncStatus, errorBox(err));
    }
  }

  // A device name is not a credential: enrolling another machine under this
  // name needs this one-shot, expiring approval (the device itself never
  // does: it re-attests with its key).
  function confirmReenroll() {
    const hours = h('input', { type: 'number', id: 'reenroll-hours', min: '1', max: '168', value: '24', required: '' });
    confirmDialog({
      id: 'reenroll',
      title: `Allow re-enrollment of ${name}?`,
      body: [
        h('p', {}, 'The next agent that onboards under this name with a valid onboarding package takes over this device: it keeps its id and history, and the certificate the device holds now stops working. Use it for a reinstalled machine that lost its key. It works once.'),
        field({ path: 'expires_in_hours', label: 'Approval lasts (hours)', control: hours })],
      action: 'Allow once',
      onConfirm: async () => {
        const r = await post(`${path}/reenroll`, { expires_in_hours: Number(hours.value) });
        replace(syncStatus, `Re-enrollment allowed once until ${dateTime(r.until)}.`);
      },
    });
  }

  function confirmDelete() {
    confirmDialog({
      id: 'delete',
      title: `Delete ${name}?`,
      body: h('p', {}, 'The device loses its trust at once: at its next contact it gets a signed notice, removes the settings Rampart set and stops being managed. It must onboard again to be managed. Its reports are removed.'),
      action: 'Delete device',
      danger: true,
      onConfirm: async () => {
        await del(path);
        announce(`${name} deleted`);
        location.hash = '#/devices';
      },
    });
  }

  async function refresh() {
    try {
      const [d, r] = await Promise.all([get(path), get(`/reports${path}`)]);
      if (ctx.current()) draw(d, r);
    } catch { /* the next tick tries again */ }
  }

  draw(device, report);
  drawTags(device);
  const timer = setInterval(() => { if (ctx.current() && !document.hidden) refresh(); }, 3000);
  ctx.onCleanup(() => clearInterval(timer));
}
