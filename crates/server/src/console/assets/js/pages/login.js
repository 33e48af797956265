// Sign in with a local user; the session token is kept in sessionStorage
// (gone when the tab closes).

import { h, replace, announce } from '../dom.js';
import { post, setSession, ApiError } from '../api.js';
import { field } from '../forms.js';

export async function render(app, ctx) {
  document.title = 'Sign in · Rampart';
  const message = sessionStorage.getItem('rampart.login-message');
  sessionStorage.removeItem('rampart.login-message');
  const user = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const tenant = h('input', { type: 'text', name: 'tenant', placeholder: 'default', autocapitalize: 'none', spellcheck: 'false' });
  const status = h('div', { class: 'form-status', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in');
  const form = h('form', { class: 'login-form', novalidate: true },
    field({ path: 'username', label: 'User name', control: user }),
    field({ path: 'password', label: 'Password', control: pass }),
    h('details', { class: 'login-more' },
      h('summary', {}, 'Another tenant'),
      field({ path: 'tenant', label: 'Tenant', control: tenant, help: 'Leave empty for the default tenant.' })),
    status,
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(status);
    if (!user.value.trim() || !pass.value) {
      replace(status, h('p', { class: 'error-text' }, 'Enter your user name and password.'));
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    try {
      const body = { username: user.value.trim(), password: pass.value };
      if (tenant.value.trim()) body.tenant = tenant.value.trim();
      const r = await post('/login', body);
      setSession({ token: r.token, role: r.role, tenant: r.tenant, username: body.username, expires_at: r.expires_at });
      announce(`Signed in as ${body.username}`);
      ctx.done();
    } catch (err) {
      const text = err instanceof ApiError && err.status === 401
        ? 'Unknown user or wrong password.'
        : err.message;
      replace(status, h('p', { class: 'error-text' }, text));
      pass.select();
      pass.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(app,
    h('main', { id: 'main', class: 'login-page', tabindex: '-1' },
      h('div', { class: 'login-card' },
        h('div', { class: 'login-brand' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 36, height: 36 }), h('span', {}, 'Rampart')),
        h('h1', {}, 'Sign in to the console'),
        message ? h('p', { class: 'notice' }, message) : null,
        form,
        h('p', { class: 'help' }, 'No user yet? On the server, run ',
          h('code', {}, 'rampart-server create-user --username NAME --role global_admin --password-file FILE'), '.'))));
  user.focus();
}
