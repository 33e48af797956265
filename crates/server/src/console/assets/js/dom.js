// Building DOM nodes without innerHTML, so text from the server is never
// parsed as markup.

const PROPS = new Set(['value', 'checked', 'selected', 'indeterminate']);

/** h('a', {href: '#/x', class: 'link'}, 'text', child…) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

/** A stable element id from any text. */
export function idFor(prefix, text) {
  return `${prefix}-${String(text).replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

let live;
/** Says `text` to screen readers (and shows nothing). */
export function announce(text) {
  live ??= document.getElementById('live');
  if (!live) return;
  live.textContent = '';
  // A new text node after a tick makes screen readers speak it again.
  setTimeout(() => { live.textContent = text; }, 50);
}

export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

function focusKey(el) {
  return `${el.tagName}|${el.getAttribute('href') ?? ''}|${el.id}|${el.textContent}`;
}

/**
 * Runs `redraw`, which replaces what `container` holds, and gives focus back
 * to the equivalent control if it was inside: a periodic refresh must not
 * throw a keyboard user back to the top of the page.
 */
export function keepFocus(container, redraw) {
  const active = document.activeElement;
  const key = active && active !== container && container.contains(active) ? focusKey(active) : null;
  redraw();
  if (!key) return;
  for (const el of container.querySelectorAll('a, button, input, select, textarea')) {
    if (focusKey(el) === key) {
      el.focus({ preventScroll: true });
      return;
    }
  }
}
