//! Pure: the output of `nft -j list table inet <name>` → [`Ruleset`], and
//! the setting values it means (what `observe` reports).
//!
//! Anything Rampart does not write — a counter, a rule added by hand, a
//! set — is kept as [`Rule::Unrecognized`] or in `Ruleset::other`, so that
//! it makes the read-back differ from what was rendered and the table is
//! replaced, rather than being silently ignored.

use std::net::IpAddr;

use serde_json::Value;

use super::model::{
    merge_addrs, merge_ports, prefix_interval, rules_view, Addrs, Base, Chain, Hook, Managed,
    Ports, Proto, Rule, Ruleset, Verdict, SERVER_COMMENT,
};
use super::render::{DEFAULT_INBOUND, DEFAULT_OUTBOUND, FIREWALL_ENABLED, FIREWALL_RULES};
use crate::providers::Values;

/// The table `name` of family inet in `json` (the whole `nft -j` answer).
pub fn ruleset(json: &Value, name: &str) -> Result<Ruleset, String> {
    let items = json
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("the nft JSON has no \"nftables\" list")?;
    let mine = |o: &Value| {
        o.get("family").and_then(Value::as_str) == Some("inet")
            && o.get("table").and_then(Value::as_str) == Some(name)
    };
    let mut r = Ruleset::default();
    for item in items {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "metainfo" | "table" => {}
            "chain" if mine(body) => {
                let chain_name = body.get("name").and_then(Value::as_str).unwrap_or("");
                let chain = Chain {
                    base: base(body),
                    rules: Vec::new(),
                };
                match chain_name {
                    "input" => r.input = Some(chain),
                    "output" => r.output = Some(chain),
                    other => r.other.push(format!("chain {other}")),
                }
            }
            "rule" if mine(body) => {
                let (hook, chain) = match body.get("chain").and_then(Value::as_str) {
                    Some("input") => (Hook::Input, r.input.as_mut()),
                    Some("output") => (Hook::Output, r.output.as_mut()),
                    // A rule of another chain: that chain is in `other`.
                    _ => continue,
                };
                if let Some(chain) = chain {
                    chain.rules.push(rule(hook, body));
                }
            }
            other => {
                let n = body.get("name").and_then(Value::as_str).unwrap_or("");
                if mine(body) || body.get("table").is_none() {
                    r.other.push(format!("{other} {n}").trim().to_string());
                }
            }
        }
    }
    Ok(r)
}

fn base(chain: &Value) -> Option<Base> {
    let hook = chain.get("hook").and_then(Value::as_str)?;
    Some(Base {
        kind: chain
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        hook: hook.into(),
        prio: chain
            .get("prio")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MIN),
        policy: chain
            .get("policy")
            .and_then(Value::as_str)
            .unwrap_or("accept")
            .into(),
    })
}

/// One rule of a Rampart chain; what it is not sure of is `Unrecognized`.
fn rule(hook: Hook, body: &Value) -> Rule {
    let unrecognized = || {
        let mut shown = serde_json::Map::new();
        for k in ["expr", "comment"] {
            if let Some(v) = body.get(k) {
                shown.insert(k.into(), v.clone());
            }
        }
        Rule::Unrecognized(Value::Object(shown).to_string())
    };
    let comment = body.get("comment").and_then(Value::as_str);
    let Some(exprs) = body.get("expr").and_then(Value::as_array) else {
        return unrecognized();
    };
    let Some((verdict, matches)) = exprs.split_last() else {
        return unrecognized();
    };
    let verdict = match verdict.as_object().and_then(|o| o.keys().next()) {
        Some(k) if k == "accept" && verdict.as_object().is_some_and(|o| o.len() == 1) => {
            Verdict::Accept
        }
        Some(k) if k == "drop" && verdict.as_object().is_some_and(|o| o.len() == 1) => {
            Verdict::Drop
        }
        _ => return unrecognized(),
    };
    let mut fields = Fields::default();
    for m in matches {
        if fields.add(m).is_none() {
            return unrecognized();
        }
    }

    match comment {
        None if verdict == Verdict::Accept && fields.is_only_loopback(hook) => Rule::Loopback,
        None if verdict == Verdict::Accept && fields.is_only_established() => Rule::Established,
        None => unrecognized(),
        Some(SERVER_COMMENT) => match fields.server() {
            Some((addr, port)) if verdict == Verdict::Accept => Rule::Server { addr, port },
            _ => unrecognized(),
        },
        Some(c) => match fields.managed(c, verdict) {
            Some(m) => Rule::Managed(m),
            None => unrecognized(),
        },
    }
}

/// The matches of one rule, by what they look at.
#[derive(Default)]
struct Fields {
    iface: Option<(String, String)>,
    ct_state: Option<Vec<String>>,
    l4proto: Option<Proto>,
    sport: Option<Ports>,
    dport: Option<Ports>,
    saddr: Option<Addrs>,
    daddr: Option<Addrs>,
}

impl Fields {
    /// Takes one `{"match": …}`; `None` when it is not one Rampart writes.
    fn add(&mut self, expr: &Value) -> Option<()> {
        let m = expr.get("match")?;
        let op = m.get("op").and_then(Value::as_str)?;
        let left = m.get("left")?;
        let right = m.get("right")?;
        if let Some(meta) = left.get("meta") {
            let key = meta.get("key").and_then(Value::as_str)?;
            if op != "==" {
                return None;
            }
            return match key {
                "iif" | "oif" | "iifname" | "oifname" => {
                    set_once(&mut self.iface, (key.into(), right.as_str()?.into()))
                }
                "l4proto" => set_once(&mut self.l4proto, Proto::from_nft(right.as_str()?)?),
                _ => None,
            };
        }
        if let Some(ct) = left.get("ct") {
            if ct.get("key").and_then(Value::as_str) != Some("state") || !matches!(op, "in" | "==")
            {
                return None;
            }
            let list = match right {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => strings(a)?,
                Value::Object(o) => strings(o.get("set")?.as_array()?)?,
                _ => return None,
            };
            let mut list = list;
            list.sort();
            return set_once(&mut self.ct_state, list);
        }
        let payload = left.get("payload")?;
        if op != "==" {
            return None;
        }
        let protocol = payload.get("protocol").and_then(Value::as_str)?;
        let field = payload.get("field").and_then(Value::as_str)?;
        match (protocol, field) {
            ("tcp" | "udp" | "th", "sport" | "dport") => {
                if protocol != "th" {
                    let p = Proto::from_nft(protocol)?;
                    if self.l4proto.is_some_and(|q| q != p) {
                        return None;
                    }
                    self.l4proto = Some(p);
                }
                let ports = merge_ports(ports(right)?);
                if field == "sport" {
                    set_once(&mut self.sport, ports)
                } else {
                    set_once(&mut self.dport, ports)
                }
            }
            ("ip" | "ip6", "saddr" | "daddr") => {
                let v6 = protocol == "ip6";
                let list = addrs(right)?;
                if list.iter().any(|(a, _)| a.is_ipv6() != v6) {
                    return None;
                }
                let list = merge_addrs(list);
                if field == "saddr" {
                    set_once(&mut self.saddr, list)
                } else {
                    set_once(&mut self.daddr, list)
                }
            }
            _ => None,
        }
    }

    fn is_empty_but(&self, iface: bool, ct: bool) -> bool {
        self.iface.is_some() == iface
            && self.ct_state.is_some() == ct
            && self.l4proto.is_none()
            && self.sport.is_none()
            && self.dport.is_none()
            && self.saddr.is_none()
            && self.daddr.is_none()
    }

    fn is_only_loopback(&self, hook: Hook) -> bool {
        self.is_empty_but(true, false)
            && self
                .iface
                .as_ref()
                .is_some_and(|(k, v)| k.as_str() == hook.loopback_key() && v.as_str() == "lo")
    }

    fn is_only_established(&self) -> bool {
        self.is_empty_but(false, true)
            && self.ct_state.as_deref() == Some(&["established".to_string(), "related".into()][..])
    }

    fn server(&self) -> Option<(IpAddr, u16)> {
        let one = |v: &Option<Addrs>| match v.as_deref() {
            Some([(a, b)]) if a == b => Some(*a),
            _ => None,
        };
        let addr = one(&self.daddr)?;
        let port = match self.dport.as_deref() {
            Some([(a, b)]) if a == b => *a,
            _ => return None,
        };
        let only = self.iface.is_none()
            && self.ct_state.is_none()
            && self.l4proto == Some(Proto::Tcp)
            && self.sport.is_none()
            && self.saddr.is_none();
        only.then_some((addr, port))
    }

    fn managed(self, comment: &str, verdict: Verdict) -> Option<Managed> {
        if self.iface.is_some() || self.ct_state.is_some() {
            return None;
        }
        Some(Managed {
            comment: comment.to_string(),
            protocol: self.l4proto,
            sport: self.sport,
            dport: self.dport,
            saddr: self.saddr,
            daddr: self.daddr,
            verdict,
        })
    }
}

/// Sets a field that a rule may hold once; `None` when it already is.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

fn strings(list: &[Value]) -> Option<Vec<String>> {
    list.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// `80`, `{"range": [80, 90]}`, `{"set": [80, {"range": …}]}`.
fn ports(right: &Value) -> Option<Ports> {
    let one = |v: &Value| -> Option<(u16, u16)> {
        if let Some(n) = v.as_u64() {
            let p = u16::try_from(n).ok()?;
            return Some((p, p));
        }
        let range = v.get("range")?.as_array()?;
        let lo = u16::try_from(range.first()?.as_u64()?).ok()?;
        let hi = u16::try_from(range.get(1)?.as_u64()?).ok()?;
        Some((lo, hi))
    };
    match right.get("set").and_then(Value::as_array) {
        Some(set) => set.iter().map(one).collect(),
        None => one(right).map(|p| vec![p]),
    }
}

/// `"10.0.0.1"`, `{"prefix": {"addr", "len"}}`, `{"range": [a, b]}`, or a
/// `{"set": […]}` of those.
fn addrs(right: &Value) -> Option<Addrs> {
    let one = |v: &Value| -> Option<(IpAddr, IpAddr)> {
        if let Some(s) = v.as_str() {
            let ip: IpAddr = s.parse().ok()?;
            return Some((ip, ip));
        }
        if let Some(p) = v.get("prefix") {
            let ip: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
            let len = u32::try_from(p.get("len")?.as_u64()?).ok()?;
            return prefix_interval(ip, len);
        }
        let range = v.get("range")?.as_array()?;
        let lo: IpAddr = range.first()?.as_str()?.parse().ok()?;
        let hi: IpAddr = range.get(1)?.as_str()?.parse().ok()?;
        (lo.is_ipv6() == hi.is_ipv6() && lo <= hi).then_some((lo, hi))
    };
    match right.get("set").and_then(Value::as_array) {
        Some(set) => set.iter().map(one).collect(),
        None => one(right).map(|a| vec![a]),
    }
}

/// What Rampart would not have written in `r`, in words; empty when the
/// table has its exact shape (the explicit rules aside).
pub fn alterations(r: &Ruleset, server: &[(IpAddr, u16)]) -> Vec<String> {
    let mut out = Vec::new();
    for hook in [Hook::Input, Hook::Output] {
        let name = hook.chain();
        let Some(chain) = r.chain(hook) else {
            out.push(format!("the {name} chain is missing"));
            continue;
        };
        match &chain.base {
            None => out.push(format!("the {name} chain is not hooked")),
            Some(b) => {
                if b.kind != "filter" || b.hook != name || b.prio != 0 {
                    out.push(format!(
                        "the {name} chain is type {} hook {} priority {}",
                        b.kind, b.hook, b.prio
                    ));
                }
                if !matches!(b.policy.as_str(), "accept" | "drop") {
                    out.push(format!("the {name} chain's policy is {}", b.policy));
                }
            }
        }
        if chain.rules.first() != Some(&Rule::Loopback)
            || chain.rules.get(1) != Some(&Rule::Established)
        {
            out.push(format!(
                "the {name} chain does not start with the loopback and established-traffic rules"
            ));
        }
        let servers: Vec<(IpAddr, u16)> = chain
            .rules
            .iter()
            .filter_map(|r| match r {
                Rule::Server { addr, port } => Some((*addr, *port)),
                _ => None,
            })
            .collect();
        let expected: &[(IpAddr, u16)] = match hook {
            Hook::Input => &[],
            Hook::Output => server,
        };
        let at_end = chain.rules.len() >= servers.len()
            && chain.rules[chain.rules.len() - servers.len()..]
                .iter()
                .all(|r| matches!(r, Rule::Server { .. }));
        if servers != expected || !at_end {
            out.push(format!(
                "the {name} chain's rules for reaching the Rampart server differ"
            ));
        }
    }
    for other in &r.other {
        out.push(format!("the table also holds {other}"));
    }
    out
}

/// The settings' values as the table says: `firewall_enabled` is true when
/// the table has Rampart's shape, else a description of what was changed;
/// the default actions are the chains' policies; `firewall_rules` every
/// explicit rule (see [`rules_view`]).
pub fn values(r: &Ruleset, server: &[(IpAddr, u16)]) -> Values {
    let mut v = Values::new();
    let altered = alterations(r, server);
    v.insert(
        FIREWALL_ENABLED.into(),
        if altered.is_empty() {
            Value::Bool(true)
        } else {
            Value::from(format!("altered: {}", altered.join("; ")))
        },
    );
    for (hook, setting) in [
        (Hook::Input, DEFAULT_INBOUND),
        (Hook::Output, DEFAULT_OUTBOUND),
    ] {
        if let Some(base) = r.chain(hook).and_then(|c| c.base.as_ref()) {
            let action = match base.policy.as_str() {
                "accept" => Verdict::Accept.action(),
                "drop" => Verdict::Drop.action(),
                other => other,
            };
            v.insert(setting.into(), Value::from(action));
        }
    }
    v.insert(FIREWALL_RULES.into(), rules_view(r));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::nftables::render::{self, Defaults};
    use serde_json::json;

    /// What nft 1.0.6 printed for a table like `render`'s (abridged to the
    /// parts that matter), captured in a network namespace.
    fn sample() -> Value {
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "rampart", "handle": 4}},
            {"chain": {"family": "inet", "table": "rampart", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
            {"chain": {"family": "inet", "table": "rampart", "name": "output", "handle": 2, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "input", "handle": 3, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "input", "handle": 4, "expr": [
                {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "input", "handle": 7, "comment": "web", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [{"range": [80, 82]}, 443, {"range": [8000, 8100]}]}}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"set": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.168.1.1"]}}},
                {"accept": null}]}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "output", "handle": 13, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "oif"}}, "right": "lo"}}, {"accept": null}]}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "output", "handle": 14, "expr": [
                {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "output", "handle": 15, "comment": "no-dns", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": "rampart", "chain": "output", "handle": 16, "comment": "rampart: server", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.213.9.1"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8443}},
                {"accept": null}]}}
        ]})
    }

    fn server() -> Vec<(IpAddr, u16)> {
        vec![("10.213.9.1".parse().unwrap(), 8443)]
    }

    fn desired() -> Values {
        [
            ("firewall_enabled".to_string(), json!(true)),
            ("default_inbound_action".to_string(), json!("block")),
            (
                "firewall_rules".to_string(),
                json!([
                    {"name": "no-dns", "description": "", "direction": "out", "action": "block", "protocol": "udp", "remote_ports": "53", "enabled": true},
                    {"name": "web", "description": "the web", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "80,81,82,443,8000-8100", "remote_addresses": ["10.0.0.0/8", "192.168.1.1"], "enabled": true},
                    {"name": "off", "description": "", "direction": "in", "action": "allow", "protocol": "any", "enabled": false}
                ]),
            ),
        ]
        .into()
    }

    const DEFAULTS: Defaults = Defaults {
        inbound: Verdict::Drop,
        outbound: Verdict::Accept,
    };

    #[test]
    fn the_read_back_equals_what_was_rendered() {
        let read = ruleset(&sample(), "rampart").unwrap();
        let rendered = render::ruleset(&desired(), DEFAULTS, &server())
            .ruleset
            .unwrap();
        assert_eq!(read, rendered);
        assert!(alterations(&read, &server()).is_empty());
    }

    #[test]
    fn values_read_back_match_the_desired_ones() {
        let read = ruleset(&sample(), "rampart").unwrap();
        let v = values(&read, &server());
        assert_eq!(v["firewall_enabled"], json!(true));
        assert_eq!(v["default_inbound_action"], json!("block"));
        assert_eq!(v["default_outbound_action"], json!("allow"));
        assert_eq!(
            v["firewall_rules"],
            render::expected_rules_view(&desired()["firewall_rules"])
        );
        assert_eq!(
            v["firewall_rules"][0],
            json!({"name": "web", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "80-82,443,8000-8100", "remote_addresses": ["10.0.0.0/8", "192.168.1.1"]})
        );
    }

    #[test]
    fn hand_made_changes_show() {
        let mut j = sample();
        let items = j["nftables"].as_array_mut().unwrap();
        // A rule added by hand, with a counter.
        items.push(json!({"rule": {"family": "inet", "table": "rampart", "chain": "input", "handle": 20, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9999}},
            {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}));
        // The policy flipped, and a set added.
        items[2]["chain"]["policy"] = json!("accept");
        items.push(json!({"set": {"family": "inet", "table": "rampart", "name": "s", "type": "ipv4_addr"}}));
        let read = ruleset(&j, "rampart").unwrap();
        let v = values(&read, &server());
        assert_eq!(v["default_inbound_action"], json!("allow"));
        let enabled = v["firewall_enabled"].as_str().unwrap();
        assert!(enabled.contains("set s"), "{enabled}");
        let rules = v["firewall_rules"].as_array().unwrap();
        assert!(
            rules.iter().any(|r| r.get("unrecognized").is_some()),
            "{rules:?}"
        );
        assert_ne!(
            v["firewall_rules"],
            render::expected_rules_view(&desired()["firewall_rules"])
        );
    }

    #[test]
    fn a_missing_scaffold_rule_is_an_alteration() {
        let mut j = sample();
        j["nftables"].as_array_mut().unwrap().remove(5);
        let read = ruleset(&j, "rampart").unwrap();
        let a = alterations(&read, &server());
        assert_eq!(
            a,
            ["the input chain does not start with the loopback and established-traffic rules"]
        );
        // Without the server rule the allowance differs.
        let a = alterations(&ruleset(&sample(), "rampart").unwrap(), &[]);
        assert_eq!(
            a,
            ["the output chain's rules for reaching the Rampart server differ"]
        );
    }

    #[test]
    fn other_tables_are_not_ours() {
        let j = json!({"nftables": [
            {"chain": {"family": "inet", "table": "other", "name": "input", "hook": "input", "type": "filter", "prio": 0, "policy": "drop"}},
            {"chain": {"family": "ip", "table": "rampart", "name": "input", "hook": "input", "type": "filter", "prio": 0, "policy": "drop"}}
        ]});
        assert_eq!(ruleset(&j, "rampart").unwrap(), Ruleset::default());
        assert!(ruleset(&json!({}), "rampart").is_err());
    }
}
