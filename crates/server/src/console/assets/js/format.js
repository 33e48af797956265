// How values read in the console: times, statuses, setting values, names of
// families and platforms.

import { h } from './dom.js';

export const FAMILIES = [
  ['antivirus', 'Antivirus'],
  ['antivirus_exclusions', 'Antivirus exclusions'],
  ['firewall', 'Firewall'],
  ['firewall_rules', 'Firewall rules'],
  ['edr', 'Endpoint detection and response'],
  ['asr', 'Attack surface reduction rules'],
];
export const PLATFORMS = [
  ['linux', 'Linux'],
  ['windows', 'Windows'],
  ['macos', 'macOS'],
];
export const familyName = (f) => FAMILIES.find(([k]) => k === f)?.[1] ?? f;
export const platformName = (p) => PLATFORMS.find(([k]) => k === p)?.[1] ?? p;

export const STATUSES = [
  ['succeeded', 'Succeeded'],
  // The agent's file backend wrote the value down; nothing enforces it.
  ['recorded', 'Recorded, not enforced'],
  ['error', 'Error'],
  ['conflict', 'Conflict'],
  ['not_applicable', 'Not applicable'],
  ['pending', 'Pending'],
];
export const statusName = (s) => (s === 'pending_rollout' ? 'Pending rollout' : STATUSES.find(([k]) => k === s)?.[1] ?? s);

/** Text whose `backticked` parts are code, as nodes (never parsed as HTML). */
export function withCode(text) {
  return String(text).split('`').map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

/** What applied a setting on the device, as the agent named it. */
export const BACKENDS = [
  ['nftables', 'nftables'],
  ['clamav', 'ClamAV'],
  ['mdatp', 'Defender for Endpoint'],
  ['registry', 'Windows registry'],
  ['file', 'File (not enforced)'],
];
export const backendName = (b) => BACKENDS.find(([k]) => k === b)?.[1] ?? b;

/** The backend under a status badge, when the agent said which one. */
export function backendNote(backend) {
  return backend ? h('span', { class: 'backend block muted', title: `applied by the ${backend} backend` }, `by ${backendName(backend)}`) : null;
}

/** A status as a badge: colour plus words, never colour alone. */
export function statusBadge(status) {
  return h('span', { class: `badge st-${status}` }, statusName(status));
}

/** Why a device that enrolled is not managed, in words (the code is in
 * the badge's title and in the API). */
const NOT_MANAGED_BECAUSE = {
  pilot_tag_missing: 'no pilot tag',
  platform_not_enabled: 'platform not in scope',
  os_unsupported: 'OS not supported',
  managed_by_other_authority: 'another authority manages it',
  domain_controller_not_allowed: 'domain controller',
};

const ENROLLMENT_WORDS = {
  enrolled: 'Enrolled, managed',
  simulated: 'Simulated device',
  pending: 'Pending',
  failed: 'Enrollment failed',
  refused: 'Enrollment refused',
  offboarded: 'Offboarded',
};

/** The enrollment state in plain words, its stable code on hover. */
export function enrollmentBadge(enrollment) {
  const status = enrollment?.status || 'unknown';
  const code = enrollment?.code;
  const words = status === 'not_managed'
    ? `Enrolled, not managed${code ? `: ${NOT_MANAGED_BECAUSE[code] ?? code}` : ''}`
    : ENROLLMENT_WORDS[status] ?? status;
  return h('span', { class: `badge en-${status}`, title: code ? `${status} (${code})` : status, dataset: { status } }, words);
}

/** Who manages the device's security settings, consistent with its
 * enrollment: a device outside the scope is managed by nobody. */
export function managedByText(d) {
  if (d.managed_by === 'rampart') return d.enrollment?.status === 'not_managed' ? 'Nobody (outside the scope)' : 'Rampart';
  return d.managed_by;
}

export function dateTime(secs) {
  if (secs === null || secs === undefined) return '';
  return new Date(secs * 1000).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function ago(secs) {
  if (secs === null || secs === undefined) return 'never';
  const d = Math.max(0, Math.round(Date.now() / 1000 - secs));
  if (d < 10) return 'just now';
  if (d < 60) return `${d} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return `${Math.floor(d / 86400)} days ago`;
}

/** A time element: relative text, the exact time on hover and for machines. */
export function when(secs) {
  if (secs === null || secs === undefined) return h('span', { class: 'muted' }, 'never');
  return h('time', { datetime: new Date(secs * 1000).toISOString(), title: dateTime(secs) }, ago(secs));
}

/** A setting value as text. */
export function valueText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) {
    return v.map((x) => (x && typeof x === 'object' ? x.name ?? JSON.stringify(x) : String(x))).join(', ');
  }
  if (typeof v === 'object') {
    return Object.entries(v).map(([k, x]) => `${k}: ${valueText(x)}`).join('; ');
  }
  return String(v);
}

/** A setting value as a node: lists as lists, firewall rules by name. */
export function valueNode(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, '—');
  if (Array.isArray(v)) {
    if (v.length === 0) return h('span', { class: 'muted' }, '(empty)');
    return h('ul', { class: 'plain' }, v.map((x) => h('li', {}, ruleText(x))));
  }
  if (typeof v === 'object') {
    // One firewall rule (a row of its own in a report) reads as the list does.
    if (typeof v.name === 'string' && v.action) return h('span', { title: JSON.stringify(v) }, ruleText(v));
    const entries = Object.entries(v);
    if (entries.length === 0) return h('span', { class: 'muted' }, '(empty)');
    return h('ul', { class: 'plain' }, entries.map(([k, x]) => h('li', {}, h('code', {}, k), ` ${valueText(x)}`)));
  }
  return h('code', {}, valueText(v));
}

function ruleText(x) {
  if (x && typeof x === 'object') {
    const parts = [x.direction, x.action, x.protocol, x.local_ports && `port ${x.local_ports}`].filter(Boolean);
    return `${x.name}${parts.length ? ` (${parts.join(' ')})` : ''}`;
  }
  return String(x);
}

export function chips(list, cls = 'chip') {
  if (!list?.length) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'chips' }, list.map((t) => h('span', { class: cls }, t)));
}

/** Links to policy reports, comma separated. */
export function policyLinks(names) {
  if (!names?.length) return h('span', { class: 'muted' }, '—');
  const out = [];
  names.forEach((n, i) => {
    if (i) out.push(', ');
    out.push(h('a', { href: `#/reports/policies/${encodeURIComponent(n)}` }, n));
  });
  return h('span', {}, out);
}

/** "Conflict: a sets x; b sets y": each conflicting policy with its value. */
export function conflictNode(conflicting) {
  if (!conflicting?.length) return null;
  return h('span', { class: 'conflicting' }, 'Conflict: ', ...conflicting.flatMap((c, i) =>
    [i ? '; ' : '', policyLinks([c.policy]), ' sets ', valueNode(c.value)]));
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}
