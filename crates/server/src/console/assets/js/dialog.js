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
      h('button', { type: 'button', class: 'btn', onclick: () => dialog.close() }, 'Cancel'),
      confirmButton));
  const close = () => { if (dialog.open) dialog.close(); };
  window.addEventListener('hashchange', close);
  window.addEventListener('popstate', close);
  dialog.addEventListener('close', () => {
    window.removeEventListener('hashchange', close);
    window.removeEventListener('popstate', close);
    dialog.remove();
  });
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
