// One setting across every managed device: counts per status, and each
// device's status, value and the policies that set it (conflicts and
// errors first, each conflicting policy with its value). The first
// DEVICES_SHOWN devices are listed; the counts cover every device.

import { h } from '../dom.js';
import { get, seg, catalogMap } from '../api.js';
import { STATUSES, statusBadge, backendNote, valueNode, policyLinks, conflictNode, withCode } from '../format.js';

/** Devices listed at first (the server pages the rest). */
const DEVICES_SHOWN = 500;

export async function render(main, ctx) {
  const id = ctx.params.setting;
  const [r, catalog] = await Promise.all([get(`/reports/settings/${seg(id)}?limit=${DEVICES_SHOWN}`), catalogMap()]);
  const def = catalog.get(id);
  ctx.title(def?.title ?? id);
  main.append(
    h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/policies' }, 'Endpoint security'), ' › ', h('span', { 'aria-current': 'page' }, def?.title ?? id)),
    h('div', { class: 'page-head' }, h('h1', {}, def?.title ?? id)),
    h('p', { class: 'lead' }, h('code', {}, id), ' · ', withCode(def?.description ?? '')),
    h('section', { class: 'card', 'aria-labelledby': 'sc-h' },
      h('h2', { id: 'sc-h' }, 'Devices by status'),
      h('ul', { class: 'counts' }, STATUSES.map(([k, label]) => h('li', { class: `count-tile st-${k}` }, h('span', { class: 'num' }, String(r.counts[k] ?? 0)), h('span', {}, label))))),
    h('section', { class: 'card', 'aria-labelledby': 'sd-h' },
      h('h2', { id: 'sd-h' }, 'Devices'),
      r.devices.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'setting-devices' },
        h('thead', {}, h('tr', {}, ['Device', 'Status', 'Value', 'Policies that set it', 'Notes'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, r.devices.map((d) => h('tr', { dataset: { device: d.device } },
          h('th', { scope: 'row' }, h('a', { href: `#/devices/${seg(d.device)}` }, d.device)),
          h('td', {}, statusBadge(d.status), backendNote(d.backend)),
          h('td', {}, d.status === 'conflict' ? h('span', { class: 'muted' }, 'not applied') : valueNode(d.value)),
          h('td', {}, policyLinks(d.sources)),
          h('td', {}, conflictNode(d.conflicting) ?? d.error_message ?? '')))))) : h('p', { class: 'muted' }, 'No managed device gets this setting.'),
      r.devices_total > r.devices.length ? h('p', { class: 'muted', id: 'setting-devices-more' }, `The first ${r.devices.length} of ${r.devices_total} devices, conflicts and errors first; the API pages the rest (limit, cursor).`) : null));
}
