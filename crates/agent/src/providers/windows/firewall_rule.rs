//! Pure: a catalog firewall rule → the REG_SZ value Group Policy keeps under
//! `HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall\FirewallRules`, in the
//! grammar of Microsoft's open specification [MS-GPFAS] §2.2.2 ("Firewall
//! Rule Message"): `v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=6|
//! Profile=Public|LPort=80|RA4=LocalSubnet|App=c:\\x.exe|Name=…|`, each
//! field `Key=Value|`, repeated for each port, address and profile.
//!
//! The value name is the rule's id: `Rampart-<name>` — Rampart's rules are
//! keyed by name (the catalog merges them per name), and the prefix keeps
//! them apart from rules a person or another tool wrote, which Rampart never
//! touches. The grammar has no escape: a field holding `|` is refused with
//! a clear error rather than written as a different rule.

use serde_json::Value;

/// The rule-format version written (Windows 7 and later read it).
pub const VERSION: &str = "v2.10";
/// Prefix of every value name Rampart writes under `FirewallRules`.
pub const ID_PREFIX: &str = "Rampart-";

/// `(value name, data)` of one rule.
pub fn render(rule: &Value) -> Result<(String, String), String> {
    let text = |k: &str| rule.get(k).and_then(Value::as_str).unwrap_or_default();
    let list = |k: &str| -> Vec<&str> {
        rule.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let name = text("name");
    if name.trim().is_empty() {
        return Err("a firewall rule has no name".into());
    }
    let mut fields: Vec<(&str, String)> = Vec::new();
    let action = match text("action") {
        "allow" => "Allow",
        "block" => "Block",
        other => {
            return Err(format!(
                "rule {name:?}: action {other:?} is not allow or block"
            ))
        }
    };
    fields.push(("Action", action.into()));
    let active = rule.get("enabled").and_then(Value::as_bool).unwrap_or(true);
    fields.push(("Active", if active { "TRUE" } else { "FALSE" }.into()));
    let dir = match text("direction") {
        "in" => "In",
        "out" => "Out",
        other => {
            return Err(format!(
                "rule {name:?}: direction {other:?} is not in or out"
            ))
        }
    };
    fields.push(("Dir", dir.into()));
    match rule.get("protocol") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) => match p.as_str() {
            "any" => {}
            "icmp" => fields.push(("Protocol", "1".into())),
            "tcp" => fields.push(("Protocol", "6".into())),
            "udp" => fields.push(("Protocol", "17".into())),
            "icmpv6" => fields.push(("Protocol", "58".into())),
            other => match other.parse::<u8>() {
                Ok(n) => fields.push(("Protocol", n.to_string())),
                Err(_) => return Err(format!("rule {name:?}: protocol {other:?} is not known")),
            },
        },
        Some(Value::Number(n)) => fields.push(("Protocol", n.to_string())),
        Some(other) => return Err(format!("rule {name:?}: protocol {other} is not known")),
    }
    for profile in list("profiles") {
        match profile {
            "domain" => fields.push(("Profile", "Domain".into())),
            "private" => fields.push(("Profile", "Private".into())),
            "public" => fields.push(("Profile", "Public".into())),
            // No Profile field: every profile.
            _ => {}
        }
    }
    for (key, field) in [("local_ports", "LPort"), ("remote_ports", "RPort")] {
        for port in text(key)
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            fields.push((field, port.to_string()));
        }
    }
    for (key, v4, v6) in [
        ("local_addresses", "LA4", "LA6"),
        ("remote_addresses", "RA4", "RA6"),
    ] {
        for address in list(key) {
            match address_family(address) {
                Family::Keyword => {
                    fields.push((v4, address.to_string()));
                    fields.push((v6, address.to_string()));
                }
                Family::V4 => fields.push((v4, v4_subnet(address)?)),
                Family::V6 => fields.push((v6, address.to_string())),
            }
        }
    }
    for code in list("icmp_types_and_codes") {
        let field = if text("protocol") == "icmpv6" {
            "ICMP6"
        } else {
            "ICMP4"
        };
        fields.push((field, code.to_string()));
    }
    for kind in list("interface_types") {
        match kind {
            "lan" => fields.push(("IFType", "Lan".into())),
            "wireless" => fields.push(("IFType", "Wireless".into())),
            "remote_access" => fields.push(("IFType", "RemoteAccess".into())),
            _ => {}
        }
    }
    if !text("app_path").is_empty() {
        fields.push(("App", text("app_path").to_string()));
    }
    if !text("service_name").is_empty() {
        fields.push(("Svc", text("service_name").to_string()));
    }
    if !text("package_family_name").is_empty() {
        return Err(format!(
            "rule {name:?}: package_family_name is not carried by the {VERSION} rule format this version writes"
        ));
    }
    if rule.get("edge_traversal").and_then(Value::as_bool) == Some(true) {
        fields.push(("Edge", "TRUE".into()));
    }
    fields.push(("Name", name.to_string()));
    if !text("description").is_empty() {
        fields.push(("Desc", text("description").to_string()));
    }
    let mut data = format!("{VERSION}|");
    for (key, value) in &fields {
        if value.contains('|') {
            return Err(format!(
                "rule {name:?}: {key} {value:?} contains '|', which the Windows rule format cannot carry"
            ));
        }
        data.push_str(key);
        data.push('=');
        data.push_str(value);
        data.push('|');
    }
    Ok((format!("{ID_PREFIX}{name}"), data))
}

enum Family {
    Keyword,
    V4,
    V6,
}

fn address_family(address: &str) -> Family {
    if address.contains(':') {
        Family::V6
    } else if address.starts_with(|c: char| c.is_ascii_digit()) {
        Family::V4
    } else {
        Family::Keyword
    }
}

/// `10.0.0.0/8` → `10.0.0.0/255.0.0.0`, as the [MS-GPFAS] example writes
/// IPv4 subnets; single addresses and ranges stay as they are.
fn v4_subnet(address: &str) -> Result<String, String> {
    let Some((ip, prefix)) = address.split_once('/') else {
        return Ok(address.to_string());
    };
    let bits: u32 = prefix
        .parse()
        .ok()
        .filter(|b| *b <= 32)
        .ok_or_else(|| format!("{address:?} has no valid prefix length"))?;
    if bits == 32 {
        return Ok(ip.to_string());
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    Ok(format!("{ip}/{}", std::net::Ipv4Addr::from(mask)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_specification_example_shape() {
        let rule = json!({
            "name": "Firewall Rule Test", "description": "", "direction": "in",
            "action": "allow", "protocol": "tcp", "enabled": true,
            "local_ports": "80,8000-8100", "profiles": ["public"],
            "local_addresses": ["192.168.1.0/24"], "remote_addresses": ["LocalSubnet", "2001:db8::/32"],
            "app_path": r"c:\path\foo.exe"
        });
        let (id, data) = render(&rule).unwrap();
        assert_eq!(id, "Rampart-Firewall Rule Test");
        assert_eq!(
            data,
            r"v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=6|Profile=Public|LPort=80|LPort=8000-8100|LA4=192.168.1.0/255.255.255.0|RA4=LocalSubnet|RA6=LocalSubnet|RA6=2001:db8::/32|App=c:\path\foo.exe|Name=Firewall Rule Test|"
        );
    }

    #[test]
    fn outbound_block_disabled_any_protocol_all_profiles() {
        let rule = json!({
            "name": "no telnet", "direction": "out", "action": "block",
            "protocol": "any", "enabled": false, "profiles": ["all"],
            "interface_types": ["lan", "wireless"], "description": "old protocol",
            "service_name": "svc"
        });
        let (_, data) = render(&rule).unwrap();
        assert_eq!(
            data,
            "v2.10|Action=Block|Active=FALSE|Dir=Out|IFType=Lan|IFType=Wireless|Svc=svc|Name=no telnet|Desc=old protocol|"
        );
        let icmp = json!({"name": "ping", "direction": "in", "action": "allow",
            "protocol": "icmp", "icmp_types_and_codes": ["8:*"], "edge_traversal": true});
        assert_eq!(
            render(&icmp).unwrap().1,
            "v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=1|ICMP4=8:*|Edge=TRUE|Name=ping|"
        );
    }

    #[test]
    fn what_the_format_cannot_carry_is_refused() {
        let piped = json!({"name": "a|b", "direction": "in", "action": "allow"});
        assert!(render(&piped).unwrap_err().contains("'|'"));
        let nameless = json!({"name": " ", "direction": "in", "action": "allow"});
        assert!(render(&nameless).is_err());
        let bad = json!({"name": "x", "direction": "sideways", "action": "allow"});
        assert!(render(&bad).unwrap_err().contains("direction"));
        let pfn =
            json!({"name": "x", "direction": "in", "action": "allow", "package_family_name": "p"});
        assert!(render(&pfn).unwrap_err().contains("package_family_name"));
        assert_eq!(v4_subnet("10.0.0.1/32").unwrap(), "10.0.0.1");
        assert!(v4_subnet("10.0.0.0/40").is_err());
    }
}
