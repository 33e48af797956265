//! When a component's read-back means the value Rampart set, for components
//! that store lists in their own order and spelling (clamd.conf lines,
//! `mdatp_managed.json` exclusion entries).

use std::collections::BTreeSet;

use serde_json::Value;

/// Whether `observed` means `desired`: lists compare as sets, a folder's
/// trailing slash and an extension's leading dot aside, and an unset list is
/// an empty one; other values compare exactly.
pub fn same(desired: &Value, observed: Option<&Value>) -> bool {
    match (desired, observed) {
        (Value::Array(d), None) => d.is_empty(),
        (Value::Array(d), Some(Value::Array(o))) => normalized(d) == normalized(o),
        (d, o) => o == Some(d),
    }
}

fn normalized(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| {
            let s = i.as_str().map_or_else(|| i.to_string(), str::to_string);
            let s = s.strip_prefix('.').unwrap_or(&s);
            let trimmed = s.trim_end_matches('/');
            // "/" stays "/".
            let kept = if trimmed.is_empty() { s } else { trimmed };
            kept.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_compare_as_sets() {
        assert!(same(&json!(["/a", "/b/"]), Some(&json!(["/b/", "/a/"]))));
        assert!(same(&json!([".log"]), Some(&json!(["log"]))));
        assert!(same(&json!([]), None));
        assert!(!same(&json!(["/a"]), None));
        assert!(!same(&json!(["/a"]), Some(&json!(["/a", "/c"]))));
        assert!(same(&json!(["/"]), Some(&json!(["/"]))));
    }

    #[test]
    fn other_values_compare_exactly() {
        assert!(same(&json!(true), Some(&json!(true))));
        assert!(!same(&json!(true), Some(&Value::Null)));
        assert!(!same(&json!(true), None));
        assert!(!same(&json!("block"), Some(&json!("audit"))));
    }
}
