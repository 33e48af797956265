// The wizard's "Rollout" fieldset: how a change to the policy goes out —
// the tenant's default, everywhere at once, or in stages (a share of the
// devices or a canary group, each with a soak) with health gates. Fields
// carry the API's paths (`rollout.stages[1].percent`, `rollout.gates.max_errors`)
// so the server's errors land next to them.

import { h, replace, idFor } from '../dom.js';
import { field, fieldset, select } from '../forms.js';

const MODES = [
  ['default', 'The tenant default'],
  ['immediate', 'Everywhere at once'],
  ['staged', 'In stages'],
];

/** A soak in seconds as people write it (`2h`, `30m`, `90s`). */
export function soakText(secs) {
  if (!secs) return '0';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]]) if (secs % size === 0) return `${secs / size}${unit}`;
  return `${secs}s`;
}

/** `rollout` as the policy holds it → a form; `read()` gives it back. */
export function rolloutForm(initial, groups) {
  const mode = initial === undefined || initial === null ? 'default' : initial === 'immediate' ? 'immediate' : 'staged';
  const spec = typeof initial === 'object' && initial ? initial : { stages: [{ percent: 10, soak: 3600 }, { percent: 100, soak: 3600 }], gates: { max_errors: 5 }, on_failure: 'pause' };
  const stages = spec.stages.map((s) => ({ ...s }));
  const radios = MODES.map(([value, label]) => {
    const id = idFor('rollout-mode', value);
    return h('li', {}, h('input', { type: 'radio', name: 'rollout-mode', id, value, checked: value === mode, onchange: draw }), h('label', { for: id }, label));
  });
  const stageBox = h('div', { class: 'rollout-stages' });
  const gates = spec.gates || {};
  const gate = (key, label, help) => field({
    path: `rollout.gates.${key}`, label, help,
    control: h('input', { type: 'number', min: '0', max: '100', step: 'any', inputmode: 'decimal', value: gates[key] ?? '', id: `rollout-${key}` }),
  });
  const tamper = h('input', { type: 'checkbox', id: 'rollout-no-new-tamper', checked: !!gates.no_new_tamper });
  const onFailure = select([['pause', 'Pause the rollout'], ['rollback', 'Roll every reached device back']], spec.on_failure || 'pause', { id: 'rollout-on-failure' });
  const gateBox = h('div', { class: 'rollout-gates' },
    h('h3', {}, 'Health gates'),
    h('p', { class: 'help' }, 'Read at the end of every soak over the devices the rollout has reached. Leave a gate empty to not check it.'),
    h('div', { class: 'two-col' },
      gate('max_errors', 'Most devices with errors (%)'),
      gate('max_lockouts', 'Most devices locked out (%)', 'A firewall change the agent rolled back because it cut the device off.'),
      gate('max_silent', 'Most devices not reporting (%)', 'Reached devices that have not reported the new revision by the end of the soak.')),
    h('div', { class: 'field', dataset: { path: 'rollout.gates.no_new_tamper' } }, tamper, h('label', { for: tamper.id }, ' Fail on any new tamper event')),
    field({ path: 'rollout.on_failure', label: 'When a gate fails', control: onFailure }));
  const details = h('div', { class: 'rollout-details' }, stageBox, gateBox);

  function current() {
    return radios.map((li) => li.querySelector('input')).find((i) => i.checked)?.value ?? 'default';
  }

  function readStages() {
    for (const [i, row] of [...stageBox.querySelectorAll('.rollout-stage')].entries()) {
      const kind = row.querySelector('.stage-kind').value;
      const target = row.querySelector('.stage-target').value.trim();
      const soak = row.querySelector('.stage-soak').value.trim();
      stages[i] = kind === 'group' ? { group: target } : { percent: target === '' ? target : Number(target) };
      if (soak !== '') stages[i].soak = /^\d+$/.test(soak) ? Number(soak) : soak;
    }
  }

  function drawStages() {
    replace(stageBox,
      h('h3', {}, 'Stages'),
      h('p', { class: 'help' }, 'Each stage adds a share of the devices (chosen by a hash, stable for the rollout) or a group, then soaks before its gates are read. After the last stage every device has the change.'),
      h('ol', { class: 'stage-list' }, stages.map((s, i) => {
        const kind = s.group !== undefined ? 'group' : 'percent';
        const kindSelect = select([['percent', 'Share of devices (%)'], ['group', 'Group']], kind, { class: 'stage-kind', id: `stage-${i}-kind`, 'aria-label': `Stage ${i + 1}: what it adds`, onchange: () => { readStages(); stages[i] = stages[i].group !== undefined ? { percent: '', soak: stages[i].soak } : { group: groups[0]?.name ?? '', soak: stages[i].soak }; drawStages(); } });
        const target = kind === 'group'
          ? select(groups.map((g) => [g.name, g.name]), s.group, { class: 'stage-target', id: `stage-${i}-group` })
          : h('input', { class: 'stage-target', id: `stage-${i}-percent`, type: 'number', min: '0', max: '100', step: 'any', value: s.percent ?? '' });
        const soak = h('input', { class: 'stage-soak', id: `stage-${i}-soak`, type: 'text', value: s.soak === undefined ? '' : soakText(s.soak), placeholder: '1h' });
        return h('li', { class: 'rollout-stage', dataset: { path: `rollout.stages[${i}]` } },
          kindSelect,
          field({ path: `rollout.stages[${i}].${kind}`, label: kind === 'group' ? `Stage ${i + 1} group` : `Stage ${i + 1} share (%)`, control: target }),
          field({ path: `rollout.stages[${i}].soak`, label: `Stage ${i + 1} soak`, help: 'Seconds, or 30m, 2h, 1d.', control: soak }),
          stages.length > 1 ? h('button', { type: 'button', class: 'linklike', onclick: () => { readStages(); stages.splice(i, 1); drawStages(); } }, `Remove stage ${i + 1}`) : null);
      })),
      stages.length < 10 ? h('button', { type: 'button', class: 'btn', id: 'add-stage', onclick: () => { readStages(); stages.push({ percent: 100, soak: 3600 }); drawStages(); } }, 'Add stage') : null);
  }

  function draw() {
    details.hidden = current() !== 'staged';
  }

  drawStages();
  draw();
  const el = fieldset({
    path: 'rollout', legend: 'Rollout of changes',
    help: 'How a change to this policy reaches the devices it targets.',
    children: [h('ul', { class: 'checklist', id: 'rollout-mode' }, radios), details],
  });

  function read() {
    const m = current();
    if (m === 'default') return undefined;
    if (m === 'immediate') return 'immediate';
    readStages();
    const out = { stages: stages.map((s) => ({ ...s })), gates: {}, on_failure: onFailure.value };
    for (const key of ['max_errors', 'max_lockouts', 'max_silent']) {
      const v = gateBox.querySelector(`#rollout-${key}`).value.trim();
      if (v !== '') out.gates[key] = Number(v);
    }
    if (tamper.checked) out.gates.no_new_tamper = true;
    return out;
  }
  return { el, read };
}
