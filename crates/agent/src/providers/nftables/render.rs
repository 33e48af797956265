//! Pure: the firewall settings → the Rampart table ([`Ruleset`]) → the
//! `nft -f` script that replaces it in one transaction.
//!
//! The chains, in the order nft evaluates them:
//!
//! ```text
//! input  (hook input,  policy from default_inbound_action)
//!   iif "lo" accept
//!   ct state established,related accept
//!   the `in` rules: every block rule, then every allow rule
//! output (hook output, policy from default_outbound_action)
//!   oif "lo" accept
//!   ct state established,related accept
//!   the `out` rules: every block rule, then every allow rule
//!   ip daddr <server> tcp dport <port> accept   ("rampart: server")
//! ```
//!
//! Block rules come before allow rules, as in Windows Firewall, where a
//! block rule wins over an allow rule whatever the order they were written
//! in; rules from several policies have no order of their own.
//!
//! The server allowance comes *after* the explicit rules on purpose: it is
//! there so that the default outbound policy never cuts the agent off from
//! its server, not to override an administrator's explicit block rule. A
//! rule that blocks the server is applied like any other, and lockout
//! protection (`run.rs`) rolls it back when the agent then cannot reach the
//! server. Replies from the server are already accepted by the
//! established-traffic rule of the input chain.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rampart_core::catalog::RemovalBehaviour;
use rampart_core::value::{parse_ports, WINDOWS_ONLY_RULE_FIELDS};
use serde_json::Value;

use super::model::{
    cidr_interval, cidrs, merge_addrs, merge_ports, rules_view, Addrs, Base, Chain, Hook, Managed,
    Ports, Proto, Rule, Ruleset, Verdict, MAX_COMMENT_BYTES, SERVER_COMMENT,
};
use crate::providers::Values;

pub const FIREWALL_ENABLED: &str = "firewall_enabled";
pub const DEFAULT_INBOUND: &str = "default_inbound_action";
pub const DEFAULT_OUTBOUND: &str = "default_outbound_action";
pub const FIREWALL_RULES: &str = "firewall_rules";
/// The settings the table carries.
pub const SETTINGS: [&str; 4] = [
    FIREWALL_ENABLED,
    DEFAULT_INBOUND,
    DEFAULT_OUTBOUND,
    FIREWALL_RULES,
];

/// The catalog's defaults of the default actions: what a chain's policy is
/// while no policy sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub inbound: Verdict,
    pub outbound: Verdict,
}

/// The table to install (`None`: no table), and what was left out and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub ruleset: Option<Ruleset>,
    /// Rules left out (disabled, or not expressible here), each with why;
    /// the provider logs them.
    pub notes: Vec<String>,
}

/// The values the table is built from: the desired ones, and those no
/// longer assigned whose removal behaviour is `keep`, as they are now.
/// A reverted setting is left out: its catalog default applies.
pub fn values_for(
    desired: &Values,
    observed: &Values,
    removals: &BTreeMap<String, RemovalBehaviour>,
) -> Values {
    let mut values: Values = desired
        .iter()
        .filter(|(k, _)| SETTINGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (setting, removal) in removals {
        if *removal == RemovalBehaviour::Keep && !values.contains_key(setting) {
            if let Some(v) = observed.get(setting) {
                values.insert(setting.clone(), v.clone());
            }
        }
    }
    values
}

/// The table for `values`. No table when Rampart sets none of the
/// firewall settings (the device's own state), or when `firewall_enabled`
/// is false.
pub fn ruleset(values: &Values, defaults: Defaults, server: &[(IpAddr, u16)]) -> Rendered {
    let mut notes = Vec::new();
    if !SETTINGS.iter().any(|s| values.contains_key(*s)) {
        return Rendered {
            ruleset: None,
            notes,
        };
    }
    if values.get(FIREWALL_ENABLED) == Some(&Value::Bool(false)) {
        return Rendered {
            ruleset: None,
            notes,
        };
    }
    let policy =
        |setting: &str, default: Verdict, notes: &mut Vec<String>| match values.get(setting) {
            None => default,
            Some(v) => match v.as_str().and_then(Verdict::from_action) {
                Some(verdict) => verdict,
                None => {
                    notes.push(format!(
                        "{setting} {v} is not allow or block; the default {} applies",
                        default.action()
                    ));
                    default
                }
            },
        };
    let inbound = policy(DEFAULT_INBOUND, defaults.inbound, &mut notes);
    let outbound = policy(DEFAULT_OUTBOUND, defaults.outbound, &mut notes);

    let mut input = Vec::new();
    let mut output = Vec::new();
    let rules = values
        .get(FIREWALL_RULES)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for rule in &rules {
        let name = rule.get("name").and_then(Value::as_str).unwrap_or("?");
        match managed(rule) {
            Ok(Some((Hook::Input, made))) => input.extend(made),
            Ok(Some((Hook::Output, made))) => output.extend(made),
            Ok(None) => notes.push(format!(
                "rule {name:?} is disabled (enabled: false); it is left out of the table"
            )),
            Err(why) => notes.push(format!("rule {name:?} {why}; it is left out of the table")),
        }
    }
    Rendered {
        ruleset: Some(Ruleset {
            input: Some(chain(Hook::Input, inbound, input, &[])),
            output: Some(chain(Hook::Output, outbound, output, server)),
            other: Vec::new(),
        }),
        notes,
    }
}

/// The read-back `firewall_rules` should give for the desired rules.
pub fn expected_rules_view(rules: &Value) -> Value {
    let values: Values = [(FIREWALL_RULES.to_string(), rules.clone())].into();
    let defaults = Defaults {
        inbound: Verdict::Drop,
        outbound: Verdict::Accept,
    };
    match ruleset(&values, defaults, &[]).ruleset {
        Some(r) => rules_view(&r),
        None => Value::Array(Vec::new()),
    }
}

fn chain(hook: Hook, policy: Verdict, mut rules: Vec<Managed>, server: &[(IpAddr, u16)]) -> Chain {
    // Block first (see the module comment), then by name: deterministic
    // whatever order the rules arrived in.
    rules.sort_by(|a, b| {
        (a.verdict != Verdict::Drop, &a.comment).cmp(&(b.verdict != Verdict::Drop, &b.comment))
    });
    let mut all = vec![Rule::Loopback, Rule::Established];
    all.extend(rules.into_iter().map(Rule::Managed));
    all.extend(server.iter().map(|(addr, port)| Rule::Server {
        addr: *addr,
        port: *port,
    }));
    Chain {
        base: Some(Base {
            kind: "filter".into(),
            hook: hook.chain().into(),
            prio: 0,
            policy: policy.nft().into(),
        }),
        rules: all,
    }
}

/// One firewall rule of the policy (canonical, as `rampart_core::value`
/// returns it) → its table rules: one, or one per IP family when its
/// addresses mix IPv4 and IPv6 (a packet is one or the other). `None`:
/// disabled. `Err`: why it cannot be carried here.
fn managed(rule: &Value) -> Result<Option<(Hook, Vec<Managed>)>, String> {
    let name = rule
        .get("name")
        .and_then(Value::as_str)
        .ok_or("has no name")?;
    // The server already reports such rules not applicable on Linux; a
    // rule narrowed to one program must never become a rule for all.
    let windows_only: Vec<&str> = WINDOWS_ONLY_RULE_FIELDS
        .iter()
        .copied()
        .filter(|f| {
            rule.get(*f)
                .is_some_and(|v| !v.is_null() && v != &Value::Array(Vec::new()))
        })
        .collect();
    if !windows_only.is_empty() {
        return Err(format!(
            "uses Windows-only field(s) {} that nftables cannot express",
            windows_only.join(", ")
        ));
    }
    if rule.get("enabled") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    let hook = match rule.get("direction").and_then(Value::as_str) {
        Some("in") => Hook::Input,
        Some("out") => Hook::Output,
        other => return Err(format!("has direction {other:?}, not in or out")),
    };
    let verdict = rule
        .get("action")
        .and_then(Value::as_str)
        .and_then(Verdict::from_action)
        .ok_or("has no action allow or block")?;
    let protocol = match rule.get("protocol").and_then(Value::as_str) {
        None | Some("any") => None,
        Some(p) => Some(Proto::from_protocol(p).ok_or(format!("has protocol {p:?}"))?),
    };
    let ports = |field: &str| -> Result<Option<Ports>, String> {
        match rule.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_ports(s)
                .map(|p| Some(merge_ports(p)))
                .map_err(|e| format!("has {field} {e}")),
            Some(other) => Err(format!("has {field} {other}")),
        }
    };
    let local_ports = ports("local_ports")?;
    let remote_ports = ports("remote_ports")?;
    if (local_ports.is_some() || remote_ports.is_some())
        && !matches!(protocol, Some(Proto::Tcp | Proto::Udp))
    {
        return Err("has ports but its protocol is not tcp or udp".into());
    }
    let addrs = |field: &str| -> Result<Option<Addrs>, String> {
        match rule.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(list)) if list.is_empty() => Ok(None),
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| {
                    a.as_str()
                        .and_then(cidr_interval)
                        .ok_or(format!("has {field} entry {a}, not a CIDR block"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(format!("has {field} {other}")),
        }
    };
    let local_addrs = addrs("local_addresses")?;
    let remote_addrs = addrs("remote_addresses")?;

    let comment = comment_for(name);
    let (sport, dport) = match hook {
        Hook::Input => (remote_ports, local_ports),
        Hook::Output => (local_ports, remote_ports),
    };
    let make = |local: Option<Addrs>, remote: Option<Addrs>| {
        let (saddr, daddr) = match hook {
            Hook::Input => (remote, local),
            Hook::Output => (local, remote),
        };
        Managed {
            comment: comment.clone(),
            protocol,
            sport: sport.clone(),
            dport: dport.clone(),
            saddr,
            daddr,
            verdict,
        }
    };
    if local_addrs.is_none() && remote_addrs.is_none() {
        return Ok(Some((hook, vec![make(None, None)])));
    }
    let mut made = Vec::new();
    for v6 in [false, true] {
        let of_family = |list: &Option<Addrs>| -> Option<Option<Addrs>> {
            match list {
                None => Some(None),
                Some(all) => {
                    let mine: Addrs = all
                        .iter()
                        .copied()
                        .filter(|(a, _)| a.is_ipv6() == v6)
                        .collect();
                    (!mine.is_empty()).then(|| Some(merge_addrs(mine)))
                }
            }
        };
        if let (Some(local), Some(remote)) = (of_family(&local_addrs), of_family(&remote_addrs)) {
            made.push(make(local, remote));
        }
    }
    if made.is_empty() {
        return Err(
            "has local and remote addresses of different IP families, so it can never match".into(),
        );
    }
    Ok(Some((hook, made)))
}

/// The comment that names a rule in the table: its name, unless nft
/// cannot hold it (longer than 128 bytes, or a double quote, which nft's
/// syntax cannot escape); then a shortened name and a hash of the whole.
pub fn comment_for(name: &str) -> String {
    if name.len() <= MAX_COMMENT_BYTES && !name.contains('"') {
        return name.to_string();
    }
    let mut short = String::new();
    for c in name.chars() {
        if short.len() + c.len_utf8() > 96 {
            break;
        }
        short.push(if c == '"' { '\'' } else { c });
    }
    format!("{short}… #{:016x}", fnv1a(name.as_bytes()))
}

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The script that replaces the table `name` with `ruleset` (or removes
/// it) in one `nft -f` transaction: `add` makes the `delete` valid when the
/// table is absent, and nft applies the whole file or nothing.
pub fn script(name: &str, ruleset: Option<&Ruleset>) -> String {
    let mut s = format!("add table inet {name}\ndelete table inet {name}\n");
    let Some(r) = ruleset else {
        return s;
    };
    s.push_str(&format!("table inet {name} {{\n"));
    for hook in [Hook::Input, Hook::Output] {
        let Some(chain) = r.chain(hook) else {
            continue;
        };
        s.push_str(&format!("\tchain {} {{\n", hook.chain()));
        if let Some(b) = &chain.base {
            s.push_str(&format!(
                "\t\ttype {} hook {} priority {}; policy {};\n",
                b.kind, b.hook, b.prio, b.policy
            ));
        }
        for rule in &chain.rules {
            if let Some(text) = rule_text(hook, rule) {
                s.push_str(&format!("\t\t{text}\n"));
            }
        }
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    s
}

fn rule_text(hook: Hook, rule: &Rule) -> Option<String> {
    Some(match rule {
        Rule::Loopback => format!("{} \"lo\" accept", hook.loopback_key()),
        Rule::Established => "ct state established,related accept".into(),
        Rule::Server { addr, port } => format!(
            "{} daddr {addr} tcp dport {port} accept comment \"{SERVER_COMMENT}\"",
            family(*addr)
        ),
        Rule::Managed(m) => {
            let mut parts = Vec::new();
            match (m.protocol, &m.sport, &m.dport) {
                (Some(p @ (Proto::Tcp | Proto::Udp)), sport, dport)
                    if sport.is_some() || dport.is_some() =>
                {
                    if let Some(ports) = sport {
                        parts.push(format!("{} sport {}", p.nft(), ports_set(ports)));
                    }
                    if let Some(ports) = dport {
                        parts.push(format!("{} dport {}", p.nft(), ports_set(ports)));
                    }
                }
                (Some(p), _, _) => parts.push(format!("meta l4proto {}", p.nft())),
                (None, _, _) => {}
            }
            for (field, addrs) in [("saddr", &m.saddr), ("daddr", &m.daddr)] {
                if let Some(list) = addrs {
                    let Some((first, _)) = list.first() else {
                        continue;
                    };
                    parts.push(format!("{} {field} {}", family(*first), addrs_set(list)));
                }
            }
            parts.push(m.verdict.nft().into());
            parts.push(format!("comment \"{}\"", m.comment));
            parts.join(" ")
        }
        // Never written by Rampart: a table that holds one is replaced.
        Rule::Unrecognized(_) => return None,
    })
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv6() {
        "ip6"
    } else {
        "ip"
    }
}

fn ports_set(ports: &Ports) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

fn addrs_set(addrs: &Addrs) -> String {
    let items: Vec<String> = addrs.iter().flat_map(|(lo, hi)| cidrs(*lo, *hi)).collect();
    format!("{{ {} }}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULTS: Defaults = Defaults {
        inbound: Verdict::Drop,
        outbound: Verdict::Accept,
    };

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    fn rule(extra: Value) -> Value {
        let mut r = json!({"name": "r", "description": "", "direction": "in", "action": "allow", "protocol": "any", "enabled": true});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    #[test]
    fn no_firewall_setting_means_no_table_and_disabled_means_deleted() {
        assert_eq!(ruleset(&Values::new(), DEFAULTS, &[]).ruleset, None);
        let off = values(&[
            (FIREWALL_ENABLED, json!(false)),
            (DEFAULT_INBOUND, json!("block")),
        ]);
        assert_eq!(ruleset(&off, DEFAULTS, &[]).ruleset, None);
        assert_eq!(
            script("rampart", None),
            "add table inet rampart\ndelete table inet rampart\n"
        );
    }

    #[test]
    fn the_whole_table_in_one_script() {
        let v = values(&[
            (FIREWALL_ENABLED, json!(true)),
            (DEFAULT_INBOUND, json!("block")),
            (
                FIREWALL_RULES,
                json!([
                    rule(
                        json!({"name": "web", "protocol": "tcp", "local_ports": "80,443,8000-8100", "remote_addresses": ["10.0.0.0/8", "192.168.1.1"]})
                    ),
                    rule(
                        json!({"name": "no-dns", "direction": "out", "action": "block", "protocol": "udp", "remote_ports": "53"})
                    ),
                    rule(json!({"name": "ping", "protocol": "icmp"})),
                    rule(
                        json!({"name": "bad-host", "action": "block", "remote_addresses": ["203.0.113.7"]})
                    ),
                    rule(json!({"name": "off", "enabled": false})),
                ]),
            ),
        ]);
        let server: IpAddr = "10.213.9.1".parse().unwrap();
        let r = ruleset(&v, DEFAULTS, &[(server, 8443)]);
        assert_eq!(
            r.notes,
            ["rule \"off\" is disabled (enabled: false); it is left out of the table"]
        );
        let text = script("rampart", r.ruleset.as_ref());
        assert_eq!(
            text,
            "add table inet rampart\n\
             delete table inet rampart\n\
             table inet rampart {\n\
             \tchain input {\n\
             \t\ttype filter hook input priority 0; policy drop;\n\
             \t\tiif \"lo\" accept\n\
             \t\tct state established,related accept\n\
             \t\tip saddr { 203.0.113.7 } drop comment \"bad-host\"\n\
             \t\tmeta l4proto icmp accept comment \"ping\"\n\
             \t\ttcp dport { 80, 443, 8000-8100 } ip saddr { 10.0.0.0/8, 192.168.1.1 } accept comment \"web\"\n\
             \t}\n\
             \tchain output {\n\
             \t\ttype filter hook output priority 0; policy accept;\n\
             \t\toif \"lo\" accept\n\
             \t\tct state established,related accept\n\
             \t\tudp dport { 53 } drop comment \"no-dns\"\n\
             \t\tip daddr 10.213.9.1 tcp dport 8443 accept comment \"rampart: server\"\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn unset_actions_take_the_catalog_defaults() {
        let v = values(&[(FIREWALL_RULES, json!([]))]);
        let r = ruleset(&v, DEFAULTS, &[]).ruleset.unwrap();
        assert_eq!(r.input.unwrap().base.unwrap().policy, "drop");
        assert_eq!(r.output.unwrap().base.unwrap().policy, "accept");
    }

    #[test]
    fn mixed_families_split_and_impossible_rules_are_said() {
        let v = values(&[(
            FIREWALL_RULES,
            json!([
                rule(json!({"name": "both", "remote_addresses": ["10.0.0.0/8", "fd00::/8"]})),
                rule(
                    json!({"name": "never", "local_addresses": ["10.0.0.1"], "remote_addresses": ["fd00::/8"]})
                ),
                rule(json!({"name": "win", "app_path": "C:\\x.exe"})),
            ]),
        )]);
        let r = ruleset(&v, DEFAULTS, &[]);
        let input = &r.ruleset.as_ref().unwrap().input.as_ref().unwrap().rules;
        assert_eq!(input.len(), 4, "{input:?}");
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert!(r.notes[0].contains("can never match"), "{:?}", r.notes);
        assert!(r.notes[1].contains("app_path"), "{:?}", r.notes);
        let text = script("t", r.ruleset.as_ref());
        assert!(text.contains("ip saddr { 10.0.0.0/8 } accept comment \"both\""));
        assert!(text.contains("ip6 saddr { fd00::/8 } accept comment \"both\""));
    }

    #[test]
    fn comments_fit_nft() {
        assert_eq!(comment_for("allow-ssh"), "allow-ssh");
        let long = "x".repeat(200);
        let c = comment_for(&long);
        assert!(c.len() <= MAX_COMMENT_BYTES, "{c}");
        assert_ne!(c, comment_for(&"x".repeat(201)));
        let quoted = comment_for("say \"hi\"");
        assert!(!quoted.contains('"'), "{quoted}");
        assert_eq!(quoted, comment_for("say \"hi\""));
    }

    #[test]
    fn kept_values_stay_and_reverted_ones_go() {
        let desired = values(&[(DEFAULT_INBOUND, json!("allow"))]);
        let observed = values(&[
            (DEFAULT_OUTBOUND, json!("block")),
            (FIREWALL_RULES, json!([])),
        ]);
        let removals = BTreeMap::from([
            (DEFAULT_OUTBOUND.to_string(), RemovalBehaviour::Keep),
            (FIREWALL_RULES.to_string(), RemovalBehaviour::Revert),
        ]);
        let v = values_for(&desired, &observed, &removals);
        assert_eq!(
            v,
            values(&[
                (DEFAULT_INBOUND, json!("allow")),
                (DEFAULT_OUTBOUND, json!("block"))
            ])
        );
    }
}
