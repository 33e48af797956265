// The "Configuration settings" form, generated from the settings catalog:
// each setting with its help text, allowed values, default and how each
// backend enforces it, and a control for its type. Values are sent as typed;
// the server checks them and its field errors land next to the setting.

import { h, replace, idFor } from '../dom.js';
import { valueText, withCode } from '../format.js';

const BACKENDS = {
  windows_csp: 'Windows (Policy CSP)',
  mdatp: 'Defender for Endpoint (mdatp_managed.json)',
  clamav: 'ClamAV',
  nftables: 'nftables',
};

const WINDOWS_RULE_TEXT = ['app_path', 'package_family_name', 'service_name'];

const ITEMS = {
  string: 'texts', path: 'absolute paths', extension: 'file extensions', process: 'processes', cidr: 'CIDR blocks',
};

function allowed(def) {
  switch (def.type) {
    case 'bool': return 'true or false';
    case 'enum': return def.values.join(', ');
    case 'int': return `a whole number${def.min !== undefined ? ` from ${def.min}` : ''}${def.max !== undefined ? ` to ${def.max}` : ''}`;
    case 'string': return `text${def.max ? ` of at most ${def.max} characters` : ''}`;
    case 'string_list': return `a list of ${def.item === 'enum' ? def.values.join(', ') : ITEMS[def.item] ?? def.item}${def.max_items ? `, at most ${def.max_items}` : ''}`;
    case 'firewall_rules': return `up to ${def.max_items ?? 150} rules, each with a unique name`;
    case 'asr_rules': return `a mode per rule: ${def.values.join(', ')}`;
    default: return def.type;
  }
}

function mergeText(def) {
  if (def.merge === 'union') return 'Lists from several policies are merged.';
  if (def.merge === 'per_key') return 'Entries from several policies are merged; only an entry given two different values conflicts.';
  return 'Two policies giving it different values conflict, and it is not applied.';
}

/** Where a setting is listed in the form: related settings together, as
 * the seeds' settings pages group them. Derived from the setting's id, so
 * the catalog needs no presentation field. */
const GROUPS = [
  [/^firewall_domain_/, 'Domain profile'],
  [/^firewall_private_/, 'Private profile'],
  [/^firewall_public_/, 'Public profile'],
  [/^security_center_/, 'Windows Security app'],
  [/^network_protection/, 'Network protection'],
  [/^controlled_folder_access/, 'Controlled folder access'],
  [/^(excluded_|exclusions_)/, 'Exclusions'],
  [/^(remediation_action_|days_to_retain_cleaned_malware|allowed_threats|disallowed_threat_actions|threat_type_settings_merge_policy|archive_bomb_action)/, 'Threats and remediation'],
  [/(update|_channel$|^metered_connection_updates|^check_signatures_before_scan)/, 'Updates'],
  [/^(scan_|scheduled_|catch_up_|full_scan_|quick_scan_|max_|randomize_scheduled|scheduler_randomization|avg_cpu_load_factor|low_cpu_priority|email_scanning)/, 'Scans'],
  [/^(cloud_|submit_samples_consent)/, 'Cloud protection'],
  [/^(real_time_protection|enforcement_level|behavior_monitoring|on_access_protection|ioav_protection|realtime_scan_direction|script_scanning|non_exec_mount_policy|unmonitored_filesystems|enable_file_hash_computation)/, 'Real-time protection'],
];
export const settingGroup = (id) => GROUPS.find(([re]) => re.test(id))?.[1] ?? 'General';

/**
 * Builds the form for `defs` (one family on one platform) holding `values`.
 * Returns the element and `read()`, which gives the configured settings.
 */
export function settingsForm(defs, values, { platform, readOnly }) {
  const readers = [];
  const filter = h('input', { type: 'search', id: 'settings-filter', placeholder: 'Filter settings by name' });
  const configuredOnly = h('input', { type: 'checkbox', id: 'configured-only' });
  const list = h('div', { class: 'settings-list' });
  const items = [];
  const groups = new Map();
  const grouped = defs.length > 8;
  for (const def of defs) {
    const { control, read, full } = controlFor(def, values[def.id], platform, readOnly);
    readers.push([def.id, read]);
    const id = idFor('s', def.id);
    const helpId = `${id}-help`;
    const backends = (def.backends || []).filter((b) => b.platforms.includes(platform));
    const item = h('div', { class: `setting field ${def.deprecated ? 'deprecated' : ''} ${full ? 'setting-full' : ''}`, dataset: { path: `settings.${def.id}`, setting: def.id } },
      h('div', { class: 'setting-text' },
        full ? h('h4', { class: 'setting-title', id: `${id}-label` }, def.title) : h('label', { for: id, class: 'setting-title' }, def.title),
        h('code', { class: 'setting-id' }, def.id),
        def.deprecated ? h('p', { class: 'warning-text' }, `Deprecated: ${def.deprecated}`) : null,
        // The help is folded away: the form stays short enough to scan, and
        // the text is one click (and one screen-reader description) away.
        h('details', { class: 'setting-help' },
          h('summary', {}, 'About this setting'),
          h('p', { class: 'help', id: helpId }, withCode(def.description)),
          h('p', { class: 'allowed' }, h('strong', {}, 'Allowed: '), allowed(def),
            def.default !== undefined ? [h('strong', {}, ' · Default: '), valueText(def.default) || '(none)'] : null),
          def.device_types?.length ? h('p', { class: 'allowed' }, `Applies to ${def.device_types.join(' and ')}s only; other devices report it not applicable.`) : null,
          h('p', { class: 'allowed' }, mergeText(def)),
          backends.length ? h('details', { class: 'backends' },
            h('summary', {}, 'How it is enforced'),
            h('dl', {}, backends.map((b) => [
              h('dt', {}, BACKENDS[b.backend] ?? b.backend),
              h('dd', {}, h('code', { class: 'wrap' }, b.target), b.note ? h('span', { class: 'block muted' }, b.note) : null),
            ]))) : null)),
      h('div', { class: 'setting-control' }, control,
        h('p', { class: 'field-error', id: `${id}-error`, hidden: true })));
    if (!full) {
      control.id = id;
      control.setAttribute('aria-describedby', `${helpId} ${id}-error`);
    } else {
      control.setAttribute('aria-labelledby', `${id}-label`);
    }
    items.push([def, item, read]);
    if (!grouped) {
      list.append(item);
      continue;
    }
    const name = settingGroup(def.id);
    if (!groups.has(name)) {
      const headingId = idFor('group', name);
      const body = h('div', { class: 'group-body' });
      const section = h('section', { class: 'setting-group', 'aria-labelledby': headingId, dataset: { group: name } },
        h('h3', { id: headingId }, name), body);
      groups.set(name, { section, body });
    }
    groups.get(name).body.append(item);
  }
  // Groups in the order of their first setting (the catalog's order).
  for (const { section } of groups.values()) list.append(section);

  const count = h('p', { class: 'muted', role: 'status' });
  function applyFilters() {
    const q = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const [def, item, read] of items) {
      const matches = !q || `${def.title} ${def.id} ${def.description}`.toLowerCase().includes(q);
      let configured = true;
      try { configured = read() !== undefined; } catch { /* a value being typed counts as configured */ }
      item.hidden = !matches || (configuredOnly.checked && !configured);
      if (!item.hidden) shown += 1;
    }
    for (const { section, body } of groups.values()) {
      section.hidden = [...body.children].every((c) => c.hidden);
    }
    replace(count, shown === items.length ? '' : `${shown} of ${items.length} settings shown`);
  }
  filter.addEventListener('input', applyFilters);
  configuredOnly.addEventListener('change', applyFilters);
  const el = h('div', { class: 'settings-form' },
    defs.length > 4 ? h('div', { class: 'filters' },
      h('div', { class: 'filter' }, h('label', { for: 'settings-filter' }, 'Filter settings'), filter),
      h('div', { class: 'filter checkbox' }, configuredOnly, h('label', { for: 'configured-only' }, 'Show only configured settings'))) : null,
    count, list);
  return {
    el,
    read() {
      const out = {};
      for (const [id, read] of readers) {
        const v = read();
        if (v !== undefined) out[id] = v;
      }
      return out;
    },
  };
}

function controlFor(def, value, platform, readOnly) {
  const disabled = readOnly || Boolean(def.deprecated);
  switch (def.type) {
    case 'bool': {
      const s = h('select', { disabled },
        h('option', { value: '' }, 'Not configured'),
        h('option', { value: 'true', selected: value === true }, 'true (enabled)'),
        h('option', { value: 'false', selected: value === false }, 'false (disabled)'));
      return { control: s, read: () => (s.value === '' ? undefined : s.value === 'true') };
    }
    case 'enum': {
      const s = h('select', { disabled },
        h('option', { value: '' }, 'Not configured'),
        def.values.map((v) => h('option', { value: v, selected: value === v }, v)));
      return { control: s, read: () => (s.value === '' ? undefined : s.value) };
    }
    case 'int': {
      const i = h('input', { type: 'text', inputmode: 'numeric', value: value ?? '', disabled, placeholder: 'Not configured', class: 'short' });
      return {
        control: i,
        read: () => {
          const t = i.value.trim();
          if (!t) return undefined;
          return /^-?\d+$/.test(t) ? Number(t) : t;
        },
      };
    }
    case 'string': {
      const i = h('input', { type: 'text', value: value ?? '', disabled, placeholder: 'Not configured' });
      return { control: i, read: () => (i.value.trim() ? i.value.trim() : undefined) };
    }
    case 'string_list': {
      if (def.item === 'enum') {
        const boxes = def.values.map((v) => h('input', { type: 'checkbox', value: v, checked: (value || []).includes(v), disabled }));
        const group = h('div', { class: 'checks', role: 'group' }, boxes.map((b, i) => {
          b.id = idFor('s', `${def.id}-${def.values[i]}`);
          return h('span', { class: 'check' }, b, h('label', { for: b.id }, def.values[i]));
        }));
        return {
          control: group,
          full: true,
          read: () => {
            const picked = boxes.filter((b) => b.checked).map((b) => b.value);
            return picked.length ? picked : undefined;
          },
        };
      }
      const t = h('textarea', { rows: 3, disabled, spellcheck: 'false', placeholder: 'Not configured · one per line', value: (value || []).join('\n') });
      return {
        control: t,
        read: () => {
          const lines = t.value.split('\n').map((l) => l.trim()).filter(Boolean);
          return lines.length ? lines : undefined;
        },
      };
    }
    case 'asr_rules': return asrControl(def, value || {}, disabled);
    case 'firewall_rules': return rulesControl(def, value || [], platform, disabled);
    default: {
      const t = h('textarea', { rows: 3, disabled, value: value === undefined ? '' : JSON.stringify(value) });
      return { control: t, read: () => (t.value.trim() ? JSON.parse(t.value) : undefined) };
    }
  }
}

function asrControl(def, value, disabled) {
  const selects = [];
  const rows = (def.keys || []).map((k) => {
    const modes = def.values.filter((m) => m !== 'not_configured' && !(k.excluded_values || []).includes(m));
    const id = idFor('asr', k.key);
    const s = h('select', { id, disabled },
      h('option', { value: '' }, 'Not configured'),
      modes.map((m) => h('option', { value: m, selected: value[k.key] === m }, m)));
    selects.push([k.key, s]);
    return h('tr', { class: 'field', dataset: { path: `settings.${def.id}[${k.key}]` } },
      h('th', { scope: 'row' }, h('label', { for: id }, k.title), h('code', { class: 'setting-id block' }, k.key),
        k.device_types?.length ? h('span', { class: 'muted block' }, `${k.device_types.join(', ')} only`) : null),
      h('td', {}, s, h('p', { class: 'field-error', hidden: true })));
  });
  return {
    full: true,
    control: h('table', { class: 'data compact asr' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Rule'), h('th', { scope: 'col' }, 'Mode'))),
      h('tbody', {}, rows)),
    read: () => {
      const out = {};
      for (const [key, s] of selects) if (s.value) out[key] = s.value;
      return Object.keys(out).length ? out : undefined;
    },
  };
}

function rulesControl(def, value, platform, disabled) {
  const rules = value.map((r) => ({ ...r }));
  const box = h('div', { class: 'rules' });
  const readers = [];
  const base = `settings.${def.id}`;

  function draw() {
    readers.length = 0;
    replace(box, rules.map((rule, i) => ruleEditor(rule, i)),
      disabled ? null : h('button', {
        type: 'button', class: 'btn', id: 'add-rule',
        onclick: () => { collect(); rules.push({ direction: 'in', action: 'allow', protocol: 'tcp', enabled: true }); draw(); box.querySelector(`[data-rule="${rules.length - 1}"] input`)?.focus(); },
      }, 'Add rule'));
  }

  function collect() {
    readers.forEach((read, i) => { rules[i] = read(); });
  }

  function ruleEditor(rule, i) {
    const p = (f) => `${base}[${i}].${f}`;
    const fid = (f) => idFor('rule', `${i}-${f}`);
    const fields = [];
    const getters = {};
    const text = (f, label) => {
      const input = h('input', { type: 'text', id: fid(f), value: Array.isArray(rule[f]) ? rule[f].join(', ') : rule[f] ?? '', disabled });
      getters[f] = () => input.value.trim() || undefined;
      fields.push(h('div', { class: 'field', dataset: { path: p(f) } }, h('label', { for: fid(f) }, label), input, h('p', { class: 'field-error', hidden: true })));
    };
    const list = (f, label) => {
      const input = h('input', { type: 'text', id: fid(f), value: (rule[f] || []).join(', '), disabled, placeholder: 'comma separated' });
      getters[f] = () => {
        const items = input.value.split(',').map((x) => x.trim()).filter(Boolean);
        return items.length ? items : undefined;
      };
      fields.push(h('div', { class: 'field', dataset: { path: p(f) } }, h('label', { for: fid(f) }, label), input, h('p', { class: 'field-error', hidden: true })));
    };
    const choice = (f, label, options) => {
      const s = h('select', { id: fid(f), disabled }, options.map(([v, l]) => h('option', { value: v, selected: String(rule[f] ?? '') === v }, l)));
      getters[f] = () => (s.value === '' ? undefined : s.value === 'true' ? true : s.value === 'false' ? false : s.value);
      fields.push(h('div', { class: 'field', dataset: { path: p(f) } }, h('label', { for: fid(f) }, label), s, h('p', { class: 'field-error', hidden: true })));
    };
    text('name', 'Name');
    text('description', 'Description');
    choice('direction', 'Direction', [['in', 'in (inbound)'], ['out', 'out (outbound)']]);
    choice('action', 'Action', [['allow', 'allow'], ['block', 'block']]);
    choice('protocol', 'Protocol', [['any', 'any'], ['tcp', 'tcp'], ['udp', 'udp'], ['icmp', 'icmp'], ['icmpv6', 'icmpv6']]);
    text('local_ports', 'Local ports');
    text('remote_ports', 'Remote ports');
    list('local_addresses', 'Local addresses (CIDR)');
    list('remote_addresses', 'Remote addresses (CIDR)');
    const enabled = h('input', { type: 'checkbox', id: fid('enabled'), checked: rule.enabled !== false, disabled });
    getters.enabled = () => enabled.checked;
    fields.push(h('div', { class: 'field check-field', dataset: { path: p('enabled') } }, enabled, h('label', { for: fid('enabled') }, 'Enabled'), h('p', { class: 'field-error', hidden: true })));
    if (platform === 'windows') {
      for (const f of WINDOWS_RULE_TEXT) text(f, f.replaceAll('_', ' '));
      list('profiles', 'Profiles (domain, private, public, all)');
      list('interface_types', 'Interface types (all, lan, wireless, remote_access)');
      choice('edge_traversal', 'Edge traversal', [['', 'not set'], ['true', 'true'], ['false', 'false']]);
    }
    readers[i] = () => {
      const out = {};
      for (const [f, g] of Object.entries(getters)) {
        const v = g();
        if (v !== undefined) out[f] = v;
      }
      return out;
    };
    return h('fieldset', { class: 'rule field', dataset: { path: `${base}[${i}]`, rule: String(i) } },
      h('legend', {}, `Rule ${i + 1}${rule.name ? `: ${rule.name}` : ''}`),
      h('div', { class: 'rule-grid' }, fields),
      h('p', { class: 'field-error', hidden: true }),
      disabled ? null : h('button', { type: 'button', class: 'linklike danger', onclick: () => { collect(); rules.splice(i, 1); draw(); } }, `Remove rule ${i + 1}`));
  }

  draw();
  return {
    full: true,
    control: box,
    read: () => {
      collect();
      return rules.length ? rules : undefined;
    },
  };
}
