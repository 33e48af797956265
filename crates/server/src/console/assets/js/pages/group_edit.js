// Create or change a group. For a dynamic group the rule is checked and its
// matching devices shown as you type (POST /groups/preview); nothing is saved
// until Save.

import { h, replace, announce, debounce } from '../dom.js';
import { get, post, put, del, seg, can, ApiError } from '../api.js';
import { field, fieldset, showErrors, clearErrors, errorBox, focusFirstError } from '../forms.js';
import { plural } from '../format.js';
import { confirmDialog } from '../dialog.js';

const RULE_HELP = 'Attributes: os, os_version, type, name, tags. Operators: == != in [..] "not in" [..], ~ "glob*" (names and tags), < <= > >= on os_version; tag("x"); and, or, not, parentheses. Example: os == "linux" and tag("web") and not tag("lab")';

export async function render(main, ctx) {
  const editing = ctx.params.name;
  ctx.title(editing ? `Group ${editing}` : 'New group');
  const [group, devices] = await Promise.all([
    editing ? get(`/groups/${seg(editing)}`) : Promise.resolve(null),
    get('/devices'),
  ]);
  const readOnly = !can('security_manager');
  const name = h('input', { type: 'text', value: group?.name ?? '', disabled: Boolean(editing) || readOnly, autocomplete: 'off', spellcheck: 'false' });
  const description = h('input', { type: 'text', value: group?.description ?? '', disabled: readOnly });
  const isStatic = group ? group.rule === undefined : false;
  const kindDynamic = h('input', { type: 'radio', name: 'kind', id: 'kind-dynamic', value: 'dynamic', checked: !isStatic, disabled: readOnly });
  const kindStatic = h('input', { type: 'radio', name: 'kind', id: 'kind-static', value: 'static', checked: isStatic, disabled: readOnly });
  const rule = h('textarea', { rows: 3, spellcheck: 'false', disabled: readOnly, value: group?.rule ?? '' });
  const memberFilter = h('input', { type: 'search', id: 'member-filter', placeholder: 'Filter devices' });
  const chosen = new Set(group?.members ?? []);
  const memberList = h('ul', { class: 'checklist', id: 'member-list' });
  const preview = h('div', { class: 'preview', id: 'group-preview', 'aria-live': 'polite' });
  const status = h('div', { class: 'form-status' });
  const ruleField = field({ path: 'rule', label: 'Rule', control: rule, help: RULE_HELP });
  const membersField = fieldset({ path: 'members', legend: 'Members', children: [h('div', { class: 'filter' }, h('label', { for: 'member-filter' }, 'Filter'), memberFilter), memberList] });

  function drawMembers() {
    const q = memberFilter.value.trim().toLowerCase();
    replace(memberList, devices.filter((d) => !q || d.name.toLowerCase().includes(q)).map((d) => {
      const id = `member-${d.name}`;
      return h('li', {}, h('input', {
        type: 'checkbox', id, value: d.name, checked: chosen.has(d.name), disabled: readOnly,
        onchange: (e) => { if (e.target.checked) chosen.add(d.name); else chosen.delete(d.name); refreshPreview(); },
      }), h('label', { for: id }, d.name, h('span', { class: 'muted' }, ` ${d.os} ${d.type}`)));
    }));
  }
  memberFilter.addEventListener('input', drawMembers);

  function doc() {
    const d = { name: (editing || name.value).trim(), description: description.value.trim() };
    if (kindStatic.checked) d.members = [...chosen].sort();
    else d.rule = rule.value;
    return d;
  }

  function syncKind() {
    ruleField.hidden = kindStatic.checked;
    membersField.hidden = !kindStatic.checked;
    refreshPreview();
  }
  kindDynamic.addEventListener('change', syncKind);
  kindStatic.addEventListener('change', syncKind);

  let seq = 0;
  const refreshPreview = debounce(async () => {
    const mine = ++seq;
    const d = doc();
    if (!d.name) d.name = 'preview';
    if (d.rule !== undefined && !d.rule.trim()) {
      clearErrors(form);
      replace(preview, h('p', { class: 'muted' }, 'Type a rule to see the devices it matches.'));
      return;
    }
    try {
      const r = await post('/groups/preview', d);
      if (mine !== seq) return;
      clearErrors(form);
      replace(preview,
        h('p', { class: 'preview-count' }, h('strong', {}, `${plural(r.devices.length, 'device')} match`), r.devices.length ? ':' : '.'),
        r.devices.length ? h('ul', { class: 'chips', id: 'preview-devices' }, r.devices.map((n) => h('li', { class: 'chip' }, n))) : null);
    } catch (err) {
      if (mine !== seq) return;
      if (err instanceof ApiError && err.status === 422) {
        // Only the membership is judged while typing; the name is checked on save.
        const rest = showErrors(form, err.details.filter((x) => x.path !== 'name'));
        replace(preview, h('p', { class: 'muted' }, 'The rule has an error; fix it to see the matching devices.'), rest.length ? errorBox(err, rest) : null);
      } else {
        replace(preview, errorBox(err));
      }
    }
  }, 200);
  rule.addEventListener('input', refreshPreview);

  const form = h('form', { class: 'form', novalidate: true, id: 'group-form' },
    field({ path: 'name', label: 'Name', control: name, help: editing ? 'Groups cannot be renamed.' : 'A short name, unique in the tenant; policies assign it.' }),
    field({ path: 'description', label: 'Description', control: description }),
    fieldset({ path: 'kind', legend: 'Kind', children: [
      h('div', { class: 'radio' }, kindDynamic, h('label', { for: 'kind-dynamic' }, 'Dynamic: devices matching a rule')),
      h('div', { class: 'radio' }, kindStatic, h('label', { for: 'kind-static' }, 'Static: devices listed by name')),
    ] }),
    ruleField, membersField,
    h('section', { class: 'card preview-card', 'aria-labelledby': 'preview-h' }, h('h2', { id: 'preview-h' }, 'Matching devices'), preview),
    status,
    readOnly ? h('p', { class: 'notice' }, 'Your role can read groups but not change them.') : h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-group' }, editing ? 'Save' : 'Create group'),
      h('a', { class: 'btn', href: '#/groups' }, 'Cancel'),
      editing ? h('button', { type: 'button', class: 'btn btn-danger', id: 'delete-group', onclick: remove }, 'Delete group') : null));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    replace(status);
    const d = doc();
    try {
      if (editing) await put(`/groups/${seg(editing)}`, d, group.version);
      else await post('/groups', d);
      announce(`Group ${d.name} saved`);
      location.hash = '#/groups';
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && !editing) {
        showErrors(form, [{ path: 'name', message: err.message }]);
      } else if (err instanceof ApiError && err.status === 422) {
        const rest = showErrors(form, err.details);
        if (rest.length) replace(status, errorBox(err, rest));
      } else {
        replace(status, errorBox(err));
      }
      if (!focusFirstError(form)) status.focus?.();
    }
  });

  function remove() {
    confirmDialog({
      id: 'delete-group',
      title: `Delete group ${editing}?`,
      body: h('p', {}, 'A group that a policy is assigned to cannot be deleted: change the policy first.'),
      action: 'Delete group',
      danger: true,
      onConfirm: async () => {
        await del(`/groups/${seg(editing)}`);
        location.hash = '#/groups';
      },
    });
  }

  main.append(
    h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/groups' }, 'Groups'), ' › ', h('span', { 'aria-current': 'page' }, editing || 'New group')),
    h('div', { class: 'page-head' }, h('h1', {}, editing ? `Group ${editing}` : 'New group')),
    form);
  drawMembers();
  syncKind();
}
