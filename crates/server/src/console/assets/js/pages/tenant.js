// Tenant settings (enforcement scope per platform, pilot tag, takeover,
// domain controllers, conflict policy) and local users: global admins change them; the server
// refuses anyone else, whatever this page shows.

import { h, replace, announce, append } from '../dom.js';
import { get, put, post, del, seg, can, ApiError } from '../api.js';
import { PLATFORMS, when, plural } from '../format.js';
import { field, fieldset, showErrors, clearErrors, errorBox, focusFirstError, select } from '../forms.js';
import { confirmDialog } from '../dialog.js';

const SCOPES = [['off', 'Off'], ['all', 'All devices'], ['tagged', 'Tagged devices only (pilot)']];

export async function render(main, ctx) {
  ctx.title('Tenant settings');
  const admin = can('global_admin');
  const t = await get('/tenant');
  const s = t.settings;
  // The version the form shows; a save based on an older one is refused.
  let version = t.settings_version;
  const scopes = PLATFORMS.map(([p, label]) => [p, label, select(SCOPES, s.enforcement[p] ?? 'off', { disabled: !admin })]);
  const pilot = h('input', { type: 'text', value: s.pilot_tag, disabled: !admin, spellcheck: 'false' });
  const takeover = h('input', { type: 'checkbox', id: 'allow-takeover', checked: s.allow_takeover, disabled: !admin });
  const dcs = h('input', { type: 'checkbox', id: 'manage-dcs', checked: s.manage_domain_controllers, disabled: !admin });
  const report = h('input', { type: 'radio', name: 'conflict', id: 'cp-report', value: 'report', checked: s.conflict_policy === 'report', disabled: !admin });
  const secure = h('input', { type: 'radio', name: 'conflict', id: 'cp-secure', value: 'most_secure_wins', checked: s.conflict_policy === 'most_secure_wins', disabled: !admin });
  const status = h('div', { class: 'form-status', role: 'status' });
  const form = h('form', { class: 'form', novalidate: true, id: 'tenant-form' },
    fieldset({ path: 'enforcement', legend: 'Enforcement scope', help: 'Per platform: Rampart manages the security settings of no device, of every device, or only of devices carrying the pilot tag.', children:
      h('div', { class: 'scope-grid' }, scopes.map(([p, label, sel]) => field({ path: `enforcement.${p}`, label, control: sel }))) }),
    field({ path: 'pilot_tag', label: 'Pilot tag', control: pilot, help: 'Devices with this tag are managed where the scope is "Tagged devices only".' }),
    h('div', { class: 'field check-field', dataset: { path: 'allow_takeover' } }, takeover,
      h('label', { for: 'allow-takeover' }, 'Take over devices another management authority manages'),
      h('p', { class: 'help' }, 'Off: a device the agent finds managed by another authority (an MDM, Configuration Manager…) is left alone and reported.'),
      h('p', { class: 'field-error', hidden: true })),
    h('div', { class: 'field check-field', dataset: { path: 'manage_domain_controllers' } }, dcs,
      h('label', { for: 'manage-dcs' }, 'Manage domain controllers'),
      h('p', { class: 'help' }, 'Off: a Windows device whose registry says domain controller is reported and left alone, so that no one cuts off a domain controller\u2019s firewall by accident.'),
      h('p', { class: 'field-error', hidden: true })),
    fieldset({ path: 'conflict_policy', legend: 'When two policies disagree on a setting', children: [
      h('div', { class: 'radio' }, report, h('label', { for: 'cp-report' }, 'Report a conflict and apply neither value (as Intune does)')),
      h('div', { class: 'radio' }, secure, h('label', { for: 'cp-secure' }, 'Apply the most secure value (by the catalog\u2019s security order) and report the other policy as superseded')),
    ] }),
    status,
    admin ? h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-tenant' }, 'Save')) : null);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    replace(status);
    const body = {
      enforcement: Object.fromEntries(scopes.map(([p, , sel]) => [p, sel.value])),
      pilot_tag: pilot.value.trim(),
      allow_takeover: takeover.checked,
      manage_domain_controllers: dcs.checked,
      conflict_policy: secure.checked ? 'most_secure_wins' : 'report',
    };
    const save = async () => {
      const saved = await put('/tenant/settings', body, version);
      version = saved.settings_version;
      replace(status, h('p', { class: 'ok-text' }, 'Saved. Devices whose effective policy changed are told at once.'));
      announce('Tenant settings saved');
    };
    const failed = (err, prefix = '') => {
      const rest = err instanceof ApiError ? showErrors(form, err.details, prefix) : [];
      if (!err.details?.length || rest.length) replace(status, errorBox(err, rest));
      focusFirstError(form);
    };
    // A tenant-wide change shows what it does to the fleet before it is
    // saved: the same preview the server computes for a policy change.
    let impact;
    try {
      impact = await post('/preview', { changes: [{ op: 'put', kind: 'tenant_settings', document: body }] });
    } catch (err) {
      failed(err, 'changes[0].document.');
      return;
    }
    if (!impact.devices.length) {
      try { await save(); } catch (err) { failed(err); }
      return;
    }
    confirmDialog({
      id: 'tenant-impact',
      title: 'Change the tenant settings?',
      body: impactSummary(impact.devices),
      action: `Save and apply to ${plural(impact.devices.length, 'device')}`,
      onConfirm: save,
    });
  });

  append(main, [
    h('div', { class: 'page-head' }, h('h1', {}, 'Tenant settings')),
    h('p', { class: 'lead' }, `Tenant ${t.name}. `, admin ? 'Changes apply to every device of the tenant and are recorded in the audit log.' : ''),
    admin ? null : h('p', { class: 'notice', id: 'read-only-note' }, 'Only global admins can change tenant settings; you can read them.'),
    h('section', { class: 'card' }, form)]);
  if (admin) main.append(await usersSection());
}

/** What a tenant change does to the fleet: devices entering and leaving
 * the scope, and the others whose settings change. */
function impactSummary(devices) {
  const entering = devices.filter((d) => !d.managed_before && d.managed_after);
  const leaving = devices.filter((d) => d.managed_before && !d.managed_after);
  const changing = devices.filter((d) => d.managed_before === d.managed_after);
  const group = (list, text) => list.length
    ? h('div', { class: 'impact-group' }, h('p', {}, h('strong', {}, `${plural(list.length, 'device')} ${text}`)),
      h('ul', { class: 'plain impact-devices' }, list.slice(0, 20).map((d) => h('li', {}, d.device))),
      list.length > 20 ? h('p', { class: 'muted' }, `and ${list.length - 20} more`) : null)
    : null;
  return h('div', { id: 'tenant-impact-summary' },
    group(entering, 'become managed: Rampart applies their policies'),
    group(leaving, "stop being managed: Rampart's settings are removed from them"),
    group(changing, 'get different settings'));
}

async function usersSection() {
  const users = await get('/users');
  const ROLES = [['read_only', 'Read only'], ['security_manager', 'Security manager'], ['global_admin', 'Global admin']];
  const listStatus = h('div', { class: 'form-status', role: 'status', id: 'users-status' });
  const table = h('tbody', {}, users.map(row));
  // Each change goes to the API, which ends the user's sessions and refuses
  // (409 last_global_admin) to leave the tenant without a global admin;
  // the row is redrawn from the answer, so it shows what the server holds.
  async function change(tr, u, body, done) {
    replace(listStatus);
    try {
      const updated = await put(`/users/${seg(u.username)}`, body);
      tr.replaceWith(row(updated));
      replace(listStatus, h('p', { class: 'ok-text' }, `${done}; the user's sessions have ended.`));
    } catch (err) {
      tr.replaceWith(row(u));
      replace(listStatus, errorBox(err, []));
    }
  }
  function row(u) {
    const tr = h('tr', { dataset: { user: u.username } });
    const roleSel = select(ROLES, u.role, { 'aria-label': `Role of ${u.username}` });
    roleSel.addEventListener('change', () => change(tr, u, { role: roleSel.value }, `${u.username} is now ${roleSel.value.replace('_', ' ')}`));
    const toggle = h('button', { type: 'button', class: 'btn', onclick: () =>
      change(tr, u, { disabled: !u.disabled }, `${u.username} ${u.disabled ? 'enabled' : 'disabled'}`) }, u.disabled ? 'Enable' : 'Disable');
    const remove = h('button', { type: 'button', class: 'btn btn-danger', onclick: () => {
      replace(listStatus);
      confirmDialog({
        id: 'delete-user',
        title: `Delete user ${u.username}?`,
        body: h('p', {}, 'Their sessions end at once; the audit log keeps what they did.'),
        action: 'Delete user',
        danger: true,
        onConfirm: async () => {
          await del(`/users/${seg(u.username)}`);
          tr.remove();
          replace(listStatus, h('p', { class: 'ok-text' }, `User ${u.username} deleted.`));
        },
      });
    } }, 'Delete');
    const setPassword = h('button', { type: 'button', class: 'btn', onclick: () => {
      replace(listStatus);
      const input = h('input', { type: 'password', id: 'new-password', autocomplete: 'new-password' });
      confirmDialog({
        id: 'set-password',
        title: `Set a new password for ${u.username}?`,
        body: [h('p', {}, 'Their sessions end at once; they sign in again with the new password.'),
          field({ path: 'password', label: 'New password (12 characters or more)', control: input })],
        action: 'Set password',
        onConfirm: async () => {
          await put(`/users/${seg(u.username)}`, { password: input.value });
          replace(listStatus, h('p', { class: 'ok-text' }, `Password of ${u.username} changed; the user's sessions have ended.`));
        },
      });
    } }, 'Set password');
    append(tr, [h('th', { scope: 'row' }, u.username), h('td', {}, roleSel), h('td', {}, u.disabled ? 'Disabled' : 'Enabled'),
      h('td', {}, when(u.created_at)), h('td', { class: 'row-actions' }, setPassword, toggle, remove)]);
    return tr;
  }
  const username = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const password = h('input', { type: 'password', autocomplete: 'new-password' });
  const role = select([['read_only', 'Read only'], ['security_manager', 'Security manager'], ['global_admin', 'Global admin']], 'security_manager');
  const status = h('div', { class: 'form-status', role: 'status' });
  const form = h('form', { class: 'form inline-grid', novalidate: true, id: 'user-form' },
    field({ path: 'username', label: 'User name', control: username }),
    field({ path: 'password', label: 'Password (12 characters or more)', control: password }),
    field({ path: 'role', label: 'Role', control: role }),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Add user')),
    status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    replace(status);
    try {
      const u = await post('/users', { username: username.value.trim(), password: password.value, role: role.value });
      table.append(row(u));
      username.value = '';
      password.value = '';
      replace(status, h('p', { class: 'ok-text' }, `User ${u.username} added.`));
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) showErrors(form, [{ path: 'username', message: err.message }]);
      else {
        const rest = err instanceof ApiError ? showErrors(form, err.details) : [];
        if (!err.details?.length || rest.length) replace(status, errorBox(err, rest));
      }
      focusFirstError(form);
    }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'users-h' },
    h('h2', { id: 'users-h' }, 'Console users'),
    h('p', { class: 'help' }, 'Read only: sees everything. Security manager: also devices, groups and policies. Global admin: also tenant settings, users and API tokens.'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'User'), h('th', { scope: 'col' }, 'Role'), h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, 'Actions'))),
      table)),
    listStatus,
    h('h3', { class: 'spaced' }, 'Add a user'),
    form);
}
