//! One page of the audit log, newest first, filtered by the database:
//! written once as SQL both backends run (they differ only in
//! placeholders). Paging is by entry id (`before`): an entry written
//! between two pages shifts nothing.

use crate::page::{like_escape, Builder, Dialect, Param};
use crate::Timestamp;

/// What to read of a tenant's audit log. Every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At most this many entries.
    pub limit: u32,
    /// Only entries older than this id (the last id of the page before).
    pub before: Option<i64>,
    /// Who made the change, exactly as recorded.
    pub actor: Option<String>,
    /// The action, exactly (`policy.update`), or every action of a kind
    /// when it ends in `.*` (`policy.*`).
    pub action: Option<String>,
    /// The kind of object changed (`policy`, `device`, …).
    pub object_kind: Option<String>,
    /// The object's name, exactly as recorded.
    pub object_name: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Only entries before this time.
    pub until: Option<Timestamp>,
}

impl AuditQuery {
    /// The newest `limit` entries, or those before an id.
    pub fn recent(limit: u32, before: Option<i64>) -> AuditQuery {
        AuditQuery {
            limit,
            before,
            ..AuditQuery::default()
        }
    }
}

/// The statement for one page of `tenant`'s audit log; `columns` is the
/// backend's audit column list.
pub fn audit_sql(
    dialect: Dialect,
    columns: &str,
    tenant: &str,
    q: &AuditQuery,
) -> (String, Vec<Param>) {
    let mut b = Builder::new(dialect, format!("SELECT {columns} FROM audit"));
    let t = b.param(Param::Text(tenant.to_string()));
    b.sql.push_str(&format!(" WHERE tenant_id = {t}"));
    if let Some(before) = q.before {
        let p = b.param(Param::Int(before));
        b.sql.push_str(&format!(" AND id < {p}"));
    }
    for (column, value) in [
        ("actor", &q.actor),
        ("object_kind", &q.object_kind),
        ("object_name", &q.object_name),
    ] {
        if let Some(v) = value {
            let p = b.param(Param::Text(v.clone()));
            b.sql.push_str(&format!(" AND {column} = {p}"));
        }
    }
    match q.action.as_deref().map(|a| (a, a.strip_suffix(".*"))) {
        None => {}
        Some((_, Some(kind))) => {
            let p = b.param(Param::Text(format!("{}.%", like_escape(kind))));
            b.sql.push_str(&format!(" AND action LIKE {p} ESCAPE '\\'"));
        }
        Some((exact, None)) => {
            let p = b.param(Param::Text(exact.to_string()));
            b.sql.push_str(&format!(" AND action = {p}"));
        }
    }
    if let Some(since) = q.since {
        let p = b.param(Param::Int(since));
        b.sql.push_str(&format!(" AND at >= {p}"));
    }
    if let Some(until) = q.until {
        let p = b.param(Param::Int(until));
        b.sql.push_str(&format!(" AND at < {p}"));
    }
    b.sql
        .push_str(&format!(" ORDER BY id DESC LIMIT {}", u64::from(q.limit)));
    (b.sql, b.params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conditions_with_the_dialects_placeholders() {
        let q = AuditQuery {
            limit: 5,
            before: Some(9),
            object_kind: Some("device".into()),
            action: Some("device_trust.*".into()),
            since: Some(100),
            ..AuditQuery::default()
        };
        let (pg, params) = audit_sql(Dialect::Postgres, "id", "t", &q);
        assert_eq!(
            pg,
            "SELECT id FROM audit WHERE tenant_id = $1 AND id < $2 AND object_kind = $3 \
             AND action LIKE $4 ESCAPE '\\' AND at >= $5 ORDER BY id DESC LIMIT 5"
        );
        assert_eq!(params[3], Param::Text("device\\_trust.%".into()));
        let (lite, _) = audit_sql(Dialect::Sqlite, "id", "t", &q);
        assert!(!lite.contains('$'), "{lite}");
        let (plain, params) = audit_sql(Dialect::Sqlite, "id", "t", &AuditQuery::recent(3, None));
        assert_eq!(
            plain,
            "SELECT id FROM audit WHERE tenant_id = ? ORDER BY id DESC LIMIT 3"
        );
        assert_eq!(params, [Param::Text("t".into())]);
    }
}
