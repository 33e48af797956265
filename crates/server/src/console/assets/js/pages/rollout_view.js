// A policy's staged rollout on its page: where it stands (state, stage,
// devices reached, when the soak ends, what the gates read), its stages and
// history, and — for security managers — pause, resume, advance and abort,
// each asking for a reason that goes into the history and the audit log.

import { h } from '../dom.js';
import { post, seg, can } from '../api.js';
import { when, plural } from '../format.js';
import { field } from '../forms.js';
import { confirmDialog } from '../dialog.js';
import { soakText } from './rollout_form.js';

const STATE_NAMES = { running: 'Running', paused: 'Paused', completed: 'Completed', rolled_back: 'Rolled back' };
const STATE_CLASS = { running: 'st-pending', paused: 'st-conflict', completed: 'st-succeeded', rolled_back: 'st-error' };

const ACTIONS = [
  ['pause', 'Pause', 'Pause the rollout?', 'Devices already reached keep the new revision; the others keep the previous one until it is resumed.', false, (r) => r.state === 'running'],
  ['resume', 'Resume', 'Resume the rollout?', 'The current stage starts its soak again; its gates are read when it ends.', false, (r) => r.state === 'paused'],
  ['advance', 'Advance now', 'Advance to the next stage now?', 'The next stage\u2019s devices get the new revision at once, whatever the gates say (after the last stage, every device).', false, () => true],
  ['abort', 'Abort and roll back', 'Abort and roll back?', 'The policy\u2019s previous revision is written back as its next version and every device returns to it.', true, () => true],
];

function gatesText(g) {
  return `${plural(g.reached, 'device')} reached: ${g.errors} with errors, ${g.lockouts} locked out, ${g.silent} not reporting, ${plural(g.tamper_events, 'tamper event')}`;
}

/** The card; `changed` runs after a step was taken. */
export function rolloutSection(policy, r, changed) {
  const active = r.state === 'running' || r.state === 'paused';
  const stageNow = r.stages[r.stage];
  const buttons = active && can('security_manager')
    ? h('div', { class: 'actions', id: 'rollout-actions' }, ACTIONS.filter(([, , , , , shown]) => shown(r)).map(([action, label, title, text, danger]) =>
      h('button', {
        type: 'button', class: `btn ${danger ? 'btn-danger' : ''}`, id: `rollout-${action}`,
        onclick: () => {
          const reason = h('input', { type: 'text', maxlength: '500', id: 'rollout-reason' });
          confirmDialog({
            id: `rollout-${action}-dialog`, title, danger, action: label,
            body: [h('p', {}, text), field({ path: 'reason', label: 'Reason (optional)', control: reason })],
            onConfirm: async () => {
              await post(`/rollouts/${seg(policy)}/${action}`, reason.value.trim() ? { reason: reason.value.trim() } : {});
              changed();
            },
          });
        },
      }, label)))
    : null;
  return h('section', { class: 'card', id: 'rollout', 'aria-labelledby': 'rollout-h' },
    h('div', { class: 'page-head' }, h('h2', { id: 'rollout-h' }, 'Staged rollout'), buttons),
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'State'), h('dd', {}, h('span', { class: `badge ${STATE_CLASS[r.state] ?? ''}`, id: 'rollout-state' }, STATE_NAMES[r.state] ?? r.state))),
      h('div', {}, h('dt', {}, 'Stage'), h('dd', { id: 'rollout-stage' }, stageNow ? `${r.stage + 1} of ${r.stages.length}: ${stageNow.target}` : '—')),
      h('div', {}, h('dt', {}, 'Devices with the new revision'), h('dd', { id: 'rollout-reached' }, `${r.devices_reached} of ${r.devices_targeted}`)),
      h('div', {}, h('dt', {}, 'Change'), h('dd', {}, `${r.from_version ? `version ${r.from_version}` : 'created'} → ${r.deletes ? 'deleted' : r.to_version ? `version ${r.to_version}` : '—'}, by ${r.started_by} `, when(r.started_at))),
      r.soak_ends_at ? h('div', {}, h('dt', {}, 'Soak ends'), h('dd', {}, new Date(r.soak_ends_at * 1000).toLocaleString())) : null,
      r.gates ? h('div', { class: 'wide' }, h('dt', {}, 'Gates last read'), h('dd', { id: 'rollout-gates' }, gatesText(r.gates))) : null,
      r.reason ? h('div', { class: 'wide' }, h('dt', {}, 'Why'), h('dd', { id: 'rollout-reason-text' }, r.reason)) : null),
    h('h3', {}, 'Stages'),
    h('ol', { class: 'stage-list', id: 'rollout-stages' }, r.stages.map((s, i) => h('li', { class: i === r.stage && active ? 'current' : i < r.stage || r.state === 'completed' ? 'done' : '' },
      `${s.target}, soak ${soakText(s.soak_secs)}`))),
    h('h3', {}, 'History'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data compact', id: 'rollout-history' },
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Step', 'Stage', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, r.history.slice().reverse().map((e) => h('tr', {},
        h('td', {}, when(e.at)), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, String(e.stage + 1)),
        h('td', {}, e.detail ?? '', e.gates ? h('span', { class: 'block muted' }, gatesText(e.gates)) : null)))))));
}
