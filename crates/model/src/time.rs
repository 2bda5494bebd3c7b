//! Time in Ocelli: the clock ([`now_ms`]), Prometheus durations ([`parse_duration`], one
//! grammar for config files, rule files and the API; [`format_duration`]), API times
//! ([`parse_time`]: RFC 3339 or Unix seconds) and RFC 3339 formatting ([`rfc3339`]), over
//! calendar arithmetic on Unix days in the proleptic Gregorian calendar (UTC). Written by hand:
//! the conversion is a few lines (the era-based algorithm: 400-year eras of 146,097 days), not
//! worth a date crate, and the duration grammar is Prometheus' own, which no crate parses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Earliest and latest times the API accepts, as Prometheus does (its `minTime`/`maxTime`).
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// Milliseconds since the Unix epoch by the system clock (0 for a clock before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A Prometheus duration, as its `model.ParseDuration` reads one: `0`, or one or more of
/// `<n>y`, `<n>w`, `<n>d`, `<n>h`, `<n>m`, `<n>s`, `<n>ms` in that order, each at most once
/// (`1m30s`, `1h5m`, `2d`, `250ms`). A year is 365 days. `None` for anything else (`1.5h`,
/// `30`, `30s1m`, an empty string) and for a total past `i64::MAX` milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    parse_duration_ms(s).map(|ms| Duration::from_millis(ms as u64))
}

fn parse_duration_ms(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 31_536_000_000),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    // units must come in the table's order: the next one is looked for from `next` on
    let mut next = 0;
    while !rest.is_empty() {
        let n_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n_len == 0 {
            return None;
        }
        let n: i64 = rest[..n_len].parse().ok()?;
        rest = &rest[n_len..];
        let u_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..u_len];
        let at = UNITS[next..].iter().position(|(u, _)| *u == unit)? + next;
        total = total.checked_add(n.checked_mul(UNITS[at].1)?)?;
        next = at + 1;
        rest = &rest[u_len..];
    }
    Some(total)
}

/// A duration as the Prometheus HTTP API takes one (`step`, `timeout`, `lookback_delta`):
/// seconds with decimals (`15`, `0.5`, `-3`), or a [`parse_duration`] duration; in ms.
pub fn parse_api_duration(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        return (f.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64);
    }
    parse_duration_ms(s)
}

/// Writes a duration as Prometheus does: `1m30s`, `250ms`, `2h`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let units = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut out = String::new();
    for (unit, size) in units {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// `2024-05-06T07:08:09.123456789Z`: UTC, nanoseconds with trailing zeros dropped.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, mo, day) = civil_from_days(days);
    let mut s =
        format!("{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// An API time to ms: RFC 3339 (`2006-01-02T15:04:05.999Z`, with an offset or `Z`) or Unix
/// seconds with decimals, within [`MIN_TIME_MS`]..=[`MAX_TIME_MS`].
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        let ms = (f * 1000.0).round();
        return (ms >= MIN_TIME_MS as f64 && ms <= MAX_TIME_MS as f64).then_some(ms as i64);
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    let (y, mo, d, h, mi, sec) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        frac_ms = padded.parse().ok()?;
        rest = &r[digits.len()..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + frac_ms)
}

/// Days since 1970-01-01 to `(year, month 1-12, day 1-31)`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `(year, month 1-12, day 1-31)` to days since 1970-01-01; the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
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
    fn known_dates_and_round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn durations_have_one_grammar() {
        let ok = [
            ("0", 0),
            ("15d", 15 * 86_400_000),
            ("250ms", 250),
            ("1m30s", 90_000),
            ("1h5m", 3_900_000),
            ("1h30m", 5_400_000),
            (
                "1y2w3d4h5m6s7ms",
                31_536_000_000
                    + 2 * 604_800_000
                    + 3 * 86_400_000
                    + 4 * 3_600_000
                    + 5 * 60_000
                    + 6000
                    + 7,
            ),
            ("90s", 90_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Some(Duration::from_millis(ms)), "{s}");
            assert_eq!(parse_api_duration(s), Some(ms as i64), "{s}");
        }
        for s in [
            "",
            "1.5h",
            "h",
            "30",
            "30s1m",
            "1m1m",
            "5x",
            "1h ",
            " 1h",
            "-1s",
            "1d99999999999999999h",
        ] {
            assert_eq!(parse_duration(s), None, "{s:?}");
        }
        // the API also takes seconds with decimals
        assert_eq!(parse_api_duration("15"), Some(15_000));
        assert_eq!(parse_api_duration("0.5"), Some(500));
        assert_eq!(parse_api_duration("500ms"), Some(500));
        assert_eq!(parse_api_duration("5x"), None);
    }

    #[test]
    fn formatted_durations_parse_back() {
        for ms in [0u64, 1, 250, 1500, 90_000, 3_900_000, 86_400_000, 31_536_000_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Some(d), "{ms}");
        }
        let cases = [
            (0, "0s"),
            (250, "250ms"),
            (15_000, "15s"),
            (60_000, "1m"),
            (90_000, "1m30s"),
            (7_200_000, "2h"),
            (86_400_000, "1d"),
            (1_500, "1s500ms"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn api_times() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Some(1_700_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("NaN"), None);
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a century year divisible by 400)
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3_723, 500_000_000);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.5Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456789Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_400); // 2100-03-01
        assert_eq!(rfc3339(t), "2100-03-01T00:00:00Z");
        assert_eq!(parse_time("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000_123));
    }
}
