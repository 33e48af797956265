// End to end: the Rampart web console in headless Chromium (Debian's
// `chromium`, driven by playwright-core), against a real `rampart-server`
// with the example fleet and three real `rampart-agent` processes over mutual
// TLS. It logs in, creates a group and a policy through the wizard, sees the
// impact preview, assigns, watches device statuses arrive, opens a conflict
// and sees the other policy; it checks validation errors and role limits, and
// saves a screenshot of every main page to artifacts/.
//
// Every process it starts is stopped by its PID at the end, and every
// temporary directory removed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
const SERVER_BIN = path.join(TARGET, 'debug', 'rampart-server');
const AGENT_BIN = path.join(TARGET, 'debug', 'rampart-agent');
const CHROMIUM = process.env.RAMPART_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(HERE, 'artifacts');
const ADMIN_PASSWORD = 'console-test-admin-password';
const VIEWER_PASSWORD = 'console-test-viewer-password';

const AGENTS = [
  ['live-web-01', 'tags: [web]'],
  ['live-web-02', 'tags: [web]'],
  ['live-db-01', 'tags: [db]'],
];

let tmp;
let server;
let base;
let adminToken;
const agents = [];
let context;
let page;
const pageErrors = [];

/** Starts a child process whose PID we keep, with its stderr in a log file. */
function start(bin, args, log) {
  const fd = openSync(log, 'w');
  const child = spawn(bin, args, { cwd: REPO, env: { ...process.env, RUST_LOG: 'warn', RAMPART_AGENT_LOG: 'warn' }, stdio: ['ignore', 'pipe', fd] });
  closeSync(fd);
  return child;
}

/** SIGTERM by PID, then SIGKILL if it is still there after a while. */
async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try { process.kill(child.pid, 'SIGTERM'); } catch { return; }
  const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, 10000);
  await exited;
  clearTimeout(timer);
}

/** Reads the child's stdout until `pattern` matches, within `ms`. */
function waitForLine(child, pattern, ms) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; stdout so far: ${seen}`)), ms);
    child.stdout.on('data', (chunk) => {
      seen += chunk.toString();
      const m = seen.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${code} before ${pattern}; stdout: ${seen}`)); });
  });
}

async function apiCall(method, urlPath, body, token = adminToken) {
  const res = await fetch(`${base}/api/v1${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function shot(name, fullPage = true) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage });
}

/** Polls `fn` until it returns a truthy value. */
async function eventually(what, fn, ms = 60000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const visible = (locator, timeout = 15000) => locator.first().waitFor({ state: 'visible', timeout });

before(async () => {
  if (!process.env.RAMPART_CONSOLE_TESTS_NO_BUILD) {
    execFileSync('cargo', ['build', '--locked', '-p', 'rampart-server', '-p', 'rampart-agent'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  assert.ok(existsSync(SERVER_BIN), `${SERVER_BIN} is missing`);
  assert.ok(existsSync(AGENT_BIN), `${AGENT_BIN} is missing`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  tmp = mkdtempSync(path.join(tmpdir(), 'rampart-console-'));
  const data = path.join(tmp, 'data');

  // The first users, from the command line; passwords from a file and stdin.
  writeFileSync(path.join(tmp, 'admin-password'), `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  execFileSync(SERVER_BIN, ['--data-dir', data, 'create-user', '--username', 'admin', '--role', 'global_admin', '--password-file', path.join(tmp, 'admin-password')], { env: { ...process.env, RUST_LOG: 'warn' } });
  execFileSync(SERVER_BIN, ['--data-dir', data, 'create-user', '--username', 'viewer', '--role', 'read_only', '--password-file', '-'], { input: `${VIEWER_PASSWORD}\n`, env: { ...process.env, RUST_LOG: 'warn' } });

  server = start(SERVER_BIN, ['--data-dir', data, '--listen', '127.0.0.1:0', '--device-listen', '127.0.0.1:0', '--load', 'examples/fleet'], path.join(tmp, 'server.log'));
  const [, addr] = await waitForLine(server, /listening on http:\/\/(\S+)/, 30000);
  base = `http://${addr}`;
  adminToken = readFileSync(path.join(data, 'admin-token'), 'utf8').trim();

  // Real agents: onboard with a package from the API, then run.
  const pkg = await apiCall('POST', '/onboarding', {});
  assert.equal(pkg.status, 201, JSON.stringify(pkg.body));
  const pkgFile = path.join(tmp, 'package.json');
  writeFileSync(pkgFile, JSON.stringify(pkg.body), { mode: 0o600 });
  for (const [name, tags] of AGENTS) {
    const dir = path.join(tmp, name);
    mkdirSync(dir);
    const facts = path.join(dir, 'facts.yaml');
    const config = path.join(dir, 'agent.toml');
    writeFileSync(facts, `os: linux\nos_version: "22.04"\ntype: server\n${tags}\n`);
    writeFileSync(config, 'check_in_interval_secs = 3600\nwait_timeout_secs = 20\n[survey]\nbuiltin = false\n');
    const common = ['--state-dir', path.join(dir, 'state'), '--config', config];
    execFileSync(AGENT_BIN, ['onboard', '--package', pkgFile, '--device-name', name, '--facts', facts, ...common], { env: { ...process.env, RAMPART_AGENT_LOG: 'warn' } });
    agents.push(start(AGENT_BIN, ['run', ...common], path.join(dir, 'agent.log')));
  }
  // A Mac without the pilot tag (macOS is in pilot mode in the example
  // tenant): it enrolls, and the server says why it is not managed.
  const mac = path.join(tmp, 'pilot-mac-01');
  mkdirSync(mac);
  writeFileSync(path.join(mac, 'facts.yaml'), 'os: macos\nos_version: "14.5"\ntype: workstation\ntags: [exec]\n');
  writeFileSync(path.join(mac, 'agent.toml'), '[survey]\nbuiltin = false\n');
  execFileSync(AGENT_BIN, ['onboard', '--package', pkgFile, '--device-name', 'pilot-mac-01', '--facts', path.join(mac, 'facts.yaml'),
    '--state-dir', path.join(mac, 'state'), '--config', path.join(mac, 'agent.toml')], { env: { ...process.env, RAMPART_AGENT_LOG: 'warn' } });

  const profile = path.join(tmp, 'chromium-profile');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
  });
  page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[134]|status of 422|status of 409|ERR_CONNECTION_REFUSED/.test(m.text())) pageErrors.push(`console: ${m.text()}`); });
});

after(async () => {
  try { await context?.close(); } catch { /* already gone */ }
  for (const a of agents) await stop(a);
  await stop(server);
  if (tmp && !process.env.RAMPART_CONSOLE_TESTS_KEEP) rmSync(tmp, { recursive: true, force: true });
});

test('the console, end to end', { timeout: 300000 }, async (top) => {
  // Steps build on each other: after a failure the rest are skipped.
  let failed = false;
  const t = {
    test: (name, fn) => top.test(name, { skip: failed && 'an earlier step failed' }, async (...args) => {
      try {
        await fn(...args);
      } catch (e) {
        failed = true;
        await shot(`failed-${name.replace(/[^a-z0-9]+/gi, '-')}`).catch(() => {});
        throw e;
      }
    }),
  };
  await t.test('sign in (a wrong password is refused)', async () => {
    await page.goto(`${base}/`);
    await page.waitForURL(/#\/login$/);
    await visible(page.getByRole('heading', { name: 'Sign in to the console' }));
    await shot('01-login');
    await page.getByLabel('User name', { exact: true }).fill('admin');
    await page.getByLabel('Password', { exact: true }).fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible(page.getByText('Unknown user or wrong password.'));
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByLabel('Password', { exact: true }).press('Enter');
    await visible(page.getByRole('heading', { name: 'Devices', level: 1 }));
  });

  await t.test('devices: live agents enrolled, filter and sort', async () => {
    for (const [name] of AGENTS) {
      await visible(page.locator('#devices-table tbody tr', { hasText: name }).filter({ hasText: 'Enrolled, managed' }), 30000);
    }
    const rows = page.locator('#devices-table tbody tr');
    assert.ok(await rows.count() >= 15, 'the example fleet and the live agents');
    await page.getByRole('button', { name: 'Last check-in' }).click();
    assert.equal(await page.locator('th[aria-sort="ascending"]').textContent(), 'Last check-in');
    await page.getByRole('button', { name: 'Last check-in' }).click();
    assert.equal(await page.locator('th[aria-sort="descending"]').textContent(), 'Last check-in');
    await page.getByLabel('Search', { exact: true }).fill('live-');
    await eventually('three live devices', async () => (await rows.count()) === 3);
    await page.getByLabel('Search', { exact: true }).fill('');
    await page.getByLabel('Label', { exact: true }).selectOption('Managed');
    await eventually('only managed devices', async () => (await rows.count()) === 3);
    await page.getByLabel('Label', { exact: true }).selectOption('');
    // Search reads every column: OS and labels as well as names and tags.
    await page.getByLabel('Search', { exact: true }).fill('linux joined');
    await eventually('the three live Linux agents', async () => (await rows.count()) === 3);
    await page.getByLabel('Search', { exact: true }).fill('');
    // Problems at a glance: the web agents report the PUA conflict.
    const web01 = page.locator('#devices-table tbody tr', { hasText: 'live-web-01' });
    await visible(web01.locator('.problems-cell', { hasText: /\d+ conflicts?/ }), 60000);
    await page.getByLabel('Problems', { exact: true }).selectOption('conflicts');
    await eventually('only devices with conflicts', async () => {
      const cells = await page.locator('#devices-table tbody .problems-cell').allTextContents();
      return cells.length >= 2 && cells.every((c) => /conflict/.test(c));
    });
    // The view is in the URL: a reload (or a shared link) shows the same.
    // (Sorted by last check-in above: the first click sorts by name, the
    // second reverses it.)
    await page.getByRole('button', { name: 'Name' }).click();
    await page.getByRole('button', { name: 'Name' }).click();
    await page.waitForURL(/problems=conflicts/);
    await page.waitForURL(/dir=desc/);
    await page.reload();
    await visible(page.getByRole('heading', { name: 'Devices', level: 1 }));
    assert.equal(await page.getByLabel('Problems', { exact: true }).inputValue(), 'conflicts');
    assert.equal(await page.locator('th[aria-sort="descending"]').textContent(), 'Name');
    await page.getByLabel('Problems', { exact: true }).selectOption('');
    await shot('02-devices');

    // A big tenant is paged by the server (`?page_size=` asks for it at any
    // size): a page at a time, search and sorting done by the server.
    await page.goto(`${base}/#/devices?page_size=5`);
    const count = page.locator('#main p.count, p.count').first();
    await visible(page.locator('#devices-next'));
    await eventually('the first page of five', async () => (await rows.count()) === 5 && /^Devices 1–5 of \d+$/.test(await count.textContent()));
    const total = Number((await count.textContent()).match(/of (\d+)/)[1]);
    assert.ok(total >= 15, String(total));
    const firstPage = await page.locator('#devices-table tbody th').allTextContents();
    assert.deepEqual(firstPage, [...firstPage].sort());
    await page.locator('#devices-next').click();
    await eventually('the second page', async () => /^Devices 6–10 of/.test(await count.textContent()));
    const secondPage = await page.locator('#devices-table tbody th').allTextContents();
    assert.ok(secondPage[0] > firstPage[4], `${secondPage} after ${firstPage}`);
    await page.locator('#devices-prev').click();
    await eventually('the first page again', async () => /^Devices 1–5 of/.test(await count.textContent()));
    assert.deepEqual(await page.locator('#devices-table tbody th').allTextContents(), firstPage);
    await page.getByRole('button', { name: 'Last check-in' }).click();
    await page.getByRole('button', { name: 'Last check-in' }).click();
    await eventually('the newest check-ins first', async () => {
      const names = await page.locator('#devices-table tbody th').allTextContents();
      // The four running agents have checked in; the loaded devices never did.
      return names.length === 5 && names.slice(0, 4).sort().join() === 'live-db-01,live-web-01,live-web-02,pilot-mac-01';
    });
    await page.getByLabel('Search', { exact: true }).fill('live-');
    await eventually('the three live devices, found by the server', async () => (await rows.count()) === 3 && /of 3$/.test(await count.textContent()));
    assert.ok(await page.getByLabel('Problems', { exact: true }).isDisabled());
    assert.equal(await page.getByRole('button', { name: 'Problems' }).count(), 0, 'paged, Problems is not sortable');
    await shot('02b-devices-paged');
    await page.getByLabel('Search', { exact: true }).fill('');
  });

  await t.test('device out of scope: why, and how to fix it', async () => {
    await page.goto(`${base}/#/devices/pilot-mac-01`);
    await visible(page.getByRole('heading', { name: 'pilot-mac-01', level: 1 }));
    const help = page.locator('#device-help');
    await visible(help);
    const text = await help.textContent();
    assert.match(text, /Why: The device's platform is in pilot mode \(tagged\) and the device does not carry the pilot tag\./);
    assert.match(text, /Fix: Tag the device/);
    // The command is shown as code, not as literal backticks.
    assert.equal(await help.locator('code', { hasText: 'rampart device tag NAME --add TAG' }).count(), 1);
    assert.doesNotMatch(text, /`/);
    // Plain words that agree with each other, and no Policy sync for a
    // device Rampart does not manage.
    assert.equal((await page.locator('#managed-by').textContent()).trim(), 'Nobody (outside the scope)');
    assert.match(await page.locator('#enrollment .badge').textContent(), /^Enrolled, not managed: no pilot tag$/);
    assert.equal(await page.getByRole('button', { name: 'Policy sync' }).count(), 0);
    await shot('02-device-out-of-scope');
    // A managed device has nothing to fix, and can be synced.
    await page.goto(`${base}/#/devices/live-web-01`);
    await visible(page.getByRole('heading', { name: 'live-web-01', level: 1 }));
    assert.equal(await page.locator('#device-help').count(), 0);
    assert.equal((await page.locator('#managed-by').textContent()).trim(), 'Rampart');
    assert.equal(await page.locator('#enrollment .badge').textContent(), 'Enrolled, managed');
    await visible(page.getByRole('button', { name: 'Policy sync' }));
    await page.getByRole('link', { name: 'Devices', exact: true }).first().click();
    await visible(page.getByRole('heading', { name: 'Devices', level: 1 }));
  });

  await t.test('groups: a dynamic group, its members shown as the rule is typed', async () => {
    await page.getByRole('link', { name: 'Groups' }).click();
    await visible(page.getByRole('heading', { name: 'Groups', level: 1 }));
    await page.getByRole('link', { name: 'New group' }).click();
    await page.getByLabel('Name', { exact: true }).fill('live-canary');
    await page.getByLabel('Description', { exact: true }).fill('The live web agents');
    const rule = page.getByLabel('Rule', { exact: true });
    await rule.fill('tag("web") and');
    const ruleError = page.locator('[data-path="rule"] .field-error');
    await visible(ruleError);
    assert.match(await ruleError.textContent(), /syntax error/);
    assert.equal(await rule.getAttribute('aria-invalid'), 'true');
    await rule.fill('');
    await rule.pressSequentially('tag("web") and name ~ "live-*"', { delay: 10 });
    await visible(page.getByText('2 devices match'));
    const members = await page.locator('#preview-devices li').allTextContents();
    assert.deepEqual(members.sort(), ['live-web-01', 'live-web-02']);
    assert.equal(await ruleError.isHidden(), true);
    await shot('03-group-editor');
    await page.getByRole('button', { name: 'Create group' }).click();
    await visible(page.locator('#groups-table tr', { hasText: 'live-canary' }).filter({ hasText: '2 devices' }));
    await shot('04-groups');
  });

  await t.test('policy wizard: errors next to fields, impact preview, create', async () => {
    await page.getByRole('link', { name: 'Endpoint security' }).click();
    await visible(page.getByRole('heading', { name: 'Endpoint security policies' }));
    await page.getByRole('link', { name: 'Create policy' }).click();
    await visible(page.getByRole('heading', { name: 'Basics' }));
    // Next with no name: the server's error appears by the Name field.
    await page.getByRole('button', { name: 'Next', exact: true }).click();
    const nameError = page.locator('[data-path="name"] .field-error');
    await visible(nameError);
    assert.match(await nameError.textContent(), /empty|required/);
    await shot('05-wizard-basics-error');
    await page.getByLabel('Name', { exact: true }).fill('live-canary-av');
    await page.getByLabel('Description', { exact: true }).fill('Canary antivirus settings for the live web agents');
    await page.getByLabel('Platform', { exact: true }).selectOption('linux');
    await page.getByLabel('Policy type (family)', { exact: true }).selectOption('antivirus');
    await page.getByRole('button', { name: 'Next', exact: true }).click();

    await visible(page.getByRole('heading', { name: 'Configuration settings' }));
    // Settings come in groups, their help folded away until asked for.
    const groupNames = await page.locator('.setting-group > h3').allTextContents();
    for (const g of ['Real-time protection', 'Scans', 'Exclusions']) assert.ok(groupNames.includes(g), String(groupNames));
    const help = page.locator('[data-setting="scan_archives"] details.setting-help');
    assert.equal(await help.getAttribute('open'), null);
    assert.equal(await help.locator('p.help').isVisible(), false);
    await help.locator('> summary').click();
    assert.ok(await help.locator('p.help').isVisible());
    await page.getByLabel('Behavior monitoring', { exact: true }).selectOption('true');
    await page.getByLabel('Scan archives', { exact: true }).selectOption('false');
    // "Show only configured settings" leaves the two just set.
    await page.getByLabel('Show only configured settings').check();
    const shownSettings = await page.locator('.settings-list .setting:not([hidden])').evaluateAll((els) => els.map((e) => e.dataset.setting));
    assert.deepEqual(shownSettings.sort(), ['behavior_monitoring', 'scan_archives']);
    await page.getByLabel('Show only configured settings').uncheck();
    // A relative path is refused by the server, next to its setting.
    await page.getByLabel('Excluded files and folders', { exact: true }).fill('relative/path');
    await page.getByRole('button', { name: 'Next', exact: true }).click();
    const pathError = page.locator('[data-path="settings.excluded_paths"] .setting-control > .field-error');
    await visible(pathError);
    assert.match(await pathError.textContent(), /item 1: "relative\/path" is not an absolute path/);
    await page.locator('[data-path="settings.excluded_paths"]').scrollIntoViewIfNeeded();
    await shot('06-wizard-settings-error', false);
    await page.getByLabel('Excluded files and folders', { exact: true }).fill('/srv/canary');
    await page.getByRole('button', { name: 'Next', exact: true }).click();

    await visible(page.getByRole('heading', { name: 'Assignments' }));
    await page.locator('#include-list').getByLabel(/^live-canary/).check();
    await shot('07-wizard-assignments');
    await page.getByRole('button', { name: 'Next', exact: true }).click();

    await visible(page.getByRole('heading', { name: 'Review + create' }));
    await visible(page.locator('#impact'));
    assert.match(await page.locator('.impact-summary').textContent(), /2 devices would have their effective policy changed/);
    const conflicts = await page.locator('#new-conflicts').textContent();
    assert.match(conflicts, /Scan archives/);
    assert.match(conflicts, /linux-av-baseline/);
    const impacted = await page.locator('#impact-table tbody th').allTextContents();
    assert.deepEqual(impacted.sort(), ['live-web-01', 'live-web-02']);
    // Nothing is saved before Create.
    assert.equal((await apiCall('GET', '/policies/live-canary-av')).status, 404);
    await shot('08-wizard-review');
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    await page.waitForURL(/#\/reports\/policies\/live-canary-av$/);
  });

  await t.test('policy report: device statuses arrive from the agents', async () => {
    await visible(page.getByRole('heading', { name: 'live-canary-av', level: 1 }));
    // The agents apply behavior_monitoring with their file provider and report
    // it on both: recorded, never counted as succeeded.
    await visible(page.locator('#per-setting tr[data-setting="behavior_monitoring"] td.has-recorded', { hasText: '2' }), 60000);
    assert.equal(await page.locator('#per-setting tr[data-setting="behavior_monitoring"] td.has-succeeded').count(), 0);
    await visible(page.locator('#per-setting tr[data-setting="scan_archives"] td.has-conflict', { hasText: '2' }));
    const conflictCount = await page.locator('#policy-counts [data-status="conflict"] .num').textContent();
    assert.equal(conflictCount, '2');
    const row = page.locator('#policy-devices tr[data-device="live-web-01"]');
    await row.getByRole('button', { name: /Per-setting status/ }).click();
    const detail = page.locator('#pd-live-web-01');
    await visible(detail);
    const scanRow = await detail.locator('tr', { hasText: 'Scan archives' }).textContent();
    assert.match(scanRow, /Conflict.*linux-av-baseline/s);
    // Each side of the conflict with the value it sets.
    assert.match(scanRow, /linux-av-baseline sets true/);
    assert.match(scanRow, /live-canary-av sets false/);
    await shot('09-policy-report');
    // The setting's own report: conflicts first, with their values.
    await page.goto(`${base}/#/reports/settings/scan_archives`);
    const first = page.locator('#setting-devices tbody tr').first();
    await visible(first);
    assert.match(await first.textContent(), /Conflict.*linux-av-baseline sets true; live-canary-av sets false/s);
    await page.goBack();
    await visible(page.getByRole('heading', { name: 'live-canary-av', level: 1 }));
    // Editing ends in a review that saves, and says so.
    await page.locator('#edit-policy').click();
    await visible(page.getByRole('heading', { name: 'Edit policy live-canary-av', level: 1 }));
    const stepNames = await page.locator('.steps li').allTextContents();
    assert.ok(stepNames.some((n) => /Review \+ save/.test(n)), String(stepNames));
    assert.ok(!stepNames.some((n) => /Review \+ create/.test(n)), String(stepNames));
    await page.goBack();
    await visible(page.getByRole('heading', { name: 'live-canary-av', level: 1 }));
  });

  await t.test('device: a conflict names the other policies; policy sync; tags', async () => {
    await page.locator('#policy-devices').getByRole('link', { name: 'live-web-01' }).click();
    await visible(page.getByRole('heading', { name: 'live-web-01', level: 1 }));
    const pua = page.locator('#device-settings tr[data-setting="pua_protection"]');
    await visible(pua.getByText('Conflict'));
    // Problems come first, and a status tile shows only its settings.
    assert.equal(await page.locator('#device-settings > tbody > tr:not(.detail-row)').first().getAttribute('class'), 'row-conflict');
    await page.locator('.count-tile[data-status="conflict"] button').click();
    await page.waitForURL(/status=conflict/);
    assert.equal(await page.locator('.count-tile[data-status="conflict"] button').getAttribute('aria-pressed'), 'true');
    const shownRows = await page.locator('#device-settings > tbody > tr:not(.detail-row)').evaluateAll((trs) => trs.map((tr) => tr.className));
    assert.ok(shownRows.length >= 1 && shownRows.every((c) => c === 'row-conflict'), String(shownRows));
    await page.locator('.count-tile[data-status="conflict"] button').click();
    await eventually('every setting again', async () => (await page.locator('#device-settings tr.row-recorded').count()) > 0);
    // Each side of the conflict with the value it asks for.
    assert.match(await pua.locator('.conflicting').textContent(),
      /Conflict: linux-av-baseline sets block; linux-av-web sets audit/);
    const toggle = pua.getByRole('button', { name: /PUA/ });
    assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
    await toggle.click();
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    const other = page.locator('#detail-pua_protection_ .other-policies');
    await visible(other);
    const text = await other.textContent();
    assert.match(text, /linux-av-baseline/);
    assert.match(text, /linux-av-web/);
    // An applied setting shows its status with the backend that applied it:
    // the file provider's values read "Recorded, not enforced".
    const applied = page.locator('#device-settings tr[data-setting="behavior_monitoring"]');
    await visible(applied.getByText('Recorded, not enforced'), 30000);
    await visible(applied.getByText('by File (not enforced)'));
    // …and the notes do not say it a second time.
    assert.doesNotMatch(await applied.locator('td.notes').textContent(), /recorded by the file provider/);
    // A firewall rule reads by its name and effect, as in the CLI.
    const ssh = page.locator('#device-settings tr[data-setting="firewall_rules"]', { hasText: '[allow-ssh]' });
    assert.match(await ssh.textContent(), /allow-ssh \(in allow tcp port 22\)/);
    await page.getByRole('button', { name: 'Policy sync' }).click();
    await visible(page.getByText(/Sync requested: the device is connected/));
    await page.getByRole('button', { name: 'Allow re-enrollment' }).click();
    const approve = page.getByRole('dialog', { name: /Allow re-enrollment of live-web-01/ });
    await visible(approve);
    await approve.getByLabel('Approval lasts (hours)').fill('2');
    await approve.getByRole('button', { name: 'Allow once' }).click();
    await visible(page.getByText(/Re-enrollment allowed once until/));
    await page.getByRole('textbox', { name: 'Tags', exact: true }).fill('web, canary');
    await page.getByRole('button', { name: 'Save tags' }).click();
    await visible(page.getByText('Tags saved.'));
    await shot('10-device-conflict');
  });

  await t.test('policies by family', async () => {
    await page.getByRole('link', { name: 'Endpoint security' }).click();
    await visible(page.getByRole('heading', { name: 'Antivirus', level: 2 }));
    await visible(page.locator('table.policies tr', { hasText: 'live-canary-av' }).locator('.badge'));
    await page.getByLabel('Family', { exact: true }).selectOption('firewall_rules');
    await page.waitForURL(/family=firewall_rules/);
    await visible(page.getByRole('heading', { name: 'Firewall rules', level: 2 }));
    assert.equal(await page.getByRole('heading', { name: 'Antivirus', level: 2 }).count(), 0);
    await page.getByLabel('Family', { exact: true }).selectOption('');
    await visible(page.getByRole('heading', { name: 'Antivirus', level: 2 }));
    await page.waitForFunction(() => [...document.querySelectorAll('.status-cell')].every((c) => !c.textContent.includes('…')));
    // At 1440 pixels every table fits: no sideways scrolling, Delete visible.
    const overflowing = await page.locator('.table-wrap').evaluateAll((els) => els.filter((e) => e.scrollWidth > e.clientWidth + 1).length);
    assert.equal(overflowing, 0, 'a policy table scrolls sideways');
    const del = page.getByRole('button', { name: 'Delete linux-av-baseline' });
    const box = await del.boundingBox();
    const wrap = await page.locator('.table-wrap').first().boundingBox();
    assert.ok(box && box.x + box.width <= wrap.x + wrap.width, `Delete is clipped: ${JSON.stringify(box)} in ${JSON.stringify(wrap)}`);
    await shot('11-policies');
  });

  await t.test('tenant settings: validation next to the field, nothing saved', async () => {
    await page.getByRole('link', { name: 'Tenant settings' }).click();
    await visible(page.getByRole('heading', { name: 'Tenant settings', level: 1 }));
    await page.getByLabel('Pilot tag', { exact: true }).fill('');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    const err = page.locator('[data-path="pilot_tag"] .field-error');
    await visible(err);
    assert.match(await err.textContent(), /must not be empty/);
    const tenant = await apiCall('GET', '/tenant');
    assert.equal(tenant.body.settings.pilot_tag, 'MDE-Management');
    await shot('12-tenant-error');
    await page.getByLabel('Pilot tag', { exact: true }).fill('MDE-Management');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await visible(page.getByText('Saved.'));
    await shot('12-tenant');
  });

  await t.test('tenant settings: a change that affects devices shows its impact and asks first', async () => {
    const dialog = page.getByRole('dialog', { name: 'Change the tenant settings?' });
    await page.getByLabel('Linux', { exact: true }).selectOption('off');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await visible(dialog);
    const text = await dialog.textContent();
    // Every Linux device leaves the scope (the example fleet's and the live
    // agents); no Windows or macOS device is named.
    const leaving = (await apiCall('GET', '/devices')).body.filter((d) => d.os === 'linux' && d.managed_by === 'rampart').length;
    assert.match(text, new RegExp(`${leaving} devices stop being managed: Rampart's settings are removed from them`));
    assert.match(text, /live-web-01/);
    assert.match(text, /live-web-02/);
    assert.doesNotMatch(text, /fin-ws-01|mac-exec-01/);
    await visible(dialog.getByRole('button', { name: `Save and apply to ${leaving} devices` }));
    await shot('12-tenant-impact');
    // Cancel saves nothing.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    assert.equal(await page.locator('dialog').count(), 0);
    assert.equal((await apiCall('GET', '/tenant')).body.settings.enforcement.linux, 'all');
    // Browser Back closes the dialog with the page, and saves nothing.
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await visible(dialog);
    await page.goBack();
    await page.waitForFunction(() => !document.querySelector('dialog'));
    assert.equal((await apiCall('GET', '/tenant')).body.settings.enforcement.linux, 'all');
    // Confirming saves: the conflict policy changes the conflicting
    // devices' settings; then it is set back the same way.
    for (const [label, expected] of [['Apply the most secure value', 'most_secure_wins'], ['Report a conflict', 'report']]) {
      await page.goto(`${base}/#/tenant`);
      await visible(page.getByRole('heading', { name: 'Tenant settings', level: 1 }));
      await page.getByLabel(label).check();
      await page.getByRole('button', { name: 'Save', exact: true }).click();
      await visible(dialog);
      assert.match(await dialog.textContent(), /get different settings/);
      await dialog.getByRole('button', { name: /^Save and apply to \d+ devices?$/ }).click();
      await visible(page.getByText('Saved.'));
      assert.equal(await page.locator('dialog').count(), 0);
      assert.equal((await apiCall('GET', '/tenant')).body.settings.conflict_policy, expected);
    }
  });

  await t.test('console users: add, change role and password, disable, delete', async () => {
    const login = async (username, password) => (await fetch(`${base}/api/v1/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }),
    })).status;
    await page.goto(`${base}/#/tenant`);
    const form = page.locator('#user-form');
    await visible(form);
    await form.getByLabel('User name', { exact: true }).fill('auditor-2');
    await form.getByLabel('Password (12 characters or more)').fill('first password here');
    await form.getByLabel('Role', { exact: true }).selectOption('read_only');
    await form.getByRole('button', { name: 'Add user' }).click();
    const row = page.locator('tr[data-user="auditor-2"]');
    await visible(row);
    assert.equal(await login('auditor-2', 'first password here'), 200);

    await row.getByLabel('Role of auditor-2').selectOption('security_manager');
    await visible(page.locator('#users-status', { hasText: 'auditor-2 is now security manager' }));
    const roleOf = async () => (await apiCall('GET', '/users')).body.find((u) => u.username === 'auditor-2')?.role;
    assert.equal(await roleOf(), 'security_manager');

    // A password the server refuses is explained in the dialog; a good one
    // replaces the old.
    await page.locator('tr[data-user="auditor-2"]').getByRole('button', { name: 'Set password' }).click();
    const dialog = page.getByRole('dialog', { name: 'Set a new password for auditor-2?' });
    await visible(dialog);
    await dialog.getByLabel('New password (12 characters or more)').fill('short');
    await dialog.getByRole('button', { name: 'Set password' }).click();
    await visible(dialog.locator('.dialog-errors .error-box'));
    await dialog.getByLabel('New password (12 characters or more)').fill('second password here');
    await dialog.getByRole('button', { name: 'Set password' }).click();
    await visible(page.locator('#users-status', { hasText: 'Password of auditor-2 changed' }));
    assert.equal(await login('auditor-2', 'first password here'), 401);
    assert.equal(await login('auditor-2', 'second password here'), 200);

    await page.locator('tr[data-user="auditor-2"]').getByRole('button', { name: 'Disable' }).click();
    await visible(page.locator('tr[data-user="auditor-2"]', { hasText: 'Disabled' }));
    assert.notEqual(await login('auditor-2', 'second password here'), 200);

    await page.locator('tr[data-user="auditor-2"]').getByRole('button', { name: 'Delete' }).click();
    const confirm = page.getByRole('dialog', { name: 'Delete user auditor-2?' });
    await confirm.getByRole('button', { name: 'Delete user' }).click();
    await visible(page.locator('#users-status', { hasText: 'User auditor-2 deleted.' }));
    assert.equal(await page.locator('tr[data-user="auditor-2"]').count(), 0);
    assert.equal(await roleOf(), undefined);
    await shot('12-tenant-users');
  });

  await t.test('a missing object and an unreachable server: say so, and offer a retry', async () => {
    await page.goto(`${base}/#/devices/no-such-device`);
    await visible(page.getByRole('heading', { name: 'Not found', level: 1 }));
    assert.match(await page.locator('#page-failure').textContent(), /no-such-device/);
    assert.equal(await page.locator('#retry').count(), 0);
    await page.locator('#page-failure').getByRole('link', { name: 'Go to devices' }).click();
    await visible(page.getByRole('heading', { name: 'Devices', level: 1 }));

    // The groups API fails at the network level: a page that says so, and
    // Retry loads it once the server answers again.
    await page.route('**/api/v1/groups', (r) => r.abort('connectionrefused'));
    await page.getByRole('link', { name: 'Groups' }).click();
    await visible(page.getByRole('heading', { name: 'The server cannot be reached', level: 1 }));
    await shot('16-unreachable');
    await page.unroute('**/api/v1/groups');
    // A slow answer shows that the page is loading, then the page.
    await page.route('**/api/v1/groups', async (r) => {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await r.continue();
    });
    await page.getByRole('button', { name: 'Retry' }).click();
    await visible(page.locator('#page-loading'));
    await visible(page.getByRole('heading', { name: 'Groups', level: 1 }));
    assert.equal(await page.locator('#page-loading').count(), 0);
    assert.equal(await page.locator('#page-failure').count(), 0);
    await page.unroute('**/api/v1/groups');
  });

  await t.test('staged rollout: set in the wizard with errors by their fields, then paused and aborted on the policy page', async () => {
    const created = await apiCall('POST', '/policies', { name: 'live-staged-edr', family: 'edr', platform: 'linux', settings: { edr_group_ids: 'group-a' }, assignments: { include: ['all-devices'] }, rollout: 'immediate' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await page.goto(`${base}/#/policies/live-staged-edr/edit`);
    await visible(page.getByRole('heading', { name: 'Edit policy live-staged-edr', level: 1 }));
    await page.locator('.steps').getByRole('button', { name: /Configuration settings/ }).click();
    await page.getByLabel('EDR group identifier', { exact: true }).fill('group-b');
    await page.getByRole('button', { name: 'Next', exact: true }).click();
    await visible(page.getByRole('heading', { name: 'Assignments' }));
    assert.ok(await page.getByLabel('Everywhere at once').isChecked());
    await page.getByLabel('In stages').check();
    await page.locator('#stage-0-percent').fill('50');
    await page.locator('#stage-1-percent').fill('30');
    await page.locator('#rollout-max_errors').fill('10');
    await page.locator('#rollout-on-failure').selectOption('rollback');
    // A stage that reaches fewer devices than the one before: the server's
    // error, next to that stage's share.
    await page.getByRole('button', { name: 'Next', exact: true }).click();
    const stageError = page.locator('[data-path="rollout.stages[1].percent"] .field-error');
    await visible(stageError);
    assert.match(await stageError.textContent(), /earlier stage already reaches 50%/);
    await shot('13a-rollout-stage-error', false);
    await page.locator('#stage-1-percent').fill('100');
    await page.getByRole('button', { name: 'Next', exact: true }).click();
    await visible(page.locator('#impact-table'));
    assert.match(await page.locator('#rv-rollout-text').textContent(), /In stages: 50% \(soak 1h\) → 100% \(soak 1h\); a failing gate rolls back/);
    const headers = await page.locator('#impact-table thead th').allTextContents();
    assert.equal(headers[0], 'Rollout stage');
    const stages = await page.locator('#impact-table td.rollout-stage-cell').allTextContents();
    assert.ok(stages.length > 0 && stages.every((s) => /^stage [12] of 2 \((50|100)%\)/.test(s)), String(stages));
    await shot('13b-rollout-review');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.waitForURL(/#\/reports\/policies\/live-staged-edr$/);

    await visible(page.locator('#rollout'));
    assert.equal(await page.locator('#rollout-state').textContent(), 'Running');
    assert.equal(await page.locator('#rollout-stage').textContent(), '1 of 2: 50%');
    await page.locator('#rollout-pause').click();
    const pause = page.getByRole('dialog', { name: 'Pause the rollout?' });
    await visible(pause);
    await pause.getByLabel('Reason (optional)').fill('checking the first devices');
    await pause.getByRole('button', { name: 'Pause', exact: true }).click();
    await visible(page.locator('#rollout-state', { hasText: 'Paused' }));
    assert.match(await page.locator('#rollout-reason-text').textContent(), /checking the first devices/);
    assert.equal(await page.locator('#rollout-pause').count(), 0, 'a paused rollout offers Resume, not Pause');
    await visible(page.locator('#rollout-resume'));
    await shot('13c-rollout-paused');
    await page.locator('#rollout-abort').click();
    const abort = page.getByRole('dialog', { name: 'Abort and roll back?' });
    await abort.getByRole('button', { name: 'Abort and roll back' }).click();
    await visible(page.locator('#rollout-state', { hasText: 'Rolled back' }));
    await visible(page.locator('#rollout-history tr', { hasText: 'rollback' }));
    assert.equal(await page.locator('#rollout-actions').count(), 0);
    const restored = await apiCall('GET', '/policies/live-staged-edr');
    assert.equal(restored.body.settings.edr_group_ids, 'group-a');
    await shot('13d-rollout-rolled-back');
  });

  await t.test('audit log', async () => {
    await page.getByRole('link', { name: 'Audit log' }).click();
    await visible(page.locator('#audit-table tr', { hasText: 'policy.create' }).filter({ hasText: 'live-canary-av' }).filter({ hasText: 'user:admin' }));
    await visible(page.locator('#audit-table tr', { hasText: 'group.create' }).filter({ hasText: 'live-canary' }));
    await shot('13-audit');
    // A filter that matches nothing says so.
    await page.getByLabel('Filter', { exact: true }).fill('no-such-actor-anywhere');
    await visible(page.locator('#audit-table td.empty', { hasText: 'No entry matches this filter.' }));
    await page.getByLabel('Filter', { exact: true }).fill('');
    // A search of the whole log, by the server, kept in the address.
    await page.getByLabel('Object name', { exact: true }).fill('live-canary-av');
    await page.getByLabel('Action', { exact: true }).fill('policy.*');
    await page.getByRole('button', { name: 'Search the log' }).click();
    await page.waitForFunction(() => location.hash.includes('object_name=live-canary-av'));
    await visible(page.locator('#audit-table tr', { hasText: 'policy.create' }).filter({ hasText: 'live-canary-av' }));
    const objects = await page.locator('#audit-table tbody tr td:nth-child(4) strong').allTextContents();
    assert.ok(objects.length > 0 && objects.every((o) => o === 'live-canary-av'), objects.join(', '));
    assert.equal(await page.locator('#audit-table tr', { hasText: 'group.create' }).count(), 0);
    // A bookmarked search opens as it was.
    await page.reload();
    await visible(page.locator('#audit-table tr', { hasText: 'policy.create' }).filter({ hasText: 'live-canary-av' }));
    assert.equal(await page.getByLabel('Object name', { exact: true }).inputValue(), 'live-canary-av');
    // A search that finds nothing says so.
    await page.getByLabel('Action', { exact: true }).fill('');
    await page.getByLabel('Object name', { exact: true }).fill('');
    await page.getByLabel('Actor', { exact: true }).fill('nobody-at-all');
    await page.getByRole('button', { name: 'Search the log' }).click();
    await visible(page.locator('#audit-table td.empty', { hasText: 'No entry matches this search.' }));
    await page.getByLabel('Actor', { exact: true }).fill('');
    // A time window: nothing from a day ahead on, everything from a day ago.
    const local = (ms) => {
      const d = new Date(ms);
      const pad = (n) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
    };
    await page.getByLabel('From', { exact: true }).fill(local(Date.now() + 86_400_000));
    await page.getByRole('button', { name: 'Search the log' }).click();
    await page.waitForFunction(() => location.hash.includes('since='));
    await visible(page.locator('#audit-table td.empty', { hasText: 'No entry matches this search.' }));
    await page.getByLabel('From', { exact: true }).fill(local(Date.now() - 86_400_000));
    await page.getByRole('button', { name: 'Search the log' }).click();
    await visible(page.locator('#audit-table tr', { hasText: 'group.create' }).filter({ hasText: 'live-canary' }));
    await page.getByLabel('From', { exact: true }).fill('');
    await page.getByRole('button', { name: 'Search the log' }).click();
    await visible(page.locator('#audit-table tr', { hasText: 'group.create' }).filter({ hasText: 'live-canary' }));
  });

  await t.test('a read-only user: limits shown, and enforced by the server', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await visible(page.getByRole('heading', { name: 'Sign in to the console' }));
    await page.getByLabel('User name', { exact: true }).fill('viewer');
    await page.getByLabel('Password', { exact: true }).fill(VIEWER_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible(page.getByRole('heading', { name: 'Devices', level: 1 }));
    assert.equal(await page.getByRole('link', { name: 'Tenant settings' }).count(), 0);
    await page.goto(`${base}/#/tenant`);
    await visible(page.locator('#read-only-note'));
    assert.equal(await page.getByRole('button', { name: 'Save', exact: true }).count(), 0);
    await shot('14-read-only-tenant');
    await page.goto(`${base}/#/policies`);
    await visible(page.getByRole('heading', { name: 'Endpoint security policies' }));
    assert.equal(await page.getByRole('link', { name: 'Create policy' }).count(), 0);
    // The page hides what the role cannot do; the server refuses it anyway.
    const statuses = await page.evaluate(async () => {
      const { token } = JSON.parse(sessionStorage.getItem('rampart.session'));
      const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
      const a = await fetch('/api/v1/tenant/settings', { method: 'PUT', headers, body: JSON.stringify({ conflict_policy: 'most_secure_wins' }) });
      const b = await fetch('/api/v1/policies/live-canary-av', { method: 'DELETE', headers });
      return [a.status, b.status];
    });
    assert.deepEqual(statuses, [403, 403]);
  });

  await t.test('a read-only user reads what a policy configures and compares its versions', async () => {
    // A second version, made by an administrator through the API.
    const current = await apiCall('GET', '/policies/live-canary-av');
    const next = { ...current.body, settings: { ...current.body.settings, excluded_paths: ['/srv/canary', '/srv/canary-2'] } };
    for (const k of ['version', 'modified_at', 'modified_by']) delete next[k];
    const put = await fetch(`${base}/api/v1/policies/live-canary-av`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json', 'If-Match': `"${current.body.version}"` },
      body: JSON.stringify(next),
    });
    assert.equal(put.status, 200, await put.text());

    await page.goto(`${base}/#/reports/policies/live-canary-av`);
    await visible(page.getByRole('heading', { name: 'live-canary-av', level: 1 }));
    assert.equal(await page.locator('#edit-policy').count(), 0);
    const config = page.locator('#policy-config');
    await visible(config.locator('tr[data-setting="behavior_monitoring"]', { hasText: 'true' }));
    await visible(config.locator('tr[data-setting="scan_archives"]', { hasText: 'false' }));
    // Help is there, folded away, and its code spans are code, not backticks.
    const help = config.locator('tr[data-setting="excluded_paths"] details.help');
    assert.equal(await help.getAttribute('open'), null);
    await help.locator('summary').click();
    assert.ok(await help.locator('p').isVisible());
    assert.doesNotMatch(await config.textContent(), /`/);

    // The two latest versions are compared by default; any two can be.
    const diff = page.locator('#version-diff');
    await visible(diff.locator('tr[data-changed="excluded_paths"]'));
    assert.match(await diff.locator('caption').textContent(), /from version 1 to version 2/);
    assert.match(await diff.locator('tr[data-changed="excluded_paths"]').textContent(), /\/srv\/canary-2/);
    assert.equal(await diff.locator('tr[data-changed="behavior_monitoring"]').count(), 0);
    await page.getByLabel('Compare', { exact: true }).selectOption('2');
    await visible(page.getByText('Versions 2 and 2 configure the same.'));
    await shot('15-policy-view-read-only');

    // ASR rules read by their names, the GUID on hover.
    await page.goto(`${base}/#/reports/policies/windows-asr-baseline`);
    const asr = page.locator('#policy-config tr[data-setting="asr_rules"]');
    await visible(asr);
    assert.match(await asr.textContent(), /credential stealing/i);
    await visible(asr.locator('[title="9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2"]'));
  });

  await t.test('an expired session goes back to the sign-in page', async () => {
    await page.evaluate(() => {
      const s = JSON.parse(sessionStorage.getItem('rampart.session'));
      s.token = 'rmp_not_a_real_token';
      sessionStorage.setItem('rampart.session', JSON.stringify(s));
    });
    await page.goto(`${base}/#/audit`);
    await visible(page.getByRole('heading', { name: 'Sign in to the console' }));
    await visible(page.getByText('Your session has ended. Sign in again.'));
  });

  await t.test('no script error and no Content-Security-Policy violation', () => {
    assert.deepEqual(pageErrors, []);
  });
});
