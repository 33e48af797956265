//! Plain-text tables and value formatting for people.

pub use rampart_core::text::{cell, table, value};

/// Prints a value as pretty JSON, for `-o json`.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A moment given in seconds since the epoch, in UTC: `2026-01-01 09:30:00Z`,
/// or `never` when there is none.
pub fn time(secs: Option<i64>) -> String {
    let Some(secs) = secs else {
        return "never".into();
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A length of time as people write it: `90s`, `30m`, `2h`, `1d`, `1h30m`.
pub fn duration(secs: u64) -> String {
    if secs == 0 {
        return "none".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), so the CLI needs no date crate.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `1 device`, `3 devices`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `setting[key]` for one keyed entry of a merged setting, else the setting.
pub fn keyed(setting: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{setting}[{k}]"),
        None => setting.to_string(),
    }
}

/// `policy=value` for each side of a conflict.
pub fn conflict_detail(c: &rampart_proto::ConflictView) -> Vec<String> {
    c.policies
        .iter()
        .zip(&c.values)
        .map(|(p, v)| format!("{p}={}", value(v)))
        .collect()
}

/// One device of a preview: whether it enters or leaves the enforcement
/// scope, then each setting and conflict it gains, changes or loses.
pub fn device_impact(d: &rampart_proto::DeviceImpact) -> String {
    let scope = match (d.managed_before, d.managed_after) {
        (false, true) => " (becomes managed)",
        (true, false) => " (stops being managed: Rampart's settings are removed)",
        _ => "",
    };
    let mut out = format!("  {}{scope}\n", d.device);
    for (mark, settings) in [("+", &d.added), ("~", &d.changed), ("-", &d.removed)] {
        for s in settings {
            out.push_str(&format!("    {mark} {s}\n"));
        }
    }
    for (mark, conflicts) in [("+", &d.conflicts_added), ("-", &d.conflicts_removed)] {
        for c in conflicts {
            out.push_str(&format!(
                "    {mark} conflict {}: {}\n",
                keyed(&c.setting, c.key.as_deref()),
                conflict_detail(c).join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(None), "never");
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time(Some(1_767_225_600)), "2026-01-01 00:00:00Z");
        assert_eq!(time(Some(951_827_696)), "2000-02-29 12:34:56Z");
    }
}
