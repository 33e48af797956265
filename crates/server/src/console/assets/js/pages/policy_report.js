// One policy, for every role: what it is and configures, its versions
// (any two compared), and "Monitor status": device check-in status and
// counts, the per-setting status, and the devices (conflicts and errors
// first) with a drill-in to each one's per-setting status; for a conflict,
// the other policies that manage the same setting. Refreshes itself while
// open.

import { h, replace, idFor, keepFocus } from '../dom.js';
import { get, seg, can, catalogMap } from '../api.js';
import { STATUSES, statusBadge, backendNote, when, familyName, platformName, valueNode, policyLinks, conflictNode, plural } from '../format.js';
import { assigned } from './policies.js';
import { configSection, versionsSection } from './policy_view.js';
import { rolloutSection } from './rollout_view.js';

/** Devices listed at first, and added by each "Show more devices". */
const DEVICES_PAGE = 200;
/** The most one report page holds. */
const MAX_SHOWN = 1000;

export async function render(main, ctx) {
  const name = ctx.params.name;
  ctx.title(`${name} report`);
  const [policy, catalog] = await Promise.all([get(`/policies/${seg(name)}`), catalogMap()]);
  const versionsBox = await versionsSection(name, catalog);
  const updated = h('p', { class: 'muted updated', role: 'status', 'aria-live': 'polite' });
  const countsBox = h('section', { class: 'card', 'aria-labelledby': 'checkin-h' });
  const settingsBox = h('section', { class: 'card', 'aria-labelledby': 'per-setting-h' });
  const devicesBox = h('section', { class: 'card', 'aria-labelledby': 'devices-h' });
  const rolloutBox = h('div', {});
  const expanded = new Set();
  // Devices listed (the server pages the rest); "Show more" raises it.
  let shown = DEVICES_PAGE;
  main.append(
    h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/policies' }, 'Endpoint security'), ' › ',
      h('a', { href: `#/policies?family=${policy.family}` }, familyName(policy.family)), ' › ', h('span', { 'aria-current': 'page' }, name)),
    h('div', { class: 'page-head' }, h('h1', {}, name),
      can('security_manager') ? h('div', { class: 'actions' }, h('a', { class: 'btn', href: `#/policies/${seg(name)}/edit`, id: 'edit-policy' }, 'Edit policy')) : null),
    h('div', { class: 'card' }, h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Policy type'), h('dd', {}, familyName(policy.family))),
      h('div', {}, h('dt', {}, 'Platform'), h('dd', {}, platformName(policy.platform))),
      h('div', {}, h('dt', {}, 'Assigned to'), h('dd', {}, assigned(policy))),
      h('div', {}, h('dt', {}, 'Version'), h('dd', {}, `${policy.version}, by ${policy.modified_by} `, when(policy.modified_at))),
      policy.description ? h('div', { class: 'wide' }, h('dt', {}, 'Description'), h('dd', {}, policy.description)) : null)),
    updated, rolloutBox, countsBox, configSection(policy, catalog), settingsBox, devicesBox, versionsBox);

  const title = (id) => catalog.get(id)?.title ?? id;
  let lastJson = '';

  function draw(r) {
    const json = JSON.stringify(r);
    if (json === lastJson) return;
    lastJson = json;
    const c = r.devices_by_status;
    // Devices a staged rollout has not reached count apart, when there are any.
    const tiles = c.pending_rollout ? [...STATUSES, ['pending_rollout', 'Pending rollout']] : STATUSES;
    const total = tiles.reduce((n, [k]) => n + (c[k] ?? 0), 0);
    if (r.rollout) replace(rolloutBox, rolloutSection(name, r.rollout, refresh));
    else replace(rolloutBox);
    replace(countsBox,
      h('h2', { id: 'checkin-h' }, 'Device check-in status'),
      h('p', { class: 'muted' }, `${plural(total, 'device')} targeted. A device counts under the worst status of this policy's settings on it.`),
      h('ul', { class: 'counts', id: 'policy-counts' }, tiles.map(([k, label]) =>
        h('li', { class: `count-tile st-${k}`, dataset: { status: k } }, h('span', { class: 'num' }, String(c[k] ?? 0)), h('span', {}, label)))));
    const settings = Object.entries(r.settings);
    replace(settingsBox,
      h('h2', { id: 'per-setting-h' }, 'Per-setting status'),
      settings.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'per-setting' },
        h('caption', { class: 'sr-only' }, 'Device counts per setting and status'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Setting'), STATUSES.map(([, label]) => h('th', { scope: 'col', class: 'num-cell' }, label)))),
        h('tbody', {}, settings.map(([id, counts]) => h('tr', { dataset: { setting: id } },
          h('th', { scope: 'row' }, h('a', { href: `#/reports/settings/${seg(id)}` }, title(id)), h('code', { class: 'setting-id' }, id)),
          STATUSES.map(([k]) => h('td', { class: `num-cell ${counts[k] ? `has-${k}` : ''}` }, String(counts[k] ?? 0))))))))
        : h('p', { class: 'muted' }, 'No device is targeted yet, or the policy configures no setting.'));
    keepFocus(devicesBox, () => replace(devicesBox,
      h('h2', { id: 'devices-h' }, 'Devices'),
      r.devices.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'policy-devices' },
        h('caption', { class: 'sr-only' }, 'Devices that receive this policy, with their status'),
        h('thead', {}, h('tr', {}, ['Device', 'Status', 'Last check-in', 'Settings'].map((t) => h('th', { scope: 'col' }, t)))),
        // The server lists conflicts and errors first.
        h('tbody', {}, r.devices.flatMap((d) => {
          const detailId = idFor('pd', d.device);
          const open = expanded.has(d.device);
          return [
            h('tr', { dataset: { device: d.device } },
              h('th', { scope: 'row' }, h('a', { href: `#/devices/${seg(d.device)}` }, d.device)),
              h('td', {}, statusBadge(d.status), d.rollout && d.status === 'pending_rollout' ? h('span', { class: 'block muted' }, `at ${d.rollout}`) : null),
              h('td', {}, when(d.last_check_in)),
              h('td', {}, h('button', {
                type: 'button', class: 'linklike', 'aria-expanded': String(open), 'aria-controls': detailId,
                onclick: (e) => {
                  if (expanded.has(d.device)) expanded.delete(d.device); else expanded.add(d.device);
                  e.currentTarget.setAttribute('aria-expanded', String(expanded.has(d.device)));
                  document.getElementById(detailId).hidden = !expanded.has(d.device);
                },
              }, `Per-setting status (${d.settings.length})`))),
            h('tr', { class: 'detail-row', id: detailId, hidden: !open }, h('td', { colspan: 4 },
              h('table', { class: 'data compact' },
                h('thead', {}, h('tr', {}, ['Setting', 'Status', 'Value', 'Other policies that manage this setting'].map((t) => h('th', { scope: 'col' }, t)))),
                h('tbody', {}, d.settings.map((s) => h('tr', {},
                  h('th', { scope: 'row' }, title(s.setting), s.key ? h('span', { class: 'key', title: s.key }, ` [${s.key_name ?? s.key}]`) : null),
                  h('td', {}, statusBadge(s.status), backendNote(s.backend)),
                  h('td', {}, s.status === 'conflict' ? h('span', { class: 'muted' }, 'not applied') : valueNode(s.value)),
                  h('td', {}, s.conflicting?.length ? conflictNode(s.conflicting) : policyLinks(s.other_policies), s.reason ? h('span', { class: 'block muted' }, s.reason) : null,
                    s.error_message ? h('span', { class: 'block error-text' }, s.error_code ? `${s.error_code}: ` : '', s.error_message) : null)))))))];
        }))))
        : h('p', { class: 'muted' }, 'No device receives this policy.'),
      r.devices_total > r.devices.length ? h('p', { class: 'more', id: 'policy-devices-more' },
        `Showing ${r.devices.length} of ${r.devices_total} devices, conflicts and errors first. `,
        shown < MAX_SHOWN
          ? h('button', { type: 'button', class: 'btn', onclick: () => { shown = Math.min(shown + DEVICES_PAGE, MAX_SHOWN); lastJson = ''; refresh(); } }, 'Show more devices')
          : 'The API pages the rest (limit, cursor).') : null));
    replace(updated, `Updated ${new Date().toLocaleTimeString()}`);
  }

  async function refresh() {
    try {
      const r = await get(`/reports/policies/${seg(name)}?limit=${shown}`);
      if (ctx.current()) draw(r);
    } catch { /* the next tick tries again */ }
  }
  draw(await get(`/reports/policies/${seg(name)}?limit=${shown}`));
  const timer = setInterval(() => { if (ctx.current() && !document.hidden) refresh(); }, 3000);
  ctx.onCleanup(() => clearInterval(timer));
}
