// One pattern for every dialog that asks before acting: a modal <dialog>
// with a title, what will happen, Cancel and one action. It closes (and is
// removed) on Escape, Cancel, success, or any navigation — browser Back
// included — so no dialog outlives the page that opened it.

import { h, replace } from './dom.js';
import { errorBox } from './forms.js';

/**
 * Opens the dialog. `onConfirm` does the action; the dialog closes when it
 * resolves and shows the error (and stays open) when it throws.
 */
export function confirmDialog({ id, title, body, action, danger = false, onConfirm }) {
  const titleId = `${id}-h`;
  const errors = h('div', { class: 'dialog-errors' });
  const confirmButton = h('button', { type: 'button', class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, id: `confirm-${id}` }, action);
  const dialog = h('dialog', { class: 'dialog', id, 'aria-labelledby': titleId },
    h('h2', { id: titleId }, title),
    body,
    errors,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn', onclick: () => close() }, 'Cancel'),
      confirmButton));
  // Closed and removed at once (the `close` event comes a task later, and
  // a dialog still in the page after Cancel would confuse the next one).
  let closed = false;
  function close() {
    if (closed) return;
    closed = true;
    window.removeEventListener('hashchange', close);
    window.removeEventListener('popstate', close);
    if (dialog.open) dialog.close();
    dialog.remove();
  }
  window.addEventListener('hashchange', close);
  window.addEventListener('popstate', close);
  // Escape closes it the browser's way.
  dialog.addEventListener('close', close);
  confirmButton.addEventListener('click', async () => {
    confirmButton.disabled = true;
    replace(errors);
    try {
      await onConfirm();
      close();
    } catch (err) {
      replace(errors, errorBox(err));
      confirmButton.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}
