//! RFC 3339 timestamps as image configs carry them, and Docker's human-readable durations.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp { seconds: since.as_secs() as i64, nanos: since.subsec_nanos() }
    }

    pub fn from_unix(seconds: i64) -> Self {
        Timestamp { seconds, nanos: 0 }
    }

    /// Parses RFC 3339 (`2024-01-02T03:04:05.123456789Z`, `...+01:00`).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = s.get(from..from + len)?;
            part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + u32::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let minutes = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
                if *sign == b'+' {
                    minutes * 60
                } else {
                    -minutes * 60
                }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month as u32, day as u32);
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset;
        Some(Timestamp { seconds, nanos })
    }

    /// RFC 3339 in UTC with Go's `RFC3339Nano` fraction rule (trailing zeros dropped).
    pub fn to_rfc3339(&self) -> String {
        let (date, time) = self.civil();
        let mut s = format!("{date}T{time}");
        if self.nanos > 0 {
            let fraction = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(fraction.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }

    /// Go's `time.Time.String()` in UTC, as `docker images --format` prints `CreatedAt`.
    pub fn to_go_string(&self) -> String {
        let (date, time) = self.civil();
        format!("{date} {time} +0000 UTC")
    }

    fn civil(&self) -> (String, String) {
        let days = self.seconds.div_euclid(86400);
        let secs = self.seconds.rem_euclid(86400);
        let (year, month, day) = civil_from_days(days);
        (
            format!("{year:04}-{month:02}-{day:02}"),
            format!("{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

// Howard Hinnant's days-from-civil algorithms.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Docker's `units.HumanDuration`: "Less than a second", "3 minutes", "About an hour", ...
pub fn human_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = (seconds as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if seconds < 1 => "Less than a second".to_owned(),
        _ if seconds == 1 => "1 second".to_owned(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits.
pub fn human_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"], 3)
}

/// Docker's `units.BytesSize`: powers of 1024 (`1.5MiB`), four significant digits, for memory
/// in `docker stats`.
pub fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"], 4)
}

/// `bytes` divided by `base` until below it (or at the last unit), in Go's `%.{digits}g`.
fn scaled(bytes: u64, base: f64, units: &[&str], digits: i32) -> String {
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= base && unit < units.len() - 1 {
        size /= base;
        unit += 1;
    }
    format!("{}{}", format_g(size, digits), units[unit])
}

/// Go's `%.{digits}g` for values below 10^digits.
fn format_g(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let mut s = format!("{value:.decimals$}");
    // Rounding may carry into a new digit (999.5 → "1000"); %g would then print 1e+03, but
    // the unit loop keeps values below the base except at the largest unit.
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2024-02-29T13:14:15.5Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2024-02-29T13:14:15.5Z");
        let offset = Timestamp::parse_rfc3339("2024-02-29T14:14:15+01:00").expect("valid");
        assert_eq!(offset.to_rfc3339(), "2024-02-29T13:14:15Z");
        assert_eq!(Timestamp::from_unix(0).to_go_string(), "1970-01-01 00:00:00 +0000 UTC");
        assert!(Timestamp::parse_rfc3339("2024-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn binary_sizes_match_docker() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(1_258_291), "1.2MiB");
        assert_eq!(binary_size(25_275_486_208), "23.54GiB");
    }

    #[test]
    fn human_sizes_match_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(4_261_550), "4.26MB");
        assert_eq!(human_size(121_000_000), "121MB");
        assert_eq!(human_size(1_000_000), "1MB");
    }

    #[test]
    fn human_durations_match_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
    }
}
