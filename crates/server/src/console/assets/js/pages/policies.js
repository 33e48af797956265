// Endpoint security policies, listed by family, each with its device status
// at a glance; create, view, edit, delete. The table fits a 1440-pixel
// screen without scrolling sideways.

import { h, replace, announce } from '../dom.js';
import { get, post, del, seg, can } from '../api.js';
import { FAMILIES, familyName, platformName, when, plural } from '../format.js';
import { errorBox, select } from '../forms.js';
import { confirmDialog } from '../dialog.js';

export async function render(main, ctx) {
  ctx.title('Endpoint security');
  const family = ctx.query.get('family') || '';
  const policies = await get('/policies');
  const familyFilter = select([['', 'All families'], ...FAMILIES], family, { id: 'family-filter' });
  familyFilter.addEventListener('change', () => {
    location.hash = familyFilter.value ? `#/policies?family=${familyFilter.value}` : '#/policies';
  });
  const status = h('div', { class: 'form-status', role: 'status' });
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Endpoint security policies'),
      can('security_manager') ? h('div', { class: 'actions' },
        h('a', { class: 'btn btn-primary', id: 'create-policy', href: family ? `#/policies/new?family=${family}` : '#/policies/new' }, 'Create policy')) : null),
    h('p', { class: 'lead' }, 'All policies have equal priority. When two policies give one setting different values on a device, that is a conflict and the setting is not applied; antivirus exclusions, ASR rules and firewall rules merge instead.'),
    h('div', { class: 'filters' }, h('div', { class: 'filter' }, h('label', { for: 'family-filter' }, 'Family'), familyFilter)),
    status);

  const summaries = new Map();
  for (const [key, label] of FAMILIES) {
    if (family && key !== family) continue;
    const mine = policies.filter((p) => p.family === key);
    const headingId = `fam-${key}`;
    main.append(h('section', { class: 'family', 'aria-labelledby': headingId },
      h('h2', { id: headingId }, label, h('span', { class: 'muted count-after' }, ` (${mine.length})`)),
      mine.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data policies' },
        h('caption', { class: 'sr-only' }, `${label} policies`),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Policy'), h('th', { scope: 'col' }, 'Platform'), h('th', { scope: 'col' }, 'Settings'),
          h('th', { scope: 'col' }, 'Assigned to'), h('th', { scope: 'col' }, 'Device status'),
          h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
        h('tbody', {}, mine.map((p) => {
          const cell = h('td', { class: 'status-cell' }, h('span', { class: 'muted' }, '…'));
          summaries.set(p.name, cell);
          return h('tr', {},
            h('th', { scope: 'row' }, h('a', { href: `#/reports/policies/${seg(p.name)}` }, p.name), p.description ? h('span', { class: 'muted block' }, p.description) : null),
            h('td', {}, platformName(p.platform)),
            h('td', { class: 'num-cell' }, String(Object.keys(p.settings).length)),
            h('td', {}, assigned(p)),
            cell,
            h('td', { class: 'version-cell' }, `${p.version}, `, when(p.modified_at), h('span', { class: 'muted block' }, `by ${p.modified_by}`)),
            h('td', { class: 'row-actions' },
              h('a', { href: `#/reports/policies/${seg(p.name)}`, 'aria-label': `View ${p.name}` }, 'View'),
              can('security_manager') ? h('a', { href: `#/policies/${seg(p.name)}/edit`, 'aria-label': `Edit ${p.name}` }, 'Edit') : null,
              can('security_manager') ? h('button', { type: 'button', class: 'linklike danger', 'aria-label': `Delete ${p.name}`, onclick: () => remove(p.name) }, 'Delete') : null));
        })))) : h('p', { class: 'muted' }, `No ${label.toLowerCase()} policy yet.`)));
  }

  // Status counts arrive after the list, one report per policy.
  await Promise.all([...summaries].map(async ([name, cell]) => {
    try {
      const r = await get(`/reports/policies/${seg(name)}`);
      const c = r.devices_by_status;
      const parts = [['succeeded', c.succeeded], ['recorded', c.recorded], ['error', c.error], ['conflict', c.conflict], ['pending', c.pending], ['not_applicable', c.not_applicable]]
        .filter(([, n]) => n > 0);
      replace(cell, parts.length
        ? h('span', { class: 'mini-counts' }, parts.map(([k, n]) => h('span', { class: `badge st-${k}` }, `${n} ${k === 'recorded' ? 'recorded, not enforced' : k.replace('_', ' ')}`)))
        : h('span', { class: 'muted' }, 'no device'));
    } catch {
      replace(cell, h('span', { class: 'muted' }, 'unavailable'));
    }
  }));

  async function remove(name) {
    // The impact of the deletion first, then a confirmation.
    let impact = '';
    try {
      const r = await post('/preview', { changes: [{ op: 'delete', kind: 'policy', name }] });
      impact = ` ${plural(r.devices.length, 'device')} would have ${r.devices.length === 1 ? 'its' : 'their'} effective policy changed.`;
    } catch { /* deleting is still possible */ }
    confirmDialog({
      id: 'delete-policy',
      title: `Delete policy ${name}?`,
      body: h('p', {}, `Devices stop getting its settings; each setting is undone as the catalog says (reverted to the default, or kept).${impact}`),
      action: 'Delete policy',
      danger: true,
      onConfirm: async () => {
        await del(`/policies/${seg(name)}`);
        announce(`Policy ${name} deleted`);
        ctx.current() && (await render(replace(main), ctx));
      },
    });
  }
}

export function assigned(p) {
  const inc = p.assignments.include;
  const exc = p.assignments.exclude;
  if (!inc.length) return h('span', { class: 'muted' }, 'not assigned');
  return h('span', {},
    inc.map((g, i) => [i ? ', ' : '', g === 'all-devices' ? h('strong', {}, 'All devices') : h('a', { href: `#/groups/${seg(g)}` }, g)]),
    exc.length ? h('span', { class: 'block muted' }, 'except ', exc.map((g, i) => [i ? ', ' : '', h('a', { href: `#/groups/${seg(g)}` }, g)])) : null);
}

export { familyName };
