//! Findings about input: each names where the problem is and why.

use std::fmt;

/// A problem with one field of one object. `path` uses dots for fields and
/// brackets for list indexes and map keys: `settings.firewall_rules[2].remote_ports`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error under a parent path (`settings` + `[2].name`).
    pub fn under(mut self, parent: &str) -> FieldError {
        self.path = join_path(parent, &self.path);
        self
    }
}

/// Joins a parent path and a child path: `a` + `b` → `a.b`, `a` + `[0]` → `a[0]`.
pub fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        parent.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
