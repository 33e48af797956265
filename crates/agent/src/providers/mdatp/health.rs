//! Pure: what `mdatp health` says, and which settings it shows the
//! engine's own value of.
//!
//! `mdatp health` names its fields in snake case (`healthy`,
//! `real_time_protection_enabled`, `cloud_enabled`, …). Its JSON output is
//! read tolerantly: camelCase keys, values wrapped as `{"value": …}`, and
//! text output (`field : value`, `true [managed]`) are all accepted.

use std::collections::BTreeMap;

use serde_json::Value;

use super::managed::Spelling;

/// What asking the engine gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// `health_command` is empty: the file is the only read-back.
    NotAsked,
    /// The command does not exist: Defender for Endpoint is not installed.
    NotInstalled,
    /// The command ran and failed: its words.
    Failed(String),
    /// Its fields.
    Report(BTreeMap<String, Value>),
}

/// Settings whose value the engine reports, the field, and its spelling.
pub const ENGINE_FIELDS: [(&str, &str, Spelling); 5] = [
    (
        "real_time_protection",
        "real_time_protection_enabled",
        Spelling::Same,
    ),
    ("cloud_protection", "cloud_enabled", Spelling::Same),
    (
        "sample_sharing",
        "cloud_automatic_sample_submission_consent",
        Spelling::Same,
    ),
    (
        "behavior_monitoring",
        "behavior_monitoring",
        Spelling::Bool("enabled", "disabled"),
    ),
    (
        "automatic_definition_updates",
        "automatic_definition_update_enabled",
        Spelling::Same,
    ),
];

/// Whether the engine reports `setting` itself.
pub fn engine_field(setting: &str) -> Option<&'static str> {
    ENGINE_FIELDS
        .iter()
        .find(|(s, _, _)| *s == setting)
        .map(|(_, f, _)| *f)
}

/// `mdatp health`'s output as field → value.
pub fn parse(output: &str) -> BTreeMap<String, Value> {
    let mut fields = BTreeMap::new();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(output) {
        for (k, v) in map {
            let v = match v {
                Value::Object(mut o) if o.contains_key("value") => {
                    o.remove("value").unwrap_or(Value::Null)
                }
                other => other,
            };
            fields.insert(snake(&k), normalize(v));
        }
        return fields;
    }
    for line in output.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().trim_matches('"');
            fields.insert(snake(k.trim()), normalize(Value::String(v.to_string())));
        }
    }
    fields
}

fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `"true [managed]"` → `true`; `"safe"` stays `"safe"`.
fn normalize(v: Value) -> Value {
    match v {
        Value::String(s) => {
            let s = match s.find(" [") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            match s.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(s),
            }
        }
        other => other,
    }
}

/// The engine's value of `setting`, as a catalog value, when it reports
/// one.
pub fn engine_value(report: &BTreeMap<String, Value>, setting: &str) -> Option<Value> {
    let (_, field, spelling) = ENGINE_FIELDS.iter().find(|(s, _, _)| *s == setting)?;
    report.get(*field).map(|v| spelling.from_file(v))
}

/// Why the engine is unhealthy, when it says it is.
pub fn unhealthy(report: &BTreeMap<String, Value>) -> Option<String> {
    if report.get("healthy") != Some(&Value::Bool(false)) {
        return None;
    }
    let issues = match report.get("health_issues") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "no issue given".into(),
    };
    Some(issues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_json_in_several_shapes() {
        let r = parse(
            r#"{"healthy": true, "realTimeProtectionEnabled": {"value": false, "scope": "managed"},
                "cloud_automatic_sample_submission_consent": "safe [managed]", "behavior_monitoring": "enabled"}"#,
        );
        assert_eq!(r["healthy"], json!(true));
        assert_eq!(engine_value(&r, "real_time_protection"), Some(json!(false)));
        assert_eq!(engine_value(&r, "sample_sharing"), Some(json!("safe")));
        assert_eq!(engine_value(&r, "behavior_monitoring"), Some(json!(true)));
        assert_eq!(engine_value(&r, "cloud_protection"), None);
        assert_eq!(engine_value(&r, "scan_archives"), None);
        assert_eq!(unhealthy(&r), None);
    }

    #[test]
    fn reads_text_output() {
        let r = parse(
            "healthy                                     : false\nhealth_issues                               : [\"no active event provider\"]\nreal_time_protection_enabled                : true [managed]\n",
        );
        assert_eq!(engine_value(&r, "real_time_protection"), Some(json!(true)));
        assert!(unhealthy(&r).unwrap().contains("no active event provider"));
    }
}
