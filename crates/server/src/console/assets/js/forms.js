// Form fields with their label, help and error slot, and the mapping of the
// API's field errors (422 `details[].path`) to the field they name.

import { h, idFor, clear } from './dom.js';

/**
 * A labelled field. `path` is the API field path the control edits; errors
 * for that path (or below it) appear in this field's error slot.
 */
export function field({ path, label, control, help, extra, cls }) {
  const id = control.id || idFor('f', path);
  control.id = id;
  const helpId = `${id}-help`;
  const errId = `${id}-error`;
  const describedBy = [help ? helpId : null, errId].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', describedBy);
  return h('div', { class: `field ${cls || ''}`, dataset: { path } },
    h('label', { for: id }, label),
    help ? h('p', { class: 'help', id: helpId }, help) : null,
    control,
    extra,
    h('p', { class: 'field-error', id: errId, hidden: true }));
}

/** A group of radio buttons or checkboxes in a fieldset with a legend. */
export function fieldset({ path, legend, children, help }) {
  const errId = idFor('fs', path) + '-error';
  return h('fieldset', { class: 'field', dataset: { path }, 'aria-describedby': errId },
    h('legend', {}, legend),
    help ? h('p', { class: 'help' }, help) : null,
    children,
    h('p', { class: 'field-error', id: errId, hidden: true }));
}

export function clearErrors(root) {
  for (const e of root.querySelectorAll('.field-error')) {
    clear(e);
    e.hidden = true;
  }
  for (const e of root.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  for (const e of root.querySelectorAll('.field.invalid')) e.classList.remove('invalid');
}

/** The field container for an error path: exact, else the closest parent. */
export function fieldFor(root, path) {
  let best = null;
  let bestLen = -1;
  for (const el of root.querySelectorAll('[data-path]')) {
    const p = el.dataset.path;
    const under = path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`);
    if (under && p.length > bestLen) {
      best = el;
      bestLen = p.length;
    }
  }
  return best;
}

/**
 * Shows each error next to its field. `strip` is removed from the front of
 * every path first (a preview wraps the document in `changes[0].document`).
 * Returns the errors no field on the page could show.
 */
export function showErrors(root, details, strip = '') {
  clearErrors(root);
  const unplaced = [];
  for (const d of details) {
    const path = d.path.startsWith(strip) ? d.path.slice(strip.length) : d.path;
    const f = fieldFor(root, path);
    if (!f) {
      unplaced.push({ ...d, path });
      continue;
    }
    const slot = f.querySelector(':scope > .field-error')
      || f.querySelector(':scope > .setting-control > .field-error')
      || f.querySelector('.field-error');
    slot.hidden = false;
    // `[2]` below a list field reads as "item 3".
    const below = path.slice(f.dataset.path.length).replace(/^\./, '').replace(/^\[(\d+)\]/, (_, n) => `item ${Number(n) + 1}`);
    const rel = below ? `${below}: ` : '';
    slot.append(h('span', { class: 'err-line' }, rel + d.message));
    f.classList.add('invalid');
    for (const c of f.querySelectorAll('input, select, textarea')) c.setAttribute('aria-invalid', 'true');
  }
  return unplaced;
}

/** Focuses the first invalid control under `root`. */
export function focusFirstError(root) {
  const c = root.querySelector('[aria-invalid="true"]');
  if (c) c.focus();
  return Boolean(c);
}

/** An alert box that says what went wrong, for errors no field shows. */
export function errorBox(err, extra = []) {
  const items = [...extra];
  return h('div', { class: 'error-box', role: 'alert' },
    h('p', {}, h('strong', {}, err?.message || String(err))),
    items.length ? h('ul', {}, items.map((d) => h('li', {}, d.path ? h('code', {}, d.path) : null, d.path ? ': ' : '', d.message))) : null);
}

export function select(options, value, attrs = {}) {
  return h('select', attrs, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}
