//! Lengths of time and instants as people type them on the command line.

/// `90s`, `30m`, `24h`, `7d` → seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let factor = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// An instant as Unix seconds: a UTC date (`2026-12-01`), a UTC date and
/// time (`2026-12-01T14:30`, `2026-12-01T14:30:05Z`), or a length of time
/// before `now` (`2h`, `7d`).
pub fn parse_instant(s: &str, now: i64) -> Result<i64, String> {
    if !s.contains('-') {
        return parse_duration(s).map(|ago| now - ago).map_err(|_| {
            format!(
                "{s:?} is neither a UTC date and time (2026-12-01T14:30Z) nor a time ago (2h, 7d)"
            )
        });
    }
    let invalid =
        || format!("{s:?} is not a UTC date and time like 2026-12-01 or 2026-12-01T14:30:05Z");
    let trimmed = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = trimmed.split_once('T').unwrap_or((trimmed, "00:00:00"));
    let numbers = |text: &str, sep: char| -> Result<Vec<i64>, String> {
        text.split(sep)
            .map(|n| n.parse::<i64>().map_err(|_| invalid()))
            .collect()
    };
    let (y, m, d) = match numbers(date, '-')?.as_slice() {
        [y, m, d] if (1..=12).contains(m) && (1..=31).contains(d) => (*y, *m, *d),
        _ => return Err(invalid()),
    };
    let (hh, mm, ss) = match numbers(time, ':')?.as_slice() {
        [h, m] => (*h, *m, 0),
        [h, m, s] => (*h, *m, *s),
        _ => return Err(invalid()),
    };
    if !(0..24).contains(&hh) || !(0..60).contains(&mm) || !(0..60).contains(&ss) {
        return Err(invalid());
    }
    Ok(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// `render`'s `civil_from_days`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_dates_times_or_times_ago() {
        assert_eq!(parse_instant("1970-01-01", 0), Ok(0));
        assert_eq!(parse_instant("2026-12-01", 0), Ok(1_796_083_200));
        assert_eq!(parse_instant("2026-12-01T14:30Z", 0), Ok(1_796_135_400));
        assert_eq!(parse_instant("2024-02-29T00:00:05", 0), Ok(1_709_164_805));
        assert_eq!(parse_instant("2h", 10_000), Ok(2_800));
        assert_eq!(
            parse_instant("2026-03-01T23:59:59Z", 0).map(|t| crate::render::time(Some(t))),
            Ok("2026-03-01 23:59:59Z".to_string())
        );
        for bad in [
            "2026-13-01",
            "2026-12-01T25:00",
            "yesterday",
            "2026-12",
            "3w",
        ] {
            assert!(parse_instant(bad, 0).is_err(), "{bad}");
        }
    }
}
