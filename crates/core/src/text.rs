//! Text for people: tables of aligned columns and setting values as the
//! CLI and the agent's `status` print them, so both read the same.

use serde_json::Value;

/// Renders rows as left-aligned columns separated by two spaces. A cell may
/// hold several lines (a list, one item a line); the row grows to fit. The
/// last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                let longest = cell.lines().map(|l| l.chars().count()).max().unwrap_or(0);
                *w = (*w).max(longest);
            }
        }
    }
    let line = |cells: &[&str]| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header);
    out.push('\n');
    for row in rows {
        let split: Vec<Vec<&str>> = row.iter().map(|c| c.lines().collect()).collect();
        let height = split.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for i in 0..height {
            let cells: Vec<&str> = split
                .iter()
                .map(|c| c.get(i).copied().unwrap_or(""))
                .collect();
            out.push_str(&line(&cells));
            out.push('\n');
        }
    }
    out
}

/// A value for a table cell: scalars as they are, list items and map entries
/// one a line, firewall rules by name and effect.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(item).collect::<Vec<_>>().join("\n")
        }
        // One firewall rule (a row of its own in a report).
        Value::Object(map) if map.contains_key("name") && map.contains_key("action") => item(v),
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => value(other),
    }
}

/// A value in one line: scalars as they are, lists joined with commas,
/// firewall rules by name and effect, maps as key=value.
pub fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(items) => items.iter().map(item).collect::<Vec<_>>().join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn item(v: &Value) -> String {
    match (v.get("name").and_then(Value::as_str), v.as_object()) {
        (Some(name), Some(_)) => {
            let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
            let mut s = format!(
                "{name} ({} {} {}",
                get("direction"),
                get("action"),
                get("protocol")
            );
            if let Some(p) = v.get("local_ports").and_then(Value::as_str) {
                s.push_str(&format!(" port {p}"));
            }
            s.push(')');
            s
        }
        _ => value(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_one_item_a_line_in_a_cell_and_comma_joined_in_a_line() {
        let v = json!(["/tmp", "/var/cache"]);
        assert_eq!(cell(&v), "/tmp\n/var/cache");
        assert_eq!(value(&v), "/tmp, /var/cache");
        assert_eq!(cell(&json!(null)), "-");
        let rule = json!([{"name": "ssh", "direction": "in", "action": "allow", "protocol": "tcp", "local_ports": "22"}]);
        assert_eq!(cell(&rule), "ssh (in allow tcp port 22)");
        assert_eq!(cell(&rule[0]), "ssh (in allow tcp port 22)");
    }

    #[test]
    fn a_multi_line_cell_grows_its_row() {
        let out = table(
            &["SETTING", "VALUE"],
            &[vec!["exclusions".into(), "/tmp\n/var".into()]],
        );
        assert_eq!(
            out,
            "SETTING     VALUE\nexclusions  /tmp\n            /var\n"
        );
    }
}
