//! Checking and normalizing one setting's value against its catalog entry.
//!
//! A value is checked completely — every bad list item and every bad rule
//! field is reported, not just the first — and, when valid, comes back in a
//! canonical form (lists sorted and deduplicated, ports without spaces,
//! defaults filled in) so that two policies saying the same thing in different
//! words compare equal during resolution.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::catalog::{ItemKind, SettingDefinition, SettingKind};
use crate::error::FieldError;

/// Most firewall rules one policy may hold, as in the seeds.
pub const MAX_FIREWALL_RULES: usize = 150;

/// Checks `value` for `def`; on success returns its canonical form. Error
/// paths are relative to the setting (empty for the value itself).
pub fn check_value(def: &SettingDefinition, value: &Value) -> Result<Value, Vec<FieldError>> {
    let mut errors = Vec::new();
    let normalized = match def.kind {
        SettingKind::Bool => match value {
            Value::Bool(_) => Some(value.clone()),
            _ => {
                errors.push(FieldError::new(
                    "",
                    format!("expected true or false, found {}", describe(value)),
                ));
                None
            }
        },
        SettingKind::Enum => check_enum(&def.values, value, "", &mut errors).map(Value::from),
        SettingKind::Int => check_int(def, value, &mut errors),
        SettingKind::String => check_string(def, value, &mut errors),
        SettingKind::StringList => check_list(def, value, &mut errors),
        SettingKind::FirewallRules => check_firewall_rules(def, value, &mut errors),
        SettingKind::AsrRules => check_asr_rules(def, value, &mut errors),
    };
    match normalized {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(errors),
    }
}

/// A short description of a value's type for "expected X, found Y".
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

fn check_enum<'a>(
    allowed: &'a [String],
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let Some(text) = value.as_str() else {
        errors.push(FieldError::new(
            path,
            format!(
                "expected one of {}, found {}",
                allowed.join(", "),
                describe(value)
            ),
        ));
        return None;
    };
    match allowed.iter().find(|a| a.as_str() == text) {
        Some(found) => Some(found.as_str()),
        None => {
            errors.push(FieldError::new(
                path,
                format!(
                    "unknown value {text:?};{} expected one of {}",
                    crate::suggest::hint(text, allowed.iter().map(String::as_str)),
                    allowed.join(", ")
                ),
            ));
            None
        }
    }
}

fn check_int(
    def: &SettingDefinition,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let Some(n) = value.as_i64() else {
        errors.push(FieldError::new(
            "",
            format!("expected a whole number, found {}", describe(value)),
        ));
        return None;
    };
    let below = def.min.is_some_and(|min| n < min);
    let above = def.max.is_some_and(|max| n > max);
    if below || above {
        let range = match (def.min, def.max) {
            (Some(min), Some(max)) => format!("between {min} and {max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => String::new(),
        };
        errors.push(FieldError::new(
            "",
            format!("{n} is out of range; it must be {range}"),
        ));
        return None;
    }
    Some(Value::from(n))
}

fn check_string(
    def: &SettingDefinition,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let Some(text) = value.as_str() else {
        errors.push(FieldError::new(
            "",
            format!("expected a string, found {}", describe(value)),
        ));
        return None;
    };
    let text = text.trim();
    if text.is_empty() {
        errors.push(FieldError::new("", "must not be empty"));
        return None;
    }
    if let Some(max) = def.max {
        if text.chars().count() as i64 > max {
            errors.push(FieldError::new(
                "",
                format!("is longer than {max} characters"),
            ));
            return None;
        }
    }
    if text.chars().any(char::is_control) {
        errors.push(FieldError::new("", "must not contain control characters"));
        return None;
    }
    Some(Value::from(text))
}

fn check_list(
    def: &SettingDefinition,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new(
            "",
            format!("expected a list, found {}", describe(value)),
        ));
        return None;
    };
    if let Some(max) = def.max_items {
        if items.len() > max {
            errors.push(FieldError::new(
                "",
                format!("holds {} items; at most {max} are allowed", items.len()),
            ));
        }
    }
    let kind = def.item.unwrap_or_default();
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("[{i}]");
        if let Some(ok) = check_item(kind, &def.values, item, &path, errors) {
            out.push(ok);
        }
    }
    out.sort();
    out.dedup();
    Some(Value::from(out))
}

fn check_item(
    kind: ItemKind,
    allowed: &[String],
    item: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    if kind == ItemKind::Enum {
        return check_enum(allowed, item, path, errors).map(str::to_string);
    }
    let Some(text) = item.as_str() else {
        errors.push(FieldError::new(
            path,
            format!("expected a string, found {}", describe(item)),
        ));
        return None;
    };
    let text = text.trim();
    if text.is_empty() {
        errors.push(FieldError::new(path, "must not be empty"));
        return None;
    }
    if text.chars().any(char::is_control) {
        errors.push(FieldError::new(path, "must not contain control characters"));
        return None;
    }
    let result = match kind {
        ItemKind::String | ItemKind::Process | ItemKind::Enum => Ok(text.to_string()),
        ItemKind::Path => check_path(text),
        ItemKind::Extension => check_extension(text),
        ItemKind::Cidr => parse_cidr(text),
        ItemKind::AsrRuleExclusion => check_asr_rule_exclusion(text),
    };
    result
        .map_err(|m| errors.push(FieldError::new(path, m)))
        .ok()
}

fn check_path(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let unix = text.starts_with('/');
    let windows_drive = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/');
    let env_var = text.starts_with('%') && text[1..].contains('%');
    let unc = text.starts_with("\\\\");
    if unix || windows_drive || env_var || unc {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an absolute path (start with /, a drive letter, \\\\ or %VARIABLE%)"
        ))
    }
}

/// `<rule id>=<path>`: the rule id is a GUID (lower-cased so that two
/// spellings compare equal), the path an absolute one.
fn check_asr_rule_exclusion(text: &str) -> Result<String, String> {
    let Some((rule, path)) = text.split_once('=') else {
        return Err(format!(
            "{text:?} is not `<rule id>=<path>` (like \"d4f940ab-401b-4efc-aadc-ad5f3c50688a=C:\\Tools\\app.exe\")"
        ));
    };
    let rule = rule.trim().to_ascii_lowercase();
    if !is_guid(&rule) {
        return Err(format!("{rule:?} is not an ASR rule id (a GUID)"));
    }
    let path = check_path(path.trim())?;
    Ok(format!("{rule}={path}"))
}

/// Whether `text` is a GUID in its 8-4-4-4-12 hexadecimal form.
pub fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_extension(text: &str) -> Result<String, String> {
    let ext = text.strip_prefix('.').unwrap_or(text);
    if ext.is_empty() || ext.contains(['/', '\\', '.']) || ext.contains(char::is_whitespace) {
        Err(format!(
            "{text:?} is not a file extension (like \"log\" or \".tmp\")"
        ))
    } else {
        Ok(ext.to_string())
    }
}

/// Parses an address or CIDR block and returns it in canonical form.
pub fn parse_cidr(text: &str) -> Result<String, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!("{text:?} is not an IP address or CIDR block (like 10.0.0.0/8 or 2001:db8::/32)")
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix {
        None => max,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(format!(
                    "{text:?} has an invalid prefix length; it must be 0..{max}"
                ))
            }
        },
    };
    let network = mask(ip, prefix);
    if network != ip {
        return Err(format!(
            "{text:?} has host bits set; did you mean {network}/{prefix}?"
        ));
    }
    Ok(if prefix == max {
        ip.to_string()
    } else {
        format!("{ip}/{prefix}")
    })
}

fn mask(ip: IpAddr, prefix: u32) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Parses a port list like `"80,443,8000-8100"` into ascending ranges.
pub fn parse_ports(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "{text:?} has an empty entry; write ports like \"80,443,8000-8100\""
            ));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (port(a.trim(), text)?, port(b.trim(), text)?),
            None => {
                let p = port(part, text)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("{part:?} is a descending range; write {hi}-{lo}"));
        }
        ranges.push((lo, hi));
    }
    Ok(ranges)
}

fn port(text: &str, whole: &str) -> Result<u16, String> {
    text.parse::<u16>().map_err(|_| {
        if text == whole {
            format!("{text:?} is not a port number (0..65535)")
        } else {
            format!("{whole:?}: {text:?} is not a port number (0..65535)")
        }
    })
}

fn format_ports(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

const RULE_FIELDS: &[&str] = &[
    "name",
    "description",
    "direction",
    "action",
    "protocol",
    "local_ports",
    "remote_ports",
    "local_addresses",
    "remote_addresses",
    "enabled",
    "app_path",
    "package_family_name",
    "service_name",
    "profiles",
    "interface_types",
    "edge_traversal",
    "icmp_types_and_codes",
];

/// Rule fields only Windows can express; other platforms report the rule
/// not applicable when one is set.
pub const WINDOWS_ONLY_RULE_FIELDS: &[&str] = &[
    "app_path",
    "package_family_name",
    "service_name",
    "profiles",
    "interface_types",
    "edge_traversal",
    "icmp_types_and_codes",
];

/// Address keywords of the Windows Firewall (Firewall CSP
/// `RemoteAddressRanges`), in their canonical spelling. Only Windows can
/// carry them; elsewhere a rule using one is reported not applicable.
pub const ADDRESS_KEYWORDS: &[&str] = &[
    "DefaultGateway",
    "DHCP",
    "DNS",
    "WINS",
    "Intranet",
    "RmtIntranet",
    "Internet",
    "Ply2Renders",
    "LocalSubnet",
];

/// IP protocol numbers that have a name in a rule; other numbers are kept as
/// their decimal string.
const PROTOCOL_NAMES: &[(u8, &str)] = &[(1, "icmp"), (6, "tcp"), (17, "udp"), (58, "icmpv6")];

/// A rule's protocol: a name (`tcp`, `udp`, `icmp`, `icmpv6`, `any`) or an IP
/// protocol number 0..255, as a number or a string. Numbers with a name
/// become the name, so `6` and `tcp` are the same rule.
pub fn parse_protocol(value: &Value) -> Result<String, String> {
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            if matches!(s.as_str(), "tcp" | "udp" | "icmp" | "icmpv6" | "any") {
                return Ok(s);
            }
            s.parse::<u64>().ok()
        }
        _ => None,
    };
    match number {
        Some(n) if n <= 255 => Ok(PROTOCOL_NAMES
            .iter()
            .find(|(k, _)| u64::from(*k) == n)
            .map_or_else(|| n.to_string(), |(_, name)| (*name).to_string())),
        _ => Err(format!(
            "expected tcp, udp, icmp, icmpv6, any or an IP protocol number 0..255, found {}",
            describe(value)
        )),
    }
}

/// One address of a rule: a CIDR block, an ascending range `a-b` of one
/// family, or a Windows address keyword; returned in canonical form.
pub fn parse_rule_address(text: &str) -> Result<String, String> {
    if let Some(k) = ADDRESS_KEYWORDS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(text))
    {
        return Ok((*k).to_string());
    }
    if let Some((a, b)) = text.split_once('-') {
        let (Ok(lo), Ok(hi)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) else {
            return Err(format!(
                "{text:?} is not an address range (like 10.0.0.1-10.0.0.20)"
            ));
        };
        if lo.is_ipv4() != hi.is_ipv4() {
            return Err(format!("{text:?} mixes IPv4 and IPv6"));
        }
        if lo > hi {
            return Err(format!("{text:?} is a descending range; write {hi}-{lo}"));
        }
        return Ok(format!("{lo}-{hi}"));
    }
    parse_cidr(text).map_err(|e| {
        format!(
            "{e}, an address range or one of {}",
            ADDRESS_KEYWORDS.join(", ")
        )
    })
}

/// One ICMP type and code, `type:code` with numbers 0..255 or `*` for any
/// code (Firewall CSP `IcmpTypesAndCodes`).
pub fn parse_icmp_type_code(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not an ICMP type and code (like \"8:*\" or \"3:4\")");
    let (t, c) = text.split_once(':').ok_or_else(bad)?;
    let t: u8 = t.trim().parse().map_err(|_| bad())?;
    let c = c.trim();
    if c == "*" {
        return Ok(format!("{t}:*"));
    }
    let c: u8 = c.parse().map_err(|_| bad())?;
    Ok(format!("{t}:{c}"))
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn check_firewall_rules(
    def: &SettingDefinition,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let Some(rules) = value.as_array() else {
        errors.push(FieldError::new(
            "",
            format!("expected a list of rules, found {}", describe(value)),
        ));
        return None;
    };
    let limit = def.max_items.unwrap_or(MAX_FIREWALL_RULES);
    if rules.len() > limit {
        errors.push(FieldError::new(
            "",
            format!(
                "holds {} rules; one policy may hold at most {limit}",
                rules.len()
            ),
        ));
    }
    let mut by_name: BTreeMap<String, Value> = BTreeMap::new();
    let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("[{i}]");
        // Duplicates are judged on the raw name, so that a rule with other
        // mistakes still counts as the first holder of its name.
        let raw_name = rule
            .get("name")
            .and_then(Value::as_str)
            .map(|n| n.trim().to_string());
        if let Some(name) = &raw_name {
            if let Some(first) = first_index.get(name) {
                errors.push(FieldError::new(
                    format!("{path}.name"),
                    format!("duplicate rule name {name:?} (also used by rule [{first}])"),
                ));
            } else {
                first_index.insert(name.clone(), i);
            }
        }
        let Some(checked) = check_rule(rule, &path, errors) else {
            continue;
        };
        let name = raw_name.unwrap_or_default();
        if by_name.contains_key(&name) {
            continue;
        }
        by_name.insert(name, checked);
    }
    Some(Value::Array(by_name.into_values().collect()))
}

fn check_rule(rule: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
    let Some(obj) = rule.as_object() else {
        errors.push(FieldError::new(
            path,
            format!("expected a rule (a map), found {}", describe(rule)),
        ));
        return None;
    };
    let before = errors.len();
    let field = |name: &str| format!("{path}.{name}");
    for key in obj.keys() {
        if !RULE_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                field(key),
                format!(
                    "unknown rule field; expected one of {}",
                    RULE_FIELDS.join(", ")
                ),
            ));
        }
    }
    let mut out = Map::new();
    let text = |name: &str, errors: &mut Vec<FieldError>| -> Option<String> {
        match obj.get(name) {
            None | Some(Value::Null) => None,
            // An empty string says nothing, like an absent field.
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) if !s.chars().any(char::is_control) => {
                Some(s.trim().to_string())
            }
            Some(other) => {
                errors.push(FieldError::new(
                    field(name),
                    format!("expected a single-line string, found {}", describe(other)),
                ));
                None
            }
        }
    };
    let choice = |name: &str,
                  allowed: &[&str],
                  default: Option<&str>,
                  errors: &mut Vec<FieldError>|
     -> Option<String> {
        match obj.get(name) {
            None | Some(Value::Null) => {
                if default.is_none() {
                    errors.push(FieldError::new(
                        field(name),
                        format!("is required; one of {}", allowed.join(", ")),
                    ));
                }
                default.map(str::to_string)
            }
            Some(v) => check_enum(&strings(allowed), v, &field(name), errors).map(str::to_string),
        }
    };

    match text("name", errors) {
        Some(name) if name.chars().count() <= 200 => {
            out.insert("name".into(), Value::from(name));
        }
        Some(_) => errors.push(FieldError::new(
            field("name"),
            "is longer than 200 characters",
        )),
        None if matches!(obj.get("name"), None | Some(Value::Null | Value::String(_))) => {
            errors.push(FieldError::new(field("name"), "is required"))
        }
        None => {}
    }
    out.insert(
        "description".into(),
        Value::from(text("description", errors).unwrap_or_default()),
    );
    let direction = choice("direction", &["in", "out"], None, errors);
    let action = choice("action", &["allow", "block"], None, errors);
    let protocol = match obj.get("protocol") {
        None | Some(Value::Null) => Some("any".to_string()),
        Some(v) => parse_protocol(v)
            .map_err(|m| errors.push(FieldError::new(field("protocol"), m)))
            .ok(),
    };
    for (k, v) in [
        ("direction", &direction),
        ("action", &action),
        ("protocol", &protocol),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), Value::from(v.as_str()));
        }
    }
    for ports in ["local_ports", "remote_ports"] {
        let Some(raw) = obj.get(ports).filter(|v| !v.is_null()) else {
            continue;
        };
        let raw_text = match raw {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                errors.push(FieldError::new(
                    field(ports),
                    format!(
                        "expected ports like \"80,443,8000-8100\", found {}",
                        describe(other)
                    ),
                ));
                continue;
            }
        };
        match parse_ports(&raw_text) {
            Ok(ranges) => {
                if !matches!(protocol.as_deref(), Some("tcp" | "udp")) {
                    errors.push(FieldError::new(
                        field(ports),
                        format!(
                            "ports need protocol tcp or udp, but protocol is {}",
                            protocol.as_deref().unwrap_or("any")
                        ),
                    ));
                }
                out.insert(ports.into(), Value::from(format_ports(&ranges)));
            }
            Err(m) => errors.push(FieldError::new(field(ports), m)),
        }
    }
    for addrs in ["local_addresses", "remote_addresses"] {
        let Some(raw) = obj.get(addrs).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(list) = raw.as_array() else {
            errors.push(FieldError::new(
                field(addrs),
                format!("expected a list of CIDR blocks, found {}", describe(raw)),
            ));
            continue;
        };
        let mut parsed = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let path = format!("{}[{i}]", field(addrs));
            match item.as_str().map(str::trim) {
                Some(text) if !text.is_empty() => match parse_rule_address(text) {
                    Ok(ok) => parsed.push(ok),
                    Err(m) => errors.push(FieldError::new(path, m)),
                },
                _ => errors.push(FieldError::new(
                    path,
                    format!("expected an address, found {}", describe(item)),
                )),
            }
        }
        parsed.sort();
        parsed.dedup();
        out.insert(addrs.into(), Value::from(parsed));
    }
    match obj.get("enabled") {
        None | Some(Value::Null) => {
            out.insert("enabled".into(), Value::Bool(true));
        }
        Some(Value::Bool(b)) => {
            out.insert("enabled".into(), Value::Bool(*b));
        }
        Some(other) => errors.push(FieldError::new(
            field("enabled"),
            format!("expected true or false, found {}", describe(other)),
        )),
    }
    for name in ["app_path", "package_family_name", "service_name"] {
        if let Some(v) = text(name, errors) {
            out.insert(name.into(), Value::from(v));
        }
    }
    for (name, allowed) in [
        ("profiles", &["domain", "private", "public", "all"][..]),
        (
            "interface_types",
            &["all", "lan", "wireless", "remote_access"][..],
        ),
    ] {
        let Some(raw) = obj.get(name).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(list) = raw.as_array() else {
            errors.push(FieldError::new(
                field(name),
                format!(
                    "expected a list of {}, found {}",
                    allowed.join(", "),
                    describe(raw)
                ),
            ));
            continue;
        };
        let mut picked: Vec<String> = Vec::new();
        for (i, item) in list.iter().enumerate() {
            if let Some(v) = check_enum(
                &strings(allowed),
                item,
                &format!("{}[{i}]", field(name)),
                errors,
            ) {
                picked.push(v.to_string());
            }
        }
        picked.sort();
        picked.dedup();
        if picked.len() > 1 && picked.iter().any(|p| p == "all") {
            errors.push(FieldError::new(
                field(name),
                "\"all\" cannot be combined with other values",
            ));
        }
        out.insert(name.into(), Value::from(picked));
    }
    if let Some(raw) = obj.get("icmp_types_and_codes").filter(|v| !v.is_null()) {
        match raw.as_array() {
            Some(list) => {
                let mut picked = Vec::new();
                for (i, item) in list.iter().enumerate() {
                    let path = format!("{}[{i}]", field("icmp_types_and_codes"));
                    match item.as_str().map(parse_icmp_type_code) {
                        Some(Ok(v)) => picked.push(v),
                        Some(Err(m)) => errors.push(FieldError::new(path, m)),
                        None => errors.push(FieldError::new(
                            path,
                            format!("expected a string like \"8:*\", found {}", describe(item)),
                        )),
                    }
                }
                if !matches!(protocol.as_deref(), Some("icmp" | "icmpv6")) {
                    errors.push(FieldError::new(
                        field("icmp_types_and_codes"),
                        "ICMP types need protocol icmp or icmpv6",
                    ));
                }
                picked.sort();
                picked.dedup();
                out.insert("icmp_types_and_codes".into(), Value::from(picked));
            }
            None => errors.push(FieldError::new(
                field("icmp_types_and_codes"),
                format!("expected a list like [\"8:*\"], found {}", describe(raw)),
            )),
        }
    }
    match obj.get("edge_traversal") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            if *b && direction.as_deref() == Some("out") {
                errors.push(FieldError::new(
                    field("edge_traversal"),
                    "edge traversal applies to inbound rules only",
                ));
            }
            out.insert("edge_traversal".into(), Value::Bool(*b));
        }
        Some(other) => errors.push(FieldError::new(
            field("edge_traversal"),
            format!("expected true or false, found {}", describe(other)),
        )),
    }
    (errors.len() == before).then_some(Value::Object(out))
}

fn check_asr_rules(
    def: &SettingDefinition,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let Some(map) = value.as_object() else {
        errors.push(FieldError::new(
            "",
            format!(
                "expected a map from ASR rule id to mode, found {}",
                describe(value)
            ),
        ));
        return None;
    };
    let mut out = Map::new();
    for (key, mode) in map {
        let path = format!("[{key}]");
        let Some(known) = def.key(key) else {
            errors.push(FieldError::new(
                path,
                format!(
                    "unknown ASR rule id {key:?}; see `rampart catalog show {}` for the rule ids",
                    def.id
                ),
            ));
            continue;
        };
        let Some(mode) = check_enum(&def.values, mode, &path, errors) else {
            continue;
        };
        if known.excluded_values.iter().any(|x| x == mode) {
            errors.push(FieldError::new(
                path,
                format!("mode {mode:?} is not available for rule {:?}", known.title),
            ));
            continue;
        }
        // "Not configured" is the absence of a value: it never conflicts and
        // is not carried further.
        if mode != "not_configured" {
            out.insert(known.key.to_ascii_lowercase(), Value::from(mode));
        }
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_refuse_descending_ranges() {
        assert_eq!(
            parse_ports("80, 443,8000-8100"),
            Ok(vec![(80, 80), (443, 443), (8000, 8100)])
        );
        assert!(parse_ports("9000-8000").unwrap_err().contains("descending"));
        assert!(parse_ports("70000").is_err());
        assert!(parse_ports("80,,81").is_err());
        assert!(parse_ports("").is_err());
    }

    #[test]
    fn cidr_is_canonical_and_refuses_host_bits() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok("10.0.0.0/8".to_string()));
        assert_eq!(parse_cidr("192.0.2.7"), Ok("192.0.2.7".to_string()));
        assert_eq!(parse_cidr("2001:db8::/32"), Ok("2001:db8::/32".to_string()));
        assert!(parse_cidr("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0/8").is_err());
        assert!(parse_cidr("::1/129").is_err());
    }
}
