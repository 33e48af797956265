//! One page of devices: filters, sorting and a keyset cursor, written once
//! as SQL both backends run (they differ only in placeholders, how a JSON
//! column reads as text, and the collation that sorts byte by byte).
//!
//! Keyset paging (`WHERE (key, name) > (cursor)`) costs the same on the
//! thousandth page as on the first, and a device added or removed between
//! two pages shifts nothing.

use crate::{DeviceRecord, Result};

/// What a device list can be sorted by; ties go by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSort {
    #[default]
    Name,
    Os,
    Type,
    ManagedBy,
    Enrollment,
    LastCheckIn,
}

impl DeviceSort {
    pub const ALL: &'static [(&'static str, DeviceSort)] = &[
        ("name", DeviceSort::Name),
        ("os", DeviceSort::Os),
        ("type", DeviceSort::Type),
        ("managed_by", DeviceSort::ManagedBy),
        ("enrollment", DeviceSort::Enrollment),
        ("last_check_in", DeviceSort::LastCheckIn),
    ];

    pub fn parse(s: &str) -> Option<DeviceSort> {
        DeviceSort::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
    }

    pub fn as_str(self) -> &'static str {
        DeviceSort::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("name", |(name, _)| name)
    }

    /// The sort key of a device, as the cursor carries it.
    pub fn key_of(self, d: &DeviceRecord) -> SortKey {
        match self {
            DeviceSort::Name => SortKey::Text(d.name.clone()),
            DeviceSort::Os => SortKey::Text(d.os.clone()),
            DeviceSort::Type => SortKey::Text(d.device_type.clone()),
            DeviceSort::ManagedBy => SortKey::Text(d.managed_by.clone()),
            DeviceSort::Enrollment => SortKey::Text(d.enrollment_status.clone()),
            DeviceSort::LastCheckIn => SortKey::Int(d.last_check_in.unwrap_or(NEVER)),
        }
    }
}

/// Where never-seen devices sort among check-in times: before any.
const NEVER: i64 = -1;

/// A sort key's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Text(String),
    Int(i64),
}

/// The last device of the page before: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCursor {
    pub key: SortKey,
    pub name: String,
}

/// A page request. Text filters compare ignoring ASCII case; `tag` and
/// `label` match one element of the list; `search` is a substring of the
/// name, OS, OS version, type, managed-by, enrollment status, tags or
/// labels (every word must match somewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    pub os: Option<String>,
    pub managed_by: Option<String>,
    pub enrollment: Option<String>,
    pub tag: Option<String>,
    pub label: Option<String>,
    pub search: Option<String>,
    pub sort: DeviceSort,
    pub descending: bool,
    pub after: Option<DeviceCursor>,
    /// At most this many devices.
    pub limit: u32,
}

/// One page, and how many devices match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePage {
    pub devices: Vec<DeviceRecord>,
    /// Counted for a first page (no cursor) only: counting costs a pass
    /// over the tenant's devices, and the pages after it share the count.
    pub total: Option<u64>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<DeviceCursor>,
}

/// A bound value, in order of its placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The statements of one page: the rows (one more than the limit, to know
/// whether another page follows) and the count, each with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PageSql {
    pub select: String,
    pub select_params: Vec<Param>,
    pub count: String,
    pub count_params: Vec<Param>,
}

/// `%`, `_` and `\` stand for themselves in a LIKE pattern.
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A statement being written and its parameters, in order.
pub(crate) struct Builder {
    pub(crate) dialect: Dialect,
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
}

impl Builder {
    pub(crate) fn new(dialect: Dialect, sql: String) -> Builder {
        Builder {
            dialect,
            sql,
            params: Vec::new(),
        }
    }

    /// The placeholder of a new parameter.
    pub(crate) fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        match self.dialect {
            Dialect::Sqlite => "?".to_string(),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }
}

/// A JSON list column as lowercase text.
fn json_text(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("lower({column})"),
        Dialect::Postgres => format!("lower({column}::text)"),
    }
}

/// The SQL expression a sort orders by (text byte by byte in both).
fn sort_expr(dialect: Dialect, sort: DeviceSort) -> String {
    let column = match sort {
        DeviceSort::Name => "name",
        DeviceSort::Os => "os",
        DeviceSort::Type => "device_type",
        DeviceSort::ManagedBy => "managed_by",
        DeviceSort::Enrollment => "enrollment_status",
        DeviceSort::LastCheckIn => return format!("COALESCE(last_check_in, {NEVER})"),
    };
    match dialect {
        Dialect::Sqlite => column.to_string(),
        Dialect::Postgres => format!("{column} COLLATE \"C\""),
    }
}

fn filters(b: &mut Builder, tenant: &str, q: &DeviceQuery) {
    let t = b.param(Param::Text(tenant.to_string()));
    b.sql.push_str(&format!(" WHERE tenant_id = {t}"));
    for (column, value) in [
        ("os", &q.os),
        ("managed_by", &q.managed_by),
        ("enrollment_status", &q.enrollment),
    ] {
        if let Some(v) = value {
            let p = b.param(Param::Text(v.to_ascii_lowercase()));
            b.sql.push_str(&format!(" AND lower({column}) = {p}"));
        }
    }
    for (column, value) in [("tags", &q.tag), ("labels", &q.label)] {
        if let Some(v) = value {
            // One element of the JSON list: its quoted form.
            let quoted = serde_json::Value::from(v.to_ascii_lowercase()).to_string();
            let p = b.param(Param::Text(format!("%{}%", like_escape(&quoted))));
            let text = json_text(b.dialect, column);
            b.sql.push_str(&format!(" AND {text} LIKE {p} ESCAPE '\\'"));
        }
    }
    if let Some(search) = &q.search {
        for word in search.split_whitespace() {
            let pattern = format!("%{}%", like_escape(&word.to_ascii_lowercase()));
            let columns = [
                "lower(name)".to_string(),
                "lower(os)".to_string(),
                "lower(os_version)".to_string(),
                "lower(device_type)".to_string(),
                "lower(managed_by)".to_string(),
                "lower(enrollment_status)".to_string(),
                json_text(b.dialect, "tags"),
                json_text(b.dialect, "labels"),
            ];
            let any: Vec<String> = columns
                .iter()
                .map(|c| {
                    let p = b.param(Param::Text(pattern.clone()));
                    format!("{c} LIKE {p} ESCAPE '\\'")
                })
                .collect();
            b.sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
    }
}

/// The statements for one page of `tenant`'s devices; `columns` is the
/// backend's device column list.
pub fn device_page_sql(dialect: Dialect, columns: &str, tenant: &str, q: &DeviceQuery) -> PageSql {
    let mut count = Builder {
        dialect,
        sql: "SELECT count(*) FROM devices".to_string(),
        params: Vec::new(),
    };
    filters(&mut count, tenant, q);
    let mut page = Builder {
        dialect,
        sql: format!("SELECT {columns} FROM devices"),
        params: Vec::new(),
    };
    filters(&mut page, tenant, q);
    let key = sort_expr(dialect, q.sort);
    let name = sort_expr(dialect, DeviceSort::Name);
    let (cmp, dir) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(after) = &q.after {
        let value = match &after.key {
            SortKey::Text(s) => Param::Text(s.clone()),
            SortKey::Int(i) => Param::Int(*i),
        };
        let k1 = page.param(value.clone());
        let k2 = page.param(value);
        let n = page.param(Param::Text(after.name.clone()));
        page.sql.push_str(&format!(
            " AND ({key} {cmp} {k1} OR ({key} = {k2} AND {name} {cmp} {n}))"
        ));
    }
    page.sql.push_str(&format!(
        " ORDER BY {key} {dir}, {name} {dir} LIMIT {}",
        u64::from(q.limit) + 1
    ));
    PageSql {
        select: page.sql,
        select_params: page.params,
        count: count.sql,
        count_params: count.params,
    }
}

/// Cuts the rows of a page query (one more than the limit) into the page
/// and the cursor of the next.
pub fn finish_page(
    mut rows: Vec<DeviceRecord>,
    q: &DeviceQuery,
    total: Option<u64>,
) -> Result<DevicePage> {
    let more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    let next = if more {
        rows.last().map(|d| DeviceCursor {
            key: q.sort.key_of(d),
            name: d.name.clone(),
        })
    } else {
        None
    };
    Ok(DevicePage {
        devices: rows,
        total,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect_and_patterns_are_escaped() {
        let q = DeviceQuery {
            tag: Some("Web_1".into()),
            search: Some("50% db".into()),
            sort: DeviceSort::LastCheckIn,
            descending: true,
            after: Some(DeviceCursor {
                key: SortKey::Int(7),
                name: "x".into(),
            }),
            limit: 10,
            ..DeviceQuery::default()
        };
        let pg = device_page_sql(Dialect::Postgres, "name", "t", &q);
        assert!(
            pg.select.contains("lower(tags::text) LIKE $2"),
            "{}",
            pg.select
        );
        assert!(
            pg.select.ends_with(
                "ORDER BY COALESCE(last_check_in, -1) DESC, name COLLATE \"C\" DESC LIMIT 11"
            ),
            "{}",
            pg.select
        );
        assert_eq!(pg.select_params[1], Param::Text("%\"web\\_1\"%".into()));
        assert_eq!(pg.select_params[2], Param::Text("%50\\%%".into()));
        let lite = device_page_sql(Dialect::Sqlite, "name", "t", &q);
        assert!(
            !lite.select.contains('$') && !lite.select.contains("COLLATE"),
            "{}",
            lite.select
        );
        assert_eq!(lite.select.matches('?').count(), lite.select_params.len());
        assert_eq!(lite.count.matches('?').count(), lite.count_params.len());
    }
}
