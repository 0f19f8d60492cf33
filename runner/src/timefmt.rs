//! Times as Docker shows them: RFC 3339 with nanoseconds (`inspect`, `logs -t`), Go's
//! `units.HumanDuration` (`ps`: "Up 3 seconds", "Exited (0) 2 minutes ago"), and the
//! `--since`/`--until` forms `docker logs` accepts.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Docker's zero time, shown for a container that never started or never finished.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 in UTC with nanoseconds (Go's `RFC3339Nano`); 0 is Docker's zero time.
pub fn rfc3339(nanos: u64) -> String {
    if nanos == 0 {
        return ZERO_TIME.to_string();
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

/// Go's `units.HumanDuration` (docker/go-units), which `docker ps` prints.
pub fn human_duration(secs: u64) -> String {
    let minutes = secs / 60;
    // Go rounds to the nearest hour here.
    let hours = (secs + 1800) / 3600;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// A `--since`/`--until` value that is none of the forms [`parse_time_filter`] takes.
#[derive(Debug, thiserror::Error)]
#[error("invalid time {0:?}: use an RFC 3339 time (2026-01-02T15:04:05Z), a Unix timestamp or a duration such as 10m")]
pub struct BadTime(pub String);

/// A `--since`/`--until` value as nanoseconds since the epoch: an RFC 3339 time, a Unix
/// timestamp (`1700000000` or `1700000000.5`), or a Go duration before now (`10m`, `1h30m`).
pub fn parse_time_filter(s: &str, now_nanos: u64) -> Result<u64, BadTime> {
    let bad = || BadTime(s.to_string());
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        // u64 nanoseconds reach the year 2554: later times clamp (nothing is that late).
        return Ok(t.unix_timestamp_nanos().clamp(0, u64::MAX as i128) as u64);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1e9) as u64);
        }
        return Err(bad());
    }
    let d = parse_go_duration(s).ok_or_else(bad)?;
    Ok(now_nanos.saturating_sub(d))
}

/// Go's `time.ParseDuration` for non-negative values, in nanoseconds (`30s`, `1m30s`).
pub fn parse_go_duration(s: &str) -> Option<u64> {
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn time_filters() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(
            parse_time_filter("10m", now).unwrap(),
            now - 600_000_000_000
        );
        assert_eq!(
            parse_time_filter("1h30m", now).unwrap(),
            now - 5_400_000_000_000
        );
        assert_eq!(
            parse_time_filter("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time_filter("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time_filter("yesterday", now).is_err());
        assert_eq!(
            parse_time_filter("2999-01-01T00:00:00Z", now).unwrap(),
            u64::MAX
        );
        assert_eq!(rfc3339(0), ZERO_TIME);
        assert_eq!(rfc3339(1_700_000_000_500_000_000), "2023-11-14T22:13:20.5Z");
    }
}
