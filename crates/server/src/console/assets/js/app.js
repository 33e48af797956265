// The console's shell: session, navigation and a small hash router
// (#/devices, #/devices/NAME, #/groups, #/policies, #/policies/new,
// #/reports/policies/NAME, #/tenant, #/audit, …).

import { h, replace, announce } from './dom.js';
import { api, session, clearSession, onUnauthorized, can, ApiError } from './api.js';
import * as login from './pages/login.js';
import * as devices from './pages/devices.js';
import * as device from './pages/device.js';
import * as groups from './pages/groups.js';
import * as groupEdit from './pages/group_edit.js';
import * as policies from './pages/policies.js';
import * as wizard from './pages/wizard.js';
import * as policyReport from './pages/policy_report.js';
import * as settingReport from './pages/setting_report.js';
import * as tenant from './pages/tenant.js';
import * as audit from './pages/audit.js';

const NAV = [
  ['devices', 'Devices', '#/devices'],
  ['groups', 'Groups', '#/groups'],
  ['policies', 'Endpoint security', '#/policies'],
  ['tenant', 'Tenant settings', '#/tenant', 'global_admin'],
  ['audit', 'Audit log', '#/audit'],
];

/** [pattern, page module, nav section]; `:x` captures a path segment. */
const ROUTES = [
  ['devices', devices, 'devices'],
  ['devices/:name', device, 'devices'],
  ['reports/devices/:name', device, 'devices'],
  ['groups', groups, 'groups'],
  ['groups/new', groupEdit, 'groups'],
  ['groups/:name', groupEdit, 'groups'],
  ['policies', policies, 'policies'],
  ['policies/new', wizard, 'policies'],
  ['policies/:name/edit', wizard, 'policies'],
  ['reports/policies/:name', policyReport, 'policies'],
  ['reports/settings/:setting', settingReport, 'policies'],
  ['tenant', tenant, 'tenant'],
  ['audit', audit, 'audit'],
];

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, page, section] of ROUTES) {
    const want = pattern.split('/');
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    want.forEach((w, i) => {
      if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(parts[i]);
      else if (w !== parts[i]) ok = false;
    });
    if (ok) return { page, section, params };
  }
  return null;
}

let cleanups = [];
let renderId = 0;

function runCleanups() {
  for (const f of cleanups) {
    try { f(); } catch { /* a page's cleanup must not stop navigation */ }
  }
  cleanups = [];
}

function shell(section) {
  const s = session();
  const app = document.getElementById('app');
  let main = document.getElementById('main');
  if (!main || !app.querySelector('.layout')) {
    main = h('main', { id: 'main', tabindex: '-1' });
    replace(app,
      h('header', { class: 'topbar' },
        h('a', { class: 'brand', href: '#/devices' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 22, height: 22 }), 'Rampart'),
        h('span', { class: 'topbar-sub' }, 'Endpoint security settings management'),
        h('span', { class: 'spacer' }),
        h('span', { class: 'who' }, `${s.username} · ${s.role.replace('_', ' ')} · tenant ${s.tenant}`),
        h('button', { type: 'button', class: 'btn btn-quiet', id: 'sign-out', onclick: signOut }, 'Sign out')),
      h('div', { class: 'layout' },
        h('nav', { class: 'sidenav', 'aria-label': 'Main' },
          h('ul', {}, NAV.filter(([, , , role]) => !role || can(role)).map(([key, label, href]) =>
            h('li', {}, h('a', { href, dataset: { section: key } }, label))))),
        main));
  }
  for (const a of app.querySelectorAll('.sidenav a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  return main;
}

async function signOut() {
  // Revoke the session on the server too; sign out locally whatever it says.
  try {
    await api('POST', '/logout');
  } catch {
    // Already expired or unreachable: nothing more to revoke.
  }
  clearSession();
  announce('Signed out');
  location.hash = '#/login';
}

async function route() {
  const id = ++renderId;
  runCleanups();
  const raw = location.hash.replace(/^#/, '') || '/devices';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  const app = document.getElementById('app');
  if (path === '/login' || !session()) {
    if (path !== '/login') {
      sessionStorage.setItem('rampart.after-login', location.hash);
      location.replace('#/login');
      return;
    }
    await login.render(app, { query, onCleanup: (f) => cleanups.push(f), done: afterLogin });
    return;
  }
  const found = match(path);
  const main = shell(found?.section);
  replace(main);
  const ctx = {
    params: found?.params ?? {},
    query,
    onCleanup: (f) => cleanups.push(f),
    /** True while this page is still the one shown. */
    current: () => id === renderId,
    title: (t) => { document.title = `${t} · Rampart`; },
  };
  if (!found) {
    ctx.title('Not found');
    main.append(h('h1', { tabindex: '-1' }, 'Page not found'), h('p', {}, h('a', { href: '#/devices' }, 'Go to devices')));
    main.querySelector('h1').focus();
    return;
  }
  // A page that takes more than a moment says it is loading; one that
  // fails says why, and offers to try again where trying again can help.
  const loading = h('p', { class: 'loading', role: 'status', id: 'page-loading' }, 'Loading…');
  const slow = setTimeout(() => { if (ctx.current()) main.prepend(loading); }, 200);
  try {
    await found.page.render(main, ctx);
  } catch (e) {
    if (!ctx.current()) return;
    replace(main);
    main.append(failure(e, found.section));
  } finally {
    clearTimeout(slow);
    loading.remove();
  }
  if (!ctx.current()) return;
  // Move focus to the new page's heading so keyboard and screen reader users
  // start there, as after a full page load.
  const h1 = main.querySelector('h1');
  if (h1 && !main.contains(document.activeElement)) {
    h1.setAttribute('tabindex', '-1');
    h1.focus({ preventScroll: true });
  }
}

const SECTION_HOME = {
  devices: ['#/devices', 'Go to devices'],
  groups: ['#/groups', 'Go to groups'],
  policies: ['#/policies', 'Go to policies'],
  tenant: ['#/tenant', 'Go to tenant settings'],
  audit: ['#/audit', 'Go to the audit log'],
};

/** What a page that could not be shown says instead: not found (with the
 * way back), or what failed and a Retry button when it may pass later
 * (server unreachable, database unavailable, a server error). */
function failure(e, section) {
  const [href, label] = SECTION_HOME[section] ?? SECTION_HOME.devices;
  if (e instanceof ApiError && e.status === 404) {
    return h('div', { class: 'failure', id: 'page-failure' },
      h('h1', {}, 'Not found'),
      h('p', {}, e.message, ' It may have been deleted or renamed.'),
      h('p', {}, h('a', { href }, label)));
  }
  const transient = !(e instanceof ApiError) || e.status === 0 || e.status >= 500 || e.status === 429;
  const title = e instanceof ApiError && e.status === 0 ? 'The server cannot be reached' : 'This page could not be loaded';
  return h('div', { class: 'failure', id: 'page-failure' },
    h('h1', {}, title),
    h('div', { class: 'error-box', role: 'alert' }, h('p', {}, e.message || String(e))),
    h('p', {}, transient ? h('button', { type: 'button', class: 'btn btn-primary', id: 'retry', onclick: () => route() }, 'Retry') : null,
      ' ', h('a', { href }, label)));
}

function afterLogin() {
  const next = sessionStorage.getItem('rampart.after-login');
  sessionStorage.removeItem('rampart.after-login');
  location.hash = next && next !== '#/login' ? next : '#/devices';
}

onUnauthorized(() => {
  if (location.hash !== '#/login') {
    sessionStorage.setItem('rampart.after-login', location.hash);
    sessionStorage.setItem('rampart.login-message', 'Your session has ended. Sign in again.');
    location.hash = '#/login';
  }
});

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('skip-link')?.addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main')?.focus();
  });
  route();
});
