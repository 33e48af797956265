// The read-only parts of a policy's page, for every role: what it
// configures (each setting's value, with the catalog's help folded away)
// and its versions, any two of which can be compared.

import { h, replace } from '../dom.js';
import { get, seg } from '../api.js';
import { valueNode, withCode, when } from '../format.js';

/** A setting's value as it reads: ASR rules by their names (the GUID on
 * hover), everything else as the report shows it. */
export function settingValue(def, value) {
  if (def?.type === 'asr_rules' && value && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value);
    if (!entries.length) return h('span', { class: 'muted' }, '(empty)');
    const names = new Map((def.keys || []).map((k) => [k.key, k.title]));
    return h('ul', { class: 'plain' }, entries.map(([guid, mode]) =>
      h('li', {}, h('span', { title: guid }, names.get(guid) ?? guid), ': ', h('code', {}, String(mode)))));
  }
  return valueNode(value);
}

/** "Configuration": the settings this policy sets, in catalog order. */
export function configSection(policy, catalog) {
  const ids = Object.keys(policy.settings);
  const order = [...catalog.keys()];
  ids.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  return h('section', { class: 'card', 'aria-labelledby': 'config-h', id: 'policy-config' },
    h('h2', { id: 'config-h' }, 'Configuration'),
    ids.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
      h('caption', { class: 'sr-only' }, 'Settings this policy configures, with their values'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Setting'), h('th', { scope: 'col' }, 'Value'))),
      h('tbody', {}, ids.map((id) => {
        const def = catalog.get(id);
        return h('tr', { dataset: { setting: id } },
          h('th', { scope: 'row' }, def?.title ?? id, h('code', { class: 'setting-id block' }, id),
            def?.description ? h('details', { class: 'help' }, h('summary', {}, 'About this setting'), h('p', {}, withCode(def.description))) : null),
          h('td', {}, settingValue(def, policy.settings[id])));
      }))))
      : h('p', { class: 'muted' }, 'This policy configures no setting.'));
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** What changed from version `a` to version `b`, one row per difference. */
export function versionDiff(a, b, catalog) {
  const rows = [];
  const notSet = () => h('span', { class: 'muted' }, 'not configured');
  const ids = [...new Set([...Object.keys(a.settings), ...Object.keys(b.settings)])];
  for (const id of ids) {
    const [before, after] = [a.settings[id], b.settings[id]];
    if (same(before, after)) continue;
    const def = catalog.get(id);
    rows.push(h('tr', { dataset: { changed: id } },
      h('th', { scope: 'row' }, def?.title ?? id, h('code', { class: 'setting-id block' }, id)),
      h('td', {}, before === undefined ? notSet() : settingValue(def, before)),
      h('td', {}, after === undefined ? notSet() : settingValue(def, after))));
  }
  for (const [field, label] of [['include', 'Assigned to'], ['exclude', 'Excluded']]) {
    const [before, after] = [a.assignments[field], b.assignments[field]];
    if (!same(before, after)) {
      rows.push(h('tr', { dataset: { changed: `assignments.${field}` } }, h('th', { scope: 'row' }, label),
        h('td', {}, before.join(', ') || notSet()), h('td', {}, after.join(', ') || notSet())));
    }
  }
  if (a.description !== b.description) {
    rows.push(h('tr', { dataset: { changed: 'description' } }, h('th', { scope: 'row' }, 'Description'),
      h('td', {}, a.description || notSet()), h('td', {}, b.description || notSet())));
  }
  if (!rows.length) return h('p', { class: 'muted', id: 'version-diff' }, `Versions ${a.version} and ${b.version} configure the same.`);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'version-diff' },
    h('caption', {}, `Changes from version ${a.version} to version ${b.version}`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, `Version ${a.version}`), h('th', { scope: 'col' }, `Version ${b.version}`))),
    h('tbody', {}, rows)));
}

/** "Versions": who changed the policy when, and a comparison of any two. */
export async function versionsSection(name, catalog) {
  const versions = (await get(`/policies/${seg(name)}/versions`)).sort((x, y) => y.version - x.version);
  const box = h('section', { class: 'card', 'aria-labelledby': 'versions-h', id: 'policy-versions' }, h('h2', { id: 'versions-h' }, 'Versions'));
  box.append(h('ul', { class: 'plain versions' }, versions.map((v) =>
    h('li', {}, h('strong', {}, `Version ${v.version}`), ` by ${v.modified_by} `, when(v.modified_at)))));
  if (versions.length < 2) {
    box.append(h('p', { class: 'muted' }, 'There is one version so far; a change makes the next.'));
    return box;
  }
  const picker = (id, label, selected) => {
    const s = h('select', { id }, versions.map((v) => h('option', { value: String(v.version), selected: v.version === selected }, `Version ${v.version}`)));
    return [h('label', { for: id }, label), s];
  };
  const [fromLabel, from] = picker('diff-from', 'Compare', versions[1].version);
  const [toLabel, to] = picker('diff-to', 'with', versions[0].version);
  const out = h('div', { role: 'region', 'aria-live': 'polite', 'aria-label': 'Differences between the versions' });
  const draw = () => {
    const pick = (s) => versions.find((v) => String(v.version) === s.value);
    replace(out, versionDiff(pick(from), pick(to), catalog));
  };
  from.addEventListener('change', draw);
  to.addEventListener('change', draw);
  box.append(h('div', { class: 'filters' }, h('div', { class: 'filter' }, fromLabel, from), h('div', { class: 'filter' }, toLabel, to)), out);
  draw();
  return box;
}
