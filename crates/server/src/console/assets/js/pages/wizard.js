// Create or edit a policy in steps, as the seeds describe: Basics →
// Configuration settings → Assignments → Review + create. The review shows
// the impact preview (devices whose effective policy changes, new conflicts)
// before anything is saved. Each step is checked by the server's own
// validation (a preview), and its errors appear next to their fields.

import { h, replace, announce, idFor } from '../dom.js';
import { get, post, put, seg, can, ApiError } from '../api.js';
import { FAMILIES, PLATFORMS, familyName, platformName, valueText, plural, policyLinks } from '../format.js';
import { field, fieldset, showErrors, clearErrors, errorBox, focusFirstError, select } from '../forms.js';
import { settingsForm } from './settings_form.js';
import { rolloutForm, soakText } from './rollout_form.js';

/** The steps' names; editing ends in a review that saves, not creates. */
const steps = (editing) => ['Basics', 'Configuration settings', 'Assignments', editing ? 'Review + save' : 'Review + create'];
const PREFIX = 'changes[0].document.';

/** Which step shows the field an error path names. */
function stepOf(path) {
  if (path.startsWith('settings')) return 1;
  if (path.startsWith('assignments') || path.startsWith('rollout')) return 2;
  return 0;
}

/** A rollout as the review states it. */
function rolloutText(r) {
  if (r === undefined) return 'The tenant default: in stages if the tenant has a default rollout, else everywhere at once.';
  if (r === 'immediate') return 'Everywhere at once.';
  const stages = r.stages.map((s) => `${s.group !== undefined ? `group ${s.group}` : `${s.percent}%`}${s.soak ? ` (soak ${typeof s.soak === 'number' ? soakText(s.soak) : s.soak})` : ''}`);
  return `In stages: ${stages.join(' → ')}; a failing gate ${r.on_failure === 'rollback' ? 'rolls back' : 'pauses'}.`;
}

export async function render(main, ctx) {
  const editing = ctx.params.name;
  ctx.title(editing ? `Edit ${editing}` : 'Create policy');
  if (!can('security_manager')) {
    main.append(h('h1', {}, editing ? `Edit ${editing}` : 'Create policy'),
      h('p', { class: 'notice' }, 'Your role can read policies but not create or change them.'));
    return;
  }
  const [existing, groups, policies, catalog] = await Promise.all([
    editing ? get(`/policies/${seg(editing)}`) : Promise.resolve(null),
    get('/groups'),
    get('/policies'),
    get('/catalog'),
  ]);
  const draft = existing
    ? { name: existing.name, description: existing.description, family: existing.family, platform: existing.platform, settings: { ...existing.settings }, assignments: { ...existing.assignments }, rollout: existing.rollout }
    : { name: '', description: '', family: ctx.query.get('family') || 'antivirus', platform: 'linux', settings: {}, assignments: { include: [], exclude: [] } };
  let step = 0;
  let visited = 0;

  // ---- step 1: basics
  const name = h('input', { type: 'text', value: draft.name, disabled: Boolean(editing), autocomplete: 'off', spellcheck: 'false' });
  const description = h('textarea', { rows: 2, value: draft.description });
  const family = select(FAMILIES, draft.family, { disabled: Boolean(editing) });
  const platform = select(PLATFORMS, draft.platform, { disabled: Boolean(editing) });
  const basics = h('div', { class: 'step-panel' },
    h('h2', {}, 'Basics'),
    field({ path: 'name', label: 'Name', control: name, help: editing ? 'Policies cannot be renamed.' : 'Unique in the tenant; reports and audit entries use it.' }),
    field({ path: 'description', label: 'Description', control: description }),
    field({ path: 'platform', label: 'Platform', control: platform }),
    field({ path: 'family', label: 'Policy type (family)', control: family, help: 'Antivirus, exclusions, firewall, firewall rules, endpoint detection and response, or attack surface reduction rules.' }));

  // ---- step 2: configuration settings
  const configPanel = h('div', { class: 'step-panel' });
  let form = null;
  let builtFor = '';
  function buildSettings() {
    const key = `${draft.family}/${draft.platform}`;
    if (key === builtFor) return;
    if (form) draft.settings = form.read();
    const defs = catalog.filter((d) => d.families.includes(draft.family) && d.platforms.includes(draft.platform));
    const dropped = Object.keys(draft.settings).filter((id) => !defs.some((d) => d.id === id));
    for (const id of dropped) delete draft.settings[id];
    form = settingsForm(defs, draft.settings, { platform: draft.platform, readOnly: false });
    builtFor = key;
    replace(configPanel,
      h('h2', {}, 'Configuration settings'),
      h('p', { class: 'lead' }, `${familyName(draft.family)} settings available on ${platformName(draft.platform)}. Leave a setting `,
        h('em', {}, 'Not configured'), ' and this policy does not manage it; it never conflicts.'),
      dropped.length ? h('p', { class: 'notice' }, `Removed settings the new platform or family does not have: ${dropped.join(', ')}.`) : null,
      defs.length ? form.el : h('p', { class: 'notice' }, 'No setting of this family exists on this platform.'));
  }

  // ---- step 3: assignments
  const memberCounts = new Map();
  const include = new Set(draft.assignments.include);
  const exclude = new Set(draft.assignments.exclude);
  const assignPanel = h('div', { class: 'step-panel' });
  const rollout = rolloutForm(draft.rollout, groups);
  function drawAssignments() {
    const box = (set, g, prefix, label) => {
      const id = idFor(prefix, g);
      return h('li', {}, h('input', {
        type: 'checkbox', id, value: g, checked: set.has(g),
        onchange: (e) => { if (e.target.checked) set.add(g); else set.delete(g); },
      }), h('label', { for: id }, label ?? g, memberCounts.has(g) ? h('span', { class: 'muted' }, ` (${plural(memberCounts.get(g), 'device')})`) : null));
    };
    replace(assignPanel,
      h('h2', {}, 'Assignments'),
      h('p', { class: 'lead' }, 'Policies target groups of devices; exclusion beats inclusion. Users and assignment filters are not targeted.'),
      h('div', { class: 'two-col' },
        fieldset({ path: 'assignments.include', legend: 'Included groups', children: h('ul', { class: 'checklist', id: 'include-list' },
          box(include, 'all-devices', 'inc', 'All devices'),
          groups.map((g) => box(include, g.name, 'inc'))) }),
        fieldset({ path: 'assignments.exclude', legend: 'Excluded groups', children: h('ul', { class: 'checklist', id: 'exclude-list' },
          groups.map((g) => box(exclude, g.name, 'exc'))) })),
      rollout.el);
  }
  Promise.all(groups.map((g) => get(`/groups/${seg(g.name)}/members`).then((m) => memberCounts.set(g.name, m.devices.length)).catch(() => {})))
    .then(() => { if (ctx.current() && step !== 2) drawAssignments(); });

  // ---- step 4: review + create
  const reviewPanel = h('div', { class: 'step-panel' });

  function collect() {
    draft.name = editing || name.value.trim();
    draft.description = description.value.trim();
    draft.family = family.value;
    draft.platform = platform.value;
    if (form) draft.settings = form.read();
    draft.assignments = { include: [...include].sort(), exclude: [...exclude].sort() };
    if (visited >= 2) draft.rollout = rollout.read();
  }

  function doc() {
    const body = {
      name: draft.name, description: draft.description, family: draft.family, platform: draft.platform,
      settings: draft.settings, assignments: draft.assignments,
    };
    if (draft.rollout !== undefined) body.rollout = draft.rollout;
    return body;
  }

  async function checkWithServer() {
    try {
      const r = await post('/preview', { changes: [{ op: 'put', kind: 'policy', document: doc() }] });
      return { ok: true, preview: r };
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) return { ok: false, errors: err.details.map((d) => ({ ...d, path: d.path.startsWith(PREFIX) ? d.path.slice(PREFIX.length) : d.path })) };
      throw err;
    }
  }

  const status = h('div', { class: 'form-status', tabindex: '-1' });
  const stepsNav = h('ol', { class: 'steps' });
  const panels = [basics, configPanel, assignPanel, reviewPanel];
  const prev = h('button', { type: 'button', class: 'btn', id: 'wizard-prev', onclick: () => go(step - 1) }, 'Previous');
  const next = h('button', { type: 'button', class: 'btn btn-primary', id: 'wizard-next', onclick: () => go(step + 1) }, 'Next');
  const create = h('button', { type: 'button', class: 'btn btn-primary', id: 'wizard-create', onclick: save }, editing ? 'Save' : 'Create');
  const root = h('form', { class: 'wizard', novalidate: true, onsubmit: (e) => { e.preventDefault(); (step < 3 ? next : create).click(); } },
    h('nav', { 'aria-label': 'Steps' }, stepsNav),
    ...panels,
    status,
    h('div', { class: 'form-actions wizard-actions' }, prev, next, create, h('a', { class: 'btn btn-quiet', href: '#/policies' }, 'Cancel')));

  function drawSteps() {
    replace(stepsNav, steps(editing).map((label, i) => h('li', { class: i < step ? 'done' : i === step ? 'current' : '' },
      h('button', {
        type: 'button', class: 'step-btn', 'aria-current': i === step ? 'step' : null, disabled: i > visited,
        onclick: () => go(i),
      }, h('span', { class: 'step-num', 'aria-hidden': 'true' }, i < step ? '✓' : String(i + 1)), h('span', {}, label)))));
    panels.forEach((p, i) => { p.hidden = i !== step; });
    prev.hidden = step === 0;
    next.hidden = step === 3;
    create.hidden = step !== 3;
  }

  let busy = false;
  async function go(target) {
    if (busy || target < 0 || target > 3 || target === step) return;
    busy = true;
    try {
      collect();
      replace(status);
      if (target > step) {
        // Forward: the steps up to here must be valid, by the server's rules.
        if (!editing && step === 0 && policies.some((p) => p.name === draft.name)) {
          showErrors(root, [{ path: 'name', message: `a policy named ${draft.name} exists; choose another name` }]);
          focusFirstError(root);
          return;
        }
        const checked = await checkWithServer();
        const blocking = checked.ok ? [] : checked.errors.filter((e) => stepOf(e.path) <= step);
        if (blocking.length) {
          const first = Math.min(...blocking.map((e) => stepOf(e.path)));
          setStep(first);
          const rest = showErrors(root, blocking);
          if (rest.length) replace(status, errorBox({ message: 'Fix these problems first:' }, rest));
          announce(`${plural(blocking.length, 'problem')} to fix on this step`);
          if (!focusFirstError(root)) status.focus();
          return;
        }
        clearErrors(root);
        setStep(target);
        if (target === 3) drawReview(checked);
      } else {
        clearErrors(root);
        setStep(target);
      }
    } catch (err) {
      replace(status, errorBox(err));
    } finally {
      busy = false;
    }
  }

  function setStep(i) {
    step = i;
    visited = Math.max(visited, i);
    if (i === 1) buildSettings();
    if (i === 2) drawAssignments();
    drawSteps();
    const heading = panels[i].querySelector('h2');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }

  function drawReview(checked) {
    const settingRows = Object.entries(draft.settings);
    const defs = new Map(catalog.map((d) => [d.id, d]));
    const errors = checked.ok ? [] : checked.errors;
    replace(reviewPanel,
      h('h2', {}, steps(editing)[3]),
      h('p', { class: 'lead' }, 'Nothing is saved until you select ', h('strong', {}, editing ? 'Save' : 'Create'), '.'),
      errors.length ? errorBox({ message: 'This policy cannot be saved yet:' }, errors) : null,
      h('div', { class: 'review-grid' },
        h('section', { class: 'card', 'aria-labelledby': 'rv-basics' },
          h('h3', { id: 'rv-basics' }, 'Basics'),
          h('dl', { class: 'facts' },
            h('div', {}, h('dt', {}, 'Name'), h('dd', {}, draft.name)),
            h('div', {}, h('dt', {}, 'Description'), h('dd', {}, draft.description || h('span', { class: 'muted' }, 'none'))),
            h('div', {}, h('dt', {}, 'Platform'), h('dd', {}, platformName(draft.platform))),
            h('div', {}, h('dt', {}, 'Family'), h('dd', {}, familyName(draft.family)))),
          h('button', { type: 'button', class: 'linklike', onclick: () => go(0) }, 'Edit basics')),
        h('section', { class: 'card', 'aria-labelledby': 'rv-settings' },
          h('h3', { id: 'rv-settings' }, `Configuration settings (${settingRows.length})`),
          settingRows.length ? h('dl', { class: 'facts' }, settingRows.map(([id, v]) => h('div', {}, h('dt', {}, defs.get(id)?.title ?? id), h('dd', {}, valueText(v)))))
            : h('p', { class: 'muted' }, 'No setting configured.'),
          h('button', { type: 'button', class: 'linklike', onclick: () => go(1) }, 'Edit settings')),
        h('section', { class: 'card', 'aria-labelledby': 'rv-assign' },
          h('h3', { id: 'rv-assign' }, 'Assignments'),
          h('dl', { class: 'facts' },
            h('div', {}, h('dt', {}, 'Included groups'), h('dd', {}, draft.assignments.include.join(', ') || h('span', { class: 'muted' }, 'none: no device gets this policy'))),
            h('div', {}, h('dt', {}, 'Excluded groups'), h('dd', {}, draft.assignments.exclude.join(', ') || h('span', { class: 'muted' }, 'none')))),
          h('button', { type: 'button', class: 'linklike', onclick: () => go(2) }, 'Edit assignments')),
        h('section', { class: 'card', 'aria-labelledby': 'rv-rollout' },
          h('h3', { id: 'rv-rollout' }, 'Rollout'),
          h('p', { id: 'rv-rollout-text' }, rolloutText(draft.rollout)),
          h('button', { type: 'button', class: 'linklike', onclick: () => go(2) }, 'Edit rollout'))),
      checked.ok ? impact(checked.preview, defs) : null);
  }

  function impact(preview, defs) {
    const devices = preview.devices;
    const title = (id) => defs.get(id)?.title ?? id;
    // The change goes out in stages: each device's stage is shown first.
    const staged = devices.some((d) => d.rollout);
    const newConflicts = devices.flatMap((d) => d.conflicts_added.map((c) => ({ device: d.device, ...c })));
    return h('section', { class: 'card impact', id: 'impact', 'aria-labelledby': 'impact-h' },
      h('h3', { id: 'impact-h' }, 'Impact preview'),
      h('p', { class: 'impact-summary' }, devices.length
        ? `${plural(devices.length, 'device')} would have ${devices.length === 1 ? 'its' : 'their'} effective policy changed.`
        : 'No device\u2019s effective policy changes.'),
      newConflicts.length ? h('div', { class: 'warning', id: 'new-conflicts' },
        h('p', {}, h('strong', {}, `${plural(newConflicts.length, 'new conflict')}: `), 'these settings would not be applied on these devices until the policies agree.'),
        h('ul', {}, newConflicts.map((c) => h('li', {}, h('strong', {}, c.device), ': ', title(c.setting), c.key ? ` [${c.key}]` : '', ' between ', policyLinks(c.policies),
          c.values?.length ? ` (${c.values.map(valueText).join(' vs ')})` : '')))) : null,
      devices.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'impact-table' },
        h('caption', { class: 'sr-only' }, 'Devices whose effective policy changes'),
        h('thead', {}, h('tr', {}, [...(staged ? ['Rollout stage'] : []), 'Device', 'Settings added', 'Changed', 'Removed', 'New conflicts', 'Conflicts resolved'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, devices.map((d) => h('tr', {},
          staged ? h('td', { class: 'rollout-stage-cell' }, d.rollout ?? '—') : null,
          h('th', { scope: 'row' }, h('a', { href: `#/devices/${seg(d.device)}` }, d.device)),
          h('td', {}, d.added.map(title).join(', ') || '—'),
          h('td', {}, d.changed.map(title).join(', ') || '—'),
          h('td', {}, d.removed.map(title).join(', ') || '—'),
          h('td', { class: d.conflicts_added.length ? 'warn-cell' : '' }, d.conflicts_added.map((c) => `${title(c.setting)} (${c.policies.join(', ')})`).join('; ') || '—'),
          h('td', {}, d.conflicts_removed.map((c) => title(c.setting)).join(', ') || '—')))))) : null);
  }

  async function save() {
    if (busy) return;
    busy = true;
    create.disabled = true;
    replace(status);
    collect();
    try {
      if (editing) await put(`/policies/${seg(editing)}`, doc(), existing.version);
      else await post('/policies', doc());
      announce(`Policy ${draft.name} saved`);
      location.hash = `#/reports/policies/${seg(draft.name)}`;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 422 || (err.status === 409 && !editing))) {
        const details = err.status === 409 ? [{ path: 'name', message: err.message }] : err.details;
        const first = Math.min(...details.map((d) => stepOf(d.path)));
        setStep(first);
        const rest = showErrors(root, details);
        replace(status, errorBox({ message: 'Nothing was saved. Fix the fields marked on this step.' }, rest));
        if (!focusFirstError(root)) status.focus();
      } else {
        replace(status, errorBox(err));
        status.focus();
      }
    } finally {
      busy = false;
      create.disabled = false;
    }
  }

  main.append(
    h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/policies' }, 'Endpoint security'), ' › ', h('span', { 'aria-current': 'page' }, editing ? `Edit ${editing}` : 'Create policy')),
    h('div', { class: 'page-head' }, h('h1', {}, editing ? `Edit policy ${editing}` : 'Create policy')),
    root);
  if (editing) visited = 3;
  drawSteps();
}
