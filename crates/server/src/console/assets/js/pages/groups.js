// Device groups, static and dynamic, with their members.

import { h } from '../dom.js';
import { get, seg, can } from '../api.js';
import { plural } from '../format.js';

export async function render(main, ctx) {
  ctx.title('Groups');
  const groups = await get('/groups');
  const members = await Promise.all(groups.map((g) => get(`/groups/${seg(g.name)}/members`).then((m) => m.devices).catch(() => null)));
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Groups'),
      can('security_manager') ? h('div', { class: 'actions' }, h('a', { class: 'btn btn-primary', href: '#/groups/new', id: 'new-group' }, 'New group')) : null),
    h('p', { class: 'lead' }, 'Policies are assigned to groups of devices. A dynamic group holds the devices its rule matches, now and later; a static group lists its devices by name.'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'groups-table' },
      h('caption', { class: 'sr-only' }, 'Groups'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Rule or members'),
        h('th', { scope: 'col' }, 'Devices'), h('th', { scope: 'col' }, 'Description'))),
      h('tbody', {}, groups.length ? groups.map((g, i) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/groups/${seg(g.name)}` }, g.name)),
        h('td', {}, g.rule !== undefined ? 'Dynamic' : 'Static'),
        h('td', {}, h('code', { class: 'wrap' }, g.rule ?? (g.members || []).join(', '))),
        h('td', { class: 'num-cell' }, members[i] === null ? '?' : h('span', { title: members[i].join(', ') }, plural(members[i].length, 'device'))),
        h('td', {}, g.description))) : h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No group yet.'))))));
}
