//! The Rampart table as data: what `render` produces from the desired
//! settings and what `parse` reads back from `nft -j`, in one normalized
//! form, so that "the read-back matches" is a plain `==`.
//!
//! nft rewrites what it is given (`meta l4proto tcp th dport 80` reads back
//! as `tcp dport 80`, `{ 80, 81 }` as `80-81`, two adjacent prefixes as
//! one), so ports and addresses are kept as sorted, merged intervals, never
//! as the text that was written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

/// The comment of the rules that let the agent reach its server.
pub const SERVER_COMMENT: &str = "rampart: server";
/// nft refuses longer rule comments.
pub const MAX_COMMENT_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Input,
    Output,
}

impl Hook {
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Output => "output",
        }
    }

    /// The Rampart rule direction of the chain.
    pub fn direction(self) -> &'static str {
        match self {
            Hook::Input => "in",
            Hook::Output => "out",
        }
    }

    /// The interface match of the chain's loopback rule.
    pub fn loopback_key(self) -> &'static str {
        match self {
            Hook::Input => "iif",
            Hook::Output => "oif",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

impl Verdict {
    pub fn nft(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
        }
    }

    /// The catalog's word for it (`allow`/`block`).
    pub fn action(self) -> &'static str {
        match self {
            Verdict::Accept => "allow",
            Verdict::Drop => "block",
        }
    }

    pub fn from_action(action: &str) -> Option<Verdict> {
        match action {
            "allow" => Some(Verdict::Accept),
            "block" => Some(Verdict::Drop),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl Proto {
    /// The `meta l4proto` name nft uses.
    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "ipv6-icmp",
        }
    }

    /// The catalog's word for it.
    pub fn protocol(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
        }
    }

    pub fn from_protocol(p: &str) -> Option<Proto> {
        match p {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            "icmpv6" => Some(Proto::Icmpv6),
            _ => None,
        }
    }

    pub fn from_nft(p: &str) -> Option<Proto> {
        match p {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            "ipv6-icmp" | "icmpv6" => Some(Proto::Icmpv6),
            _ => None,
        }
    }
}

/// Port intervals, sorted and merged.
pub type Ports = Vec<(u16, u16)>;
/// Address intervals of one family, sorted and merged.
pub type Addrs = Vec<(IpAddr, IpAddr)>;

/// One rule made from a firewall rule of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// The rule's name (see `render::comment_for`).
    pub comment: String,
    pub protocol: Option<Proto>,
    pub sport: Option<Ports>,
    pub dport: Option<Ports>,
    pub saddr: Option<Addrs>,
    pub daddr: Option<Addrs>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `iif "lo" accept` / `oif "lo" accept`.
    Loopback,
    /// `ct state established,related accept`.
    Established,
    /// `ip daddr <server> tcp dport <port> accept`: the agent's way out.
    Server {
        addr: IpAddr,
        port: u16,
    },
    Managed(Managed),
    /// Something Rampart does not write (a rule added by hand): its JSON.
    Unrecognized(String),
}

/// A base chain's declaration, as nft reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub kind: String,
    pub hook: String,
    pub prio: i64,
    /// `accept` or `drop` (anything else read back is kept as read).
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `None` for a regular (non-base) chain.
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub input: Option<Chain>,
    pub output: Option<Chain>,
    /// Anything else found in the table (other chains, sets, maps…), named.
    pub other: Vec<String>,
}

impl Ruleset {
    pub fn chain(&self, hook: Hook) -> Option<&Chain> {
        match hook {
            Hook::Input => self.input.as_ref(),
            Hook::Output => self.output.as_ref(),
        }
    }
}

// ---- intervals ----

/// An address as (is IPv6, number).
fn num(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

fn ip_of(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

/// Sorts and merges overlapping or adjacent intervals.
pub fn merge_ports(mut v: Ports) -> Ports {
    v.sort_unstable();
    let mut out: Ports = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Sorts and merges overlapping or adjacent address intervals (of one
/// family; the families are never mixed by the callers).
pub fn merge_addrs(v: Addrs) -> Addrs {
    let mut nums: Vec<(bool, u128, u128)> = v
        .into_iter()
        .map(|(a, b)| {
            let (v6, lo) = num(a);
            (v6, lo, num(b).1)
        })
        .collect();
    nums.sort_unstable();
    let mut out: Vec<(bool, u128, u128)> = Vec::with_capacity(nums.len());
    for (v6, lo, hi) in nums {
        match out.last_mut() {
            Some(last) if last.0 == v6 && lo <= last.2.saturating_add(1) => last.2 = last.2.max(hi),
            _ => out.push((v6, lo, hi)),
        }
    }
    out.into_iter()
        .map(|(v6, lo, hi)| (ip_of(v6, lo), ip_of(v6, hi)))
        .collect()
}

/// `10.0.0.0/8` or `10.1.2.3` → its first and last address.
pub fn cidr_interval(text: &str) -> Option<(IpAddr, IpAddr)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip: IpAddr = addr.trim().parse().ok()?;
    let bits: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        Some(l) => l.trim().parse().ok().filter(|l| *l <= bits)?,
        None => bits,
    };
    prefix_interval(ip, len)
}

/// The interval of `ip/len`.
pub fn prefix_interval(ip: IpAddr, len: u32) -> Option<(IpAddr, IpAddr)> {
    let (v6, n) = num(ip);
    let bits: u32 = if v6 { 128 } else { 32 };
    if len > bits {
        return None;
    }
    let host = host_mask(bits - len);
    Some((ip_of(v6, n & !host), ip_of(v6, n | host)))
}

/// A mask of the low `host_bits` bits.
fn host_mask(host_bits: u32) -> u128 {
    if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// The fewest CIDR blocks covering `lo..=hi`, canonical as in the catalog
/// (a single address without `/len`).
pub fn cidrs(lo: IpAddr, hi: IpAddr) -> Vec<String> {
    let (v6, mut a) = num(lo);
    let b = num(hi).1;
    let bits: u32 = if v6 { 128 } else { 32 };
    let mut out = Vec::new();
    while a <= b {
        // The largest aligned block starting at `a` that stays within `b`.
        let mut host_bits = bits;
        loop {
            let mask = host_mask(host_bits);
            if a & mask == 0 && (a | mask) <= b {
                break;
            }
            host_bits -= 1;
        }
        let len = bits - host_bits;
        let ip = ip_of(v6, a);
        out.push(if len == bits {
            ip.to_string()
        } else {
            format!("{ip}/{len}")
        });
        let last = a | host_mask(host_bits);
        match last.checked_add(1) {
            Some(next) => a = next,
            None => break,
        }
    }
    out
}

/// Ports the way the catalog writes them: `80,443,8000-8100`.
pub fn ports_text(ports: &Ports) -> String {
    ports
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

fn addrs_list(addrs: &Addrs) -> Value {
    Value::from(
        addrs
            .iter()
            .flat_map(|(lo, hi)| cidrs(*lo, *hi))
            .collect::<Vec<_>>(),
    )
}

/// A rule of the table in the catalog's shape, as `observe` reports it
/// under `firewall_rules`: `name` is the rule's comment; `description` and
/// `enabled` are not in the table (a disabled rule is simply absent).
pub fn rule_view(hook: Hook, rule: &Rule) -> Option<Value> {
    let m = match rule {
        Rule::Managed(m) => m,
        Rule::Unrecognized(text) => {
            return Some(json!({"direction": hook.direction(), "unrecognized": text}))
        }
        Rule::Loopback | Rule::Established | Rule::Server { .. } => return None,
    };
    let (local_ports, remote_ports, local_addrs, remote_addrs) = match hook {
        Hook::Input => (&m.dport, &m.sport, &m.daddr, &m.saddr),
        Hook::Output => (&m.sport, &m.dport, &m.saddr, &m.daddr),
    };
    let mut out = Map::new();
    out.insert("name".into(), Value::from(m.comment.clone()));
    out.insert("direction".into(), Value::from(hook.direction()));
    out.insert("action".into(), Value::from(m.verdict.action()));
    out.insert(
        "protocol".into(),
        Value::from(m.protocol.map_or("any", Proto::protocol)),
    );
    if let Some(p) = local_ports {
        out.insert("local_ports".into(), Value::from(ports_text(p)));
    }
    if let Some(p) = remote_ports {
        out.insert("remote_ports".into(), Value::from(ports_text(p)));
    }
    if let Some(a) = local_addrs {
        out.insert("local_addresses".into(), addrs_list(a));
    }
    if let Some(a) = remote_addrs {
        out.insert("remote_addresses".into(), addrs_list(a));
    }
    Some(Value::Object(out))
}

/// Every rule of both chains that is not Rampart's own scaffolding, in
/// table order (input first): the read-back of `firewall_rules`.
pub fn rules_view(ruleset: &Ruleset) -> Value {
    let mut out = Vec::new();
    for hook in [Hook::Input, Hook::Output] {
        if let Some(chain) = ruleset.chain(hook) {
            out.extend(chain.rules.iter().filter_map(|r| rule_view(hook, r)));
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_merge_like_nft() {
        assert_eq!(
            merge_ports(vec![(8000, 8100), (80, 80), (81, 82), (85, 90), (88, 88)]),
            vec![(80, 82), (85, 90), (8000, 8100)]
        );
        assert_eq!(merge_ports(vec![(0, 65535), (80, 80)]), vec![(0, 65535)]);
        assert_eq!(ports_text(&vec![(80, 82), (443, 443)]), "80-82,443");
    }

    #[test]
    fn addresses_merge_and_come_back_as_cidrs() {
        let a = cidr_interval("10.0.0.0/9").unwrap();
        let b = cidr_interval("10.128.0.0/9").unwrap();
        let merged = merge_addrs(vec![b, a]);
        assert_eq!(merged, vec![(ip("10.0.0.0"), ip("10.255.255.255"))]);
        assert_eq!(cidrs(merged[0].0, merged[0].1), ["10.0.0.0/8"]);
        assert_eq!(cidrs(ip("10.0.0.1"), ip("10.0.0.1")), ["10.0.0.1"]);
        assert_eq!(
            cidrs(ip("10.0.0.1"), ip("10.0.0.6")),
            ["10.0.0.1", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6"]
        );
        assert_eq!(cidrs(ip("0.0.0.0"), ip("255.255.255.255")), ["0.0.0.0/0"]);
        let all6 = cidr_interval("::/0").unwrap();
        assert_eq!(cidrs(all6.0, all6.1), ["::/0"]);
        let v6 = cidr_interval("fd00::/8").unwrap();
        assert_eq!(cidrs(v6.0, v6.1), ["fd00::/8"]);
        assert_eq!(cidr_interval("10.0.0.0/33"), None);
        assert_eq!(cidr_interval("nope"), None);
    }

    #[test]
    fn families_never_merge() {
        let v4 = cidr_interval("0.0.0.0/0").unwrap();
        let v6 = cidr_interval("::/96").unwrap();
        assert_eq!(merge_addrs(vec![v4, v6]).len(), 2);
    }
}
