//! nginx timestamps: `$time_local` and `$time_iso8601` to Unix seconds (UTC),
//! and Unix seconds back to RFC 3339 for reports.
//!
//! Parsing works on bytes, checks every digit and range (month names, days
//! per month, leap years, offsets up to ±23:59) and never panics. The
//! calendar arithmetic is the `time` crate's.
//!
//! ```
//! use onionwatch_logs::time::{format_rfc3339, parse_time_iso8601, parse_time_local};
//! let t = parse_time_local(b"11/Jan/2024:17:08:43 +0000").unwrap();
//! assert_eq!(t, 1_704_992_923);
//! assert_eq!(parse_time_iso8601(b"2024-01-11T18:08:43+01:00"), Some(t));
//! assert_eq!(format_rfc3339(t), "2024-01-11T17:08:43Z");
//! ```

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `N` ASCII digits as a number; `None` if any byte is not a digit.
fn digits<const N: usize>(b: &[u8]) -> Option<u32> {
    let b = b.get(..N)?;
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// Days in the Gregorian 400-year cycle, after which dates repeat.
const DAYS_PER_400_YEARS: i64 = 146_097;

/// Days since 1970-01-01 of a proleptic Gregorian date; `None` if the
/// month or the day does not exist (leap years included).
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    Some(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

/// The date of a day count since 1970-01-01 (inverse of `days_from_civil`),
/// for any count: `time` stops at year ±9999, so far dates are shifted by
/// whole 400-year cycles into its range and back.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let cycles = z.div_euclid(DAYS_PER_400_YEARS);
    let day = z.rem_euclid(DAYS_PER_400_YEARS) + UNIX_EPOCH_JULIAN_DAY;
    // Years 1970 to 2369: always a valid `time::Date`.
    let date = i32::try_from(day)
        .ok()
        .and_then(|d| time::Date::from_julian_day(d).ok())
        .unwrap_or(time::Date::MIN);
    (
        i64::from(date.year()) + cycles * 400,
        u32::from(u8::from(date.month())),
        u32::from(date.day()),
    )
}

/// Unix seconds of a validated local date and time with a UTC offset in
/// seconds east.
fn to_unix(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32, offset: i64) -> Option<i64> {
    // 60 allows a leap second, which then reads as the next second.
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d)?;
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + s) - offset)
}

/// A `+HHMM` / `-HHMM` offset (`colon`: `+HH:MM`) in seconds east of UTC.
fn offset(b: &[u8], colon: bool) -> Option<i64> {
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = if colon {
        if b.len() != 6 || b[3] != b':' {
            return None;
        }
        (digits::<2>(&b[1..])?, digits::<2>(&b[4..])?)
    } else {
        if b.len() != 5 {
            return None;
        }
        (digits::<2>(&b[1..])?, digits::<2>(&b[3..])?)
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 3600 + m * 60))
}

/// nginx `$time_local` (`11/Jan/2024:17:08:43 +0000`, exactly 26 bytes) to
/// Unix seconds; `None` for anything else.
pub fn parse_time_local(b: &[u8]) -> Option<i64> {
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[14] != b':' {
        return None;
    }
    if b[17] != b':' || b[20] != b' ' {
        return None;
    }
    let d = digits::<2>(b)?;
    let mon = &b[3..6];
    let mo = MONTHS.iter().position(|m| m[..] == *mon)? as u32 + 1;
    let y = digits::<4>(&b[7..])?;
    let h = digits::<2>(&b[12..])?;
    let mi = digits::<2>(&b[15..])?;
    let s = digits::<2>(&b[18..])?;
    to_unix(y, mo, d, h, mi, s, offset(&b[21..], false)?)
}

/// nginx `$time_iso8601` (`2024-01-11T17:08:43+00:00`; `Z` is accepted too)
/// to Unix seconds; `None` for anything else.
pub fn parse_time_iso8601(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let y = digits::<4>(b)?;
    let mo = digits::<2>(&b[5..])?;
    let d = digits::<2>(&b[8..])?;
    let h = digits::<2>(&b[11..])?;
    let mi = digits::<2>(&b[14..])?;
    let s = digits::<2>(&b[17..])?;
    let off = match &b[19..] {
        b"Z" => 0,
        rest => offset(rest, true)?,
    };
    to_unix(y, mo, d, h, mi, s, off)
}

/// Unix seconds as RFC 3339 in UTC (`2024-01-11T17:08:43Z`).
pub fn format_rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_local_parses_with_offsets() {
        assert_eq!(parse_time_local(b"01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_time_local(b"11/Jan/2024:18:08:43 +0100"),
            Some(1_704_992_923)
        );
        assert_eq!(
            parse_time_local(b"11/Jan/2024:12:08:43 -0500"),
            Some(1_704_992_923)
        );
        assert_eq!(
            parse_time_local(b"29/Feb/2024:00:00:00 +0000"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_time_local(b"31/Dec/1969:23:59:59 +0000"), Some(-1));
    }

    #[test]
    fn time_local_rejects_garbage() {
        let bad: &[&[u8]] = &[
            b"",
            b"-",
            b"11/Jan/2024:17:08:43",
            b"11/Jan/2024:17:08:43 +000",
            b"11/Jan/2024:17:08:43 +00000",
            b"11/jan/2024:17:08:43 +0000",
            b"11/Foo/2024:17:08:43 +0000",
            b"29/Feb/2023:00:00:00 +0000",
            b"31/Apr/2024:00:00:00 +0000",
            b"00/Jan/2024:00:00:00 +0000",
            b"11/Jan/2024:24:00:00 +0000",
            b"11/Jan/2024:17:60:00 +0000",
            b"11/Jan/2024:17:08:61 +0000",
            b"11/Jan/2024:17:08:43 +2400",
            b"11/Jan/2024:17:08:43 +0060",
            b"11/Jan/2024:17:08:43 *0000",
            b"1a/Jan/2024:17:08:43 +0000",
            b"11/Jan/2024:17:08:43\xff+0000",
            b"\xff\xff/Jan/2024:17:08:43 +0000",
            b"11-Jan-2024:17:08:43 +0000",
            b"                          ",
        ];
        for b in bad {
            assert_eq!(
                parse_time_local(b),
                None,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn iso8601_parses_and_rejects() {
        let t = 1_704_992_923;
        assert_eq!(parse_time_iso8601(b"2024-01-11T17:08:43+00:00"), Some(t));
        assert_eq!(parse_time_iso8601(b"2024-01-11T17:08:43Z"), Some(t));
        assert_eq!(parse_time_iso8601(b"2024-01-11T12:08:43-05:00"), Some(t));
        for b in [
            &b""[..],
            b"2024-01-11T17:08:43",
            b"2024-01-11 17:08:43+00:00",
            b"2024-13-11T17:08:43+00:00",
            b"2024-01-11T17:08:43+0000",
            b"2024-01-11T17:08:43+00:00x",
            b"2024-01-11T17:08:43+\xff\xff:00",
        ] {
            assert_eq!(parse_time_iso8601(b), None);
        }
    }

    #[test]
    fn civil_round_trips() {
        for days in [-800_000, -1, 0, 1, 59, 60, 365, 10_000, 19_733, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{days}");
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(1_709_164_800), "2024-02-29T00:00:00Z");
        // Past the `time` crate's range (year 9999).
        assert_eq!(format_rfc3339(253_402_300_800), "10000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-377_736_739_200), "-10000-01-01T00:00:00Z");
    }
}
